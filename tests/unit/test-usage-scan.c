/* Unit tests for usage scanning: the mock upstream's bodies and streams in both dialects, split anywhere. */
#include <stdio.h>

#include "api/usage-scan.h"
#include "shared/util.h"
#include "tests.h"

static char *corpus_file(const char *name, size_t *ret_len) {
        char path[4096];
        char *d = NULL;
        size_t n;

        snprintf(path, sizeof path, "%s/tests/fuzz/corpus/usage-scan/%s", getenv("SRCDIR") ?: ".", name);
        if (read_full_file(path, 1 << 24, &d, &n) < 0)
                return NULL;
        /* The first byte is the fuzzer's mode byte. */
        memmove(d, d + 1, n - 1);
        d[n - 1] = 0;
        *ret_len = n - 1;
        return d;
}

static void scan_split(Dialect d, bool sse, const char *p, size_t n, size_t split, Usage *ret) {
        UsageScanner s;

        usage_scanner_init(&s, d, sse);
        usage_scanner_feed(&s, p, MIN(split, n));
        if (split < n)
                usage_scanner_feed(&s, p + split, n - split);
        usage_scanner_result(&s, ret);
}

static const struct {
        const char *file;
        Dialect dialect;
        bool sse;
        bool found;
        uint64_t input, output, cache_read, cache_write;
        const char *model;
} fixtures[] = {
        /* prompt_tokens 28 includes cached_tokens 7. */
        { "openai-chat.json", DIALECT_OPENAI, false, true, 21, 3, 7, 0, "gpt-4o+chunks=3+cache_read=7" },
        { "openai-chat.sse", DIALECT_OPENAI, true, true, 34, 3, 7, 0, "gpt-4o+chunks=3+cache_read=7" },
        { "openai-chat-tools.sse", DIALECT_OPENAI, true, true, 33, 13, 0, 0, "gpt-4o+tools=2+preamble=1" },
        { "openai-chat-nousage.sse", DIALECT_OPENAI, true, false, 0, 0, 0, 0, "gpt-4o+usage=0" },
        { "openai-chat-error.sse", DIALECT_OPENAI, true, false, 0, 0, 0, 0, "gpt-4o+error_after=2" },
        { "openai-completions.sse", DIALECT_OPENAI, true, true, 27, 2, 0, 0, "gpt-3.5-turbo-instruct+chunks=2" },
        { "openai-completions.json", DIALECT_OPENAI, false, true, 12, 5, 0, 0, "gpt-3.5-turbo-instruct" },
        /* Responses: input_tokens 16 includes input_tokens_details.cached_tokens 3. */
        { "openai-responses.json", DIALECT_OPENAI, false, true, 13, 2, 3, 0, "gpt-4o+chunks=2+cache_read=3" },
        { "openai-responses.sse", DIALECT_OPENAI, true, true, 16, 2, 3, 0, "gpt-4o+chunks=2+cache_read=3" },
        { "openai-responses-tools.sse", DIALECT_OPENAI, true, true, 13, 4, 0, 0, "gpt-4o+tools=1" },
        { "openai-embeddings.json", DIALECT_OPENAI, false, true, 11, 0, 0, 0, "text-embedding-3-small" },
        /* Anthropic: input_tokens excludes the cache; message_delta's output_tokens is the final count. */
        { "anthropic-messages.json", DIALECT_ANTHROPIC, false, true, 31, 3, 5, 2,
          "claude-3-5-sonnet+chunks=3+cache_read=5+cache_write=2" },
        { "anthropic-messages.sse", DIALECT_ANTHROPIC, true, true, 35, 3, 5, 2,
          "claude-3-5-sonnet+chunks=3+cache_read=5+cache_write=2" },
        { "anthropic-messages-tools.sse", DIALECT_ANTHROPIC, true, true, 28, 8, 0, 0, "claude-3-5-sonnet+tools=2" },
        /* Broken off by an error event: message_start's placeholder output count is all there is. */
        { "anthropic-messages-error.sse", DIALECT_ANTHROPIC, true, true, 29, 1, 0, 0, "claude-3-5-sonnet+error_after=3" },
        { "anthropic-error.json", DIALECT_ANTHROPIC, false, false, 0, 0, 0, 0, "" },
};

