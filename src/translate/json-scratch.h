/* JSON scratch: jansson's allocations inside one translation come from an arena dropped whole at its end. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Opens a scope on this thread: until the matching json_scratch_end(), jansson allocates from the thread's
 * arena and freeing costs nothing. Every value made inside must be gone by the end: nothing kept, and no
 * string from json_dumps() handed to free() (translate-internal.h forbids json_dumps() in src/translate).
 * Scopes nest; the arena is reset when the outermost ends. Outside a scope, and in builds with
 * AddressSanitizer, jansson uses malloc() as before. */
void json_scratch_begin(void);
void json_scratch_end(void);

/* Drops a tree read inside the open scope: the arena takes its memory back at the scope's end, so the walk
 * of json_decref() over every node (a quarter of a translated stream delta's cost) is skipped. Outside a
 * scope, and where scopes are disabled, it is json_decref(). Only for a tree that holds no value made
 * outside the scope, and none that must be released now: a parsed input that nothing else references. */
void json_scratch_drop(json_t *j);
static inline void json_scratch_dropp(json_t **j) {
        json_scratch_drop(*j);
}

/* For a value that must outlive the scope: from suspend to resume jansson allocates with malloc() again
 * (and frees of the arena's memory stay no-ops). */
unsigned json_scratch_suspend(void);
void json_scratch_resume(unsigned saved);

/* Bytes the calling thread's arena holds now, and whether scopes use it at all (for tests). */
size_t json_scratch_held(void);
bool json_scratch_enabled(void);
