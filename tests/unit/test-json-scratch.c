/* Unit tests for the JSON scratch arena (json-scratch.c): what jansson allocates in a scope, and after it. */
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "tests.h"
#include "shared/macro.h"
#include "translate/json-scratch.h"
#include "translate/translate.h"

#define FIRST_BLOCK (64U * 1024U)

TEST(values_in_a_scope_come_from_the_arena) {
        json_t *o;

        json_scratch_begin();
        o = json_pack("{s:s, s:[i, i, i], s:{s:b}}", "model", "m", "n", 1, 2, 3, "x", "y", 1);
        ASSERT_NOT_NULL(o);
        if (json_scratch_enabled())
                ASSERT_EQ(json_scratch_held(), FIRST_BLOCK);
        ASSERT_EQ(json_integer_value(json_array_get(json_object_get(o, "n"), 2)), 3);
        json_decref(o);
        json_scratch_end();
        /* The first block stays for the next scope, empty. */
        if (json_scratch_enabled())
                ASSERT_EQ(json_scratch_held(), FIRST_BLOCK);
}

TEST(a_value_made_before_the_scope_is_freed_by_free) {
        json_t *before = json_string("made outside");
        json_t *inside;

        ASSERT_NOT_NULL(before);
        json_scratch_begin();
        inside = json_string("made inside");
        ASSERT_NOT_NULL(inside);
        /* Valgrind and ASan builds would see a free() of arena memory, or a leak of before's. */
        json_decref(before);
        json_decref(inside);
        json_scratch_end();
}

TEST(a_large_value_gets_a_block_of_its_own_and_it_goes) {
        size_t n = 3U * 1024U * 1024U;
        char *big = malloc(n);
        json_t *s;

        ASSERT_NOT_NULL(big);
        memset(big, 'a', n);
        json_scratch_begin();
        s = json_stringn(big, n);
        ASSERT_NOT_NULL(s);
        if (json_scratch_enabled())
                ASSERT_TRUE(json_scratch_held() >= n);
        ASSERT_EQ(json_string_length(s), n);
        json_decref(s);
        json_scratch_end();
        if (json_scratch_enabled())
                ASSERT_EQ(json_scratch_held(), FIRST_BLOCK);
        free(big);
}

TEST(a_size_that_cannot_be_rounded_up_is_refused) {
        json_malloc_t m;
        json_free_t f;

        /* Rounded to the arena's alignment, SIZE_MAX and its neighbours wrap around to a few bytes: the
         * caller would get a pointer to almost nothing for what it asked. malloc() refuses them too. */
        json_scratch_begin();
        json_get_alloc_funcs(&m, &f);
        ASSERT_NULL(m(SIZE_MAX));
        ASSERT_NULL(m(SIZE_MAX - 8));
        json_scratch_end();
}

TEST(scopes_nest_and_only_the_outermost_resets) {
        json_t *outer, *inner;

        json_scratch_begin();
        outer = json_string("outer");
        json_scratch_begin();
        inner = json_string("inner");
        json_decref(inner);
        json_scratch_end();
        /* Still inside the outer scope: its values are intact. */
        ASSERT_STREQ(json_string_value(outer), "outer");
        json_decref(outer);
        json_scratch_end();
}

typedef struct Translated {
        int r;
        size_t held_before, held_after;
        TranslatedRequest t;
        char *error;
} Translated;

static void *translate_on_a_new_thread(void *userdata) {
        static const char body[] = "{\"model\":\"claude-x\",\"max_tokens\":16,\"messages\":"
                                   "[{\"role\":\"user\",\"content\":\"Say hi.\"}]}";
        Translated *x = userdata;

        x->held_before = json_scratch_held();
        x->r = translate_request(TRANSLATE_MESSAGES_TO_CHAT, body, strlen(body), "gpt-x", &x->t, &x->error);
        x->held_after = json_scratch_held();
        return NULL;
}

TEST(translation_runs_in_a_scope_and_its_result_outlives_it) {
        Translated x = {};
        pthread_t th;

        /* A new thread's arena is empty: only a translation's scope makes its first block. */
        ASSERT_EQ(pthread_create(&th, NULL, translate_on_a_new_thread, &x), 0);
        ASSERT_EQ(pthread_join(th, NULL), 0);
        ASSERT_OK(x.r);
        ASSERT_NULL(x.error);
        ASSERT_EQ(x.held_before, 0);
        if (json_scratch_enabled())
                ASSERT_EQ(x.held_after, FIRST_BLOCK);
        ASSERT_CONTAINS(x.t.body, "\"model\":\"gpt-x\"");
        ASSERT_CONTAINS(x.t.body, "\"content\":\"Say hi.\"");
        translated_request_done(&x.t);
}

TEST(a_dropped_tree_is_left_to_the_arena_in_a_scope_and_released_outside) {
        json_t *held = json_string("held elsewhere"), *tree;

        ASSERT_NOT_NULL(held);
        /* In a scope: no walk over the tree, so a value it references keeps the reference (the contract
         * says such a tree must not be dropped this way; this shows why). */
        json_scratch_begin();
        tree = json_pack("{s:O}", "v", held);
        ASSERT_NOT_NULL(tree);
        ASSERT_EQ(held->refcount, 2U);
        json_scratch_drop(tree);
        ASSERT_EQ(held->refcount, json_scratch_enabled() ? 2U : 1U);
        json_scratch_end();
        if (json_scratch_enabled())
                json_decref(held);
        /* Outside a scope it is json_decref(): the reference goes (valgrind would see a leak otherwise). */
        tree = json_pack("{s:O}", "v", held);
        ASSERT_NOT_NULL(tree);
        ASSERT_EQ(held->refcount, 2U);
        json_scratch_drop(tree);
        ASSERT_EQ(held->refcount, 1U);
        /* And so while a scope is suspended. */
        json_scratch_begin();
        {
                unsigned saved = json_scratch_suspend();
                tree = json_pack("{s:O}", "v", held);
                ASSERT_NOT_NULL(tree);
                json_scratch_drop(tree);
                json_scratch_resume(saved);
        }
        json_scratch_end();
        ASSERT_EQ(held->refcount, 1U);
        json_decref(held);
}

TEST(a_value_made_while_suspended_outlives_the_scope) {
        json_t *kept, *inside;
        unsigned saved;

        json_scratch_begin();
        inside = json_pack("{s:[s, s]}", "a", "b", "c");
        ASSERT_NOT_NULL(inside);
        saved = json_scratch_suspend();
        kept = json_deep_copy(inside);
        json_scratch_resume(saved);
        ASSERT_NOT_NULL(kept);
        json_decref(inside);
        json_scratch_end();
        /* The arena was reset; the copy came from malloc() and is intact (valgrind would see otherwise). */
        json_scratch_begin();
        inside = json_pack("{s:s}", "overwrite", "the arena's first bytes");
        json_decref(inside);
        json_scratch_end();
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(kept, "a"), 1)), "c");
        json_decref(kept);
}
