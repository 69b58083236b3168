/* Unit tests for prices: the decimal parser, the table format, lookup precedence, cost, config overrides. */
#include <locale.h>
#include <stdio.h>

#include "core/config.h"
#include "shared/util.h"
#include "store/prices.h"
#include "tests.h"

TEST(usd_parse_and_format) {
        uint64_t v;
        char b[USD_FORMAT_MAX];

        ASSERT_OK(usd_parse("2.50", 6, &v));
        ASSERT_EQ(v, 2500000);
        ASSERT_OK(usd_parse("0.075", 6, &v));
        ASSERT_EQ(v, 75000);
        ASSERT_OK(usd_parse("10", 6, &v));
        ASSERT_EQ(v, 10000000);
        ASSERT_OK(usd_parse("0.000001", 6, &v));
        ASSERT_EQ(v, 1);
        ASSERT_OK(usd_parse(".5", 6, &v));
        ASSERT_EQ(v, 500000);
        ASSERT_OK(usd_parse("3.", 6, &v));
        ASSERT_EQ(v, 3000000);
        ASSERT_ERROR(usd_parse("0.0000001", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("-1", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("1e3", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("1,5", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse(" 1", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse(".", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("1.2.3", 6, &v), EINVAL);
        ASSERT_ERROR(usd_parse("99999999999999999999", 6, &v), ERANGE);

        ASSERT_STREQ(usd_format(b, sizeof b, 2500000, 6, 2), "2.50");
        ASSERT_STREQ(usd_format(b, sizeof b, 75000, 6, 2), "0.075");
        ASSERT_STREQ(usd_format(b, sizeof b, 0, 9, 2), "0.00");
        ASSERT_STREQ(usd_format(b, sizeof b, 1, 9, 2), "0.000000001");
        ASSERT_STREQ(usd_format(b, sizeof b, 12345000000, 9, 0), "12.345");
        ASSERT_STREQ(usd_format(b, sizeof b, 7000000, 6, 0), "7");
}

TEST(parse_ignores_the_locale) {
        uint64_t v;

        /* A daemon that called setlocale() for its messages must still read "2.50" as 2.50. */
        if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
                return;         /* no such locale installed: nothing to show */
        ASSERT_OK(usd_parse("2.50", 6, &v));
        ASSERT_EQ(v, 2500000);
        setlocale(LC_NUMERIC, "C");
}

static const char table[] =
        "# comment\n"
        "[gpt-4o*]\n"
        "input = 2.50\n"
        "cache_read = 1.25\n"
        "output = 10\n"
        "[gpt-4o-mini*]\n"
        "input = 0.15\n"
        "output = 0.60\n"
        "[gpt-4o-2024-05-13]\n"
        "input = 5\n"
        "output = 15\n"
        "[claude-*]\n"
        "input = 1\n"
        "output = 1\n"
        "[claude-sonnet-4*]\n"
        "input = 3\n"
        "cache_write = 3.75\n"
        "cache_read = 0.30\n"
        "output = 15\n"
        "[local/*]\n"
        "input = 0\n"
        "output = 0\n"
        "[meta-llama/Llama-3*]\n"
        "input = 0.2\n"
        "output = 0.2\n";

TEST(lookup_precedence) {
        _cleanup_(price_table_unrefp) PriceTable *t = NULL;
        _cleanup_free_ char *error = NULL;
        const Price *p;

        ASSERT_OK(price_table_new(&t));
        ASSERT_OK(price_table_load_data(t, "test", table, sizeof table - 1, &error));
        ASSERT_EQ(t->n_items, 7);

        /* The most literal characters win among patterns; an exact name wins over all. */
        p = price_table_lookup(t, "openai", "gpt-4o");
        ASSERT_STREQ(p->pattern, "gpt-4o*");
        p = price_table_lookup(t, "openai", "gpt-4o-mini-2024-07-18");
        ASSERT_STREQ(p->pattern, "gpt-4o-mini*");
        p = price_table_lookup(t, "openai", "gpt-4o-2024-05-13");
        ASSERT_STREQ(p->pattern, "gpt-4o-2024-05-13");
        p = price_table_lookup(t, NULL, "claude-sonnet-4-5-20250929");
        ASSERT_STREQ(p->pattern, "claude-sonnet-4*");
        p = price_table_lookup(t, NULL, "claude-3-haiku");
        ASSERT_STREQ(p->pattern, "claude-*");

        /* A missing cache price is the input price. */
        p = price_table_lookup(t, NULL, "gpt-4o");
        ASSERT_EQ(p->cache_write, 2500000);
        ASSERT_EQ(p->cache_read, 1250000);

        /* A provider-qualified pattern wins over a plain one, and applies to that provider only. */
        p = price_table_lookup(t, "local", "gpt-4o");
        ASSERT_STREQ(p->pattern, "local/*");
        p = price_table_lookup(t, "other", "llama");
        ASSERT_NULL(p);
        /* The same with a "PROVIDER/MODEL" too long for the lookup's stack buffer, and at its edge. */
        {
                char model[400];
                memset(model, 'm', sizeof model - 1);
                model[sizeof model - 1] = 0;
                p = price_table_lookup(t, "local", model);
                ASSERT_STREQ(p->pattern, "local/*");
                model[250] = 0;         /* "local/" + 250 = 256 bytes: the shortest that does not fit */
                p = price_table_lookup(t, "local", model);
                ASSERT_STREQ(p->pattern, "local/*");
                model[249] = 0;         /* 255 bytes and the NUL: the longest that fits */
                p = price_table_lookup(t, "local", model);
                ASSERT_STREQ(p->pattern, "local/*");
        }
        /* A model with a slash of its own still matches plainly. */
        p = price_table_lookup(t, "together", "meta-llama/Llama-3.1-8B");
        ASSERT_STREQ(p->pattern, "meta-llama/Llama-3*");

        ASSERT_NULL(price_table_lookup(t, "openai", "unknown-model"));
        ASSERT_NULL(price_table_lookup(t, "openai", ""));
        ASSERT_NULL(price_table_lookup(t, "openai", NULL));
}

TEST(cost) {
        Price p = { .input = 3000000, .output = 15000000, .cache_read = 300000, .cache_write = 3750000 };

        /* 1000 input at $3/M = $0.003; 500 output at $15/M = $0.0075; 2000 cache reads at $0.30/M =
         * $0.0006; 100 cache writes at $3.75/M = $0.000375. Sum $0.011475 = 11475000 nano-USD. */
        ASSERT_EQ(price_cost(&p, 1000, 500, 2000, 100), 11475000);
        ASSERT_EQ(price_cost(&p, 0, 0, 0, 0), 0);
        ASSERT_EQ(price_cost(NULL, 1000, 1000, 0, 0), 0);
        /* 1 token at $0.075/M is 75 nano-USD. At the smallest price, $0.000001/M, a token costs a
         * pico-USD: rounded to the nearest nano-USD, half up. */
        Price p075 = { .input = 75000 };
        ASSERT_EQ(price_cost(&p075, 1, 0, 0, 0), 75);
        Price cheap = { .input = 1 };
        ASSERT_EQ(price_cost(&cheap, 499, 0, 0, 0), 0);
        ASSERT_EQ(price_cost(&cheap, 500, 0, 0, 0), 1);
        ASSERT_EQ(price_cost(&cheap, 1000000, 0, 0, 0), 1000);
        /* Saturates rather than wrapping. */
        Price dear = { .input = UINT64_MAX, .output = UINT64_MAX };
        ASSERT_EQ(price_cost(&dear, UINT64_MAX, UINT64_MAX, 0, 0), UINT64_MAX);
}

TEST(table_errors) {
        _cleanup_(price_table_unrefp) PriceTable *t = NULL;
        char *error = NULL;

        ASSERT_OK(price_table_new(&t));
        ASSERT_ERROR(price_table_load_data(t, "f.conf", "[m]\ninput = 2,5\n", 16, &error), EINVAL);
        ASSERT_CONTAINS(error, "f.conf: [m] input = \"2,5\"");
        free(error);
        ASSERT_ERROR(price_table_load_data(t, "f.conf", "[m]\nprice = 1\n", 14, &error), EINVAL);
        ASSERT_CONTAINS(error, "unknown key \"price\"");
        free(error);
        ASSERT_ERROR(price_table_load_data(t, "f.conf", "input = 1\n", 10, &error), EINVAL);
        ASSERT_CONTAINS(error, "f.conf");
        free(error);
        ASSERT_ERROR(price_table_load_file(t, "/nonexistent/prices.conf", &error), ENOENT);
        ASSERT_CONTAINS(error, "/nonexistent/prices.conf");
        free(error);

        /* A later entry replaces one with the same pattern. */
        ASSERT_OK(price_table_load_data(t, "a", "[m]\ninput = 1\n", 14, NULL));
        ASSERT_OK(price_table_load_data(t, "b", "[m]\ninput = 2\n", 14, NULL));
        ASSERT_EQ(t->n_items, 1);
        ASSERT_EQ(t->items[0].input, 2000000);
}

TEST(shipped_table_loads) {
        _cleanup_(price_table_unrefp) PriceTable *t = NULL;
        _cleanup_free_ char *path = NULL, *error = NULL;
        const Price *p;

        asprintf(&path, "%s/data/prices.conf", getenv("SRCDIR") ?: ".");
        ASSERT_OK(price_table_new(&t));
        ASSERT_OK(price_table_load_file(t, path, &error));
        ASSERT_TRUE(t->n_items >= 20);

        static const struct {
                const char *model, *pattern;
        } cases[] = {
                { "gpt-4o-2024-08-06", "gpt-4o*" },
                { "gpt-4o-mini", "gpt-4o-mini*" },
                { "gpt-5-mini-2025-08-07", "gpt-5-mini*" },
                { "o3-mini", "o3-mini*" },
                { "o1-pro", "o1-pro*" },
                { "claude-opus-4-1-20250805", "claude-opus-4*" },
                { "claude-opus-4-5-20251101", "claude-opus-4-5*" },
                { "claude-sonnet-4-20250514", "claude-sonnet-4*" },
                { "claude-3-5-haiku-20241022", "claude-3-5-haiku*" },
                { "text-embedding-3-small", "text-embedding-3-small" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                p = price_table_lookup(t, NULL, cases[i].model);
                if (!p || !streq(p->pattern, cases[i].pattern))
                        TEST_FAIL("%s priced by %s, expected %s", cases[i].model, p ? p->pattern : "(none)",
                                  cases[i].pattern);
        }
        /* Anthropic's cache reads are a tenth of input, writes a quarter more. */
        p = price_table_lookup(t, NULL, "claude-sonnet-4-5");
        ASSERT_EQ(p->cache_read * 10, p->input);
        ASSERT_EQ(p->cache_write * 4, p->input * 5);
}

TEST(config_overrides) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_(price_table_unrefp) PriceTable *t = NULL;
        _cleanup_free_ char *error = NULL, *conf = NULL, *dir = NULL, *prices = NULL;
        char tmpl[] = "/tmp/test-prices-XXXXXX";
        const Price *p;
        FILE *f;

        dir = strdup(mkdtemp(tmpl));
        asprintf(&prices, "%s/prices.conf", dir);
        f = fopen(prices, "w");
        fputs("[gpt-4o*]\ninput = 2.50\noutput = 10\n[mine]\ninput = 9\noutput = 9\n", f);
        fclose(f);

        asprintf(&conf,
                 "[usage]\nprice_file = %s\n"
                 "[price.gpt-4o*]\ninput = 1.00\n"
                 "[price.local/*]\ninput = \"0\"\noutput = 0\ncache_read = 0.5\n"
                 "[price.gpt-4o*]\noutput = 4\n", prices);
        ASSERT_OK(config_load_data("test.conf", conf, strlen(conf), dir, &c, &error));
        ASSERT_EQ(c->n_prices, 2);
        ASSERT_STREQ(c->prices[0].pattern, "gpt-4o*");
        ASSERT_EQ(c->prices[0].value[CONFIG_PRICE_INPUT], 1000000);
        ASSERT_EQ(c->prices[0].value[CONFIG_PRICE_OUTPUT], 4000000);

        ASSERT_OK(price_table_from_config(c, &t, &error));
        /* A [price.PATTERN] group replaces the table's entry whole: cache prices default to its input. */
        p = price_table_lookup(t, NULL, "gpt-4o");
        ASSERT_EQ(p->input, 1000000);
        ASSERT_EQ(p->output, 4000000);
        ASSERT_EQ(p->cache_read, 1000000);
        p = price_table_lookup(t, "local", "x");
        ASSERT_STREQ(p->pattern, "local/*");
        ASSERT_EQ(p->cache_read, 500000);
        ASSERT_EQ(p->cache_write, 0);
        p = price_table_lookup(t, NULL, "mine");
        ASSERT_EQ(p->input, 9000000);

        /* The dump shows the groups back. */
        _cleanup_free_ char *dump = NULL;
        size_t n = 0;
        f = open_memstream(&dump, &n);
        config_dump(c, f);
        fclose(f);
        ASSERT_CONTAINS(dump, "[price.gpt-4o*]\ninput = 1.00\noutput = 4.00\n");
        ASSERT_CONTAINS(dump, "[price.local/*]\ninput = 0.00\noutput = 0.00\ncache_read = 0.50\n");
        ASSERT_CONTAINS(dump, "[usage]\nqueue_max = 10000\nflush_interval = 1s\n");

        /* An explicitly named file must exist; the default one need not. */
        config_unref(c);
        c = NULL;
        static const char missing[] = "[usage]\nprice_file = /nonexistent.conf\n";
        ASSERT_OK(config_load_data("t", missing, sizeof missing - 1, dir, &c, &error));
        price_table_unref(t);
        t = NULL;
        ASSERT_ERROR(price_table_from_config(c, &t, &error), ENOENT);
}

TEST(config_price_errors) {
        _cleanup_(config_unrefp) Config *c = NULL;
        char *error = NULL;

        ASSERT_ERROR(config_load_data("x.conf", "[price.m]\ninput = 1,5\n", 22, "/tmp", &c, &error), EINVAL);
        ASSERT_CONTAINS(error, "x.conf: [price.m] input = \"1,5\": invalid price");
        free(error);
        ASSERT_ERROR(config_load_data("x.conf", "[price.m]\noutput = -1\n", 22, "/tmp", &c, &error), EINVAL);
        free(error);
        /* An unknown key is warned about and ignored, as in the other groups. */
        ASSERT_OK(config_load_data("x.conf", "[price.m]\nfoo = 1\n", 18, "/tmp", &c, &error));
        ASSERT_EQ(c->n_prices, 0);
}
