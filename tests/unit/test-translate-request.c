/* Unit tests for request translation: whole requests against hand-written expectations, each drop/refuse rule. */
/* These tests dump their own trees, outside any translation (see translate-internal.h). */
#define TRANSLATE_ALLOW_JSON_DUMPS 1
#include "test-translate-util.h"

typedef struct Out {
        json_t *body;
        TranslatedRequest t;
        char *error;
        int r;
} Out;

static void out_done(Out *o) {
        json_decref(o->body);
        translated_request_done(&o->t);
        free(o->error);
        *o = (Out){};
}

static Out tr(TranslateKind k, const char *body) {
        Out o = {};

        o.r = translate_request(k, body, strlen(body),
                                k == TRANSLATE_MESSAGES_TO_CHAT || k == TRANSLATE_RESPONSES_TO_CHAT
                                        ? "gpt-4o"
                                        : "claude-sonnet-4-5",
                                &o.t, &o.error);
        if (o.r >= 0)
                o.body = json_loadb(o.t.body, o.t.len, 0, NULL);
        return o;
}

static char *dumps(const json_t *j) {
        return json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static void check_fixture(TranslateKind k, const char *in_name, const char *want_name,
                          const char *want_dropped) {
        _cleanup_free_ char *in = fixture(in_name, NULL), *got_s = NULL, *want_s = NULL;
        json_t *want = fixture_json(want_name);
        Out o;

        if (!in || !want) {
                TEST_FAIL("fixtures %s / %s", in_name, want_name);
        }
        o = tr(k, in);
        if (o.r < 0) {
                TEST_FAIL("%s: %d %s", in_name, o.r, o.error ?: "");
        }
        if (!json_equal(o.body, want)) {
                got_s = dumps(o.body);
                want_s = dumps(want);
                fprintf(stderr, "got:\n%s\nwant:\n%s\n", got_s, want_s);
                json_decref(want);
                out_done(&o);
                TEST_FAIL("%s -> %s differs", in_name, want_name);
        }
        if (!streq(o.t.dropped ?: "", want_dropped)) {
                fprintf(stderr, "dropped: %s\n", o.t.dropped ?: "(none)");
                json_decref(want);
                out_done(&o);
                TEST_FAIL("%s: dropped '%s', want '%s'", in_name, o.t.dropped ?: "", want_dropped);
        }
        /* The estimate is made for an Anthropic client's stream only: nothing else reads it. */
        {
                json_t *req = json_loads(in, 0, NULL);
                bool wanted = translate_client_is_anthropic(k) && json_is_true(json_object_get(req, "stream"));

                json_decref(req);
                if (wanted)
                        ASSERT_TRUE(o.t.input_tokens_estimate > 0);
                else
                        ASSERT_EQ(o.t.input_tokens_estimate, 0U);
        }
        json_decref(want);
        out_done(&o);
}

TEST(no_estimate_for_an_anthropic_request_without_a_stream) {
        Out o = tr(TRANSLATE_MESSAGES_TO_CHAT, "{\"model\":\"m\",\"max_tokens\":8,\"messages\":[{\"role\":\"user\","
                                               "\"content\":\"Say hi, in many words.\"}]}");

        ASSERT_OK(o.r);
        ASSERT_EQ(o.t.input_tokens_estimate, 0U);
        out_done(&o);
        o = tr(TRANSLATE_MESSAGES_TO_CHAT, "{\"model\":\"m\",\"max_tokens\":8,\"stream\":true,\"messages\":"
                                           "[{\"role\":\"user\",\"content\":\"Say hi, in many words.\"}]}");
        ASSERT_OK(o.r);
        ASSERT_TRUE(o.t.input_tokens_estimate > 0);
        out_done(&o);
}

TEST(messages_request_to_chat) {
        check_fixture(TRANSLATE_MESSAGES_TO_CHAT, "requests/messages-full.json",
                      "requests/messages-full.to-chat.json", "top_k,cache_control,thinking");
}

TEST(chat_request_to_messages) {
        check_fixture(TRANSLATE_CHAT_TO_MESSAGES, "requests/chat-full.json",
                      "requests/chat-full.to-messages.json", "seed,messages.name,image_url.detail");
}

TEST(responses_request_to_chat_and_messages) {
        check_fixture(TRANSLATE_RESPONSES_TO_CHAT, "requests/responses-full.json",
                      "requests/responses-full.to-chat.json", "metadata,reasoning");
        check_fixture(TRANSLATE_RESPONSES_TO_MESSAGES, "requests/responses-full.json",
                      "requests/responses-full.to-messages.json", "metadata,reasoning_effort");
}

TEST(stream_flags) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                   "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
        ASSERT_OK(o.r);
        ASSERT_TRUE(o.t.stream && o.t.include_usage);
        /* Anthropic always streams usage: nothing to ask for upstream. */
        ASSERT_NULL(json_object_get(o.body, "stream_options"));
        ASSERT_TRUE(json_is_true(json_object_get(o.body, "stream")));
        out_done(&o);

        o = tr(TRANSLATE_MESSAGES_TO_CHAT, "{\"model\":\"x\",\"max_tokens\":10,\"stream\":true,"
                                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}");
        ASSERT_OK(o.r);
        ASSERT_TRUE(o.t.stream && !o.t.include_usage);
        ASSERT_TRUE(json_is_true(json_object_get(json_object_get(o.body, "stream_options"), "include_usage")));
        out_done(&o);
}

