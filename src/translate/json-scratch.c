/* JSON scratch: jansson's allocations inside one translation come from an arena dropped whole at its end. */
#include <assert.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "shared/macro.h"
#include "translate/json-scratch.h"

/* Why: a translated request builds and frees two jansson trees (the body read, the body written) and the
 * answer two more, about 130 malloc() and 150 free() calls for a small chat request; callgrind counted 37k
 * of gate's 163k instructions per translated request in the allocator (bench/callgrind-request). Inside a
 * scope an allocation is a pointer bump and a free a range check. */

#if defined(__SANITIZE_ADDRESS__)
#define SCRATCH_DISABLED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SCRATCH_DISABLED 1
#endif
#endif

#define SCRATCH_ALIGN 16U
/* The first block, kept between scopes: a typical chat request and answer fit. Later blocks double, up
 * to SCRATCH_BLOCK_MAX (and any single allocation larger than that gets a block of its own). */
#define SCRATCH_BLOCK_FIRST (64U * 1024U)
#define SCRATCH_BLOCK_MAX (4U * 1024U * 1024U)

typedef struct Block {
        struct Block *next;     /* older */
        size_t size, used;
        _Alignas(SCRATCH_ALIGN) unsigned char data[];
} Block;

static _Thread_local unsigned depth;
static _Thread_local Block *blocks;     /* newest first; the oldest is the kept first block */

static bool in_block(const Block *b, const void *p) {
        uintptr_t a = (uintptr_t) p, d = (uintptr_t) b->data;
        return a >= d && a < d + b->size;
}

static void *scratch_malloc(size_t n) {
        Block *b = blocks;

        if (depth == 0)
                return malloc(n);
        /* Rounding up, or the block header added below, would wrap around: refused, as malloc() would. */
        if (n > SIZE_MAX / 2)
                return NULL;
        n = n == 0 ? SCRATCH_ALIGN : (n + SCRATCH_ALIGN - 1) & ~(size_t) (SCRATCH_ALIGN - 1);
        if (!b || b->size - b->used < n) {
                size_t size = b ? MIN(b->size * 2, (size_t) SCRATCH_BLOCK_MAX) : SCRATCH_BLOCK_FIRST;

                if (size < n)
                        size = n;
                b = malloc(sizeof(Block) + size);
                if (!b)
                        return NULL;
                b->size = size;
                b->used = 0;
                b->next = blocks;
                blocks = b;
        }
        void *p = b->data + b->used;
        b->used += n;
        return p;
}

static void scratch_free(void *p) {
        if (!p)
                return;
        /* Memory of the arena goes back with it; anything else (a value made before the scope, or while it
         * was suspended, or on another thread) came from malloc(). Checked outside a scope too: the kept
         * block is one range to compare. */
        for (const Block *b = blocks; b; b = b->next)
                if (in_block(b, p))
                        return;
        free(p);
}

void json_scratch_begin(void) {
#ifndef SCRATCH_DISABLED
        static bool installed;

        /* Safe whenever it happens: scratch_free() hands what it did not allocate to free(). */
        if (!installed) {
                json_set_alloc_funcs(scratch_malloc, scratch_free);
                installed = true;
        }
        depth++;
#endif
}

void json_scratch_end(void) {
#ifndef SCRATCH_DISABLED
        assert(depth > 0);
        if (--depth > 0)
                return;
        /* Keep the oldest block for the next scope when it is the usual first one (not one made to the
         * size of a single large allocation). */
        while (blocks && (blocks->next || blocks->size != SCRATCH_BLOCK_FIRST)) {
                Block *b = blocks;
                blocks = b->next;
                free(b);
        }
        if (blocks)
                blocks->used = 0;
#endif
}

void json_scratch_drop(json_t *j) {
        /* depth stays 0 where scopes are disabled, and while a scope is suspended. */
        if (depth > 0)
                return;
        json_decref(j);
}

unsigned json_scratch_suspend(void) {
        unsigned saved = depth;

        depth = 0;
        return saved;
}

void json_scratch_resume(unsigned saved) {
        assert(depth == 0);
        depth = saved;
}

size_t json_scratch_held(void) {
        size_t n = 0;

        for (const Block *b = blocks; b; b = b->next)
                n += b->size;
        return n;
}

bool json_scratch_enabled(void) {
#ifdef SCRATCH_DISABLED
        return false;
#else
        return true;
#endif
}