TEST(fixtures_split_anywhere) {
        for (size_t i = 0; i < ELEMENTSOF(fixtures); i++) {
                _cleanup_free_ char *body = NULL;
                size_t n = 0;

                body = corpus_file(fixtures[i].file, &n);
                if (!body)
                        TEST_FAIL("%s: cannot read the fixture", fixtures[i].file);

                /* Every split point gives the same answer as the whole. */
                for (size_t split = 0; split <= n; split++) {
                        Usage u;

                        scan_split(fixtures[i].dialect, fixtures[i].sse, body, n, split, &u);
                        if (u.found != fixtures[i].found || u.input_tokens != fixtures[i].input ||
                            u.output_tokens != fixtures[i].output || u.cache_read_tokens != fixtures[i].cache_read ||
                            u.cache_write_tokens != fixtures[i].cache_write || !streq(u.model, fixtures[i].model))
                                TEST_FAIL("%s split at %zu: found=%d in=%" PRIu64 " out=%" PRIu64 " cr=%" PRIu64
                                          " cw=%" PRIu64 " model=\"%s\"", fixtures[i].file, split, u.found,
                                          u.input_tokens, u.output_tokens, u.cache_read_tokens,
                                          u.cache_write_tokens, u.model);
                }

                if (!fixtures[i].sse) {
                        Usage u;

                        ASSERT_OK(usage_from_json(fixtures[i].dialect, body, n, &u));
                        ASSERT_EQ(u.input_tokens, fixtures[i].input);
                        ASSERT_EQ(u.cache_read_tokens, fixtures[i].cache_read);
                        ASSERT_STREQ(u.model, fixtures[i].model);
                        /* Cut short, it is not a document. */
                        ASSERT_ERROR(usage_from_json(fixtures[i].dialect, body, n / 2, &u), EBADMSG);
                }
        }
}

TEST(byte_by_byte_with_crlf) {
        /* The Anthropic stream with CRLF line ends, comments, an id field and "data:" without a space. */
        static const char stream[] =
                ": keep-alive\r\n"
                "\r\n"
                "event: message_start\r\n"
                "id: 1\r\n"
                "data:{\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5\",\"usage\":"
                "{\"input_tokens\":10,\"cache_creation_input_tokens\":20,\"cache_read_input_tokens\":30,"
                "\"output_tokens\":1}}}\r\n"
                "\r\n"
                "event: message_delta\r\n"
                "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\r\n"
                "data: \"usage\":{\"output_tokens\":42}}\r\n"
                "\r\n";
        UsageScanner s;
        Usage u;

        usage_scanner_init(&s, DIALECT_ANTHROPIC, true);
        for (size_t i = 0; i < (sizeof(stream) - 1); i++)
                usage_scanner_feed(&s, stream + i, 1);
        usage_scanner_result(&s, &u);
        ASSERT_TRUE(u.found);
        ASSERT_EQ(u.input_tokens, 10);
        ASSERT_EQ(u.cache_write_tokens, 20);
        ASSERT_EQ(u.cache_read_tokens, 30);
        ASSERT_EQ(u.output_tokens, 42);
        ASSERT_STREQ(u.model, "claude-sonnet-4-5");
}

TEST(paths_are_anchored) {
        /* "usage" inside content, tool arguments or other objects is not usage; nor is count_tokens'
         * top-level input_tokens. */
        static const char body[] =
                "{\"choices\":[{\"message\":{\"usage\":{\"prompt_tokens\":999}}}],"
                "\"metadata\":{\"usage\":{\"completion_tokens\":999}},"
                "\"input_tokens\":999,"
                "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6,\"completion_tokens_details\":"
                "{\"cached_tokens\":999},\"prompt_tokens_details\":{\"cached_tokens\":2}}}";
        Usage u;

        ASSERT_OK(usage_from_json(DIALECT_OPENAI, body, (sizeof(body) - 1), &u));
        ASSERT_EQ(u.input_tokens, 3);
        ASSERT_EQ(u.cache_read_tokens, 2);
        ASSERT_EQ(u.output_tokens, 6);
        ASSERT_STREQ(u.model, "");

        static const char count[] = "{\"input_tokens\":12}";
        ASSERT_OK(usage_from_json(DIALECT_ANTHROPIC, count, sizeof count - 1, &u));
        ASSERT_FALSE(u.found);
        ASSERT_EQ(u.input_tokens, 0);
}

TEST(dialects_read_their_own_fields) {
        /* An OpenAI body read as Anthropic finds no usage, and the other way round. */
        static const char openai[] = "{\"model\":\"m\",\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6}}";
        static const char anthropic[] = "{\"usage\":{\"cache_read_input_tokens\":5,\"cache_creation_input_tokens\":6}}";
        Usage u;

        ASSERT_OK(usage_from_json(DIALECT_ANTHROPIC, openai, (sizeof(openai) - 1), &u));
        ASSERT_FALSE(u.found);
        ASSERT_STREQ(u.model, "m");
        ASSERT_OK(usage_from_json(DIALECT_OPENAI, anthropic, (sizeof(anthropic) - 1), &u));
        ASSERT_FALSE(u.found);
}

