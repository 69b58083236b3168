/* The JSON reader: bytes to a jansson tree in one pass, accepting exactly what json_loadb() does. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shared/macro.h"
#include "shared/util.h"
#include "translate/json-fast.h"

/* Why not json_loadb(): jansson reads through a per-byte stream callback and builds every token in a strbuffer
 * one char at a time (~180 instructions per byte). Here strings are found eight bytes at a time, an unescaped
 * string is handed to jansson straight from the input, and integers are parsed by hand. What jansson accepts
 * is the contract (tests/fuzz/fuzz-json.c checks it differentially):
 *   - whitespace is space, \t, \n, \r; the top level is an object or array unless JSON_DECODE_ANY;
 *   - a value nested deeper than JSON_PARSER_MAX_DEPTH is refused, counting scalars as one level too;
 *   - the whole input is UTF-8 (no overlongs, surrogates or code points past U+10FFFF); strings hold no
 *     control bytes; \u0000 is refused (we never pass JSON_ALLOW_NUL); \uD800-\uDBFF must pair with a
 *     following \uDC00-\uDFFF and a lone low surrogate is refused;
 *   - integers are what strtoll() takes without ERANGE; reals go through strtod() and only an overflow to
 *     +-HUGE_VAL is an error (underflow to 0 is not); "-0" is the integer 0, "-0.0" the real -0.0;
 *   - a duplicate key replaces the value in place, through the same json_object_setn_new_nocheck() call;
 *   - one NUL byte right after a number or literal is skipped (skip_pushed_back_nul()). */

typedef struct JsonReader {
        const char *p;
        const char *end;
        unsigned depth;
        size_t values_left;             /* json_read_max(): -E2BIG once this many values are read */
        /* Decoded strings that had escapes; grows on the heap past the inline part. */
        char *scratch;
        size_t scratch_size;
        char scratch_inline[256];
} JsonReader;

static const char *skip_ws_slow(const char *p, const char *end) {
        /* Compact JSON has no whitespace, pretty-printed JSON has indentation: a run of spaces is measured a
         * word at a time, by the first byte of the word that is not a space. */
        const uint64_t spaces = UINT64_C(0x2020202020202020), low7 = UINT64_C(0x7f7f7f7f7f7f7f7f);

        while (p < end) {
                if (*p == ' ' && end - p >= 8) {
                        uint64_t w, t, m;

                        memcpy(&w, p, 8);
                        t = le64toh(w) ^ spaces;
                        m = (((t & low7) + low7) | t) & ~low7;     /* top bit of every byte that is not ' ' */
                        p += m == 0 ? 8 : (size_t) (__builtin_ctzll(m) >> 3);
                } else if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
                        p++;
                else
                        break;
        }
        return p;
}

/* Most calls find a token right there (no whitespace byte is above ' '): that test is inlined. */
static inline const char *skip_ws(const char *p, const char *end) {
        if (_likely_(p < end && (unsigned char) *p > ' '))
                return p;
        return skip_ws_slow(p, end);
}

/* jansson's quirk, kept because its verdict is the contract: its lexer reads one byte past a number or a
 * literal and pushes it back into a one-token buffer where NUL means "empty", so a NUL byte right there is
 * lost and "[1\0]" or "{\"a\":true\0}" parse as if it were not there. Only that one byte: a second NUL is
 * read as a token and refused. */
static const char *skip_pushed_back_nul(const char *p, const char *end) {
        return p < end && *p == 0 ? p + 1 : p;
}

static int scratch_reserve(JsonReader *r, size_t need) {
        size_t size;
        char *d;

        if (need <= r->scratch_size)
                return 0;
        size = MAX(r->scratch_size * 2, need);
        d = malloc(size);
        if (!d)
                return -ENOMEM;
        memcpy(d, r->scratch, r->scratch_size);
        if (r->scratch != r->scratch_inline)
                free(r->scratch);
        r->scratch = d;
        r->scratch_size = size;
        return 0;
}

