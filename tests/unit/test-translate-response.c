/* Unit tests for whole-answer translation and upstream error bodies. */
/* These tests dump their own trees, outside any translation (see translate-internal.h). */
#define TRANSLATE_ALLOW_JSON_DUMPS 1
#include "test-translate-util.h"

static json_t *translate(TranslateKind k, const char *body, const char *model, int *ret) {
        _cleanup_free_ char *out = NULL;
        size_t n;

        *ret = translate_response(k, body, strlen(body), model, &out, &n);
        if (*ret < 0)
                return NULL;
        return json_loadb(out, n, 0, NULL);
}

static void check(TranslateKind k, const char *in_name, const char *model, const char *want_name) {
        _cleanup_free_ char *in = fixture(in_name, NULL), *a = NULL, *b = NULL;
        json_t *want = fixture_json(want_name), *got;
        int r;

        if (!in || !want)
                TEST_FAIL("fixtures %s / %s", in_name, want_name);
        got = translate(k, in, model, &r);
        if (!got) {
                json_decref(want);
                TEST_FAIL("%s: %d", in_name, r);
        }
        strip_times(got);
        if (!json_equal(got, want)) {
                a = json_dumps(got, JSON_INDENT(2) | JSON_SORT_KEYS);
                b = json_dumps(want, JSON_INDENT(2) | JSON_SORT_KEYS);
                fprintf(stderr, "got:\n%s\nwant:\n%s\n", a, b);
                json_decref(got);
                json_decref(want);
                TEST_FAIL("%s -> %s differs", in_name, want_name);
        }
        json_decref(got);
        json_decref(want);
}

TEST(chat_answers_to_anthropic) {
        check(TRANSLATE_MESSAGES_TO_CHAT, "responses/chat-tools.json", "claude-client",
              "responses/chat-tools.to-anthropic.json");
        check(TRANSLATE_MESSAGES_TO_CHAT, "responses/chat-reasoning-length.json", "claude-client",
              "responses/chat-reasoning-length.to-anthropic.json");
}

TEST(anthropic_answers_to_chat_and_responses) {
        check(TRANSLATE_CHAT_TO_MESSAGES, "responses/messages-thinking-tools.json", "gpt-client",
              "responses/messages-thinking-tools.to-chat.json");
        check(TRANSLATE_RESPONSES_TO_MESSAGES, "responses/messages-thinking-tools.json", "gpt-client",
              "responses/messages-thinking-tools.to-responses.json");
}

TEST(chat_answers_to_responses) {
        _cleanup_free_ char *in = fixture("responses/chat-tools.json", NULL);
        json_t *got, *output, *usage;
        int r;

        ASSERT_NOT_NULL(in);
        got = translate(TRANSLATE_RESPONSES_TO_CHAT, in, "gpt-client", &r);
        ASSERT_NOT_NULL(got);
        ASSERT_STREQ(jstr(got, "id"), "resp_B9MBs8CjcvOU2jLn4n570S5qMJKcT");
        ASSERT_STREQ(jstr(got, "object"), "response");
        ASSERT_STREQ(jstr(got, "status"), "completed");
        output = json_object_get(got, "output");
        ASSERT_EQ(json_array_size(output), 3);
        ASSERT_STREQ(jstr(json_array_get(output, 0), "type"), "message");
        ASSERT_STREQ(jstr(json_array_get(output, 1), "type"), "function_call");
        ASSERT_STREQ(jstr(json_array_get(output, 1), "call_id"), "call_DdmO9pD3xa9XTPNJ32zg2hcA");
        ASSERT_STREQ(jstr(json_array_get(output, 2), "arguments"), "not json");
        usage = json_object_get(got, "usage");
        ASSERT_EQ(json_integer_value(json_object_get(usage, "input_tokens")), 1117);
        ASSERT_EQ(json_integer_value(
                          json_object_get(json_object_get(usage, "input_tokens_details"), "cached_tokens")),
                  1024);
        ASSERT_TRUE(json_is_false(json_object_get(got, "store")));
        json_decref(got);

        in = mfree(in);
        in = fixture("responses/chat-reasoning-length.json", NULL);
        got = translate(TRANSLATE_RESPONSES_TO_CHAT, in, "gpt-client", &r);
        ASSERT_NOT_NULL(got);
        ASSERT_STREQ(jstr(got, "status"), "incomplete");
        ASSERT_STREQ(jstr(json_object_get(got, "incomplete_details"), "reason"), "max_output_tokens");
        ASSERT_STREQ(jstr(json_array_get(output = json_object_get(got, "output"), 0), "type"), "reasoning");
        ASSERT_EQ(json_integer_value(json_object_get(
                          json_object_get(json_object_get(got, "usage"), "output_tokens_details"),
                          "reasoning_tokens")),
                  15);
        json_decref(got);
}

