/* Usage scanning: the token counts and served model an upstream reports, from a JSON body or an SSE stream. */
#include <endian.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "api/usage-scan.h"
#include "shared/util.h"

enum {
        LINE_START,
        LINE_FIELD,
        LINE_DATA_FIRST,
        LINE_DATA,
        LINE_SKIP,
};

enum {
        JSON_VALUE,
        JSON_OBJ_FIRST,                 /* after '{': a key or '}' */
        JSON_OBJ_KEY,                   /* after ',' in an object: a key */
        JSON_COLON,
        JSON_AFTER,                     /* after a value: ',' or the container's end */
        JSON_ARR_FIRST,                 /* after '[': a value or ']' */
        JSON_STRING,
        JSON_ESCAPE,
        JSON_HEX,
        JSON_NUMBER,
        JSON_LITERAL,
        JSON_DONE,
        JSON_ERROR,
};

enum {
        STRING_KEY,
        STRING_CAPTURE,
        STRING_SKIP,
};

/* Key ids: the vocabulary of the paths we look for. */
enum {
        K_OTHER,
        K_ARRAY,
        K_MODEL,
        K_USAGE,
        K_MESSAGE,
        K_RESPONSE,
        K_PROMPT_TOKENS,
        K_COMPLETION_TOKENS,
        K_INPUT_TOKENS,
        K_OUTPUT_TOKENS,
        K_PROMPT_DETAILS,
        K_INPUT_DETAILS,
        K_CACHED_TOKENS,
        K_CACHE_READ,
        K_CACHE_WRITE,
};

/* Every key at a depth where a path can match is looked up here: its length and first byte leave at
 * most one name to compare. */
static uint8_t key_lookup(const char *p, size_t n) {
#define IS(name) (p[0] == (name)[0] && memcmp(p, name, STRLEN(name)) == 0)
        switch (n) {
        case 5:
                return IS("model") ? K_MODEL : IS("usage") ? K_USAGE : K_OTHER;
        case 7:
                return IS("message") ? K_MESSAGE : K_OTHER;
        case 8:
                return IS("response") ? K_RESPONSE : K_OTHER;
        case 12:
                return IS("input_tokens") ? K_INPUT_TOKENS : K_OTHER;
        case 13:
                return IS("prompt_tokens") ? K_PROMPT_TOKENS : IS("output_tokens") ? K_OUTPUT_TOKENS :
                       IS("cached_tokens") ? K_CACHED_TOKENS : K_OTHER;
        case 17:
                return IS("completion_tokens") ? K_COMPLETION_TOKENS : K_OTHER;
        case 20:
                return IS("input_tokens_details") ? K_INPUT_DETAILS : K_OTHER;
        case 21:
                return IS("prompt_tokens_details") ? K_PROMPT_DETAILS : K_OTHER;
        case 23:
                return IS("cache_read_input_tokens") ? K_CACHE_READ : K_OTHER;
        case 27:
                return IS("cache_creation_input_tokens") ? K_CACHE_WRITE : K_OTHER;
        default:
                return K_OTHER;
        }
#undef IS
}

/* The hot helpers of the fast path, inlined even where the compiler would not. */
#define _always_inline_ inline __attribute__((always_inline))

/* Counts beyond this are not believed (and could not be summed safely). */
#define USAGE_VALUE_MAX (UINT64_C(1) << 50)

static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void json_reset(UsageScanner *s) {
        s->state = JSON_VALUE;
        s->depth = 0;
        memset(s->arrays, 0, sizeof s->arrays);
        memset(s->path, 0, sizeof s->path);
}

void usage_scanner_init(UsageScanner *s, Dialect dialect, bool sse) {
        *s = (UsageScanner) {
                .dialect = dialect,
                .sse = sse,
                .line = LINE_START,
        };
        json_reset(s);
}

static bool top_is_array(const UsageScanner *s) {
        unsigned d = s->depth - 1u;
        return s->depth > 0 && (s->arrays[d / 64] >> (d % 64)) & 1;
}

/* The depth (1 or 2) of the "usage" object the current path is in, 0 if none. */
static unsigned usage_base(const UsageScanner *s) {
        uint8_t outer = s->dialect == DIALECT_ANTHROPIC ? K_MESSAGE : K_RESPONSE;

        if (s->depth >= 2 && s->path[0] == K_USAGE)
                return 1;
        if (s->depth >= 3 && s->path[0] == outer && s->path[1] == K_USAGE)
                return 2;
        return 0;
}

