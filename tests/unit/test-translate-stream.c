/* Unit tests for streaming translation: the SSE parser, each dialect's event grammar, splits, cuts, bounds. */
/* These tests dump their own trees, outside any translation (see translate-internal.h). */
#define TRANSLATE_ALLOW_JSON_DUMPS 1
#include "test-translate-util.h"

/* ---- the SSE parser ---- */

typedef struct Collected {
        char text[4096];
        unsigned n;
} Collected;

static int collect(void *userdata, const char *event, const char *data, size_t n) {
        Collected *c = userdata;
        size_t len = strlen(c->text);

        snprintf(c->text + len, sizeof c->text - len, "[%s|%.*s]", event, (int) n, data);
        c->n++;
        return 0;
}

static void parse_all(const char *s, size_t step, Collected *c) {
        SseParser p;
        size_t n = strlen(s);

        *c = (Collected){};
        sse_parser_init(&p, 1024);
        for (size_t off = 0; off < n; off += step)
                (void) sse_parser_feed(&p, s + off, MIN(step, n - off), collect, c);
        (void) sse_parser_finish(&p, collect, c);
        sse_parser_done(&p);
}

TEST(sse_parser_line_ends_fields_and_splits) {
        const char *s = "\xef\xbb\xbf: comment\r\nevent: a\r\ndata: x\r\ndata:y\r\n\r\n"
                        "data: z\rid: 7\rretry: 5\r\rdata:  two spaces\n\nevent: lonely\n\ndata: [DONE]\n\n";
        const char *want = "[a|x\ny][|z][| two spaces][|[DONE]]";
        Collected c;

        for (size_t step = 1; step <= strlen(s); step++) {
                parse_all(s, step, &c);
                if (!streq(c.text, want))
                        TEST_FAIL("step %zu: got %s", step, c.text);
        }
}

TEST(sse_parser_last_event_without_blank_line) {
        Collected c;

        parse_all("data: a\n\ndata: b", 3, &c);
        ASSERT_STREQ(c.text, "[|a][|b]");
        parse_all("data: a\n\ndata: b\n", 100, &c);
        ASSERT_STREQ(c.text, "[|a][|b]");
}

TEST(sse_parser_bounds) {
        SseParser p;
        Collected c = {};
        char big[2000];

        memset(big, 'x', sizeof big);
        sse_parser_init(&p, 1024);
        ASSERT_ERROR(sse_parser_feed(&p, big, sizeof big, collect, &c), E2BIG);
        sse_parser_done(&p);

        /* Many short data lines add up to one big event. */
        sse_parser_init(&p, 1024);
        for (int i = 0; i < 200; i++) {
                int r = sse_parser_feed(&p, "data: 0123456789\n", 17, collect, &c);
                if (r < 0) {
                        ASSERT_EQ(r, -E2BIG);
                        ASSERT_TRUE(i > 50);
                        sse_parser_done(&p);
                        return;
                }
        }
        sse_parser_done(&p);
        TEST_FAIL("no bound on the event size");
}

/* ---- fixtures ---- */

typedef struct Case {
        const char *fixture;
        TranslateKind kinds[2];
        const char *end;                /* "complete" or "error" */
        int finish;                     /* stream_translator_finish()'s return */
} Case;

#define CHAT_KINDS { TRANSLATE_MESSAGES_TO_CHAT, TRANSLATE_RESPONSES_TO_CHAT }
#define MESSAGES_KINDS { TRANSLATE_CHAT_TO_MESSAGES, TRANSLATE_RESPONSES_TO_MESSAGES }

static const Case cases[] = {
        { "chat-text.sse", CHAT_KINDS, "complete", 0 },
        { "chat-tools-parallel.sse", CHAT_KINDS, "complete", 0 },
        { "chat-tools-interleaved.sse", CHAT_KINDS, "complete", 0 },
        { "chat-reasoning.sse", CHAT_KINDS, "complete", 0 },
        { "chat-length.sse", CHAT_KINDS, "complete", 0 },
        { "chat-stop-sequence.sse", CHAT_KINDS, "complete", 0 },
        { "chat-refusal.sse", CHAT_KINDS, "complete", 0 },
        { "chat-empty.sse", CHAT_KINDS, "complete", 0 },
        { "chat-error.sse", CHAT_KINDS, "error", 0 },
        { "chat-cut.sse", CHAT_KINDS, "error", -EPIPE },
        { "messages-text.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-tools.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-thinking.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-redacted.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-stop-sequence.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-max-tokens.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-empty.sse", MESSAGES_KINDS, "complete", 0 },
        { "messages-error.sse", MESSAGES_KINDS, "error", 0 },
        { "messages-cut.sse", MESSAGES_KINDS, "error", -EPIPE },
};

