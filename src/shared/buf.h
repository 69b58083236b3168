/* Buf: a growable byte buffer with a read offset, used for socket and protocol I/O. */
#pragma once

#include "macro.h"

typedef struct Buf {
        uint8_t *data;
        size_t head;     /* first unread byte */
        size_t tail;     /* one past the last written byte */
        size_t alloc;
} Buf;

static inline size_t buf_len(const Buf *b) {
        return b->tail - b->head;
}
static inline const uint8_t *buf_data(const Buf *b) {
        /* Never NULL + 0 (undefined behaviour): an empty, unallocated buffer reads as "". */
        return b->data ? b->data + b->head : (const uint8_t *) "";
}
static inline bool buf_empty(const Buf *b) {
        return b->tail == b->head;
}

void buf_done(Buf *b);
/* Makes room for at least n more bytes at the tail; returns a pointer to it. NULL on OOM. */
uint8_t *buf_reserve(Buf *b, size_t n);
static inline size_t buf_space(const Buf *b) {
        return b->alloc - b->tail;
}
static inline void buf_commit(Buf *b, size_t n) {
        b->tail += n;
}
int buf_append(Buf *b, const void *p, size_t n);
int buf_append_str(Buf *b, const char *s);
int buf_printf(Buf *b, const char *fmt, ...) _printf_(2, 3);
/* Appends "name: value\r\n" (or name + sep + value + end in general) without printf's cost: this is on
 * the path of every response head. */
int buf_append_line(Buf *b, const char *name, const char *sep, const char *value, const char *end);
/* Appends v in decimal (or hex with base 16). */
int buf_append_uint(Buf *b, uint64_t v, unsigned base);
void buf_consume(Buf *b, size_t n);
static inline void buf_clear(Buf *b) {
        b->head = b->tail = 0;
}
/* Releases memory when the buffer is empty and larger than keep bytes: idle connections stay small. */
void buf_shrink(Buf *b, size_t keep);
/* Steals the unread contents as a NUL-terminated string; the buffer becomes empty. */
char *buf_steal_str(Buf *b, size_t *ret_len);