TEST(max_tokens_default_and_thinking_budget) {
        static const struct {
                const char *extra;
                int64_t max_tokens, budget;     /* budget 0: no thinking */
                const char *dropped;
        } t[] = {
                { "", TRANSLATE_DEFAULT_MAX_TOKENS, 0, "" },
                { ",\"max_tokens\":300", 300, 0, "" },
                { ",\"max_completion_tokens\":500,\"max_tokens\":300", 500, 0, "" },
                { ",\"reasoning_effort\":\"medium\"", TRANSLATE_DEFAULT_MAX_TOKENS + 8192, 8192, "" },
                { ",\"reasoning_effort\":\"minimal\"", TRANSLATE_DEFAULT_MAX_TOKENS + 1024, 1024, "" },
                { ",\"reasoning_effort\":\"high\",\"max_completion_tokens\":30000", 30000, 24576, "" },
                { ",\"reasoning_effort\":\"high\",\"max_completion_tokens\":1500", 1500, 1499, "" },
                { ",\"reasoning_effort\":\"low\",\"max_completion_tokens\":1000", 1000, 0, "reasoning_effort" },
                { ",\"reasoning_effort\":\"none\"", TRANSLATE_DEFAULT_MAX_TOKENS, 0, "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                _cleanup_free_ char *body = NULL;
                const json_t *thinking;
                Out o;

                ASSERT_TRUE(
                        asprintf(&body,
                                 "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]%s}",
                                 t[i].extra) > 0);
                o = tr(TRANSLATE_CHAT_TO_MESSAGES, body);
                ASSERT_OK(o.r);
                thinking = json_object_get(o.body, "thinking");
                if (json_integer_value(json_object_get(o.body, "max_tokens")) != t[i].max_tokens ||
                    json_integer_value(json_object_get(thinking, "budget_tokens")) != t[i].budget ||
                    (t[i].budget > 0) != (thinking != NULL) || !streq(o.t.dropped ?: "", t[i].dropped))
                        TEST_FAIL("case %zu: %s (dropped %s)", i, o.t.body, o.t.dropped ?: "");
                out_done(&o);
        }
}

TEST(thinking_to_reasoning_effort) {
        static const struct {
                const char *thinking, *want;
        } t[] = {
                { "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":1024}", "low" },
                { "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048}", "low" },
                { "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":8192}", "medium" },
                { "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":24576}", "high" },
                { "\"thinking\":{\"type\":\"adaptive\"}", "medium" },
                { "\"thinking\":{\"type\":\"adaptive\"},\"output_config\":{\"effort\":\"max\"}", "xhigh" },
                { "\"output_config\":{\"effort\":\"low\"}", "low" },
                { "\"thinking\":{\"type\":\"disabled\"}", NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                _cleanup_free_ char *body = NULL;
                Out o;

                ASSERT_TRUE(asprintf(&body,
                                     "{\"model\":\"x\",\"max_tokens\":30000,\"messages\":[{\"role\":\"user\","
                                     "\"content\":\"hi\"}],%s}",
                                     t[i].thinking) > 0);
                o = tr(TRANSLATE_MESSAGES_TO_CHAT, body);
                ASSERT_OK(o.r);
                if (t[i].want)
                        ASSERT_STREQ(json_string_value(json_object_get(o.body, "reasoning_effort")), t[i].want);
                else
                        ASSERT_NULL(json_object_get(o.body, "reasoning_effort"));
                out_done(&o);
        }
}

TEST(tool_choice_both_ways) {
        static const struct {
                const char *anthropic, *openai;
        } t[] = {
                { "{\"type\":\"auto\"}", "\"auto\"" },
                { "{\"type\":\"any\"}", "\"required\"" },
                { "{\"type\":\"none\"}", "\"none\"" },
                { "{\"type\":\"tool\",\"name\":\"f\"}",
                  "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}" },
        };
        const char *tools_a = "[{\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]";
        const char *tools_o =
                "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]";

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                _cleanup_free_ char *a = NULL, *b = NULL;
                json_t *want_o = json_loads(t[i].openai, JSON_DECODE_ANY, NULL),
                       *want_a = json_loads(t[i].anthropic, 0, NULL);
                Out o;

                ASSERT_TRUE(asprintf(&a,
                                     "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
                                     "\"content\":"
                                     "\"hi\"}],\"tools\":%s,\"tool_choice\":%s}",
                                     tools_a, t[i].anthropic) > 0);
                o = tr(TRANSLATE_MESSAGES_TO_CHAT, a);
                ASSERT_OK(o.r);
                ASSERT_TRUE(json_equal(json_object_get(o.body, "tool_choice"), want_o));
                ASSERT_NULL(json_object_get(o.body, "parallel_tool_calls"));
                out_done(&o);

                ASSERT_TRUE(asprintf(&b,
                                     "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                                     "\"tools\":%s,\"tool_choice\":%s}",
                                     tools_o, t[i].openai) > 0);
                o = tr(TRANSLATE_CHAT_TO_MESSAGES, b);
                ASSERT_OK(o.r);
                if (!json_equal(json_object_get(o.body, "tool_choice"), want_a))
                        TEST_FAIL("case %zu: %s", i, o.t.body);
                out_done(&o);
                json_decref(want_o);
                json_decref(want_a);
        }
}

TEST(parallel_tool_use_both_ways) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                   "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                   "\"parallel_tool_calls\":false}");
        json_t *tc;

        ASSERT_OK(o.r);
        tc = json_object_get(o.body, "tool_choice");
        ASSERT_STREQ(json_string_value(json_object_get(tc, "type")), "auto");
        ASSERT_TRUE(json_is_true(json_object_get(tc, "disable_parallel_tool_use")));
        out_done(&o);

        o = tr(TRANSLATE_MESSAGES_TO_CHAT,
               "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
               "\"content\":\"hi\"}],\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],"
               "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}}");
        ASSERT_OK(o.r);
        ASSERT_TRUE(json_is_false(json_object_get(o.body, "parallel_tool_calls")));
        out_done(&o);
}

