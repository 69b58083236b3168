/* Unit tests for usage scanning: both dialects' bodies and streams, split anywhere, prefiltered or not. */
#include <dirent.h>
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

/* The fast path takes whole tokens and leaves anything cut by a feed's end to the byte-wise state
 * machine: every case below is scanned whole, split in two at every byte, and byte by byte, and all
 * must agree with what is expected. */
typedef struct SplitCase {
        const char *body;
        Dialect dialect;
        bool sse;
        int json_ret;                   /* usage_from_json()'s verdict, for JSON bodies */
        bool found;
        uint64_t input, output, cache_read;
        const char *model;
} SplitCase;

static bool usage_is(const Usage *u, const SplitCase *c) {
        return u->found == c->found && u->input_tokens == c->input && u->output_tokens == c->output &&
                u->cache_read_tokens == c->cache_read && streq(u->model, c->model);
}

static void check_split_cases(const SplitCase *cases, size_t n_cases) {
        for (size_t i = 0; i < n_cases; i++) {
                const SplitCase *c = cases + i;
                size_t n = strlen(c->body);
                UsageScanner s;
                Usage u;

                if (!c->sse) {
                        int r = usage_from_json(c->dialect, c->body, n, &u);

                        if (r != c->json_ret)
                                TEST_FAIL("case %zu (%s): usage_from_json() = %d, expected %d", i, c->body, r,
                                          c->json_ret);
                }
                for (size_t split = 0; split <= n; split++) {
                        scan_split(c->dialect, c->sse, c->body, n, split, &u);
                        if (!usage_is(&u, c))
                                TEST_FAIL("case %zu (%s) split at %zu: found=%d in=%" PRIu64 " out=%" PRIu64
                                          " cr=%" PRIu64 " model=\"%s\"", i, c->body, split, u.found,
                                          u.input_tokens, u.output_tokens, u.cache_read_tokens, u.model);
                }
                usage_scanner_init(&s, c->dialect, c->sse);
                for (size_t k = 0; k < n; k++)
                        usage_scanner_feed(&s, c->body + k, 1);
                usage_scanner_result(&s, &u);
                if (!usage_is(&u, c))
                        TEST_FAIL("case %zu (%s) byte by byte: found=%d in=%" PRIu64 " out=%" PRIu64
                                  " model=\"%s\"", i, c->body, u.found, u.input_tokens, u.output_tokens, u.model);
        }
}