static const char *client_suffix(TranslateKind k) {
        return k == TRANSLATE_MESSAGES_TO_CHAT   ? "to-anthropic"
               : k == TRANSLATE_CHAT_TO_MESSAGES ? "to-chat"
                                                 : "to-responses";
}

TEST(streams_follow_each_dialects_grammar) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t j = 0; j < 2; j++) {
                        _cleanup_free_ char *in = NULL;
                        StreamResult r = {};
                        const char *end = NULL, *why;
                        size_t n;

                        in = fixture(cases[i].fixture, &n);
                        ASSERT_NOT_NULL(in);
                        for (int usage = 0; usage <= 1; usage++) {
                                TranslateKind k = cases[i].kinds[j];

                                ASSERT_OK(run_stream(k, in, n, 0, usage, true, &r));
                                why = validate_stream(k, r.out, r.len, usage, &end);
                                if (why)
                                        TEST_FAIL("%s %s: %s\n%s", cases[i].fixture, client_suffix(k), why,
                                                  r.out);
                                if (!streq(end, cases[i].end) || r.finish != cases[i].finish || r.feed != 0)
                                        TEST_FAIL("%s %s: ended '%s' finish %d feed %d", cases[i].fixture,
                                                  client_suffix(k), end, r.finish, r.feed);
                                stream_result_done(&r);
                        }
                }
}

/* The outputs are pinned; GATE_TRANSLATE_UPDATE=1 rewrites them (then read the diff). */
TEST(streams_match_golden_transcripts) {
        bool update = getenv("GATE_TRANSLATE_UPDATE") != NULL;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t j = 0; j < 2; j++) {
                        TranslateKind k = cases[i].kinds[j];
                        _cleanup_free_ char *in = NULL, *name = NULL, *want = NULL;
                        StreamResult r = {};
                        size_t n, wn = 0;

                        in = fixture(cases[i].fixture, &n);
                        ASSERT_NOT_NULL(in);
                        ASSERT_OK(run_stream(k, in, n, 0, true, true, &r));
                        ASSERT_TRUE(asprintf(&name, "golden/%s.%s", cases[i].fixture, client_suffix(k)) > 0);
                        if (update) {
                                _cleanup_free_ char *p = fixture_path(name);
                                FILE *f = fopen(p, "we");
                                ASSERT_NOT_NULL(f);
                                fwrite(r.out, 1, r.len, f);
                                fclose(f);
                        } else {
                                want = fixture(name, &wn);
                                if (!want || wn != r.len || memcmp(want, r.out, wn) != 0)
                                        TEST_FAIL("%s differs:\n%s", name, r.out);
                        }
                        stream_result_done(&r);
                }
}

/* Property: the upstream stream split at any byte boundary, or fed a byte at a time, gives the same output. */
TEST(streams_split_anywhere_give_identical_output) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (size_t j = 0; j < 2; j++) {
                        TranslateKind k = cases[i].kinds[j];
                        _cleanup_free_ char *in = NULL;
                        StreamResult whole = {}, part = {};
                        size_t n;

                        in = fixture(cases[i].fixture, &n);
                        ASSERT_NOT_NULL(in);
                        ASSERT_OK(run_stream(k, in, n, 0, true, true, &whole));
                        for (size_t split = 1; split < n; split++) {
                                ASSERT_OK(run_stream_split(k, in, n, 0, split, true, true, &part));
                                if (part.len != whole.len || memcmp(part.out, whole.out, whole.len) != 0 ||
                                    part.finish != whole.finish)
                                        TEST_FAIL("%s %s: split at %zu differs", cases[i].fixture,
                                                  client_suffix(k), split);
                                stream_result_done(&part);
                        }
                        for (size_t step = 1; step <= 7; step++) {
                                ASSERT_OK(run_stream(k, in, n, step, true, true, &part));
                                if (part.len != whole.len || memcmp(part.out, whole.out, whole.len) != 0)
                                        TEST_FAIL("%s %s: step %zu differs", cases[i].fixture, client_suffix(k),
                                                  step);
                                stream_result_done(&part);
                        }
                        stream_result_done(&whole);
                }
}