static int hex4(const char *p, uint32_t *ret) {
        uint32_t v = 0;

        for (size_t i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (uint32_t) (c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (uint32_t) (c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (uint32_t) (c - 'A' + 10);
                else
                        return -EBADMSG;
        }
        *ret = v;
        return 0;
}

/* The rest of a string whose first escape is at p, decoded into the scratch buffer: the plain bytes before it
 * are copied once, then each run of plain bytes and each escape's output (4 bytes at most) as they come. */
static int read_string_escaped(JsonReader *r, const char *start, const char *p, const char **ret,
                               size_t *ret_len) {
        const char *end = r->end;
        size_t t;
        int k;

        k = scratch_reserve(r, (size_t) (p - start) + 16);
        if (k < 0)
                return k;
        memcpy(r->scratch, start, (size_t) (p - start));
        t = (size_t) (p - start);

        for (;;) {
                const char *run = p;

                for (;;) {
                        p = string_scan(p, end);
                        if (p >= end || (unsigned char) *p < 0x80)
                                break;
                        size_t n = utf8_valid((const unsigned char *) p, (const unsigned char *) end);
                        if (n == 0)
                                return -EBADMSG;
                        p += n;
                }
                if (p >= end || (unsigned char) *p < 0x20)
                        return -EBADMSG;
                /* Room for the run plus the longest escape's output (4 bytes). */
                k = scratch_reserve(r, t + (size_t) (p - run) + 4);
                if (k < 0)
                        return k;
                memcpy(r->scratch + t, run, (size_t) (p - run));
                t += (size_t) (p - run);

                if (*p == '"') {
                        r->p = p + 1;
                        *ret = r->scratch;
                        *ret_len = t;
                        return 0;
                }

                /* A backslash. */
                if (end - p < 2)
                        return -EBADMSG;
                switch (p[1]) {
                case '"':
                case '\\':
                case '/':
                        r->scratch[t++] = p[1];
                        p += 2;
                        break;
                case 'b':
                        r->scratch[t++] = '\b';
                        p += 2;
                        break;
                case 'f':
                        r->scratch[t++] = '\f';
                        p += 2;
                        break;
                case 'n':
                        r->scratch[t++] = '\n';
                        p += 2;
                        break;
                case 'r':
                        r->scratch[t++] = '\r';
                        p += 2;
                        break;
                case 't':
                        r->scratch[t++] = '\t';
                        p += 2;
                        break;
                case 'u': {
                        uint32_t cp, lo;

                        if (end - p < 6 || hex4(p + 2, &cp) < 0)
                                return -EBADMSG;
                        p += 6;
                        if (cp >= 0xd800 && cp <= 0xdbff) {
                                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0)
                                        return -EBADMSG;
                                if (lo < 0xdc00 || lo > 0xdfff)
                                        return -EBADMSG;
                                p += 6;
                                cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
                        } else if (cp >= 0xdc00 && cp <= 0xdfff)
                                return -EBADMSG;
                        else if (cp == 0)
                                /* jansson without JSON_ALLOW_NUL: no NUL in values, none in keys ever. */
                                return -EBADMSG;
                        t += utf8_encode(cp, r->scratch + t);
                        break;
                }
                default:
                        return -EBADMSG;
                }
        }
}

/* A string whose opening quote is at r->p. The result points into the input when there was no escape to
 * decode (the common case), else into the scratch buffer; either is valid until the next string is read. */
static int read_string(JsonReader *r, const char **ret, size_t *ret_len) {
        const char *start = r->p + 1, *p = start, *end = r->end;

        for (;;) {
                p = string_scan(p, end);
                if (p >= end)
                        return -EBADMSG;

                unsigned char c = (unsigned char) *p;
                if (c == '"') {
                        r->p = p + 1;
                        *ret = start;
                        *ret_len = (size_t) (p - start);
                        return 0;
                }
                if (c == '\\')
                        return read_string_escaped(r, start, p, ret, ret_len);
                if (c < 0x20)
                        return -EBADMSG;

                size_t n = utf8_valid((const unsigned char *) p, (const unsigned char *) end);
                if (n == 0)
                        return -EBADMSG;
                p += n;
        }
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

/* ret NULL: the number is checked as strictly, and not made. */
static int read_number(JsonReader *r, json_t **ret) {
        const char *start = r->p, *p = start, *end = r->end, *digits;
        bool neg = false, real = false;
        json_t *v;

        if (*p == '-') {
                neg = true;
                p++;
        }
        digits = p;
        if (p >= end || !is_digit(*p))
                return -EBADMSG;
        if (*p == '0')
                p++;
        else
                while (p < end && is_digit(*p))
                        p++;

        if (p < end && *p == '.') {
                real = true;
                p++;
                if (p >= end || !is_digit(*p))
                        return -EBADMSG;
                while (p < end && is_digit(*p))
                        p++;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
                real = true;
                p++;
                if (p < end && (*p == '+' || *p == '-'))
                        p++;
                if (p >= end || !is_digit(*p))
                        return -EBADMSG;
                while (p < end && is_digit(*p))
                        p++;
        }

        if (!real) {
                /* strtoll()'s range: up to 2^63 - 1, down to -2^63. Without leading zeros 19 digits may
                 * overflow, 20 always do. */
                size_t nd = (size_t) (p - digits);
                uint64_t u = 0;

                if (nd > 19)
                        return -EBADMSG;
                for (const char *q = digits; q < p; q++) {
                        if (__builtin_mul_overflow(u, 10, &u) ||
                            __builtin_add_overflow(u, (uint64_t) (*q - '0'), &u))
                                return -EBADMSG;
                }
                if (u > (uint64_t) INT64_MAX + neg)
                        return -EBADMSG;
                if (!ret) {
                        r->p = skip_pushed_back_nul(p, end);
                        return 0;
                }
                v = json_integer(neg ? (json_int_t) (0 - u) : (json_int_t) u);
        } else {
                _cleanup_free_ char *heap = NULL;
                char small[64], *text = small, *e;
                size_t len = (size_t) (p - start);
                double d;

                if (len >= sizeof(small)) {
                        text = heap = malloc(len + 1);
                        if (!heap)
                                return -ENOMEM;
                }
                memcpy(text, start, len);
                text[len] = 0;
                /* LC_NUMERIC is never changed from "C" in gate, so '.' is the decimal point strtod() wants. */
                errno = 0;
                d = strtod(text, &e);
                if (e != text + len)
                        return -EBADMSG;
                if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE)
                        return -EBADMSG;
                if (!ret) {
                        r->p = skip_pushed_back_nul(p, end);
                        return 0;
                }
                v = json_real(d);
        }
        if (!v)
                return -ENOMEM;
        r->p = skip_pushed_back_nul(p, end);
        *ret = v;
        return 0;
}

static int read_value(JsonReader *r, const JsonKeep *keep, json_t **ret);

static const JsonKeep *keep_find(const JsonKeep *keep, const char *key, size_t len) {
        for (; keep->key; keep++)
                if (strlen(keep->key) == len && memcmp(keep->key, key, len) == 0)
                        return keep;
        return NULL;
}

/* keep NULL: every member is made; else only the members it names, and the others are read and dropped. ret
 * NULL: the object is read and checked, and nothing is made. */
static int read_object(JsonReader *r, const JsonKeep *keep, json_t **ret) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        const char *end = r->end;
        int k;

        if (ret) {
                o = json_object();
                if (!o)
                        return -ENOMEM;
        }
        r->p = skip_ws(r->p + 1, end);
        if (r->p < end && *r->p == '}') {
                r->p++;
                if (ret)
                        *ret = TAKE_PTR(o);
                return 0;
        }
        for (;;) {
                _cleanup_free_ char *key_copy = NULL;
                const JsonKeep *member = NULL;
                const char *key;
                size_t key_len;
                bool make = ret;
                json_t *v;

                if (r->p >= end || *r->p != '"')
                        return -EBADMSG;
                k = read_string(r, &key, &key_len);
                if (k < 0)
                        return k;
                if (make && keep) {
                        member = keep_find(keep, key, key_len);
                        make = member;
                }
                /* The value may need the scratch buffer too: a decoded key is kept aside. */
                if (make && key == r->scratch) {
                        key_copy = malloc(key_len + 1);
                        if (!key_copy)
                                return -ENOMEM;
                        memcpy(key_copy, key, key_len);
                        key = key_copy;
                }
                r->p = skip_ws(r->p, end);
                if (r->p >= end || *r->p != ':')
                        return -EBADMSG;
                r->p = skip_ws(r->p + 1, end);
                k = read_value(r, member ? member->inner : NULL, make ? &v : NULL);
                if (k < 0)
                        return k;
                /* Takes v also on failure. */
                if (make && json_object_setn_new_nocheck(o, key, key_len, v) < 0)
                        return -ENOMEM;
                r->p = skip_ws(r->p, end);
                if (r->p >= end)
                        return -EBADMSG;
                if (*r->p == '}') {
                        r->p++;
                        if (ret)
                                *ret = TAKE_PTR(o);
                        return 0;
                }
                if (*r->p != ',')
                        return -EBADMSG;
                r->p = skip_ws(r->p + 1, end);
        }
}