static UsageField current_field(const UsageScanner *s) {
        unsigned base = usage_base(s);
        uint8_t k;

        if (base == 0 || s->depth > 4)
                return _USAGE_FIELD_INVALID;
        k = s->path[s->depth - 1];

        if (s->depth == base + 1) {
                if (s->dialect == DIALECT_ANTHROPIC)
                        switch (k) {
                        case K_INPUT_TOKENS:
                                return USAGE_FIELD_INPUT;
                        case K_OUTPUT_TOKENS:
                                return USAGE_FIELD_OUTPUT;
                        case K_CACHE_READ:
                                return USAGE_FIELD_CACHE_READ;
                        case K_CACHE_WRITE:
                                return USAGE_FIELD_CACHE_WRITE;
                        }
                else
                        switch (k) {
                        case K_PROMPT_TOKENS:
                                return USAGE_FIELD_PROMPT;
                        case K_COMPLETION_TOKENS:
                                return USAGE_FIELD_COMPLETION;
                        case K_INPUT_TOKENS:
                                return USAGE_FIELD_INPUT;
                        case K_OUTPUT_TOKENS:
                                return USAGE_FIELD_OUTPUT;
                        }
        } else if (s->depth == base + 2 && s->dialect == DIALECT_OPENAI && k == K_CACHED_TOKENS &&
                   (s->path[base] == K_PROMPT_DETAILS || s->path[base] == K_INPUT_DETAILS))
                return USAGE_FIELD_CACHED;
        return _USAGE_FIELD_INVALID;
}

static bool at_model(const UsageScanner *s) {
        uint8_t outer = s->dialect == DIALECT_ANTHROPIC ? K_MESSAGE : K_RESPONSE;

        if (s->model[0])
                return false;           /* the first one counts */
        if (s->depth == 1)
                return s->path[0] == K_MODEL;
        return s->depth == 2 && s->path[0] == outer && s->path[1] == K_MODEL;
}

/* A number's text (the scanner takes any run of digits, signs, dots and exponents as one) at field f. */
static void number_store(UsageScanner *s, UsageField f, const char *p, size_t n) {
        uint64_t v = 0;

        if (f < 0 || n == 0 || n > sizeof s->num)
                return;
        /* Integers, and integral floats some servers send ("12.0"); a sign or an exponent is not a count. */
        for (size_t i = 0; i < n; i++) {
                char c = p[i];
                if (c == '.')
                        break;
                if (c < '0' || c > '9')
                        return;
                v = v * 10 + (uint64_t) (c - '0');
                if (v > USAGE_VALUE_MAX)
                        return;
        }
        s->values[f] = MAX(s->values[f], v);
        s->seen |= 1U << f;
}

static void number_done(UsageScanner *s) {
        /* num_len counts one past the buffer for a number too long to be a count. */
        number_store(s, current_field(s), s->num, s->num_len);
}

static void utf8_sanitize(char *p) {
        unsigned char *u = (unsigned char *) p;

        while (*u) {
                unsigned n = *u < 0x80 ? 1 : (*u & 0xe0) == 0xc0 && *u >= 0xc2 ? 2 : (*u & 0xf0) == 0xe0 ? 3 :
                                (*u & 0xf8) == 0xf0 && *u <= 0xf4 ? 4 : 0;
                unsigned i;

                for (i = 1; n > 0 && i < n; i++)
                        if ((u[i] & 0xc0) != 0x80)
                                break;
                if (n == 0 || i < n) {
                        *u++ = '?';
                        continue;
                }
                u += n;
        }
}

static void string_done(UsageScanner *s) {
        if (s->string_kind == STRING_KEY) {
                uint8_t id = K_OTHER;

                if (!s->key_overflow)
                        id = key_lookup(s->key, s->key_len);
                if (s->depth >= 1 && s->depth <= ELEMENTSOF(s->path))
                        s->path[s->depth - 1] = id;
                s->state = JSON_COLON;
                return;
        }

        if (s->string_kind == STRING_CAPTURE && s->capture_len > 0) {
                size_t n = s->capture_len;

                /* A cut name ends at a character boundary: drop a last character that was cut. */
                if (s->model_overflow) {
                        size_t i = n - 1;
                        unsigned char lead;

                        while (i > 0 && ((unsigned char) s->capture[i] & 0xc0) == 0x80)
                                i--;
                        lead = (unsigned char) s->capture[i];
                        if (i + (lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1) > n)
                                n = i;
                }
                memcpy(s->model, s->capture, n);
                s->model[n] = 0;
                utf8_sanitize(s->model);
        }
        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
}

static void string_append(UsageScanner *s, const char *p, size_t n) {
        switch (s->string_kind) {
        case STRING_KEY:
                if (s->key_len + n >= sizeof s->key)
                        s->key_overflow = true;
                else {
                        memcpy(s->key + s->key_len, p, n);
                        s->key_len += (uint8_t) n;
                }
                break;
        case STRING_CAPTURE: {
                /* Room for all but the terminating NUL; what does not fit marks the name as cut. */
                size_t room = sizeof s->capture - 1 - s->capture_len;

                if (n > room) {
                        n = room;
                        s->model_overflow = true;
                }
                memcpy(s->capture + s->capture_len, p, n);
                s->capture_len += (uint16_t) n;
                break;
        }
        }
}

static void codepoint_append(UsageScanner *s, uint32_t cp) {
        char b[4];
        size_t n;

        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                cp = 0xfffd;
        n = utf8_encode(cp, b);
        string_append(s, b, n);
}