TEST(user_and_stop) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                   "\"user\":\"u1\",\"stop\":\"###\"}");

        ASSERT_OK(o.r);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(o.body, "metadata"), "user_id")), "u1");
        ASSERT_STREQ(json_string_value(json_array_get(json_object_get(o.body, "stop_sequences"), 0)), "###");
        out_done(&o);
}

TEST(json_mode) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"JSON!\"}],"
                   "\"response_format\":{\"type\":\"json_object\"}}");

        ASSERT_OK(o.r);
        ASSERT_STREQ(o.t.dropped, "response_format");
        ASSERT_NULL(json_object_get(o.body, "output_config"));
        out_done(&o);

        o = tr(TRANSLATE_MESSAGES_TO_CHAT,
               "{\"model\":\"x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\","
               "\"content\":\"hi\"}],\"output_config\":{\"format\":{\"type\":\"json_schema\","
               "\"schema\":{\"type\":\"object\"}}}}");
        ASSERT_OK(o.r);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(o.body, "response_format"), "type")),
                     "json_schema");
        ASSERT_TRUE(json_is_true(json_object_get(
                json_object_get(json_object_get(o.body, "response_format"), "json_schema"), "strict")));
        out_done(&o);

        o = tr(TRANSLATE_RESPONSES_TO_CHAT, "{\"model\":\"x\",\"input\":\"hi\",\"text\":{\"format\":{\"type\":"
                                            "\"json_schema\",\"name\":\"n\",\"schema\":{\"type\":\"object\"},"
                                            "\"strict\":true}}}");
        ASSERT_OK(o.r);
        ASSERT_STREQ(
                json_string_value(json_object_get(
                        json_object_get(json_object_get(o.body, "response_format"), "json_schema"), "name")),
                "n");
        out_done(&o);
}

