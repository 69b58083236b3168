/* An incremental server-sent events parser (the WHATWG event stream format), bounded. */
#include "translate/sse.h"

void sse_parser_init(SseParser *p, size_t max) {
        *p = (SseParser){ .max = max };
}

void sse_parser_done(SseParser *p) {
        buf_done(&p->line);
        buf_done(&p->data);
        *p = (SseParser){ .max = p->max };
}

static int dispatch(SseParser *p, SseEventHandler h, void *userdata) {
        int r = 0;

        /* An event with no data line is not dispatched (the spec's rule). */
        if (p->has_data) {
                if (!buf_reserve(&p->data, 1))
                        return -ENOMEM;
                p->data.data[p->data.tail] = 0;         /* NUL after the bytes, not counted */
                r = h(userdata, p->event, (const char *) buf_data(&p->data), buf_len(&p->data));
        }
        buf_clear(&p->data);
        p->event[0] = 0;
        p->has_data = false;
        return r;
}

static int process_line(SseParser *p, const char *s, size_t n, SseEventHandler h, void *userdata) {
        const char *colon, *value;
        size_t name_len, value_len;

        if (n == 0)
                return dispatch(p, h, userdata);
        if (s[0] == ':')
                return 0;               /* comment */
        colon = memchr(s, ':', n);
        name_len = colon ? (size_t) (colon - s) : n;
        value = colon ? colon + 1 : s + n;
        value_len = colon ? n - name_len - 1 : 0;
        if (value_len > 0 && value[0] == ' ')
                value++, value_len--;

        if (name_len == 4 && memcmp(s, "data", 4) == 0) {
                if (p->has_data && buf_append(&p->data, "\n", 1) < 0)
                        return -ENOMEM;
                if (buf_len(&p->data) + value_len > p->max)
                        return -E2BIG;
                if (buf_append(&p->data, value, value_len) < 0)
                        return -ENOMEM;
                p->has_data = true;
        } else if (name_len == 5 && memcmp(s, "event", 5) == 0) {
                size_t k = MIN(value_len, sizeof p->event - 1);
                memcpy(p->event, value, k);
                p->event[k] = 0;
        }
        /* id and retry mean nothing to a translator; other fields are ignored by the spec. */
        return 0;
}

int sse_parser_feed(SseParser *p, const void *data, size_t n, SseEventHandler h, void *userdata) {
        const char *s = data;
        int r;

        while (n > 0) {
                const char *end;
                size_t k;

                if (!p->started) {
                        /* A UTF-8 byte order mark may open the stream; it may arrive split too. */
                        static const char bom[] = "\xef\xbb\xbf";
                        size_t have = buf_len(&p->line);

                        if ((unsigned char) s[0] == (unsigned char) bom[have]) {
                                if (have + 1 == 3) {
                                        buf_clear(&p->line);
                                        p->started = true;
                                } else if (buf_append(&p->line, s, 1) < 0)
                                        return -ENOMEM;
                                s++, n--;
                                continue;
                        }
                        /* Not a BOM after all: what was held is the start of the first line. */
                        p->started = true;
                }
                if (p->skip_lf) {
                        p->skip_lf = false;
                        if (s[0] == '\n') {
                                s++, n--;
                                continue;
                        }
                }
                /* Two memchr() (vectorised) instead of a byte loop: lines are a few hundred bytes and '\r'
                 * is rare. */
                const char *nl = memchr(s, '\n', n);
                const char *cr = memchr(s, '\r', nl ? (size_t) (nl - s) : n);
                end = cr ?: nl ?: s + n;
                k = (size_t) (end - s);
                if (buf_len(&p->line) + k > p->max)
                        return -E2BIG;
                if (end == s + n) {
                        /* No end of line yet: keep the piece. */
                        return buf_append(&p->line, s, k);
                }
                if (buf_empty(&p->line))
                        r = process_line(p, s, k, h, userdata);
                else {
                        if (buf_append(&p->line, s, k) < 0)
                                return -ENOMEM;
                        r = process_line(p, (const char *) buf_data(&p->line), buf_len(&p->line), h, userdata);
                        buf_clear(&p->line);
                }
                if (r < 0)
                        return r;
                p->skip_lf = *end == '\r';
                k++;
                s += k, n -= k;
        }
        return 0;
}

int sse_parser_finish(SseParser *p, SseEventHandler h, void *userdata) {
        int r;

        if (!buf_empty(&p->line)) {
                r = process_line(p, (const char *) buf_data(&p->line), buf_len(&p->line), h, userdata);
                buf_clear(&p->line);
                if (r < 0)
                        return r;
        }
        return dispatch(p, h, userdata);
}
