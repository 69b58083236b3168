/* Unit tests for providers: building from [provider.NAME] groups, errors, routing order and patterns. */
#include <stdio.h>

#include "core/config.h"
#include "proxy/provider.h"
#include "tests.h"

static Config *load(const char *text, char **error) {
        Config *c = NULL;
        if (config_load_data("test.conf", text, strlen(text), "/tmp", &c, error) < 0)
                return NULL;
        return c;
}

static Providers *build(const char *text, char **error) {
        _cleanup_(config_unrefp) Config *c = load(text, error);
        Providers *p = NULL;
        if (!c)
                return NULL;
        if (providers_build(c, &p, error) < 0)
                return NULL;
        return p;
}

TEST(builtin_passthrough_when_none_configured) {
        _cleanup_free_ char *e = NULL;
        _cleanup_(providers_unrefp) Providers *p = build("[server]\n", &e);
        ASSERT_NOT_NULL(p);
        ASSERT_EQ(p->n_items, 2);
        const Provider *o = providers_find(p, "openai"), *a = providers_find(p, "anthropic");
        ASSERT_NOT_NULL(o);
        ASSERT_NOT_NULL(a);
        ASSERT_STREQ(o->base_url, "https://api.openai.com/v1");
        ASSERT_STREQ(a->base_url, "https://api.anthropic.com");
        ASSERT_NULL(o->api_key);
        ASSERT_TRUE(o->builtin);

        Candidate c[CANDIDATES_MAX];
        int n = providers_route(p, "claude-sonnet-4-5", 1, c);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(c[0].provider->name, "anthropic");
        candidates_done(c, (size_t) n);
        n = providers_route(p, "gpt-4o-mini", 1, c);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(c[0].provider->name, "openai");
        candidates_done(c, (size_t) n);
        ASSERT_EQ(providers_route(p, "llama3", 1, c), 0);
        ASSERT_EQ(providers_route(p, "", 1, c), 0);
}

TEST(configured_provider_fields) {
        _cleanup_free_ char *e = NULL;
        setenv("GATE_TEST_KEY", "sk-from-env", 1);
        _cleanup_(providers_unrefp) Providers *p = build(
                "[provider.vllm]\ntype = openai-compatible\nbase_url = \"http://localhost:8000/v1/\"\n"
                "models = llama-*, qwen?\napi_key_env = GATE_TEST_KEY\npriority = 2\nweight = 3\n"
                "connect_timeout = 2s\nfirst_byte_timeout = 500ms\nidle_timeout = 1min\n"
                "header.X-Title = gate test\n", &e);
        ASSERT_NOT_NULL(p);
        ASSERT_EQ(p->n_items, 1);
        const Provider *v = p->items[0];
        ASSERT_STREQ(v->base_url, "http://localhost:8000/v1");
        ASSERT_STREQ(v->api_key, "sk-from-env");
        ASSERT_EQ(v->priority, 2);
        ASSERT_EQ(v->weight, 3);
        ASSERT_EQ(v->connect_timeout, 2 * USEC_PER_SEC);
        ASSERT_EQ(v->first_byte_timeout, 500 * USEC_PER_MSEC);
        ASSERT_EQ(v->idle_timeout, 60 * USEC_PER_SEC);
        ASSERT_STREQ(v->headers[0], "X-Title: gate test");
        ASSERT_STREQ(v->models[0], "llama-*");
        ASSERT_STREQ(v->models[1], "qwen?");
}