TEST(tool_results_with_images_move_to_a_user_message) {
        Out o = tr(
                TRANSLATE_MESSAGES_TO_CHAT,
                "{\"model\":\"x\",\"max_tokens\":5,\"messages\":["
                "{\"role\":\"user\",\"content\":\"look\"},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"shot\","
                "\"input\":{}}]},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t1\",\"content\":["
                "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image\",\"source\":{\"type\":\"base64\","
                "\"media_type\":\"image/png\",\"data\":\"AAAA\"}},{\"type\":\"text\",\"text\":\"b\"}]}]}]}");
        const json_t *msgs;

        ASSERT_OK(o.r);
        msgs = json_object_get(o.body, "messages");
        ASSERT_EQ(json_array_size(msgs), 4);
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(msgs, 2), "role")), "tool");
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(msgs, 2), "content")), "a\n\nb");
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(msgs, 3), "role")), "user");
        ASSERT_CONTAINS(o.t.body, "Content returned by tool call t1:");
        ASSERT_CONTAINS(o.t.body, "data:image/png;base64,AAAA");
        out_done(&o);
}

TEST(tool_messages_merge_into_one_user_turn) {
        Out o = tr(
                TRANSLATE_CHAT_TO_MESSAGES,
                "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
                "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
                "\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}},{\"id\":\"c2\",\"type\":\"function\","
                "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r1\"},"
                "{\"role\":\"tool\",\"tool_call_id\":\"c2\",\"content\":\"r2\"},"
                "{\"role\":\"assistant\",\"content\":\"done\"},{\"role\":\"user\",\"content\":\"ok\"}]}");
        const json_t *msgs, *turn;

        ASSERT_OK(o.r);
        msgs = json_object_get(o.body, "messages");
        ASSERT_EQ(json_array_size(msgs), 5);
        /* The empty text of the assistant turn is left out (Anthropic rejects empty text blocks). */
        ASSERT_EQ(json_array_size(json_object_get(json_array_get(msgs, 1), "content")), 2);
        turn = json_object_get(json_array_get(msgs, 2), "content");
        ASSERT_EQ(json_array_size(turn), 2);
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(turn, 1), "tool_use_id")), "c2");
        out_done(&o);
}