/* keep applies to each element (an array of objects is filtered member by member); ret NULL as above. */
static int read_array(JsonReader *r, const JsonKeep *keep, json_t **ret) {
        _cleanup_(json_decrefp) json_t *a = NULL;
        const char *end = r->end;
        int k;

        if (ret) {
                a = json_array();
                if (!a)
                        return -ENOMEM;
        }
        r->p = skip_ws(r->p + 1, end);
        if (r->p < end && *r->p == ']') {
                r->p++;
                if (ret)
                        *ret = TAKE_PTR(a);
                return 0;
        }
        for (;;) {
                json_t *v;

                k = read_value(r, keep, ret ? &v : NULL);
                if (k < 0)
                        return k;
                if (ret && json_array_append_new(a, v) < 0)
                        return -ENOMEM;
                r->p = skip_ws(r->p, end);
                if (r->p >= end)
                        return -EBADMSG;
                if (*r->p == ']') {
                        r->p++;
                        if (ret)
                                *ret = TAKE_PTR(a);
                        return 0;
                }
                if (*r->p != ',')
                        return -EBADMSG;
                r->p = skip_ws(r->p + 1, end);
        }
}

static int read_literal(JsonReader *r, const char *word, size_t len, json_t *v, json_t **ret) {
        if ((size_t) (r->end - r->p) < len || memcmp(r->p, word, len) != 0)
                return -EBADMSG;
        /* jansson reads a whole run of letters as one identifier: "truex" is not true followed by junk. */
        r->p += len;
        if (r->p < r->end && ((*r->p >= 'a' && *r->p <= 'z') || (*r->p >= 'A' && *r->p <= 'Z')))
                return -EBADMSG;
        r->p = skip_pushed_back_nul(r->p, r->end);
        if (ret)
                *ret = v;
        return 0;
}