/* A high surrogate not followed by a low one stands for nothing: it becomes U+FFFD. */
static void surrogate_flush(UsageScanner *s) {
        if (s->high_surrogate) {
                s->high_surrogate = 0;
                codepoint_append(s, 0xfffd);
        }
}

static void string_begin(UsageScanner *s, uint8_t kind) {
        s->string_kind = kind;
        s->key_len = 0;
        s->key_overflow = false;
        s->capture_len = 0;
        s->model_overflow = false;
        s->high_surrogate = 0;
        s->state = JSON_STRING;
}

static void push(UsageScanner *s, bool array) {
        unsigned d;

        if (s->depth >= USAGE_SCAN_MAX_DEPTH) {
                s->state = JSON_ERROR;
                return;
        }
        d = s->depth++;
        if (array)
                s->arrays[d / 64] |= UINT64_C(1) << (d % 64);
        else
                s->arrays[d / 64] &= ~(UINT64_C(1) << (d % 64));
        if (s->depth <= ELEMENTSOF(s->path))
                s->path[s->depth - 1] = array ? K_ARRAY : K_OTHER;
        s->state = array ? JSON_ARR_FIRST : JSON_OBJ_FIRST;
}

static void pop(UsageScanner *s, bool array) {
        if (s->depth == 0 || top_is_array(s) != array) {
                s->state = JSON_ERROR;
                return;
        }
        s->depth--;
        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
}

static void value_begin(UsageScanner *s, char c) {
        switch (c) {
        case '{':
                push(s, false);
                break;
        case '[':
                push(s, true);
                break;
        case '"':
                string_begin(s, at_model(s) ? STRING_CAPTURE : STRING_SKIP);
                break;
        case 't':
        case 'f':
        case 'n':
                s->lit[0] = c;
                s->lit_pos = 1;
                s->state = JSON_LITERAL;
                break;
        case '-':
        case '0' ... '9':
                s->num[0] = c;
                s->num_len = 1;
                s->state = JSON_NUMBER;
                break;
        default:
                s->state = JSON_ERROR;
        }
}

static void json_byte(UsageScanner *s, char c) {
        for (;;)
                switch (s->state) {
                case JSON_VALUE:
                        if (!is_ws(c))
                                value_begin(s, c);
                        return;

                case JSON_ARR_FIRST:
                        if (is_ws(c))
                                return;
                        if (c == ']')
                                pop(s, true);
                        else
                                value_begin(s, c);
                        return;

                case JSON_OBJ_FIRST:
                case JSON_OBJ_KEY:
                        if (is_ws(c))
                                return;
                        if (c == '"')
                                string_begin(s, STRING_KEY);
                        else if (c == '}' && s->state == JSON_OBJ_FIRST)
                                pop(s, false);
                        else
                                s->state = JSON_ERROR;
                        return;

                case JSON_COLON:
                        if (c == ':')
                                s->state = JSON_VALUE;
                        else if (!is_ws(c))
                                s->state = JSON_ERROR;
                        return;

                case JSON_AFTER:
                        if (is_ws(c))
                                return;
                        if (c == ',')
                                s->state = top_is_array(s) ? JSON_VALUE : JSON_OBJ_KEY;
                        else if (c == '}' || c == ']')
                                pop(s, c == ']');
                        else
                                s->state = JSON_ERROR;
                        return;

                case JSON_STRING:
                        if (c == '\\') {
                                s->state = JSON_ESCAPE;
                                return;
                        }
                        surrogate_flush(s);
                        if (c == '"')
                                string_done(s);
                        else if ((unsigned char) c < 0x20)
                                s->state = JSON_ERROR;
                        else
                                string_append(s, &c, 1);
                        return;

                case JSON_ESCAPE: {
                        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
                        const char *e;

                        if (c == 'u') {
                                s->hex = 0;
                                s->hex_count = 0;
                                s->state = JSON_HEX;
                                return;
                        }
                        surrogate_flush(s);
                        e = c ? strchr(from, c) : NULL;
                        if (!e) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        string_append(s, to + (e - from), 1);
                        s->state = JSON_STRING;
                        return;
                }

                case JSON_HEX: {
                        int v = unhexchar(c);

                        if (v < 0) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        s->hex = s->hex << 4 | (uint32_t) v;
                        if (++s->hex_count < 4)
                                return;
                        s->state = JSON_STRING;
                        if (s->hex >= 0xd800 && s->hex <= 0xdbff) {
                                surrogate_flush(s);
                                s->high_surrogate = s->hex;
                        } else if (s->hex >= 0xdc00 && s->hex <= 0xdfff && s->high_surrogate) {
                                uint32_t cp = 0x10000 + ((s->high_surrogate - 0xd800) << 10) + (s->hex - 0xdc00);
                                s->high_surrogate = 0;
                                codepoint_append(s, cp);
                        } else {
                                surrogate_flush(s);
                                codepoint_append(s, s->hex);
                        }
                        return;
                }

                case JSON_NUMBER:
                        if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
                                if (s->num_len < sizeof s->num)
                                        s->num[s->num_len] = c;
                                if (s->num_len <= sizeof s->num)
                                        s->num_len++;
                                return;
                        }
                        number_done(s);
                        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
                        continue;       /* c ends the number and belongs to what follows */

                case JSON_LITERAL: {
                        const char *lit = s->lit[0] == 't' ? "true" : s->lit[0] == 'f' ? "false" : "null";

                        if (c != lit[s->lit_pos]) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        if (lit[++s->lit_pos] == 0)
                                s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
                        return;
                }

                case JSON_DONE:
                        if (!is_ws(c))
                                s->state = JSON_ERROR;
                        return;

                case JSON_ERROR:
                default:
                        return;
                }
}

