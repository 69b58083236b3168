/* Buf: a growable byte buffer with a read offset, used for socket and protocol I/O. */
#include <stdarg.h>
#include <stdio.h>

#include "buf.h"

void buf_done(Buf *b) {
        free(b->data);
        *b = (Buf){};
}

uint8_t *buf_reserve(Buf *b, size_t n) {
        size_t len = buf_len(b);

        if (b->alloc - b->tail >= n)
                return b->data + b->tail;

        /* Slide unread bytes to the front before growing: a buffer that is mostly consumed is reused. */
        if (b->head > 0 && b->alloc - len >= n) {
                memmove(b->data, b->data + b->head, len);
                b->head = 0;
                b->tail = len;
                return b->data + b->tail;
        }

        if (n > SIZE_MAX / 2 - len)
                return NULL;
        size_t want = MAX(len + n, (size_t) 1024);
        size_t alloc = MAX(b->alloc, (size_t) 1024);
        while (alloc < want)
                alloc *= 2;

        uint8_t *d = malloc(alloc);
        if (!d)
                return NULL;
        if (len > 0)
                memcpy(d, b->data + b->head, len);
        free(b->data);
        b->data = d;
        b->head = 0;
        b->tail = len;
        b->alloc = alloc;
        return b->data + b->tail;
}

int buf_append(Buf *b, const void *p, size_t n) {
        uint8_t *d;

        if (n == 0)
                return 0;
        d = buf_reserve(b, n);
        if (!d)
                return -ENOMEM;
        memcpy(d, p, n);
        b->tail += n;
        return 0;
}

int buf_append_str(Buf *b, const char *s) {
        return buf_append(b, s, strlen(s));
}

int buf_printf(Buf *b, const char *fmt, ...) {
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(NULL, 0, fmt, ap);
        va_end(ap);
        if (n < 0)
                return -EINVAL;

        uint8_t *d = buf_reserve(b, (size_t) n + 1);
        if (!d)
                return -ENOMEM;
        va_start(ap, fmt);
        vsnprintf((char *) d, (size_t) n + 1, fmt, ap);
        va_end(ap);
        b->tail += (size_t) n;
        return 0;
}

void buf_consume(Buf *b, size_t n) {
        if (n >= buf_len(b)) {
                b->head = b->tail = 0;
                return;
        }
        b->head += n;
}

void buf_shrink(Buf *b, size_t keep) {
        if (buf_empty(b) && b->alloc > keep) {
                free(b->data);
                *b = (Buf){};
        }
}

char *buf_steal_str(Buf *b, size_t *ret_len) {
        size_t len = buf_len(b);
        char *s;

        if (!buf_reserve(b, 1))
                return NULL;
        if (b->head > 0)
                memmove(b->data, b->data + b->head, len);
        b->data[len] = 0;
        s = (char *) b->data;
        *b = (Buf){};
        if (ret_len)
                *ret_len = len;
        return s;
}

int buf_append_line(Buf *b, const char *name, const char *sep, const char *value, const char *end) {
        size_t a = strlen(name), s = strlen(sep), v = strlen(value), e = strlen(end);
        uint8_t *d = buf_reserve(b, a + s + v + e);

        if (!d)
                return -ENOMEM;
        memcpy(d, name, a);
        memcpy(d + a, sep, s);
        memcpy(d + a + s, value, v);
        memcpy(d + a + s + v, end, e);
        b->tail += a + s + v + e;
        return 0;
}

int buf_append_uint(Buf *b, uint64_t v, unsigned base) {
        static const char digits[] = "0123456789abcdef";
        char tmp[24];
        size_t n = sizeof tmp;

        do {
                tmp[--n] = digits[v % base];
                v /= base;
        } while (v > 0);
        return buf_append(b, tmp + n, sizeof tmp - n);
}