TEST(numbers) {
        static const struct {
                const char *body;
                bool found;
                uint64_t output;
        } cases[] = {
                { "{\"usage\":{\"completion_tokens\":7}}", true, 7 },
                { "{\"usage\":{\"completion_tokens\":7.0}}", true, 7 },
                { "{\"usage\":{\"completion_tokens\":-7}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\":7e3}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\":null}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\":\"7\"}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\":18446744073709551616}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\":123456789012345678901234567890}}", false, 0 },
                { "{\"usage\":{\"completion_tokens\" : 8 , \"x\":[1,{\"completion_tokens\":9}]}}", true, 8 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Usage u;

                ASSERT_OK(usage_from_json(DIALECT_OPENAI, cases[i].body, strlen(cases[i].body), &u));
                if (u.found != cases[i].found || u.output_tokens != cases[i].output)
                        TEST_FAIL("%s: found=%d output=%" PRIu64, cases[i].body, u.found, u.output_tokens);
        }
}

TEST(model_escapes_and_length) {
        Usage u;
        char body[1024];

        /* \u escapes, a surrogate pair, and a lone surrogate (U+FFFD). */
        static const char escaped[] = "{\"model\":\"a\\u00e9\\ud83d\\ude00\\/b\\ud800x\"}";
        ASSERT_OK(usage_from_json(DIALECT_OPENAI, escaped, (sizeof(escaped) - 1), &u));
        ASSERT_STREQ(u.model, "a\xc3\xa9\xf0\x9f\x98\x80/b\xef\xbf\xbdx");

        /* Invalid UTF-8 is replaced. */
        static const char invalid[] = "{\"model\":\"a\xff" "b\"}";
        ASSERT_OK(usage_from_json(DIALECT_OPENAI, invalid, (sizeof(invalid) - 1), &u));
        ASSERT_STREQ(u.model, "a?b");

        /* A long name is cut at a character boundary: 126 'x' then a 2-byte character does not fit. */
        memset(body, 0, sizeof body);
        strcpy(body, "{\"model\":\"");
        memset(body + strlen(body), 'x', 126);
        strcat(body, "\xc3\xa9yyy\"}");
        ASSERT_OK(usage_from_json(DIALECT_OPENAI, body, strlen(body), &u));
        ASSERT_EQ(strlen(u.model), 126);

        /* The first model counts (Anthropic: message_start's). */
        static const char two[] = "{\"message\":{\"model\":\"first\"},\"model\":\"second\"}";
        ASSERT_OK(usage_from_json(DIALECT_ANTHROPIC, two, (sizeof(two) - 1), &u));
        ASSERT_STREQ(u.model, "first");
}

TEST(malformed_event_does_not_poison_the_stream) {
        static const char stream[] =
                "data: {\"usage\":{\"prompt_tokens\":\n\n"             /* cut short by the blank line */
                "data: [DONE]\n\n"
                "data: {\"model\":\"m\",\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2}}\n\n"
                "data: {\"usage\":\"x\"} trailing garbage\n\n";
        UsageScanner s;
        Usage u;

        usage_scanner_init(&s, DIALECT_OPENAI, true);
        usage_scanner_feed(&s, stream, (sizeof(stream) - 1));
        usage_scanner_result(&s, &u);
        ASSERT_TRUE(u.found);
        ASSERT_EQ(u.input_tokens, 4);
        ASSERT_EQ(u.output_tokens, 2);
        ASSERT_STREQ(u.model, "m");

        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, "{\"a\":1", 6, &u), EBADMSG);
        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, "{\"a\":1}}", 8, &u), EBADMSG);
        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, "", 0, &u), EBADMSG);
        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, "{\"a\":[}", 7, &u), EBADMSG);
}

static void feed_str(UsageScanner *s, const char *p) {
        usage_scanner_feed(s, p, strlen(p));
}

TEST(bounded_memory) {
        /* A 4 MiB data line and nesting far beyond the limit cost nothing but time: the scanner has no
         * heap, and what follows still scans. */
        size_t big = 4U << 20;
        _cleanup_free_ char *p = malloc(big);
        UsageScanner s;
        Usage u;

        ASSERT_NOT_NULL(p);
        usage_scanner_init(&s, DIALECT_OPENAI, true);
        feed_str(&s, "data: {\"choices\":[{\"delta\":{\"content\":\"");
        memset(p, 'x', big);
        usage_scanner_feed(&s, p, big);
        feed_str(&s, "\"}}]}\n\ndata: ");
        memset(p, '[', big);
        usage_scanner_feed(&s, p, big);
        feed_str(&s, "\n\ndata: {\"usage\":{\"completion_tokens\":3}}\n\n");
        usage_scanner_result(&s, &u);
        ASSERT_TRUE(u.found);
        ASSERT_EQ(u.output_tokens, 3);
        ASSERT_TRUE(sizeof(UsageScanner) < 1024);
}