TEST(responses_items) {
        Out o = tr(TRANSLATE_RESPONSES_TO_CHAT,
                   "{\"model\":\"x\",\"instructions\":\"be "
                   "nice\",\"input\":[{\"type\":\"function_call\",\"call_id\":\"c1\","
                   "\"name\":\"f\",\"arguments\":\"{}\"},{\"type\":\"function_call\",\"call_id\":\"c2\","
                   "\"name\":\"g\","
                   "\"arguments\":\"{}\"},{\"type\":\"function_call_output\",\"call_id\":\"c1\",\"output\":[{"
                   "\"type\":"
                   "\"input_text\",\"text\":\"x\"}]},{\"type\":\"function_call_output\",\"call_id\":\"c2\","
                   "\"output\":\"y\"}],"
                   "\"store\":false,\"stream\":true}");
        const json_t *msgs;

        ASSERT_OK(o.r);
        msgs = json_object_get(o.body, "messages");
        ASSERT_EQ(json_array_size(msgs), 4);
        ASSERT_EQ(json_array_size(json_object_get(json_array_get(msgs, 1), "tool_calls")), 2);
        ASSERT_TRUE(json_is_null(json_object_get(json_array_get(msgs, 1), "content")));
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(msgs, 2), "content")), "x");
        ASSERT_TRUE(json_is_true(json_object_get(json_object_get(o.body, "stream_options"), "include_usage")));
        ASSERT_FALSE(o.t.include_usage);
        out_done(&o);

        o = tr(TRANSLATE_RESPONSES_TO_MESSAGES, "{\"model\":\"x\",\"input\":\"hello\"}");
        ASSERT_OK(o.r);
        ASSERT_EQ(json_integer_value(json_object_get(o.body, "max_tokens")), TRANSLATE_DEFAULT_MAX_TOKENS);
        ASSERT_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(json_array_get(
                     json_object_get(o.body, "messages"), 0), "content"), 0), "text")), "hello");
        out_done(&o);
}

TEST(refusals) {
        static const struct {
                TranslateKind k;
                const char *body, *message;
        } t[] = {
                { TRANSLATE_MESSAGES_TO_CHAT, "not json", "not a valid JSON object" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"model\":\"x\",\"messages\":[]}", "max_tokens" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"model\":\"x\",\"max_tokens\":1}", "messages" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
                  "{\"role\":\"assistant\",\"content\":\"The answer is\"}]}",
                  "prefill" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"max_tokens\":1,\"messages\":[],\"tools\":[{\"type\":\"web_search_20250305\","
                  "\"name\":\"web_search\"}]}",
                  "server tool" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"max_tokens\":1,\"messages\":[],\"mcp_servers\":[]}",
                  "mcp_servers" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                  "\"tool_use_id\":\"t\",\"content\":\"r\"}]}],\"thread\":{\"type\":\"continue\","
                  "\"previous_message_id\":\"msg_1\"}}", "thread" },
                { TRANSLATE_MESSAGES_TO_CHAT, "{\"max_tokens\":1,\"messages\":[],\"thread\":{\"type\":\"create\"}}",
                  "thread" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"image\",\"source\":{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
                  "file" },
                { TRANSLATE_MESSAGES_TO_CHAT,
                  "{\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                  "\"search_result\"}]}]}",
                  "search_result" },
                { TRANSLATE_CHAT_TO_MESSAGES, "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"n\":2}",
                  "'n'" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"temperature\":1.5}", "temperature" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"audio\":{}}", "audio" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"modalities\":"
                  "[\"text\",\"audio\"]}",
                  "modalities" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                  "\"web_search_options\":{}}",
                  "web_search_options" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],\"tools\":[{\"type\":"
                  "\"custom\",\"custom\":{\"name\":\"c\"}}]}",
                  "custom" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
                  "\"content\":\"b\"}]}",
                  "final assistant" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"assistant\",\"tool_calls\":[{\"id\":\"c\","
                  "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{oops\"}}]},"
                  "{\"role\":\"user\",\"content\":\"x\"}]}",
                  "arguments" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"input_audio\","
                  "\"input_audio\":{}}]}]}",
                  "input_audio" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":"
                  "{\"file_id\":\"file-1\"}}]}]}",
                  "file_id" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"function\",\"name\":\"f\",\"content\":\"x\"}]}", "function" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"file\",\"file\":{\"file_data\":"
                  "\"data:text/csv;base64,YSxi\"}}]}]}", "only PDF" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":\"a\",\"previous_response_id\":\"resp_1\"}",
                  "previous_response_id" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":\"a\",\"store\":true}", "store" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":\"a\",\"background\":true}", "background" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":\"a\",\"conversation\":\"conv_1\"}",
                  "conversation" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":\"a\",\"tools\":[{\"type\":\"web_search\"}]}",
                  "web_search" },
                { TRANSLATE_RESPONSES_TO_CHAT, "{\"input\":[{\"type\":\"item_reference\",\"id\":\"x\"}]}",
                  "item_reference" },
                { TRANSLATE_RESPONSES_TO_MESSAGES,
                  "{\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"c\","
                  "\"output\":[{\"type\":\"input_image\",\"image_url\":\"u\"}]}]}",
                  "only text" },
                { TRANSLATE_RESPONSES_TO_MESSAGES, "{\"input\":\"a\",\"temperature\":1.7}", "temperature" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                Out o = tr(t[i].k, t[i].body);

                if (o.r != -EINVAL || !o.error || !strstr(o.error, t[i].message))
                        TEST_FAIL("case %zu: %d %s (want '%s')", i, o.r, o.error ?: "(no message)",
                                  t[i].message);
                out_done(&o);
        }
}

