/* jscan: a validating single-pass scan of a JSON object that finds top-level keys without building a tree. */
#include "proxy/jscan.h"
#include "shared/util.h"

typedef struct Scanner {
        const char *p;
        size_t n;
        size_t i;
        unsigned depth;
} Scanner;

static void skip_ws(Scanner *s) {
        while (s->i < s->n && (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\n' || s->p[s->i] == '\r'))
                s->i++;
}

static int scan_string(Scanner *s) {
        if (s->i >= s->n || s->p[s->i] != '"')
                return -EBADMSG;
        s->i++;
        while (s->i < s->n) {
                unsigned char c = (unsigned char) s->p[s->i];
                if (c == '"') {
                        s->i++;
                        return 0;
                }
                if (c < 0x20)
                        return -EBADMSG;
                if (c == '\\') {
                        if (s->i + 1 >= s->n)
                                return -EBADMSG;
                        char e = s->p[s->i + 1];
                        if (e == 'u') {
                                if (s->i + 5 >= s->n)
                                        return -EBADMSG;
                                for (int k = 2; k < 6; k++)
                                        if (unhexchar(s->p[s->i + k]) < 0)
                                                return -EBADMSG;
                                s->i += 6;
                                continue;
                        }
                        if (!strchr("\"\\/bfnrt", e) || e == 0)
                                return -EBADMSG;
                        s->i += 2;
                        continue;
                }
                s->i++;
        }
        return -EBADMSG;
}

static int scan_number(Scanner *s) {
        size_t start = s->i;

        if (s->i < s->n && s->p[s->i] == '-')
                s->i++;
        if (s->i >= s->n)
                return -EBADMSG;
        if (s->p[s->i] == '0')
                s->i++;
        else if (s->p[s->i] >= '1' && s->p[s->i] <= '9')
                while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
                        s->i++;
        else
                return -EBADMSG;
        if (s->i < s->n && s->p[s->i] == '.') {
                s->i++;
                if (s->i >= s->n || s->p[s->i] < '0' || s->p[s->i] > '9')
                        return -EBADMSG;
                while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
                        s->i++;
        }
        if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
                s->i++;
                if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
                        s->i++;
                if (s->i >= s->n || s->p[s->i] < '0' || s->p[s->i] > '9')
                        return -EBADMSG;
                while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
                        s->i++;
        }
        return s->i > start ? 0 : -EBADMSG;
}

static int scan_literal(Scanner *s, const char *lit) {
        size_t l = strlen(lit);
        if (s->n - s->i < l || memcmp(s->p + s->i, lit, l) != 0)
                return -EBADMSG;
        s->i += l;
        return 0;
}

static int scan_value(Scanner *s, char *ret_type);

static int scan_container(Scanner *s, char close, bool object) {
        int r;

        if (++s->depth > JSCAN_MAX_DEPTH)
                return -ELOOP;
        s->i++; /* the opening bracket */
        skip_ws(s);
        if (s->i < s->n && s->p[s->i] == close) {
                s->i++;
                s->depth--;
                return 0;
        }
        for (;;) {
                skip_ws(s);
                if (object) {
                        r = scan_string(s);
                        if (r < 0)
                                return r;
                        skip_ws(s);
                        if (s->i >= s->n || s->p[s->i] != ':')
                                return -EBADMSG;
                        s->i++;
                        skip_ws(s);
                }
                r = scan_value(s, NULL);
                if (r < 0)
                        return r;
                skip_ws(s);
                if (s->i >= s->n)
                        return -EBADMSG;
                if (s->p[s->i] == ',') {
                        s->i++;
                        continue;
                }
                if (s->p[s->i] == close) {
                        s->i++;
                        s->depth--;
                        return 0;
                }
                return -EBADMSG;
        }
}

static int scan_value(Scanner *s, char *ret_type) {
        char t;
        int r;

        if (s->i >= s->n)
                return -EBADMSG;
        switch (s->p[s->i]) {
        case '"':
                t = 's';
                r = scan_string(s);
                break;
        case '{':
                t = 'o';
                r = scan_container(s, '}', true);
                break;
        case '[':
                t = 'a';
                r = scan_container(s, ']', false);
                break;
        case 't':
                t = 't';
                r = scan_literal(s, "true");
                break;
        case 'f':
                t = 'f';
                r = scan_literal(s, "false");
                break;
        case 'n':
                t = 'z';
                r = scan_literal(s, "null");
                break;
        default:
                t = 'n';
                r = scan_number(s);
        }
        if (r >= 0 && ret_type)
                *ret_type = t;
        return r;
}

int jscan_object(const char *p, size_t n, const char *const *keys, size_t n_keys, JsonSpan *ret_spans,
                 size_t *ret_offset) {
        Scanner s = { .p = p, .n = n };
        int r;

        for (size_t k = 0; k < n_keys; k++)
                ret_spans[k] = (JsonSpan){};

        skip_ws(&s);
        if (s.i >= n || p[s.i] != '{') {
                if (ret_offset)
                        *ret_offset = s.i;
                return s.i >= n ? -EBADMSG : -ENOTDIR;
        }
        s.i++;
        s.depth = 1;
        skip_ws(&s);
        if (s.i < n && p[s.i] == '}') {
                s.i++;
                goto tail;
        }
        for (;;) {
                size_t key_start, key_end;

                skip_ws(&s);
                key_start = s.i;
                r = scan_string(&s);
                if (r < 0)
                        goto fail;
                key_end = s.i;
                skip_ws(&s);
                if (s.i >= n || p[s.i] != ':') {
                        r = -EBADMSG;
                        goto fail;
                }
                s.i++;
                skip_ws(&s);

                /* Which wanted key is this? Keys we look for never need escapes, so compare raw bytes. */
                ssize_t want = -1;
                for (size_t k = 0; k < n_keys; k++) {
                        size_t l = strlen(keys[k]);
                        if (key_end - key_start == l + 2 && memcmp(p + key_start + 1, keys[k], l) == 0) {
                                want = (ssize_t) k;
                                break;
                        }
                }
                size_t v_start = s.i;
                char t;
                r = scan_value(&s, &t);
                if (r < 0)
                        goto fail;
                if (want >= 0) {
                        if (ret_spans[want].type != 0) {
                                r = -EEXIST;
                                goto fail;
                        }
                        ret_spans[want] = (JsonSpan){ v_start, s.i, t };
                }
                skip_ws(&s);
                if (s.i >= n) {
                        r = -EBADMSG;
                        goto fail;
                }
                if (p[s.i] == ',') {
                        s.i++;
                        continue;
                }
                if (p[s.i] == '}') {
                        s.i++;
                        break;
                }
                r = -EBADMSG;
                goto fail;
        }
tail:
        skip_ws(&s);
        if (s.i != n) {
                r = -EBADMSG;
                goto fail;
        }
        return 0;
fail:
        if (ret_offset)
                *ret_offset = s.i;
        return r;
}

static uint32_t hex4(const char *p) {
        uint32_t v = 0;
        for (int k = 0; k < 4; k++) {
                char c = p[k];
                v = v * 16 + (uint32_t) (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
        }
        return v;
}

int jscan_string(const char *p, const JsonSpan *span, char **ret) {
        char *out, *o;

        if (span->type != 's' || span->end < span->start + 2)
                return -EINVAL;
        /* Decoding never grows the text: an escape is at least as long as what it stands for. */
        out = malloc(span->end - span->start);
        if (!out)
                return -ENOMEM;
        o = out;
        for (size_t i = span->start + 1; i < span->end - 1;) {
                char c = p[i];
                if (c != '\\') {
                        *o++ = c;
                        i++;
                        continue;
                }
                char e = p[i + 1];
                if (e == 'u') {
                        uint32_t cp = hex4(p + i + 2);
                        i += 6;
                        if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= span->end - 1 && p[i] == '\\' &&
                            p[i + 1] == 'u') {
                                uint32_t lo = hex4(p + i + 2);
                                if (lo >= 0xdc00 && lo < 0xe000) {
                                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                                        i += 6;
                                }
                        }
                        if (cp == 0) {
                                free(out);
                                return -EINVAL;
                        }
                        if (cp >= 0xd800 && cp < 0xe000)
                                cp = 0xfffd; /* a lone surrogate */
                        o += utf8_encode(cp, o);
                        continue;
                }
                *o++ = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
                i += 2;
        }
        *o = 0;
        *ret = out;
        return 0;
}