/* ---- what the streams say ---- */

static Evs events_of(TranslateKind k, const char *name, bool include_usage, StreamResult *r) {
        _cleanup_free_ char *in = NULL;
        Evs e = {};
        size_t n;

        in = fixture(name, &n);
        if (!in || run_stream(k, in, n, 0, include_usage, true, r) < 0 || evs_parse(r->out, r->len, &e) < 0)
                fprintf(stderr, "cannot run %s\n", name);
        return e;
}

static const Ev *find_event(const Evs *e, const char *type, unsigned nth) {
        for (size_t i = 0; i < e->n; i++) {
                const char *t = e->items[i].data ? jstr(e->items[i].data, "type") : NULL;
                if (t && streq(t, type) && nth-- == 0)
                        return &e->items[i];
        }
        return NULL;
}

TEST(anthropic_usage_is_normalised_and_estimated_at_start) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_MESSAGES_TO_CHAT, "chat-text.sse", true, &r);
        const Ev *start = find_event(&e, "message_start", 0), *delta = find_event(&e, "message_delta", 0);
        const json_t *u;

        ASSERT_NOT_NULL(start);
        ASSERT_NOT_NULL(delta);
        /* No usage from the upstream yet: the request estimate. */
        u = json_object_get(json_object_get(start->data, "message"), "usage");
        ASSERT_EQ(json_integer_value(json_object_get(u, "input_tokens")), 77);
        /* prompt_tokens 1117 with 1024 cached: Anthropic's input_tokens leaves the cache reads out. */
        u = json_object_get(delta->data, "usage");
        ASSERT_EQ(json_integer_value(json_object_get(u, "input_tokens")), 93);
        ASSERT_EQ(json_integer_value(json_object_get(u, "cache_read_input_tokens")), 1024);
        ASSERT_EQ(json_integer_value(json_object_get(u, "output_tokens")), 46);
        ASSERT_STREQ(jstr(json_object_get(start->data, "message"), "model"), "client-model");
        ASSERT_STREQ(jstr(json_object_get(start->data, "message"), "id"), "msg_B9MHDbslfkBeAs8l4bebGdFOJ6PeG");
        ASSERT_TRUE(e.n >= 2 && streq(e.items[1].name, "ping"));
        evs_done(&e);
        stream_result_done(&r);

        /* Usage in the first chunk (vLLM continuous usage) goes into message_start. */
        e = events_of(TRANSLATE_MESSAGES_TO_CHAT, "chat-reasoning.sse", true, &r);
        start = find_event(&e, "message_start", 0);
        ASSERT_NOT_NULL(start);
        u = json_object_get(json_object_get(start->data, "message"), "usage");
        ASSERT_EQ(json_integer_value(json_object_get(u, "input_tokens")), 30);
        evs_done(&e);
        stream_result_done(&r);
}

TEST(chat_usage_includes_the_cache) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_CHAT_TO_MESSAGES, "messages-text.sse", true, &r);
        const json_t *u = NULL;

        for (size_t i = 0; i < e.n; i++)
                if (e.items[i].data && json_array_size(json_object_get(e.items[i].data, "choices")) == 0 &&
                    json_object_get(e.items[i].data, "usage"))
                        u = json_object_get(e.items[i].data, "usage");
        ASSERT_NOT_NULL(u);
        ASSERT_EQ(json_integer_value(json_object_get(u, "prompt_tokens")), 472 + 2048);
        ASSERT_EQ(json_integer_value(
                          json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")),
                  2048);
        ASSERT_EQ(json_integer_value(json_object_get(u, "completion_tokens")), 12);
        ASSERT_EQ(json_integer_value(json_object_get(u, "total_tokens")), 472 + 2048 + 12);
        evs_done(&e);
        stream_result_done(&r);

        /* Without include_usage there is no usage chunk and no "usage" member. */
        e = events_of(TRANSLATE_CHAT_TO_MESSAGES, "messages-text.sse", false, &r);
        for (size_t i = 0; i < e.n; i++)
                ASSERT_TRUE(e.items[i].done || !json_object_get(e.items[i].data, "usage"));
        evs_done(&e);
        stream_result_done(&r);
}

