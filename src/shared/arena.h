/* Arena: a bump allocator for objects that live and die together (a request's strings and headers). */
#pragma once

#include "macro.h"

/* The first block may live inside the owning object (no allocation for small requests); further
 * blocks are malloc'ed, chained, and freed together by arena_done(). Nothing is freed one by one. */
typedef struct ArenaBlock ArenaBlock;

typedef struct Arena {
        uint8_t *next;          /* first free byte of the current block */
        uint8_t *end;           /* one past the current block */
        ArenaBlock *blocks;     /* malloc'ed blocks, newest first */
        uint8_t *first;         /* the caller's block given to arena_init(), for arena_reset() */
        size_t first_size;
} Arena;

/* Starts an arena on the caller's memory (may be NULL/0: then the first use allocates). */
void arena_init(Arena *a, void *first, size_t size);
void arena_done(Arena *a);
/* Frees everything allocated so far and starts again on the caller's block: for objects that are made
 * again and again by one owner (an upstream attempt's headers). */
void arena_reset(Arena *a);

/* n bytes aligned for any object; NULL on OOM. Not zeroed. */
void *arena_alloc(Arena *a, size_t n);
/* A NUL-terminated copy of n bytes of p. */
char *arena_strndup(Arena *a, const char *p, size_t n);