TEST(errors_name_group_and_key) {
        struct { const char *text, *needle; } cases[] = {
                { "[provider.x]\nbase_url = http://a/v1\n", "[provider.x] type" },
                { "[provider.x]\ntype = gemini\n", "gemini" },
                { "[provider.x]\ntype = openai-compatible\n", "needs base_url" },
                { "[provider.x]\ntype = openai\nbase_url = ftp://a\n", "base_url = ftp://a" },
                { "[provider.x]\ntype = openai\nweight = 0\n", "weight" },
                { "[provider.x]\ntype = openai\nidle_timeout = soon\n", "idle_timeout = soon" },
                { "[provider.x]\ntype = openai\napi_key_env = GATE_TEST_UNSET_VAR\n", "not set" },
                { "[provider.x]\ntype = openai\nheader.Bad Name = v\n", "header" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *e = NULL;
                Providers *p = build(cases[i].text, &e);
                if (p) {
                        providers_unref(p);
                        TEST_FAIL("case %zu accepted", i);
                }
                if (!e || !strstr(e, cases[i].needle))
                        TEST_FAIL("case %zu: error \"%s\" lacks \"%s\"", i, e ? e : "(null)", cases[i].needle);
                if (!strstr(e, "test.conf"))
                        TEST_FAIL("case %zu: error \"%s\" lacks the file", i, e);
                free(e);
        }
}

TEST(explicit_provider_prefix) {
        _cleanup_free_ char *e = NULL;
        _cleanup_(providers_unrefp) Providers *p = build(
                "[provider.a]\ntype = openai\nmodels = gpt-4o\n[provider.b]\ntype = openai\nmodels = gpt-4o\n", &e);
        Candidate c[CANDIDATES_MAX];
        int n = providers_route(p, "b/gpt-4o", 7, c);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(c[0].provider->name, "b");
        ASSERT_STREQ(c[0].model, "gpt-4o");
        candidates_done(c, (size_t) n);
        /* A slash that names no provider is part of the model id. */
        ASSERT_EQ(providers_route(p, "meta-llama/x", 7, c), 0);
}

TEST(priority_then_weight) {
        _cleanup_free_ char *e = NULL;
        _cleanup_(providers_unrefp) Providers *p = build(
                "[provider.backup]\ntype = openai\nmodels = m\npriority = 5\n"
                "[provider.heavy]\ntype = openai\nmodels = m\nweight = 9\n"
                "[provider.light]\ntype = openai\nmodels = m\nweight = 1\n", &e);
        unsigned heavy_first = 0;
        for (uint32_t seed = 1; seed <= 1000; seed++) {
                Candidate c[CANDIDATES_MAX];
                int n = providers_route(p, "m", seed * 2654435761u, c);
                ASSERT_EQ(n, 3);
                ASSERT_STREQ(c[2].provider->name, "backup");
                if (streq(c[0].provider->name, "heavy"))
                        heavy_first++;
                candidates_done(c, (size_t) n);
        }
        /* 9:1 weights: "heavy" leads about 90% of the time. */
        ASSERT_TRUE(heavy_first > 800 && heavy_first < 980);
}

TEST(patterns_before_prefixes) {
        _cleanup_free_ char *e = NULL;
        _cleanup_(providers_unrefp) Providers *p = build(
                "[provider.local]\ntype = openai-compatible\nbase_url = http://127.0.0.1:1/v1\nmodels = gpt-*\n"
                "[provider.openai]\ntype = openai\n", &e);
        Candidate c[CANDIDATES_MAX];
        int n = providers_route(p, "gpt-4o", 1, c);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(c[0].provider->name, "local");
        candidates_done(c, (size_t) n);
        n = providers_route(p, "o3-mini", 1, c);
        ASSERT_EQ(n, 1);
        ASSERT_STREQ(c[0].provider->name, "openai");
        candidates_done(c, (size_t) n);
}

TEST(glob) {
        ASSERT_TRUE(model_pattern_match("gpt-*", "gpt-4o"));
        ASSERT_TRUE(model_pattern_match("*", "x"));
        ASSERT_TRUE(model_pattern_match("a*b*c", "aXXbYYc"));
        ASSERT_TRUE(model_pattern_match("qwen?", "qwen3"));
        ASSERT_FALSE(model_pattern_match("qwen?", "qwen"));
        ASSERT_FALSE(model_pattern_match("gpt-*", "xgpt-4"));
        ASSERT_FALSE(model_pattern_match("a*b", "ab c"));
}