TEST(interleaved_parallel_tool_calls_become_whole_blocks_in_order) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_MESSAGES_TO_CHAT, "chat-tools-interleaved.sse", true, &r);
        const Ev *b1 = find_event(&e, "content_block_start", 1), *b2 = find_event(&e, "content_block_start", 2);
        _cleanup_(buf_done) Buf args1 = {}, args2 = {};

        ASSERT_NOT_NULL(b1);
        ASSERT_NOT_NULL(b2);
        ASSERT_STREQ(jstr(json_object_get(b1->data, "content_block"), "id"), "call_a");
        ASSERT_STREQ(jstr(json_object_get(b2->data, "content_block"), "id"), "call_b");
        for (size_t i = 0; i < e.n; i++) {
                const json_t *d = json_object_get(e.items[i].data, "delta");
                const char *pj = jstr(d, "partial_json");
                if (!pj)
                        continue;
                buf_append_str(json_integer_value(json_object_get(e.items[i].data, "index")) == 1 ? &args1
                                                                                                  : &args2,
                               pj);
        }
        ASSERT_OK(buf_append(&args1, "", 1));
        ASSERT_OK(buf_append(&args2, "", 1));
        ASSERT_STREQ((const char *) buf_data(&args1), "{\"location\":\"Oslo\"}");
        ASSERT_STREQ((const char *) buf_data(&args2), "{\"location\":\"Tokyo\"}");
        ASSERT_STREQ(jstr(json_object_get(find_event(&e, "message_delta", 0)->data, "delta"), "stop_reason"),
                     "tool_use");
        evs_done(&e);
        stream_result_done(&r);
}

TEST(sequential_parallel_tool_calls_stream_without_waiting) {
        _cleanup_free_ char *in = NULL;
        _cleanup_(stream_translator_freep) StreamTranslator *t = NULL;
        _cleanup_(buf_done) Buf out = {};
        const char *second;
        size_t n;

        in = fixture("chat-tools-parallel.sse", &n);
        ASSERT_NOT_NULL(in);
        /* Up to the second call's first argument piece: the first call is whole, so it is closed and the
         * second one streams at once. */
        second = strstr(in, "{\\\"tz\\\"");
        ASSERT_NOT_NULL(second);
        second = strstr(second, "\n\n");
        ASSERT_OK(stream_translator_new(TRANSLATE_MESSAGES_TO_CHAT, "m", false, &t));
        ASSERT_OK(stream_translator_feed(t, in, (size_t) (second + 2 - in), &out));
        ASSERT_OK(buf_append(&out, "", 1));
        ASSERT_CONTAINS((const char *) buf_data(&out), "{\"type\":\"content_block_stop\",\"index\":0}");
        ASSERT_CONTAINS((const char *) buf_data(&out), "\"index\":1,\"delta\":{\"type\":\"input_json_delta\","
                                                       "\"partial_json\":\"{\\\"tz\\\"\"}");
}

TEST(reasoning_becomes_a_signed_thinking_block_before_the_text) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_MESSAGES_TO_CHAT, "chat-reasoning.sse", true, &r);
        const Ev *b0 = find_event(&e, "content_block_start", 0), *b1 = find_event(&e, "content_block_start", 1);

        ASSERT_STREQ(jstr(json_object_get(b0->data, "content_block"), "type"), "thinking");
        ASSERT_STREQ(jstr(json_object_get(b1->data, "content_block"), "type"), "text");
        ASSERT_CONTAINS(r.out, "{\"type\":\"signature_delta\",\"signature\":\"\"}");
        evs_done(&e);
        stream_result_done(&r);

        /* And the other way: thinking_delta becomes reasoning_content; the signature has no place. */
        e = events_of(TRANSLATE_CHAT_TO_MESSAGES, "messages-thinking.sse", false, &r);
        ASSERT_CONTAINS(r.out, "\"reasoning_content\":\"Let me solve this step by step:");
        ASSERT_TRUE(!strstr(r.out, "EqQBCgIYAhIM"));
        evs_done(&e);
        stream_result_done(&r);

        /* Responses: a reasoning item whose encrypted_content is the signature. */
        e = events_of(TRANSLATE_RESPONSES_TO_MESSAGES, "messages-thinking.sse", false, &r);
        ASSERT_CONTAINS(r.out,
                        "\"encrypted_content\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds\"");
        ASSERT_NOT_NULL(find_event(&e, "response.reasoning_summary_text.delta", 1));
        evs_done(&e);
        stream_result_done(&r);
}

