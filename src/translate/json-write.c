/* The compact JSON writer: a jansson tree straight into a Buf, byte for byte what JSON_COMPACT dumps. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "translate/json-fast.h"

/* Why not json_dump_callback(): it calls back for every token, checks for cycles with a hashtable keyed by
 * the printed pointer of every container, and formats integers with snprintf(). jansson's bytes are the
 * contract (the translators' outputs are compared byte for byte in the tests):
 *   - strings escape '"', '\\', \b \f \n \r \t and other bytes below 0x20 as \u00XX (upper-case hex); '/' and
 *     everything from 0x7f up are written as they are; a string that is not UTF-8 fails the dump;
 *   - integers in decimal; reals as "%.17g", with ".0" added when that has neither '.' nor 'e', and the
 *     exponent without '+' or leading zeros;
 *   - object members in iteration order (insertion order), "," and ":" with no spaces. */

static inline int put(Buf *b, const void *p, size_t n) {
        if (n == 0)
                return 0;
        if (_likely_(buf_space(b) >= n)) {
                memcpy(b->data + b->tail, p, n);
                b->tail += n;
                return 0;
        }
        return buf_append(b, p, n);
}

static inline int put_char(Buf *b, char c) {
        if (_likely_(buf_space(b) >= 1)) {
                b->data[b->tail++] = (uint8_t) c;
                return 0;
        }
        return buf_append(b, &c, 1);
}

static int write_string(Buf *b, const char *s, size_t n) {
        const char *p = s, *end = s + n, *run = s;
        int r;

        if (put_char(b, '"') < 0)
                return -ENOMEM;
        for (;;) {
                unsigned char c;

                p = string_scan(p, end);
                if (p >= end)
                        break;

                c = (unsigned char) *p;
                if (c >= 0x80) {
                        size_t len = utf8_valid((const unsigned char *) p, (const unsigned char *) end);
                        if (len == 0)
                                return -EINVAL;
                        p += len;
                        continue;
                }

                char esc[6] = { '\\', 0 };
                size_t esc_len = 2;

                switch (c) {
                case '"':
                case '\\':
                        esc[1] = (char) c;
                        break;
                case '\b':
                        esc[1] = 'b';
                        break;
                case '\f':
                        esc[1] = 'f';
                        break;
                case '\n':
                        esc[1] = 'n';
                        break;
                case '\r':
                        esc[1] = 'r';
                        break;
                case '\t':
                        esc[1] = 't';
                        break;
                default:
                        esc[1] = 'u';
                        esc[2] = '0';
                        esc[3] = '0';
                        esc[4] = "0123456789ABCDEF"[c >> 4];
                        esc[5] = "0123456789ABCDEF"[c & 0xf];
                        esc_len = 6;
                }
                if (put(b, run, (size_t) (p - run)) < 0 || put(b, esc, esc_len) < 0)
                        return -ENOMEM;
                run = ++p;
        }
        r = put(b, run, (size_t) (p - run));
        if (r >= 0)
                r = put_char(b, '"');
        return r < 0 ? -ENOMEM : 0;
}

static int write_integer(Buf *b, json_int_t v) {
        char tmp[24], *t = tmp + sizeof(tmp);
        /* Through unsigned so that the most negative value has a magnitude too. */
        uint64_t u = v < 0 ? 0 - (uint64_t) v : (uint64_t) v;

        do {
                *--t = (char) ('0' + u % 10);
                u /= 10;
        } while (u > 0);
        if (v < 0)
                *--t = '-';
        return put(b, t, (size_t) (tmp + sizeof(tmp) - t));
}

static int write_real(Buf *b, double v) {
        char tmp[64], out[72];
        const char *e;
        size_t o;
        int n;

        /* LC_NUMERIC is never changed from "C" in gate: the decimal point is '.'. */
        n = snprintf(tmp, sizeof(tmp), "%.17g", v);
        if (n < 0 || (size_t) n >= sizeof(tmp))
                return -EINVAL;
        e = memchr(tmp, 'e', (size_t) n);
        if (!e) {
                memcpy(out, tmp, (size_t) n);
                o = (size_t) n;
                if (!memchr(tmp, '.', (size_t) n)) {
                        /* A real must not read back as an integer. */
                        out[o++] = '.';
                        out[o++] = '0';
                }
                return put(b, out, o);
        }

        /* "1e+17" -> "1e17", "1e-05" -> "1e-5". */
        o = (size_t) (e - tmp) + 1;
        memcpy(out, tmp, o);
        e++;
        if (*e == '-')
                out[o++] = *e++;
        else if (*e == '+')
                e++;
        while (*e == '0' && e[1] != 0)
                e++;
        while (*e)
                out[o++] = *e++;
        return put(b, out, o);
}

static int write_value(const json_t *j, Buf *b, unsigned depth) {
        int r;

        if (depth > JSON_WRITE_MAX_DEPTH)
                return -EINVAL;

        switch (json_typeof(j)) {
        case JSON_NULL:
                return put(b, "null", 4);
        case JSON_TRUE:
                return put(b, "true", 4);
        case JSON_FALSE:
                return put(b, "false", 5);
        case JSON_INTEGER:
                return write_integer(b, json_integer_value(j));
        case JSON_REAL:
                return write_real(b, json_real_value(j));
        case JSON_STRING:
                return write_string(b, json_string_value(j), json_string_length(j));
        case JSON_ARRAY: {
                size_t n = json_array_size(j);

                if (put_char(b, '[') < 0)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        if (i > 0 && put_char(b, ',') < 0)
                                return -ENOMEM;
                        r = write_value(json_array_get(j, i), b, depth + 1);
                        if (r < 0)
                                return r;
                }
                return put_char(b, ']');
        }
        case JSON_OBJECT: {
                bool first = true;

                if (put_char(b, '{') < 0)
                        return -ENOMEM;
                for (void *it = json_object_iter((json_t *) j); it; it = json_object_iter_next((json_t *) j, it)) {
                        if (!first && put_char(b, ',') < 0)
                                return -ENOMEM;
                        first = false;
                        r = write_string(b, json_object_iter_key(it), json_object_iter_key_len(it));
                        if (r < 0)
                                return r;
                        if (put_char(b, ':') < 0)
                                return -ENOMEM;
                        r = write_value(json_object_iter_value(it), b, depth + 1);
                        if (r < 0)
                                return r;
                }
                return put_char(b, '}');
        }
        default:
                return -EINVAL;
        }
}

int json_write_string(const char *s, size_t n, Buf *b) {
        size_t len = buf_len(b);
        int r;

        r = write_string(b, s, n);
        if (r < 0)
                b->tail = b->head + len;
        return r;
}

int json_write_any(const json_t *j, Buf *b) {
        size_t len = buf_len(b);
        int r;

        r = write_value(j, b, 0);
        if (r < 0) {
                b->tail = b->head + len;
                return r;
        }
        return 0;
}

int json_write_compact(const json_t *j, Buf *b) {
        /* jansson's dump without JSON_ENCODE_ANY: an object or an array at the top. */
        if (!json_is_object(j) && !json_is_array(j))
                return -EINVAL;
        return json_write_any(j, b);
}