/* Eight bytes at a time: loaded so that the first byte in memory is the least significant, which is where
 * the lowest set bit of the masks below points. */
#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

static inline uint64_t load64(const char *p) {
        uint64_t w;

        memcpy(&w, p, sizeof w);
        return le64toh(w);
}

/* The high bit of each byte of w that is below b (b <= 0x80). A byte below b borrows from the next, which
 * may then be marked too: only the lowest mark is exact, which is all that is asked of these masks. */
static inline uint64_t bytes_below(uint64_t w, uint8_t b) {
        return (w - ONES * b) & ~w & HIGHS;
}

static inline size_t first_marked(uint64_t m) {
        return (size_t) __builtin_ctzll(m) / 8;
}

/* The length of plain string content at p: up to a quote, a backslash or a control character, or n.
 * Sixteen bytes at a time where SSE2 is there (x86-64 always), else eight. x ^ 0x02 is below 0x21
 * exactly when x is a control character or the quote. */
_always_inline_ static size_t string_plain(const char *p, size_t n) {
        size_t k = 0;

#ifdef __SSE2__
        for (; n - k >= 16; k += 16) {
                __m128i x = _mm_loadu_si128((const __m128i *) (p + k));
                __m128i quote = _mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                        backslash = _mm_cmpeq_epi8(x, _mm_set1_epi8('\\')),
                        control = _mm_cmpeq_epi8(_mm_max_epu8(x, _mm_set1_epi8(0x1f)), _mm_set1_epi8(0x1f));
                __m128i m = _mm_or_si128(_mm_or_si128(quote, backslash), control);
                unsigned bits = (unsigned) _mm_movemask_epi8(m);

                if (bits)
                        return k + (size_t) __builtin_ctz(bits);
        }
#endif
        for (; n - k >= 8; k += 8) {
                uint64_t w = load64(p + k);
                uint64_t m = bytes_below(w ^ (ONES * 0x02), 0x21) | bytes_below(w ^ (ONES * '\\'), 1);
                if (m)
                        return k + first_marked(m);
        }
        for (; k < n; k++) {
                unsigned char c = p[k];
                if (c == '"' || c == '\\' || c < 0x20)
                        break;
        }
        return k;
}

/* The length of the rest of an SSE line at p: up to CR, LF, or n. */
static size_t line_rest(const char *p, size_t n) {
        size_t k = 0;

        for (; n - k >= 8; k += 8) {
                uint64_t w = load64(p + k);
                uint64_t m = bytes_below(w ^ (ONES * '\n'), 1) | bytes_below(w ^ (ONES * '\r'), 1);
                if (m)
                        return k + first_marked(m);
        }
        while (k < n && p[k] != '\n' && p[k] != '\r')
                k++;
        return k;
}

/* The length of the field name at the start of an SSE line at p, when its colon is in the buffer and
 * at most 16 bytes on; else SIZE_MAX (a line end first, a cut name, a long one, which is not "data"
 * anyway): then sse_byte() takes the line's start byte by byte. */
static size_t sse_field(const char *p, size_t n) {
        for (size_t k = 0; k < MIN(n, 16u); k++)
                switch (p[k]) {
                case ':':
                        return k;
                case '\n':
                case '\r':
                        return SIZE_MAX;
                }
        return SIZE_MAX;
}

/* Whitespace between tokens, as a run: pretty-printed bodies are largely indentation, taken eight spaces
 * at a time. In an SSE data line CR and LF end the line, so they are left to the line handling. Every
 * byte that is not whitespace is above ' ' or a control character (an error, for json_byte()). */
static const char *ws_run(const char *c, const char *end, bool sse) {
        while (c < end && (unsigned char) *c <= ' ') {
                if (*c == ' ' && end - c >= 8) {
                        /* y's bytes are zero where there is a space; mark the others, exactly. */
                        uint64_t y = load64(c) ^ (ONES * ' ');

                        y = (y | ((y & ~HIGHS) + ~HIGHS)) & HIGHS;
                        c += y ? first_marked(y) : 8;
                } else if (*c == ' ' || *c == '\t' || (!sse && (*c == '\n' || *c == '\r')))
                        c++;
                else
                        break;
        }
        return c;
}

/* Between two tokens there is most often no whitespace at all (and never in compact JSON), else in a
 * pretty-printed body one space or a line end and an indentation, which SSE2 takes in one step. */