TEST(stop_sequence_and_refusal) {
        _cleanup_free_ char *in = fixture("responses/messages-stop-sequence.json", NULL);
        json_t *got;
        int r;

        ASSERT_NOT_NULL(in);
        got = translate(TRANSLATE_CHAT_TO_MESSAGES, in, "m", &r);
        ASSERT_STREQ(jstr(json_array_get(json_object_get(got, "choices"), 0), "finish_reason"), "stop");
        json_decref(got);

        got = translate(TRANSLATE_MESSAGES_TO_CHAT,
                        "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":\"1 2\"},"
                        "\"finish_reason\":\"stop\",\"stop_reason\":\"###\"}]}",
                        "m", &r);
        ASSERT_STREQ(jstr(got, "stop_reason"), "stop_sequence");
        ASSERT_STREQ(jstr(got, "stop_sequence"), "###");
        json_decref(got);

        got = translate(
                TRANSLATE_MESSAGES_TO_CHAT,
                "{\"id\":\"x\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":null,"
                "\"refusal\":\"No.\"},\"finish_reason\":\"stop\"}]}",
                "m", &r);
        ASSERT_STREQ(jstr(got, "stop_reason"), "refusal");
        ASSERT_STREQ(jstr(json_array_get(json_object_get(got, "content"), 0), "text"), "No.");
        json_decref(got);

        got = translate(
                TRANSLATE_CHAT_TO_MESSAGES,
                "{\"id\":\"x\",\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"I can't\"}],"
                "\"stop_reason\":\"refusal\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}",
                "m", &r);
        ASSERT_STREQ(jstr(json_array_get(json_object_get(got, "choices"), 0), "finish_reason"),
                     "content_filter");
        json_decref(got);
}

TEST(malformed_upstream_answers) {
        static const struct {
                TranslateKind k;
                const char *body;
        } t[] = {
                { TRANSLATE_MESSAGES_TO_CHAT, "" },
                { TRANSLATE_MESSAGES_TO_CHAT, "<html>" },
                { TRANSLATE_MESSAGES_TO_CHAT, "[]" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"id\":\"x\"}" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"choices\":[{\"message\":\"no\"}]}" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{}}]}}]}" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"choices\":[{\"message\":{\"content\":5}}]}" },
                { TRANSLATE_CHAT_TO_MESSAGES, "{\"type\":\"message\"}" },
                { TRANSLATE_CHAT_TO_MESSAGES, "{\"content\":[{\"type\":\"text\"}]}" },
                { TRANSLATE_RESPONSES_TO_MESSAGES, "{\"content\":[{\"type\":\"tool_use\",\"name\":\"f\"}]}" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                _cleanup_free_ char *out = NULL;
                size_t n;
                int r = translate_response(t[i].k, t[i].body, strlen(t[i].body), "m", &out, &n);
                if (r != -EBADMSG)
                        TEST_FAIL("case %zu: %d", i, r);
        }
}

TEST(empty_choices_is_an_empty_answer) {
        json_t *got;
        int r;

        got = translate(TRANSLATE_MESSAGES_TO_CHAT, "{\"id\":\"chatcmpl-1\",\"choices\":[]}", "m", &r);
        ASSERT_NOT_NULL(got);
        ASSERT_EQ(json_array_size(json_object_get(got, "content")), 0);
        ASSERT_STREQ(jstr(got, "stop_reason"), "end_turn");
        json_decref(got);
}

static json_t *error_of(TranslateKind k, unsigned status, const char *body) {
        _cleanup_free_ char *out = NULL;
        size_t n;

        if (translate_error(k, status, body, strlen(body), &out, &n) < 0)
                return NULL;
        return json_loadb(out, n, 0, NULL);
}