TEST(stop_reasons) {
        static const struct {
                TranslateKind k;
                const char *fixture, *want;
        } t[] = {
                { TRANSLATE_MESSAGES_TO_CHAT, "chat-length.sse", "max_tokens" },
                { TRANSLATE_MESSAGES_TO_CHAT, "chat-stop-sequence.sse", "stop_sequence" },
                { TRANSLATE_MESSAGES_TO_CHAT, "chat-refusal.sse", "refusal" },
                { TRANSLATE_MESSAGES_TO_CHAT, "chat-tools-parallel.sse", "tool_use" },
                { TRANSLATE_MESSAGES_TO_CHAT, "chat-text.sse", "end_turn" },
                { TRANSLATE_CHAT_TO_MESSAGES, "messages-max-tokens.sse", "length" },
                { TRANSLATE_CHAT_TO_MESSAGES, "messages-stop-sequence.sse", "stop" },
                { TRANSLATE_CHAT_TO_MESSAGES, "messages-tools.sse", "tool_calls" },
                { TRANSLATE_CHAT_TO_MESSAGES, "messages-text.sse", "stop" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                StreamResult r = {};
                Evs e = events_of(t[i].k, t[i].fixture, false, &r);
                const char *got = NULL;

                if (t[i].k == TRANSLATE_MESSAGES_TO_CHAT) {
                        const Ev *d = find_event(&e, "message_delta", 0);
                        got = d ? jstr(json_object_get(d->data, "delta"), "stop_reason") : NULL;
                        if (streq(t[i].want, "stop_sequence"))
                                ASSERT_STREQ(jstr(json_object_get(d->data, "delta"), "stop_sequence"), "END");
                } else
                        for (size_t j = 0; j < e.n; j++) {
                                const json_t *c =
                                        json_array_get(json_object_get(e.items[j].data, "choices"), 0);
                                if (jstr(c, "finish_reason"))
                                        got = jstr(c, "finish_reason");
                        }
                if (!got || !streq(got, t[i].want))
                        TEST_FAIL("%s: got %s, want %s", t[i].fixture, got ?: "(none)", t[i].want);
                evs_done(&e);
                stream_result_done(&r);
        }
}

TEST(responses_max_tokens_is_incomplete) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_RESPONSES_TO_MESSAGES, "messages-max-tokens.sse", false, &r);
        const Ev *last = &e.items[e.n - 1];

        ASSERT_STREQ(last->name, "response.incomplete");
        ASSERT_STREQ(
                jstr(json_object_get(json_object_get(last->data, "response"), "incomplete_details"), "reason"),
                "max_output_tokens");
        evs_done(&e);
        stream_result_done(&r);
}

TEST(responses_function_calls) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_RESPONSES_TO_CHAT, "chat-tools-parallel.sse", false, &r);
        const Ev *done = find_event(&e, "response.function_call_arguments.done", 1), *last = &e.items[e.n - 1];
        const json_t *usage = json_object_get(json_object_get(last->data, "response"), "usage");

        ASSERT_NOT_NULL(done);
        ASSERT_STREQ(jstr(done->data, "name"), "get_time");
        ASSERT_STREQ(jstr(done->data, "arguments"), "{\"tz\":\"Europe/Paris\"}");
        ASSERT_STREQ(last->name, "response.completed");
        ASSERT_EQ(json_integer_value(json_object_get(usage, "input_tokens")), 82);
        ASSERT_EQ(json_integer_value(json_object_get(usage, "total_tokens")), 126);
        ASSERT_STREQ(
                jstr(json_object_get(find_event(&e, "response.output_item.added", 1)->data, "item"), "call_id"),
                "call_ABCDEFGHIJKLMNOPQRSTUVWX");
        evs_done(&e);
        stream_result_done(&r);
}