_always_inline_ static const char *ws_skip(const char *c, const char *end, bool sse) {
        if (_likely_(c < end && (unsigned char) *c > ' '))
                return c;
#ifdef __SSE2__
        if (!sse && end - c >= 16) {
                __m128i x = _mm_loadu_si128((const __m128i *) c);
                __m128i ws = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8(' ')),
                                          _mm_cmpeq_epi8(x, _mm_set1_epi8('\n')));
                unsigned other = ~(unsigned) _mm_movemask_epi8(ws) & 0xffff;

                /* The first byte that is neither a space nor an LF ends the run, unless a tab or CR. */
                if (!other)
                        return ws_run(c + 16, end, sse);
                c += __builtin_ctz(other);
                if ((unsigned char) *c > ' ')
                        return c;
        }
#endif
        return ws_run(c, end, sse);
}

/* string_scan() from the first byte that is not plain content on: escapes are validated here, not
 * decoded. Out of line, so that the common string without escapes costs no registers for this. */
static __attribute__((noinline)) const char *string_scan_escapes(const char *c, const char *end,
                                                                bool *ret_escaped) {
        for (;;) {
                if (c >= end)
                        return NULL;
                if (*c == '"') {
                        *ret_escaped = true;
                        return c;
                }
                if (*c != '\\' || end - c < 2)
                        return NULL;
                switch (c[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                        c += 2;
                        break;
                case 'u':
                        if (end - c < 6)
                                return NULL;
                        for (unsigned i = 2; i < 6; i++)
                                if (unhexchar(c[i]) < 0)
                                        return NULL;
                        c += 6;
                        break;
                default:
                        return NULL;
                }
                c += string_plain(c, end - c);
        }
}

/* From just after a string's opening quote: its closing quote, or NULL when the string does not end
 * before end or holds something json_byte() must judge (a control character, a bad escape).
 * *ret_escaped says whether there were escapes (which are only validated, not decoded). */
_always_inline_ static const char *string_scan(const char *c, const char *end, bool *ret_escaped) {
        c += string_plain(c, end - c);
        if (_likely_(c < end && *c == '"')) {
                *ret_escaped = false;
                return c;
        }
        return string_scan_escapes(c, end, ret_escaped);
}

/* Bytes that may continue a number (its first is '-' or a digit). */
static const bool number_bytes[256] = {
        ['0' ... '9'] = true, ['.'] = true, ['e'] = true, ['E'] = true, ['+'] = true, ['-'] = true,
};

/* Whether the name of a key at the current depth can matter: any at depth 1, below that only within
 * "usage" or the dialect's outer object, down to the depth the path reaches. */
static inline bool key_matters(const UsageScanner *s) {
        uint8_t outer = s->dialect == DIALECT_ANTHROPIC ? K_MESSAGE : K_RESPONSE;

        return s->depth == 1 ||
                (s->depth <= ELEMENTSOF(s->path) && (s->path[0] == K_USAGE || s->path[0] == outer));
}

/* The fast path, entered between tokens: tokens that lie whole within [p, p + n) are taken at once, and
 * the strings and numbers that cannot matter are only skipped, not copied. Each label below is a state
 * between tokens, so no state is stored per token. It stops at anything it does not take whole (a token
 * cut by the end of the buffer, an escaped key or model name, any byte that is an error, an SSE line
 * end) and returns how much it took, with s->state set to where it stopped: json_byte() takes the next
 * byte from there, as it would have without the fast path. That slow path is also what makes a body
 * split anywhere scan like a whole one. */
static size_t json_fast(UsageScanner *s, const char *p, size_t n) {
        const char *c = p, *end = p + n, *q;
        uint8_t st = s->state;          /* the state to stop in, where labels share code */
        bool escaped, array;

#define STOP(where)                             \
        do {                                    \
                s->state = (where);             \
                goto stop;                      \
        } while (0)
#define SKIP_WS(where)                          \
        do {                                    \
                c = ws_skip(c, end, s->sse);    \
                if (c >= end)                   \
                        STOP(where);            \
        } while (0)

        switch (st) {
        case JSON_VALUE:
                goto value;
        case JSON_ARR_FIRST:
                goto arr_first;
        case JSON_OBJ_FIRST:
                goto obj_first;
        case JSON_OBJ_KEY:
                goto obj_key;
        case JSON_COLON:
                goto colon;
        case JSON_AFTER:
                goto after;
        case JSON_DONE:
                goto done;
        default:
                return 0;
        }

arr_first:
        SKIP_WS(JSON_ARR_FIRST);
        st = JSON_ARR_FIRST;
        if (*c == ']') {
                array = true;
                goto pop;
        }
        goto value_here;

value:
        SKIP_WS(JSON_VALUE);
        st = JSON_VALUE;
value_here:
        /* Strings first: most values are. */
        if (*c == '"') {
                q = string_scan(c + 1, end, &escaped);
                if (!q)
                        STOP(st);
                if (at_model(s)) {
                        if (escaped)
                                STOP(st);
                        string_begin(s, STRING_CAPTURE);
                        string_append(s, c + 1, q - (c + 1));
                        string_done(s);
                }
                c = q + 1;
                goto value_end;
        }
        switch (*c) {
        case '{':
        case '[':
                if (s->depth >= USAGE_SCAN_MAX_DEPTH)
                        STOP(st);
                array = *c == '[';
                push(s, array);
                c++;
                if (array)
                        goto arr_first;
                goto obj_first;

        case '-':
        case '0' ... '9':
                /* A number ends at the first byte that cannot continue it, which must be in the buffer. */
                for (q = c + 1; q < end && number_bytes[(unsigned char) *q]; q++)
                        ;
                if (q >= end)
                        STOP(st);
                /* Only numbers within a usage object, under a key that names a count, can count. */
                if (s->depth >= 2 && s->depth <= ELEMENTSOF(s->path) &&
                    s->path[s->depth - 1] >= K_PROMPT_TOKENS)
                        number_store(s, current_field(s), c, q - c);
                c = q;
                goto value_end;

        case 't':
                if ((size_t) (end - c) < STRLEN("true") || memcmp(c, "true", STRLEN("true")) != 0)
                        STOP(st);
                c += STRLEN("true");
                goto value_end;
        case 'f':
                if ((size_t) (end - c) < STRLEN("false") || memcmp(c, "false", STRLEN("false")) != 0)
                        STOP(st);
                c += STRLEN("false");
                goto value_end;
        case 'n':
                if ((size_t) (end - c) < STRLEN("null") || memcmp(c, "null", STRLEN("null")) != 0)
                        STOP(st);
                c += STRLEN("null");
                goto value_end;
        default:
                STOP(st);
        }

obj_first:
        SKIP_WS(JSON_OBJ_FIRST);
        st = JSON_OBJ_FIRST;
        if (*c == '}') {
                array = false;
                goto pop;
        }
        goto key_here;

obj_key:
        SKIP_WS(JSON_OBJ_KEY);
        st = JSON_OBJ_KEY;
key_here:
        if (*c != '"')
                STOP(st);
        q = string_scan(c + 1, end, &escaped);
        if (!q)
                STOP(st);
        if (key_matters(s)) {
                if (escaped)
                        STOP(st);
                s->path[s->depth - 1] = key_lookup(c + 1, q - (c + 1));
        }
        c = q + 1;
        /* The colon nearly always follows at once, and in a pretty-printed body one space. */
        if (c < end && *c == ':') {
                c++;
                if (c < end && *c == ' ')
                        c++;
                goto value;
        }
colon:
        SKIP_WS(JSON_COLON);
        if (*c != ':')
                STOP(JSON_COLON);
        c++;
        goto value;

after:
        SKIP_WS(JSON_AFTER);
        switch (*c) {
        case ',':
                c++;
                /* Here depth > 0: the bit of the innermost container says whether it is an array. */
                if ((s->arrays[(s->depth - 1u) / 64] >> ((s->depth - 1u) % 64)) & 1)
                        goto value;
                goto obj_key;
        case ']':
        case '}':
                array = *c == ']';
                st = JSON_AFTER;
                goto pop;
        default:
                STOP(JSON_AFTER);
        }

pop:
        /* A container's end that does not match its start is json_byte()'s error to find. */
        if (s->depth == 0 || top_is_array(s) != array)
                STOP(st);
        s->depth--;
        c++;
value_end:
        if (s->depth > 0)
                goto after;
done:
        /* Only whitespace may follow the document: anything else is json_byte()'s error. */
        c = ws_skip(c, end, s->sse);
        s->state = JSON_DONE;
stop:
        return c - p;
#undef SKIP_WS
#undef STOP
}

/* Inside a string, everything up to a quote, a backslash or a control character is plain content:
 * taken as a run instead of byte by byte. Returns the run's length, 0 when the next byte needs the
 * state machine. */
static size_t string_run(UsageScanner *s, const char *p, size_t n) {
        size_t k = string_plain(p, n);

        if (k > 0) {
                surrogate_flush(s);
                string_append(s, p, k);
        }
        return k;
}

/* Feeds the bytes of one JSON document: whole tokens to the fast path, what it leaves (and the rest of a
 * token begun in an earlier feed) to the state machine. In SSE mode it stops at a line end, which is
 * sse_byte()'s; returns how much it took. */
static size_t json_feed(UsageScanner *s, const char *p, size_t n) {
        size_t i = 0;

        while (i < n) {
                size_t k = 0;

                switch (s->state) {
                case JSON_ERROR:
                        /* Nothing more of this document matters. */
                        return s->sse ? i + line_rest(p + i, n - i) : n;
                case JSON_STRING:
                        k = string_run(s, p + i, n - i);
                        break;
                case JSON_ESCAPE:
                case JSON_HEX:
                case JSON_NUMBER:
                case JSON_LITERAL:
                        break;
                default:
                        k = json_fast(s, p + i, n - i);
                }
                if (k > 0) {
                        i += k;
                        continue;
                }
                if (s->sse && (p[i] == '\n' || p[i] == '\r'))
                        break;
                json_byte(s, p[i++]);
        }
        return i;
}

static void sse_byte(UsageScanner *s, char c) {
        bool eol = c == '\n' || c == '\r';

        /* CR LF is one line end. */
        if (s->after_cr) {
                s->after_cr = false;
                if (c == '\n')
                        return;
        }
        if (c == '\r')
                s->after_cr = true;

        switch (s->line) {
        case LINE_START:
                if (eol) {
                        /* A blank line ends the event, and with it the JSON document. */
                        json_reset(s);
                        return;
                }
                if (c == ':') {
                        s->line = LINE_SKIP;
                        return;
                }
                s->field_len = 0;
                s->line = LINE_FIELD;
                __attribute__((fallthrough));
        case LINE_FIELD:
                if (eol)
                        s->line = LINE_START;
                else if (c == ':')
                        s->line = s->field_len == 4 && memcmp(s->field, "data", 4) == 0 ? LINE_DATA_FIRST :
                                                                                            LINE_SKIP;
                else if (s->field_len < sizeof s->field)
                        s->field[s->field_len++] = c;
                else
                        s->field_len = sizeof s->field + 1;
                return;
        case LINE_DATA_FIRST:
                s->line = LINE_DATA;
                if (c == ' ')
                        return;
                __attribute__((fallthrough));
        case LINE_DATA:
                if (eol) {
                        /* The lines of one event's data are joined with "\n", which JSON reads as blank. */
                        json_byte(s, '\n');
                        s->line = LINE_START;
                } else
                        json_byte(s, c);
                return;
        case LINE_SKIP:
        default:
                if (eol)
                        s->line = LINE_START;
                return;
        }
}

/* The prefilter's candidates among the 16 positions from p (p + 20 must be readable): bit b is set where
 * one of its needles may start at p + b, judged by its first byte and its fifth: "usage", "model", and a
 * backslash four before a '6' or a '7' ("\u006x", "\u007x": the only escapes that spell a lowercase
 * letter). Every real start is set; the others are sorted out by prefilter_hit(). */
static inline unsigned prefilter_candidates(const char *p) {
#ifdef __SSE2__
        __m128i lo = _mm_loadu_si128((const __m128i *) p), hi = _mm_loadu_si128((const __m128i *) (p + 4));
        __m128i u = _mm_and_si128(_mm_cmpeq_epi8(lo, _mm_set1_epi8('u')), _mm_cmpeq_epi8(hi, _mm_set1_epi8('e'))),
                m = _mm_and_si128(_mm_cmpeq_epi8(lo, _mm_set1_epi8('m')), _mm_cmpeq_epi8(hi, _mm_set1_epi8('l'))),
                b = _mm_and_si128(_mm_cmpeq_epi8(lo, _mm_set1_epi8('\\')),
                                  _mm_cmpeq_epi8(_mm_or_si128(hi, _mm_set1_epi8(1)), _mm_set1_epi8('7')));

        return (unsigned) _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(u, m), b));