TEST(drops_are_listed_defaults_are_not) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"model\":\"x\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
                   "\"store\":false,\"logprobs\":false,\"presence_penalty\":0,"
                   "\"frequency_penalty\":0.5,\"logit_bias\":{\"1\":2},\"seed\":1,"
                   "\"service_tier\":\"flex\",\"verbosity\":\"low\"}");

        ASSERT_OK(o.r);
        ASSERT_STREQ(o.t.dropped, "frequency_penalty,logit_bias,seed,verbosity,service_tier");
        out_done(&o);

        o = tr(TRANSLATE_MESSAGES_TO_CHAT,
               "{\"max_tokens\":3,\"messages\":[{\"role\":\"user\",\"content\":\"a\"}],"
               "\"service_tier\":\"auto\",\"inference_geo\":\"us\"}");
        ASSERT_OK(o.r);
        ASSERT_STREQ(o.t.dropped, "inference_geo");
        out_done(&o);
}

TEST(tool_ids_are_made_acceptable_to_anthropic_consistently) {
        Out o = tr(TRANSLATE_CHAT_TO_MESSAGES,
                   "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"tool_"
                   "calls\":[{\"id\":"
                   "\"functions.get:0\",\"type\":\"function\",\"function\":{\"name\":\"get\",\"arguments\":\"{}"
                   "\"}}]},"
                   "{\"role\":\"tool\",\"tool_call_id\":\"functions.get:0\",\"content\":\"r\"}]}");

        ASSERT_OK(o.r);
        ASSERT_CONTAINS(o.t.body, "\"id\":\"functions_get_0\"");
        ASSERT_CONTAINS(o.t.body, "\"tool_use_id\":\"functions_get_0\"");
        out_done(&o);
}

TEST(invalid_kind) {
        TranslatedRequest t = {};
        char *e = NULL;

        ASSERT_ERROR(translate_request(_TRANSLATE_KIND_MAX, "{}", 2, "m", &t, &e), EINVAL);
        ASSERT_NULL(e);
        ASSERT_NULL(translate_upstream_path(_TRANSLATE_KIND_INVALID));
        ASSERT_STREQ(translate_upstream_path(TRANSLATE_MESSAGES_TO_CHAT), "/chat/completions");
        ASSERT_STREQ(translate_upstream_path(TRANSLATE_RESPONSES_TO_MESSAGES), "/messages");
        ASSERT_STREQ(translate_kind_to_string(TRANSLATE_RESPONSES_TO_CHAT), "responses-to-chat");
}