TEST(upstream_error_events_become_the_clients) {
        StreamResult r = {};
        Evs e = events_of(TRANSLATE_MESSAGES_TO_CHAT, "chat-error.sse", false, &r);
        const Ev *last = &e.items[e.n - 1];

        ASSERT_STREQ(last->name, "error");
        ASSERT_STREQ(jstr(json_object_get(last->data, "error"), "type"), "api_error");
        ASSERT_CONTAINS(jstr(json_object_get(last->data, "error"), "message"), "The server had an error");
        evs_done(&e);
        stream_result_done(&r);

        e = events_of(TRANSLATE_CHAT_TO_MESSAGES, "messages-error.sse", true, &r);
        last = &e.items[e.n - 1];
        ASSERT_STREQ(jstr(json_object_get(last->data, "error"), "type"), "server_error");
        ASSERT_STREQ(jstr(json_object_get(last->data, "error"), "code"), "overloaded_error");
        ASSERT_TRUE(!strstr(r.out, "[DONE]"));
        evs_done(&e);
        stream_result_done(&r);

        e = events_of(TRANSLATE_RESPONSES_TO_MESSAGES, "messages-error.sse", true, &r);
        ASSERT_STREQ(jstr(find_event(&e, "error", 0)->data, "code"), "overloaded_error");
        ASSERT_STREQ(jstr(json_object_get(find_event(&e, "response.failed", 0)->data, "response"), "status"),
                     "failed");
        evs_done(&e);
        stream_result_done(&r);
}

TEST(cut_streams_end_in_an_error_never_a_success) {
        _cleanup_free_ char *in = NULL;
        const char *done;
        StreamResult r = {};
        const char *end = NULL;
        size_t n;

        /* The whole answer and usage, then the transfer breaks before [DONE]. */
        in = fixture("chat-text.sse", &n);
        ASSERT_NOT_NULL(in);
        done = strstr(in, "data: [DONE]");
        ASSERT_NOT_NULL(done);
        for (TranslateKind k = TRANSLATE_MESSAGES_TO_CHAT; k <= TRANSLATE_RESPONSES_TO_CHAT; k += 2) {
                ASSERT_OK(run_stream(k, in, (size_t) (done - in), 0, false, false, &r));
                ASSERT_ERROR(r.finish, EPIPE);
                ASSERT_NULL(validate_stream(k, r.out, r.len, false, &end));
                ASSERT_STREQ(end, "error");
                ASSERT_TRUE(!strstr(r.out, "message_stop") && !strstr(r.out, "response.completed"));
                stream_result_done(&r);

                /* Ended cleanly after finish_reason but without [DONE]: complete (some servers omit it). */
                ASSERT_OK(run_stream(k, in, (size_t) (done - in), 0, false, true, &r));
                ASSERT_EQ(r.finish, 0);
                ASSERT_NULL(validate_stream(k, r.out, r.len, false, &end));
                ASSERT_STREQ(end, "complete");
                stream_result_done(&r);
        }
        free(in);

        /* Anthropic: cut right before message_stop while the connection broke. */
        in = fixture("messages-text.sse", &n);
        ASSERT_NOT_NULL(in);
        done = strstr(in, "event: message_stop");
        ASSERT_OK(run_stream(TRANSLATE_CHAT_TO_MESSAGES, in, (size_t) (done - in), 0, true, false, &r));
        ASSERT_ERROR(r.finish, EPIPE);
        ASSERT_TRUE(!strstr(r.out, "[DONE]"));
        stream_result_done(&r);
        /* A stream that stopped in the middle of an event. */
        ASSERT_OK(run_stream(TRANSLATE_CHAT_TO_MESSAGES, in, 200, 0, true, true, &r));
        ASSERT_ERROR(r.finish, EPIPE);
        stream_result_done(&r);
        /* Nothing at all. */
        ASSERT_OK(run_stream(TRANSLATE_MESSAGES_TO_CHAT, "", 0, 0, false, true, &r));
        ASSERT_ERROR(r.finish, EPIPE);
        ASSERT_NULL(validate_stream(TRANSLATE_MESSAGES_TO_CHAT, r.out, r.len, false, &end));
        stream_result_done(&r);
}