#else
        unsigned bits = 0;

        for (unsigned b = 0; b < 16; b++) {
                char x = p[b], y = p[b + 4];

                if ((x == 'u' && y == 'e') || (x == 'm' && y == 'l') || (x == '\\' && (y | 1) == '7'))
                        bits |= 1u << b;
        }
        return bits;
#endif
}

/* Whether the candidate at c (at least five bytes before end, the line's end) may be something the full
 * scan takes. Without a letter spelt by an escape (the backslash candidate), a key that reads "usage" or
 * "model" is exactly those bytes between quotes; a closing quote right after them is a real one (not
 * escaped: a letter precedes it), so without it they are not such a key. */
static bool prefilter_hit(const UsageScanner *s, const char *c, const char *end) {
        switch (*c) {
        case 'u':
                if (memcmp(c, "usage", 5) != 0 || end - c < 6 || c[5] != '"')
                        return false;
                /* "usage": null (in every OpenAI chunk that asked for usage) holds no count. Anything else
                 * after it, a CR too (it ends the line, and the value may follow on the next), may. */
                for (c += 6; c < end && (*c == ' ' || *c == '\t'); c++)
                        ;
                if (c >= end || *c != ':')
                        return true;
                for (c++; c < end && (*c == ' ' || *c == '\t'); c++)
                        ;
                return end - c < 4 || memcmp(c, "null", 4) != 0;
        case 'm':
                /* The first model counts: once there is one, later ones change nothing. */
                return !s->model[0] && memcmp(c, "model", 5) == 0 && end - c >= 6 && c[5] == '"';
        case '\\':
                return c[1] == 'u' && c[2] == '0' && c[3] == '0';
        default:
                return false;
        }
}