TEST(upstream_errors_in_the_clients_dialect) {
        static const struct {
                TranslateKind k;
                unsigned status;
                const char *body, *type, *code, *message;
        } t[] = {
                /* Anthropic upstream, OpenAI client */
                { TRANSLATE_CHAT_TO_MESSAGES, 529,
                  "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                  "\"message\":\"Overloaded\"},\"request_id\":\"req_1\"}",
                  "server_error", "overloaded_error", "Overloaded" },
                { TRANSLATE_CHAT_TO_MESSAGES, 429,
                  "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
                  "\"message\":\"Slow down\"}}",
                  "rate_limit_error", "rate_limit_exceeded", "Slow down" },
                { TRANSLATE_RESPONSES_TO_MESSAGES, 401,
                  "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\","
                  "\"message\":\"invalid x-api-key\"}}",
                  "authentication_error", "authentication_error", "invalid x-api-key" },
                { TRANSLATE_CHAT_TO_MESSAGES, 400,
                  "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\","
                  "\"message\":\"max_tokens: Field required\"}}",
                  "invalid_request_error", "invalid_request_error", "max_tokens: Field required" },
                { TRANSLATE_CHAT_TO_MESSAGES, 402,
                  "{\"type\":\"error\",\"error\":{\"type\":\"billing_error\","
                  "\"message\":\"pay\"}}",
                  "insufficient_quota", "billing_error", "pay" },
                /* OpenAI upstream, Anthropic client */
                { TRANSLATE_MESSAGES_TO_CHAT, 429,
                  "{\n    \"error\": {\n        \"message\": \"Rate limit reached\",\n"
                  "        \"type\": \"requests\",\n        \"param\": null,\n        \"code\": "
                  "\"rate_limit_exceeded\"\n"
                  "    }\n}\n",
                  "rate_limit_error", NULL, "Rate limit reached" },
                { TRANSLATE_MESSAGES_TO_CHAT, 401,
                  "{\"error\":{\"message\":\"Incorrect API key\",\"type\":"
                  "\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
                  "authentication_error", NULL, "Incorrect API key" },
                { TRANSLATE_MESSAGES_TO_CHAT, 429,
                  "{\"error\":{\"message\":\"quota\",\"type\":\"insufficient_quota\","
                  "\"code\":\"insufficient_quota\"}}",
                  "billing_error", NULL, "quota" },
                { TRANSLATE_MESSAGES_TO_CHAT, 404,
                  "{\"error\":{\"message\":\"The model does not exist\",\"type\":"
                  "\"invalid_request_error\",\"code\":\"model_not_found\"}}",
                  "not_found_error", NULL, "The model does not exist" },
                { TRANSLATE_MESSAGES_TO_CHAT, 503,
                  "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}", "overloaded_error",
                  NULL, "overloaded" },
                { TRANSLATE_MESSAGES_TO_CHAT, 500,
                  "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}", "api_error", NULL, "boom" },
                { TRANSLATE_MESSAGES_TO_CHAT, 400,
                  "{\"object\":\"error\",\"message\":\"vLLM says no\",\"type\":"
                  "\"BadRequestError\",\"code\":400}",
                  "invalid_request_error", NULL, "vLLM says no" },
                { TRANSLATE_MESSAGES_TO_CHAT, 422, "{\"detail\":\"FastAPI says no\"}", "invalid_request_error",
                  NULL, "FastAPI says no" },
                { TRANSLATE_MESSAGES_TO_CHAT, 502, "<html><body>Bad gateway</body></html>", "api_error", NULL,
                  "Upstream returned HTTP 502: <html><body>Bad gateway</body></html>" },
                { TRANSLATE_MESSAGES_TO_CHAT, 504, "", "timeout_error", NULL, "Upstream returned HTTP 504" },
                /* OpenAI on both sides: kept as it is */
                { TRANSLATE_RESPONSES_TO_CHAT, 502,
                  "{\"error\":{\"code\":502,\"message\":\"Bad gateway.\",\"param\":null,"
                  "\"type\":\"cf_bad_gateway\"}}",
                  "cf_bad_gateway", "502", "Bad gateway." },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                json_t *got = error_of(t[i].k, t[i].status, t[i].body);
                const json_t *err = json_object_get(got, "error");

                if (!got)
                        TEST_FAIL("case %zu: no body", i);
                if (translate_client_is_anthropic(t[i].k))
                        ASSERT_STREQ(jstr(got, "type"), "error");
                if (!streq(jstr(err, "type") ?: "", t[i].type) ||
                    !streq(jstr(err, "message") ?: "", t[i].message) ||
                    (t[i].code && !streq(jstr(err, "code") ?: "", t[i].code))) {
                        _cleanup_free_ char *s = json_dumps(got, 0);
                        json_decref(got);
                        TEST_FAIL("case %zu: %s", i, s);
                }
                json_decref(got);
        }
}

TEST(error_bodies_made_here) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        size_t n;

        ASSERT_OK(translate_error_body(TRANSLATE_MESSAGES_TO_CHAT, 400, "temperature too high", &a, &n));
        ASSERT_STREQ(a, "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
                        "\"temperature too high\"}}");
        ASSERT_OK(translate_error_body(TRANSLATE_CHAT_TO_MESSAGES, 400, "n", &b, &n));
        ASSERT_STREQ(b, "{\"error\":{\"message\":\"n\",\"type\":\"invalid_request_error\",\"param\":null,"
                          "\"code\":null}}");
}