/* A value at r->p (whitespace already skipped); r->p ends just past it. keep and ret NULL as in read_object():
 * a value that is not made is still read, checked and counted exactly as one that is, so that the verdict on
 * the input does not depend on what is kept. */
static int read_value(JsonReader *r, const JsonKeep *keep, json_t **ret) {
        int k;

        if (r->p >= r->end)
                return -EBADMSG;
        if (r->values_left-- == 0)
                return -E2BIG;
        /* jansson counts every value, scalars too, and does not give the level back on failure. */
        if (++r->depth > JSON_PARSER_MAX_DEPTH)
                return -EBADMSG;

        switch (*r->p) {
        case '{':
                k = read_object(r, keep, ret);
                break;
        case '[':
                k = read_array(r, keep, ret);
                break;
        case '"': {
                const char *s;
                size_t n;
                json_t *v;

                k = read_string(r, &s, &n);
                if (k < 0)
                        return k;
                if (!ret)
                        break;
                v = json_stringn_nocheck(s, n);
                if (!v)
                        return -ENOMEM;
                *ret = v;
                break;
        }
        case 't':
                k = read_literal(r, "true", 4, json_true(), ret);
                break;
        case 'f':
                k = read_literal(r, "false", 5, json_false(), ret);
                break;
        case 'n':
                k = read_literal(r, "null", 4, json_null(), ret);
                break;
        default:
                if (*r->p == '-' || is_digit(*r->p))
                        k = read_number(r, ret);
                else
                        k = -EBADMSG;
        }
        if (k < 0)
                return k;
        r->depth--;
        return 0;
}

int json_read(const char *s, size_t n, size_t flags, json_t **ret) {
        return json_read_max(s, n, flags, SIZE_MAX, ret);
}

int json_read_max(const char *s, size_t n, size_t flags, size_t max_values, json_t **ret) {
        return json_read_keep(s, n, flags, max_values, NULL, ret);
}

int json_read_keep(const char *s, size_t n, size_t flags, size_t max_values, const JsonKeep *keep,
                   json_t **ret) {
        JsonReader r = {
                .p = s ?: "",
                .end = (s ?: "") + (s ? n : 0),
                .values_left = max_values,
        };
        json_t *v = NULL;
        int k;

        if (flags & ~(size_t) JSON_DECODE_ANY)
                return -EINVAL;
        r.scratch = r.scratch_inline;
        r.scratch_size = sizeof(r.scratch_inline);

        r.p = skip_ws(r.p, r.end);
        if (!(flags & JSON_DECODE_ANY) && (r.p >= r.end || (*r.p != '{' && *r.p != '[')))
                k = -EBADMSG;
        else
                k = read_value(&r, keep, &v);
        if (k >= 0 && skip_ws(r.p, r.end) != r.end) {
                json_decref(v);
                k = -EBADMSG;
        }
        if (r.scratch != r.scratch_inline)
                free(r.scratch);
        if (k < 0)
                return k;
        *ret = v;
        return 0;
}