/* The prefilter, at the start of an event's JSON document in a data line at p (n bytes in the buffer):
 * almost no line of a stream holds anything the scan looks for (content deltas; OpenAI's later chunks,
 * whose model comes after the first and whose usage is null), and a few byte compares tell so for a
 * fraction of the full scan's cost. When the line's end is in the buffer and a blank line follows it,
 * the document ends with the event: what the line leaves it in matters to nothing after, and a line
 * without the bytes of a key the scan could match (see prefilter_hit()) adds nothing to the results.
 * Returns the length of such a line, to be passed over up to its LF; 0 when the full scan must judge:
 * a line cut by the buffer's end or an event that goes on, a possible key, a short line. A bare CR before
 * the LF (a line end too) is no matter: all the lines up to the blank one are free of those bytes, and
 * their documents all end there. */
static size_t prefilter(const UsageScanner *s, const char *p, size_t n) {
        const char *nl = memchr(p, '\n', n);
        size_t e, starts;

        if (!nl)
                return 0;
        e = nl - p;
        if (e + 1 >= n || (p[e + 1] != '\n' && p[e + 1] != '\r') || n < 20)
                return 0;

        /* Needles are five bytes: they start before e - 4. The last block is moved back to end in the
         * buffer (p + 20 <= p + n), checking some positions twice. */
        starts = e < 4 ? 0 : e - 4;
        for (size_t k = 0; k < starts; k += 16) {
                size_t b = MIN(k, n - 20);
                unsigned bits = prefilter_candidates(p + b);

                if (starts - b < 16)
                        bits &= (1u << (starts - b)) - 1;
                for (; bits; bits &= bits - 1)
                        if (prefilter_hit(s, p + b + __builtin_ctz(bits), p + e))
                                return 0;
        }
        return e;
}