TEST(malformed_upstream_streams) {
        static const struct {
                TranslateKind k;
                const char *in;
        } t[] = {
                { TRANSLATE_MESSAGES_TO_CHAT, "data: {not json\n\n" },
                { TRANSLATE_MESSAGES_TO_CHAT, "data: [1,2]\n\n" },
                { TRANSLATE_MESSAGES_TO_CHAT, "data: {\"choices\":{}}\n\n" },
                { TRANSLATE_MESSAGES_TO_CHAT, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,"
                                              "\"function\":{\"arguments\":\"{}\"}}]}}]}\n\ndata: [DONE]\n\n" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
                  "\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n" },
                { TRANSLATE_CHAT_TO_MESSAGES,
                  "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n"
                  "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                  "{\"type\":\"text\",\"text\":\"\"}}\n\ndata: {\"type\":\"content_block_delta\""
                  ",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":"
                  "\"{}\"}}\n\n" },
                { TRANSLATE_RESPONSES_TO_MESSAGES, "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
                                                   "data: {\"type\":\"message_start\",\"message\":{}}\n\n" },
        };

        for (size_t i = 0; i < ELEMENTSOF(t); i++) {
                StreamResult r = {};
                const char *end = NULL, *why;

                ASSERT_OK(run_stream(t[i].k, t[i].in, strlen(t[i].in), 0, false, true, &r));
                if (r.feed != -EBADMSG && r.finish != -EBADMSG)
                        TEST_FAIL("case %zu: feed %d finish %d", i, r.feed, r.finish);
                why = validate_stream(t[i].k, r.out, r.len, false, &end);
                if (why || !streq(end, "error"))
                        TEST_FAIL("case %zu: %s\n%s", i, why ?: end, r.out);
                ASSERT_CONTAINS(r.out, "malformed");
                stream_result_done(&r);
        }
}

TEST(errors_are_sticky) {
        _cleanup_(stream_translator_freep) StreamTranslator *t = NULL;
        _cleanup_(buf_done) Buf out = {};
        size_t len;

        ASSERT_OK(stream_translator_new(TRANSLATE_MESSAGES_TO_CHAT, "m", false, &t));
        ASSERT_ERROR(stream_translator_feed(t, "data: nope\n\n", 12, &out), EBADMSG);
        len = buf_len(&out);
        ASSERT_ERROR(stream_translator_feed(t, "data: [DONE]\n\n", 14, &out), EBADMSG);
        ASSERT_ERROR(stream_translator_finish(t, true, &out), EBADMSG);
        ASSERT_EQ(buf_len(&out), len);
}

TEST(bounds) {
        _cleanup_(stream_translator_freep) StreamTranslator *t = NULL;
        _cleanup_(buf_done) Buf out = {}, in = {};
        _cleanup_free_ char *big = malloc(TRANSLATE_STREAM_BUFFER_MAX + 16);
        int r = 0;

        /* One line longer than the bound. */
        ASSERT_NOT_NULL(big);
        memset(big, 'a', TRANSLATE_STREAM_BUFFER_MAX + 16);
        ASSERT_OK(stream_translator_new(TRANSLATE_MESSAGES_TO_CHAT, "m", false, &t));
        ASSERT_OK(stream_translator_feed(t, "data: ", 6, &out));
        ASSERT_ERROR(stream_translator_feed(t, big, TRANSLATE_STREAM_BUFFER_MAX + 16, &out), E2BIG);
        ASSERT_OK(buf_append(&out, "", 1));
        ASSERT_CONTAINS((const char *) buf_data(&out), "event: error");
        t = stream_translator_free(t);
        buf_clear(&out);

        /* Tool call 1 streams behind an unfinished tool call 0 until the held bytes pass the bound. */
        ASSERT_OK(stream_translator_new(TRANSLATE_MESSAGES_TO_CHAT, "m", false, &t));
        ASSERT_OK(buf_printf(
                &in, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\",\"function\":"
                     "{\"name\":\"f\",\"arguments\":\"{\"}},{\"index\":1,\"id\":\"b\",\"function\":{\"name\":"
                     "\"g\",\"arguments\":\"\"}}]}}]}\n\n"));
        ASSERT_OK(stream_translator_feed(t, buf_data(&in), buf_len(&in), &out));
        for (unsigned i = 0; i < 40 && r >= 0; i++) {
                buf_clear(&in);
                ASSERT_OK(
                        buf_printf(&in,
                                   "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":"
                                   "{\"arguments\":\"%.*s\"}}]}}]}\n\n",
                                   60000, big));
                r = stream_translator_feed(t, buf_data(&in), buf_len(&in), &out);
        }
        ASSERT_ERROR(r, E2BIG);
}

TEST(nothing_after_the_end) {
        _cleanup_(stream_translator_freep) StreamTranslator *t = NULL;
        _cleanup_(buf_done) Buf out = {};
        const char *s = "data: [DONE]\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n";
        size_t len;

        ASSERT_OK(stream_translator_new(TRANSLATE_MESSAGES_TO_CHAT, "m", false, &t));
        ASSERT_OK(stream_translator_feed(t, s, strlen(s), &out));
        len = buf_len(&out);
        ASSERT_OK(stream_translator_finish(t, true, &out));
        ASSERT_EQ(buf_len(&out), len);
        ASSERT_OK(buf_append(&out, "", 1));
        ASSERT_TRUE(!strstr((const char *) buf_data(&out), "late"));
}

/* ---- deltas written directly ---- */

/* Each data line of a translated stream is exactly what jansson dumps for the JSON it holds: the text,
 * thinking and tool-input deltas are written as bytes (stream-emit.c, *_delta_direct()), the other events
 * through jansson. */
static void assert_lines_are_jansson_dumps(const char *out) {
        for (const char *p = out; (p = strstr(p, "data: ")); ) {
                const char *e = strstr(p, "\n\n");
                _cleanup_free_ char *line = NULL, *again = NULL;
                json_t *j;

                ASSERT_NOT_NULL(e);
                line = strndup(p + 6, (size_t) (e - p - 6));
                ASSERT_NOT_NULL(line);
                p = e;
                /* [DONE], and the ping written as Anthropic's API writes it (with a space). */
                if (streq(line, "[DONE]") || streq(line, "{\"type\": \"ping\"}"))
                        continue;
                j = json_loads(line, JSON_ALLOW_NUL, NULL);
                if (!j)
                        TEST_FAIL("not JSON: %s", line);
                again = json_dumps(j, JSON_COMPACT);
                json_decref(j);
                if (!again || !streq(again, line))
                        TEST_FAIL("written as\n  %s\njansson dumps\n  %s", line, again ?: "(nothing)");
        }
}

#define TRICKY "q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001f\\u007f \\u00e9\\u4e2d\\ud83d\\ude00 </script>"

TEST(direct_deltas_are_byte_for_byte_what_jansson_writes) {
        static const char chat[] =
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":"
                "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"reasoning_content\":\"th " TRICKY "\"},"
                "\"finish_reason\":null}]}\n\n"
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":"
                "[{\"index\":0,\"delta\":{\"content\":\"" TRICKY "\"},\"finish_reason\":null}]}\n\n"
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":"
                "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\","
                "\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\\\"" "x\\\\\\\"y" "\\\"}\"}}]},"
                "\"finish_reason\":null}]}\n\n"
                "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":"
                "[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
                "data: [DONE]\n\n";
        static const char messages[] =
                "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":"
                "\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-x\",\"stop_reason\":null,"
                "\"stop_sequence\":null,\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n"
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
                "{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":"
                "{\"type\":\"thinking_delta\",\"thinking\":\"" TRICKY "\"}}\n\n"
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":"
                "{\"type\":\"text\",\"text\":\"\"}}\n\n"
                "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":"
                "{\"type\":\"text_delta\",\"text\":\"" TRICKY "\"}}\n\n"
                "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
                "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
                "\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n"
                "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        StreamResult r = {};

        /* An Anthropic client of an OpenAI upstream: thinking, text and tool-input deltas. */
        ASSERT_OK(run_stream(TRANSLATE_MESSAGES_TO_CHAT, chat, strlen(chat), 0, false, true, &r));
        ASSERT_CONTAINS(r.out, "\"type\":\"text_delta\",\"text\":\"q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001F");
        ASSERT_CONTAINS(r.out, "\"type\":\"thinking_delta\"");
        ASSERT_CONTAINS(r.out, "\"type\":\"input_json_delta\"");
        assert_lines_are_jansson_dumps(r.out);
        stream_result_done(&r);

        /* An OpenAI chat client of an Anthropic upstream, with and without include_usage. */
        for (int usage = 0; usage <= 1; usage++) {
                ASSERT_OK(run_stream(TRANSLATE_CHAT_TO_MESSAGES, messages, strlen(messages), 0, usage, true, &r));
                ASSERT_CONTAINS(r.out, "\"delta\":{\"content\":\"q\\\"b\\\\s/");
                ASSERT_CONTAINS(r.out, "\"delta\":{\"reasoning_content\":\"q\\\"b\\\\s/");
                ASSERT_TRUE(!!strstr(r.out, "\"usage\":null") == !!usage);
                assert_lines_are_jansson_dumps(r.out);
                stream_result_done(&r);
        }
}