TEST(keys_decoded_only_where_they_matter) {
        static const SplitCase cases[] = {
                /* An escaped key is decoded where it can matter ("usag\u0065" is "usage")... */
                { "{\"usag\\u0065\":{\"prompt_\\u0074okens\":5,\"completion_tokens\":2}}", DIALECT_OPENAI, false,
                  0, true, 5, 2, 0, "" },
                { "{\"mod\\u0065l\":\"m\"}", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "m" },
                /* ...and only validated where it cannot. */
                { "{\"choices\":[{\"us\\u0061ge\":{\"prompt_tokens\":9},\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\":1}],"
                  "\"usage\":{\"prompt_tokens\":4}}", DIALECT_OPENAI, false, 0, true, 4, 0, 0, "" },
                { "{\"x\":{\"y\":{\"bad\\q\":1}}}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"x\":{\"y\":{\"bad\\u12g4\":1}}}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                /* Keys of every length of the vocabulary that are not in it. */
                { "{\"usage\":{\"prompt_tokenz\":1,\"output_tokenz\":2,\"cached_tokenz\":3,\"input_tokenz\":4,"
                  "\"completion_tokenz\":5,\"modeL\":6,\"usagE\":7,\"messagE\":8,\"responsE\":9,"
                  "\"cache_read_input_tokenz\":10,\"cache_creation_input_tokenz\":11}}",
                  DIALECT_ANTHROPIC, false, 0, false, 0, 0, 0, "" },
                /* Long keys where names are compared, and where they are not. */
                { "{\"usage\":{\"prompt_tokens_details_and_much_more_than_thirty_two_bytes\":{\"cached_tokens\":3},"
                  "\"prompt_tokens\":8}}", DIALECT_OPENAI, false, 0, true, 8, 0, 0, "" },
        };

        check_split_cases(cases, ELEMENTSOF(cases));
}

TEST(usage_only_at_its_paths) {
        static const SplitCase cases[] = {
                { "{\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}", DIALECT_OPENAI, false, 0,
                  true, 7, 1, 0, "" },
                { "{\"response\":{\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}", DIALECT_ANTHROPIC, false,
                  0, false, 0, 0, 0, "" },
                { "{\"message\":{\"usage\":{\"input_tokens\":7},\"model\":\"c\"}}", DIALECT_ANTHROPIC, false, 0,
                  true, 7, 0, 0, "c" },
                { "{\"message\":{\"usage\":{\"input_tokens\":7},\"model\":\"c\"}}", DIALECT_OPENAI, false, 0,
                  false, 0, 0, 0, "" },
                /* One level too deep, or under the wrong parent. */
                { "{\"usage\":{\"usage\":{\"prompt_tokens\":9}}}", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "" },
                { "{\"x\":{\"usage\":{\"prompt_tokens\":9}},\"y\":[{\"model\":\"no\"}]}", DIALECT_OPENAI, false, 0,
                  false, 0, 0, 0, "" },
                { "{\"usage\":{\"prompt_tokens_details\":{\"x\":{\"cached_tokens\":4}},\"prompt_tokens\":6}}",
                  DIALECT_OPENAI, false, 0, true, 6, 0, 0, "" },
                { "{\"usage\":[{\"prompt_tokens\":9}],\"model\":[\"no\"]}", DIALECT_OPENAI, false, 0, false, 0, 0,
                  0, "" },
                /* Counts under other keys at the same depth, and counts that are not integers. */
                { "{\"usage\":{\"total_tokens\":99,\"prompt_tokens\":1e2,\"completion_tokens\":-1,"
                  "\"input_tokens\":3.0}}", DIALECT_OPENAI, false, 0, true, 3, 0, 0, "" },
                /* A top-level array or scalar holds nothing. */
                { "[{\"usage\":{\"prompt_tokens\":9}}]", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "" },
                { " 12 ", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "" },
                { "\"usage\"", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "" },
        };

        check_split_cases(cases, ELEMENTSOF(cases));
}

TEST(whitespace_literals_and_errors) {
        static const SplitCase cases[] = {
                /* Indentation longer than a vector, tabs, CRs. */
                { "{\r\n\t\"usage\" \t:\r\n                                        {\n"
                  "                                                  \"prompt_tokens\"  :  5  ,\n"
                  "\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\"completion_tokens\":\t2\r\n}   ,\"a\":[ true ,false, null ] }"
                  "                                     \n", DIALECT_OPENAI, false, 0, true, 5, 2, 0, "" },
                /* A control character is not whitespace, in a run of spaces or after it. */
                { "{\"usage\":{\"prompt_tokens\":5}}                \x0b", DIALECT_OPENAI, false, -EBADMSG, true, 5,
                  0, 0, "" },
                { "{\"usage\":{\"prompt_tokens\":5},   \x0c   \"a\":1}", DIALECT_OPENAI, false, -EBADMSG, true, 5, 0,
                  0, "" },
                { "{\"a\":\"tab\tinside\"}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"a\":\"a string that runs past sixteen bytes \x01 before its control byte\"}",
                  DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                /* Literals, whole and not. */
                { "{\"a\":true,\"b\":false,\"c\":null,\"usage\":{\"prompt_tokens\":1}}", DIALECT_OPENAI, false, 0,
                  true, 1, 0, 0, "" },
                { "{\"a\":tru}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"a\":nul", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"a\":falsey}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                /* Structure errors: what the fast path leaves to the state machine. */
                { "{\"a\":[1,2}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"a\" 1}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"a\":1,}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{,}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "[1 2]", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{} {}", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "{\"usage\":{\"prompt_tokens\":5}}]", DIALECT_OPENAI, false, -EBADMSG, true, 5, 0, 0, "" },
                /* A number at the very end has nothing that ends it: not a document (as ever). */
                { "{\"usage\":{\"prompt_tokens\":5", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
                { "5", DIALECT_OPENAI, false, -EBADMSG, false, 0, 0, 0, "" },
        };

        check_split_cases(cases, ELEMENTSOF(cases));
}

TEST(nesting_at_the_limit) {
        char deep[4 * USAGE_SCAN_MAX_DEPTH + 128], *p;
        Usage u;

        /* 64 levels are allowed: 63 arrays inside the top-level object. */
        p = stpcpy(deep, "{\"x\":");
        for (unsigned i = 1; i < USAGE_SCAN_MAX_DEPTH; i++)
                *p++ = '[';
        for (unsigned i = 1; i < USAGE_SCAN_MAX_DEPTH; i++)
                *p++ = ']';
        strcpy(p, ",\"usage\":{\"prompt_tokens\":3}}");
        ASSERT_OK(usage_from_json(DIALECT_OPENAI, deep, strlen(deep), &u));
        ASSERT_EQ(u.input_tokens, 3);

        /* One more is an error, whichever kind of container it is. */
        p = stpcpy(deep, "{\"x\":");
        for (unsigned i = 1; i < USAGE_SCAN_MAX_DEPTH; i++)
                *p++ = '[';
        p = stpcpy(p, "{}");
        for (unsigned i = 1; i < USAGE_SCAN_MAX_DEPTH; i++)
                *p++ = ']';
        strcpy(p, "}");
        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, deep, strlen(deep), &u), EBADMSG);
        p = strchr(deep, '{');
        p = strchr(p + 1, '{');
        p[0] = '[';
        p[1] = ']';
        ASSERT_ERROR(usage_from_json(DIALECT_OPENAI, deep, strlen(deep), &u), EBADMSG);

        /* In a stream, the next event scans again. */
        static const SplitCase cases[] = {
                { "data: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{\"usage\":1}\n\n"
                  "data: {\"usage\":{\"prompt_tokens\":2}}\n\n", DIALECT_OPENAI, true, 0, true, 2, 0, 0, "" },
        };
        check_split_cases(cases, ELEMENTSOF(cases));
}

TEST(model_names) {
        static const SplitCase cases[] = {
                /* Escaped names take the state machine's path, plain ones the fast path: same result. */
                { "{\"model\":\"gpt-\\u00e9\\ud83d\\ude00\"}", DIALECT_OPENAI, false, 0, false, 0, 0, 0,
                  "gpt-\xc3\xa9\xf0\x9f\x98\x80" },
                { "{\"model\":\"gpt-\xc3\xa9\xf0\x9f\x98\x80\"}", DIALECT_OPENAI, false, 0, false, 0, 0, 0,
                  "gpt-\xc3\xa9\xf0\x9f\x98\x80" },
                { "{\"model\":\"\"}", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "" },
                { "{\"model\":\"\",\"response\":{\"model\":\"second\"}}", DIALECT_OPENAI, false, 0, false, 0, 0,
                  0, "second" },
                { "{\"model\":5,\"message\":{\"model\":\"m\"}}", DIALECT_ANTHROPIC, false, 0, false, 0, 0, 0,
                  "m" },
                { "{\"model\":\"a\xff\xc3\"}", DIALECT_OPENAI, false, 0, false, 0, 0, 0, "a??" },
                /* A name longer than the buffer, cut at a character boundary. */
                { "{\"model\":\"0123456789012345678901234567890123456789012345678901234567890123456789"
                  "01234567890123456789012345678901234567890123456789012345\xc3\xa9\"}", DIALECT_OPENAI, false, 0,
                  false, 0, 0, 0, "0123456789012345678901234567890123456789012345678901234567890123456789"
                  "01234567890123456789012345678901234567890123456789012345" },
        };

        check_split_cases(cases, ELEMENTSOF(cases));
}

TEST(sse_fields_and_lines) {
        static const SplitCase cases[] = {
                /* "data:" with and without its space, other fields, comments, CRLF and CR line ends. */
                { "event: x\r\ndata:{\"usage\":{\"prompt_tokens\":4}}\r\n\r\n: comment data: {}\n"
                  "id: 7\rdata:  {\"usage\":{\"completion_tokens\":3}}\r\r", DIALECT_OPENAI, true, 0, true, 4, 3, 0,
                  "" },
                /* Not the data field: a longer or shorter name, one past the fast path's reach, no colon. */
                { "datas: {\"usage\":{\"prompt_tokens\":4}}\n\ndat: {\"usage\":{\"prompt_tokens\":5}}\n\n"
                  "a_very_long_field_name_indeed: {\"usage\":{\"prompt_tokens\":6}}\n\n"
                  "data\n\n{\"usage\":{\"prompt_tokens\":7}}\n\n", DIALECT_OPENAI, true, 0, false, 0, 0, 0, "" },
                /* An event's data lines join with LF: a number ends at a line end. */
                { "data: {\"usage\":{\"prompt_tokens\":12\ndata: ,\"completion_tokens\":3}}\n\n", DIALECT_OPENAI,
                  true, 0, true, 12, 3, 0, "" },
                /* A string cannot span lines; the broken event is dropped, the next one counts. */
                { "data: {\"model\":\"a\ndata: b\"}\n\ndata: {\"model\":\"c\"}\n\n", DIALECT_OPENAI, true, 0,
                  false, 0, 0, 0, "c" },
                /* After an error, the rest of the line and event count for nothing. */
                { "data: {\"a\":x, \"usage\":{\"prompt_tokens\":12}}\ndata: {\"usage\":{\"prompt_tokens\":13}}\n\n",
                  DIALECT_OPENAI, true, 0, false, 0, 0, 0, "" },
                /* Pretty-printed JSON in data lines: whitespace, but no line end, is skipped in runs. */
                { "data: {                    \"usage\" :      {\t\"prompt_tokens\"   :    8   }  }  \n\n",
                  DIALECT_OPENAI, true, 0, true, 8, 0, 0, "" },
        };

        check_split_cases(cases, ELEMENTSOF(cases));
}

DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

/* The scanner fed p in pieces of stride bytes, with or without the SSE line prefilter. */
static void scan_stride(Dialect d, bool sse, bool prefilter, const char *p, size_t n, size_t stride,
                        UsageScanner *ret) {
        usage_scanner_init(ret, d, sse);
        ret->no_prefilter = !prefilter;
        for (size_t i = 0; i < n; i += stride)
                usage_scanner_feed(ret, p + i, MIN(stride, n - i));
}

/* The scanner fed p in two pieces, cut at split. */
static void scan_cut(Dialect d, bool sse, bool prefilter, const char *p, size_t n, size_t split,
                     UsageScanner *ret) {
        usage_scanner_init(ret, d, sse);
        ret->no_prefilter = !prefilter;
        usage_scanner_feed(ret, p, split);
        usage_scanner_feed(ret, p + split, n - split);
}

/* Every result: the raw counts and which were seen, the model's bytes, and the normalised Usage. */
static bool same_results(const UsageScanner *a, const UsageScanner *b) {
        Usage ua, ub;

        usage_scanner_result(a, &ua);
        usage_scanner_result(b, &ub);
        return memcmp(a->values, b->values, sizeof a->values) == 0 && a->seen == b->seen &&
                memcmp(a->model, b->model, sizeof a->model) == 0 &&
                ua.input_tokens == ub.input_tokens && ua.output_tokens == ub.output_tokens &&
                ua.cache_read_tokens == ub.cache_read_tokens && ua.cache_write_tokens == ub.cache_write_tokens &&
                ua.found == ub.found && memcmp(ua.model, ub.model, sizeof ua.model) == 0;
}

/* One body scanned with the prefilter, at several strides and cut in two anywhere, gives what the full
 * scan of the whole gives. Adds to *skipped how many lines the prefilter passed over in the whole. */
static void check_prefilter(const char *name, Dialect d, bool sse, const char *p, size_t n, unsigned *skipped) {
        static const size_t strides[] = { 1, 2, 3, 5, 7, 16, 19, 20, 21, 33, 64, 100, 257, 4096 };
        UsageScanner full, s;

        scan_stride(d, sse, false, p, n, SIZE_MAX, &full);
        scan_stride(d, sse, true, p, n, SIZE_MAX, &s);
        if (!same_results(&full, &s))
                TEST_FAIL("%s (dialect %d, sse %d): the prefilter changes the result", name, d, sse);
        *skipped += s.prefiltered;

        for (size_t i = 0; i < ELEMENTSOF(strides); i++)
                for (int prefilter = 0; prefilter <= 1; prefilter++) {
                        UsageScanner t;

                        scan_stride(d, sse, prefilter, p, n, strides[i], &t);
                        if (!same_results(&full, &t))
                                TEST_FAIL("%s (dialect %d, sse %d): stride %zu, prefilter %d differs", name, d,
                                          sse, strides[i], prefilter);
                }
        for (size_t split = 0; split <= n; split++) {
                UsageScanner t;

                scan_cut(d, sse, true, p, n, split, &t);
                if (!same_results(&full, &t))
                        TEST_FAIL("%s (dialect %d, sse %d): cut at %zu differs with the prefilter", name, d,
                                  sse, split);
        }
}

/* The files of dir (under SRCDIR) whose names end in suffix, through check_prefilter(): with mode, the
 * first byte is the fuzzer's mode byte (bit 0 Anthropic, bit 1 SSE); else each is an SSE stream read
 * in both dialects. Adds to *skipped the lines passed over and to *files the files. */
static void check_prefilter_dir(const char *dir, const char *suffix, bool mode, unsigned *skipped, unsigned *files) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(closedirp) DIR *d = NULL;

        ASSERT_TRUE(asprintf(&path, "%s/%s", getenv("SRCDIR") ?: ".", dir) >= 0);
        d = opendir(path);
        if (!d)
                TEST_FAIL("%s: %m", path);
        for (struct dirent *de; (de = readdir(d));) {
                _cleanup_free_ char *f = NULL, *body = NULL;
                size_t n;

                if (de->d_name[0] == '.' || !endswith(de->d_name, suffix))
                        continue;
                ASSERT_TRUE(asprintf(&f, "%s/%s", path, de->d_name) >= 0);
                ASSERT_OK(read_full_file(f, 1 << 24, &body, &n));
                (*files)++;
                if (mode) {
                        if (n == 0)
                                continue;
                        check_prefilter(de->d_name, body[0] & 1 ? DIALECT_ANTHROPIC : DIALECT_OPENAI,
                                        body[0] & 2, body + 1, n - 1, skipped);
                        /* Also as an SSE stream of the other dialect, whatever the file was. */
                        check_prefilter(de->d_name, body[0] & 1 ? DIALECT_OPENAI : DIALECT_ANTHROPIC, true,
                                        body + 1, n - 1, skipped);
                } else {
                        check_prefilter(de->d_name, DIALECT_OPENAI, true, body, n, skipped);
                        check_prefilter(de->d_name, DIALECT_ANTHROPIC, true, body, n, skipped);
                }
        }
}

TEST(prefilter_changes_no_result) {
        unsigned files = 0, skipped = 0;

        /* The committed fuzz corpus (which has the prefilter's own tricky cases) and the stream fixtures. */
        check_prefilter_dir("tests/fuzz/corpus/usage-scan", "", true, &skipped, &files);
        check_prefilter_dir("tests/fixtures/mock-golden", ".out", false, &skipped, &files);
        check_prefilter_dir("tests/fixtures/translate", ".sse", false, &skipped, &files);
        ASSERT_TRUE(files > 200);
        /* And it did pass over lines: a prefilter that never acts would make the above hold trivially. */
        if (skipped < 500)
                TEST_FAIL("the prefilter passed over only %u lines of %u files", skipped, files);
}

TEST(prefilter_passes_over_only_what_cannot_count) {
        static const struct {
                const char *stream;
                Dialect dialect;
                const char *model;              /* a model already seen before stream */
                unsigned prefiltered;
        } cases[] = {
                /* A content delta, LF and CRLF, and one with "data:" without its space. */
                { "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                  "{\"type\":\"text_delta\",\"text\":\"Hi\\n\\\"there\\\" \\u00e9\"}}\n\n", DIALECT_ANTHROPIC, "",
                  1 },
                { "event: content_block_delta\r\ndata:{\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                  "{\"type\":\"text_delta\",\"text\":\"Hi\"}}\r\n\r\n", DIALECT_ANTHROPIC, "", 1 },
                /* OpenAI chunks: the model counts until there is one; "usage": null never. */
                { "data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"a\"}}],"
                  "\"usage\":null}\n\n", DIALECT_OPENAI, "", 0 },
                { "data: {\"id\":\"c\",\"model\":\"gpt-4o\",\"choices\":[{\"delta\":{\"content\":\"a\"}}],"
                  "\"usage\": null}\n\n", DIALECT_OPENAI, "gpt-4o", 1 },
                { "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n", DIALECT_OPENAI,
                  "gpt-4o", 0 },
                /* "usage" in a string value is no key; followed by a quote it might be. */
                { "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"usage is up\"}}]}\n\n",
                  DIALECT_OPENAI, "m", 1 },
                { "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"usage\"}}]}\n\n",
                  DIALECT_OPENAI, "m", 0 },
                /* An escape that may spell a letter of a key; an escaped backslash before "u0075" too. */
                { "data: {\"id\":\"c\",\"\\u0075sage\":{\"prompt_tokens\":3},\"choices\":[]}\n\n",
                  DIALECT_OPENAI, "m", 0 },
                { "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"\\\\u0075\"}}]}\n\n",
                  DIALECT_OPENAI, "m", 0 },
                /* A line whose event goes on, or whose blank line is not in the buffer, is scanned. */
                { "data: {\"type\":\"message_delta\",\"delta\":{},\ndata: \"usage\":{\"output_tokens\":5}}\n\n",
                  DIALECT_ANTHROPIC, "", 0 },
                { "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{}}\n", DIALECT_ANTHROPIC,
                  "", 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const char *p = cases[i].stream;
                size_t n = strlen(p);
                UsageScanner s, full;

                for (int prefilter = 0; prefilter <= 1; prefilter++) {
                        UsageScanner *t = prefilter ? &s : &full;
                        _cleanup_free_ char *first = NULL;

                        usage_scanner_init(t, cases[i].dialect, true);
                        t->no_prefilter = !prefilter;
                        if (cases[i].model[0]) {
                                ASSERT_TRUE(asprintf(&first, "data: {\"model\":\"%s\"}\n\n", cases[i].model) >= 0);
                                usage_scanner_feed(t, first, strlen(first));
                        }
                        usage_scanner_feed(t, p, n);
                }
                if (s.prefiltered != cases[i].prefiltered || !same_results(&s, &full))
                        TEST_FAIL("case %zu: passed over %u lines, expected %u", i, s.prefiltered,
                                  cases[i].prefiltered);
        }
}