TEST(bodies_with_too_many_values_are_refused) {
        _cleanup_(buf_done) Buf b = {};
        TranslatedRequest t = {};
        char *error = NULL;
        /* Each text block is three values (the object, its type, its text). */
        size_t blocks = TRANSLATE_JSON_MAX_VALUES / 3 + 1;

        ASSERT_OK(buf_append_str(&b, "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":["));
        for (size_t i = 0; i < blocks; i++)
                ASSERT_OK(buf_append_str(&b, i ? ",{\"type\":\"text\",\"text\":\"x\"}" : "{\"type\":\"text\",\"text\":\"x\"}"));
        ASSERT_OK(buf_append_str(&b, "]}]}"));
        ASSERT_ERROR(translate_request(TRANSLATE_MESSAGES_TO_CHAT, (const char *) buf_data(&b), buf_len(&b), "up",
                                       &t, &error), EINVAL);
        ASSERT_NOT_NULL(error);
        ASSERT_CONTAINS(error, "more than 200000 JSON values");
        free(error);

        /* The same shape under the limit translates. */
        buf_clear(&b);
        ASSERT_OK(buf_append_str(&b, "{\"model\":\"m\",\"max_tokens\":1,\"messages\":[{\"role\":\"user\",\"content\":["));
        for (size_t i = 0; i < 1000; i++)
                ASSERT_OK(buf_append_str(&b, i ? ",{\"type\":\"text\",\"text\":\"x\"}" : "{\"type\":\"text\",\"text\":\"x\"}"));
        ASSERT_OK(buf_append_str(&b, "]}]}"));
        error = NULL;
        ASSERT_OK(translate_request(TRANSLATE_MESSAGES_TO_CHAT, (const char *) buf_data(&b), buf_len(&b), "up", &t,
                                    &error));
        translated_request_done(&t);
}

/* Texts reach the upstream shared with the client's tree or joined without jansson's UTF-8 check: the bytes
 * must still be exactly what a copy made, non-ASCII and escapes included. */
TEST(shared_and_joined_texts_keep_their_bytes) {
        static const char body[] =
                "{\"model\":\"m\",\"max_tokens\":8,\"messages\":["
                "{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                "\"text\":\"caf\\u00e9 \\ud83d\\ude42 \\\"q\\\"\"}]},"
                "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\\u00e91\",\"name\":\"f\","
                "\"input\":{\"k\":\"\\u65e5\\n\"}}]},"
                "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"t\\u00e91\","
                "\"is_error\":true,\"content\":\"\\u2192 failed\"},"
                "{\"type\":\"tool_result\",\"tool_use_id\":\"x\",\"content\":\"na\\u00efve\"}]}]}";
        static const char want[] =
                "{\"model\":\"up\",\"messages\":["
                "{\"role\":\"user\",\"content\":\"café 🙂 \\\"q\\\"\"},"
                "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t__1\",\"type\":\"function\","
                "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"k\\\":\\\"日\\\\n\\\"}\"}}]},"
                "{\"role\":\"tool\",\"tool_call_id\":\"t__1\",\"content\":\"Error: → failed\"},"
                "{\"role\":\"tool\",\"tool_call_id\":\"x\",\"content\":\"naïve\"}],"
                "\"max_completion_tokens\":8}";
        TranslatedRequest t = {};
        char *error = NULL;

        ASSERT_OK(translate_request(TRANSLATE_MESSAGES_TO_CHAT, body, strlen(body), "up", &t, &error));
        ASSERT_EQ(t.len, strlen(want));
        ASSERT_TRUE(memcmp(t.body, want, t.len) == 0);
        translated_request_done(&t);
}

TEST(json_object_build_takes_its_values) {
        json_t *held = json_string("kept"), *o;
        _cleanup_free_ char *s = NULL;
        size_t n;

        o = json_object_build("b", json_integer(1), "a", json_incref(held), NULL);
        ASSERT_NOT_NULL(o);
        ASSERT_OK(json_dump_to_string(o, &s, &n));
        ASSERT_STREQ(s, "{\"b\":1,\"a\":\"kept\"}");     /* in the order given, like json_pack() */
        json_decref(o);
        ASSERT_EQ(held->refcount, (size_t) 1);

        /* A failed constructor (NULL) anywhere: no object, and the other values are released. */
        ASSERT_NULL(json_object_build("a", json_incref(held), "b", (json_t *) NULL, "c", json_incref(held), NULL));
        ASSERT_EQ(held->refcount, (size_t) 1);
        json_decref(held);
}