void usage_scanner_feed(UsageScanner *s, const void *p, size_t n) {
        const char *c = p;

        if (!s || !p)
                return;
        if (!s->sse) {
                (void) json_feed(s, c, n);
                return;
        }

        for (size_t i = 0; i < n;) {
                /* After a CR, the next byte is sse_byte()'s (an LF there ends no line). */
                if (s->after_cr) {
                        sse_byte(s, c[i++]);
                        continue;
                }
                switch (s->line) {
                case LINE_START: {
                        /* A field name ending in this buffer, short enough to be "data", is taken whole. */
                        size_t k = sse_field(c + i, n - i);

                        if (k == SIZE_MAX)
                                break;
                        s->line = k == STRLEN("data") && memcmp(c + i, "data", k) == 0 ? LINE_DATA_FIRST :
                                                                                          LINE_SKIP;
                        i += k + 1;
                        continue;
                }
                case LINE_DATA_FIRST:
                        /* One space after the colon is not part of the value. */
                        s->line = LINE_DATA;
                        if (c[i] == ' ')
                                i++;
                        continue;
                case LINE_DATA:
                        /* A document not yet begun may be one the prefilter can pass over; it stops at
                         * the line end, like json_feed(). */
                        if (s->state == JSON_VALUE && s->depth == 0 && !s->no_prefilter) {
                                size_t k = prefilter(s, c + i, n - i);

                                if (k > 0) {
                                        i += k;
                                        s->prefiltered++;
                                        break;
                                }
                        }
                        /* The rest of a data line is JSON, up to the line end, which is sse_byte()'s. */
                        i += json_feed(s, c + i, n - i);
                        break;
                case LINE_SKIP:
                        i += line_rest(c + i, n - i);
                        break;
                default:
                        break;
                }
                if (i < n)
                        sse_byte(s, c[i++]);
        }
}

void usage_scanner_result(const UsageScanner *s, Usage *ret) {
        const uint64_t *v = s->values;
        Usage u = {};

#define SEEN(f) ((s->seen >> (f)) & 1)
        if (s->dialect == DIALECT_ANTHROPIC) {
                u.input_tokens = v[USAGE_FIELD_INPUT];
                u.output_tokens = v[USAGE_FIELD_OUTPUT];
                u.cache_read_tokens = v[USAGE_FIELD_CACHE_READ];
                u.cache_write_tokens = v[USAGE_FIELD_CACHE_WRITE];
        } else {
                /* Chat Completions say prompt/completion, Responses input/output; both include cached. */
                uint64_t in = SEEN(USAGE_FIELD_PROMPT) ? v[USAGE_FIELD_PROMPT] : v[USAGE_FIELD_INPUT];
                uint64_t cached = MIN(v[USAGE_FIELD_CACHED], in);

                u.input_tokens = in - cached;
                u.cache_read_tokens = cached;
                u.output_tokens = SEEN(USAGE_FIELD_COMPLETION) ? v[USAGE_FIELD_COMPLETION] :
                                                                 v[USAGE_FIELD_OUTPUT];
        }
#undef SEEN
        u.found = s->seen != 0;
        memcpy(u.model, s->model, sizeof u.model);
        *ret = u;
}

int usage_from_json(Dialect dialect, const void *body, size_t len, Usage *ret) {
        UsageScanner s;

        if (!ret || (!body && len > 0))
                return -EINVAL;
        usage_scanner_init(&s, dialect, false);
        usage_scanner_feed(&s, body ?: "", len);
        if (s.state != JSON_DONE)
                return -EBADMSG;
        usage_scanner_result(&s, ret);
        return 0;
}
