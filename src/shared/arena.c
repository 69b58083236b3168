/* Arena: a bump allocator for objects that live and die together (a request's strings and headers). */
#include <stdlib.h>
#include <string.h>

#include "arena.h"

struct ArenaBlock {
        ArenaBlock *next;
        max_align_t data[];
};

#define ARENA_ALIGN _Alignof(max_align_t)
#define ARENA_BLOCK_MIN 4096U

void arena_init(Arena *a, void *first, size_t size) {
        a->next = first;
        a->end = first ? (uint8_t *) first + size : NULL;
        a->blocks = NULL;
        a->first = first;
        a->first_size = first ? size : 0;
}

void arena_done(Arena *a) {
        while (a->blocks) {
                ArenaBlock *b = a->blocks;
                a->blocks = b->next;
                free(b);
        }
        a->next = a->end = NULL;
}

void arena_reset(Arena *a) {
        arena_done(a);
        arena_init(a, a->first, a->first_size);
}

static size_t align_up(size_t n) {
        return (n + ARENA_ALIGN - 1) & ~(size_t) (ARENA_ALIGN - 1);
}

void *arena_alloc(Arena *a, size_t n) {
        uintptr_t p = (uintptr_t) a->next, q;
        ArenaBlock *b;
        size_t size;

        n = n ? n : 1;
        q = (p + ARENA_ALIGN - 1) & ~(uintptr_t) (ARENA_ALIGN - 1);
        if (a->next && q <= (uintptr_t) a->end && n <= (uintptr_t) a->end - q) {
                a->next = (uint8_t *) (q + n);
                return (void *) q;
        }
        /* A new block: at least twice what is asked, so one large header does not make every
         * following string take a block of its own. */
        if (n > SIZE_MAX / 2 - sizeof(ArenaBlock))
                return NULL;
        size = MAX((size_t) ARENA_BLOCK_MIN, align_up(2 * n));
        b = malloc(sizeof(ArenaBlock) + size);
        if (!b)
                return NULL;
        b->next = a->blocks;
        a->blocks = b;
        a->next = (uint8_t *) b->data + n;
        a->end = (uint8_t *) b->data + size;
        return b->data;
}

char *arena_strndup(Arena *a, const char *p, size_t n) {
        char *s = arena_alloc(a, n + 1);

        if (!s)
                return NULL;
        memcpy(s, p, n);
        s[n] = 0;
        return s;
}
