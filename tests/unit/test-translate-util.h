/* Helpers for the translation tests: fixtures, running streams, and validators of each dialect's stream grammar. */
#pragma once

#include <jansson.h>
#include <stdio.h>

#include "shared/util.h"
#include "tests.h"
#include "translate/sse.h"
#include "translate/stream-internal.h"
#include "translate/translate.h"

static inline char *fixture_path(const char *name) {
        const char *src = getenv("SRCDIR");
        char *p = NULL;

        if (asprintf(&p, "%s/tests/fixtures/translate/%s", src ?: "..", name) < 0)
                return NULL;
        return p;
}

static inline char *fixture(const char *name, size_t *ret_len) {
        _cleanup_free_ char *p = fixture_path(name);
        char *d = NULL;
        size_t n = 0;

        if (!p || read_full_file(p, 64U << 20, &d, &n) < 0) {
                fprintf(stderr, "missing fixture %s\n", name);
                return NULL;
        }
        if (ret_len)
                *ret_len = n;
        return d;
}

static inline json_t *fixture_json(const char *name) {
        _cleanup_free_ char *d = NULL;
        size_t n;

        d = fixture(name, &n);
        return d ? json_loadb(d, n, 0, NULL) : NULL;
}

/* Feeds in pieces of `step` bytes (0: all at once) or split once at `split`; returns the client output. */
typedef struct StreamResult {
        char *out;
        size_t len;
        int feed;                       /* the first error feed() returned, or 0 */
        int finish;
} StreamResult;

static inline void stream_result_done(StreamResult *r) {
        free(r->out);
        *r = (StreamResult){};
}

static inline int run_stream_split(TranslateKind k, const char *in, size_t n, size_t step, size_t split,
                                   bool include_usage, bool complete, StreamResult *ret) {
        _cleanup_(stream_translator_freep) StreamTranslator *t = NULL;
        _cleanup_(buf_done) Buf out = {};
        int r, feed = 0;

        r = stream_translator_new(k, "client-model", include_usage, &t);
        if (r < 0)
                return r;
        stream_translator_set_created(t, 1700000000);
        stream_translator_set_input_tokens(t, 77);
        t->fallback_id = strdup("fallback");
        if (split > 0) {
                r = stream_translator_feed(t, in, split, &out);
                if (r < 0)
                        feed = r;
                if (r >= 0) {
                        r = stream_translator_feed(t, in + split, n - split, &out);
                        if (r < 0)
                                feed = r;
                }
        } else
                for (size_t off = 0; off < n && feed == 0;) {
                        size_t m = step == 0 ? n : MIN(step, n - off);
                        r = stream_translator_feed(t, in + off, m, &out);
                        if (r < 0)
                                feed = r;
                        off += m;
                }
        r = stream_translator_finish(t, complete, &out);
        *ret = (StreamResult){ .feed = feed, .finish = r };
        ret->out = buf_steal_str(&out, &ret->len);
        return ret->out ? 0 : -ENOMEM;
}

static inline int run_stream(TranslateKind k, const char *in, size_t n, size_t step, bool include_usage,
                             bool complete, StreamResult *ret) {
        return run_stream_split(k, in, n, step, 0, include_usage, complete, ret);
}

/* ---- parsed client events ---- */

typedef struct Ev {
        char name[64];
        json_t *data;                   /* NULL for [DONE] */
        bool done;
} Ev;

typedef struct Evs {
        Ev *items;
        size_t n;
        bool bad;
} Evs;

static inline int evs_add(void *userdata, const char *event, const char *data, size_t n) {
        Evs *e = userdata;
        Ev *items = reallocarray(e->items, e->n + 1, sizeof(Ev));

        if (!items)
                return -ENOMEM;
        e->items = items;
        Ev *v = &e->items[e->n++];
        *v = (Ev){};
        snprintf(v->name, sizeof v->name, "%s", event);
        if (n == 6 && memcmp(data, "[DONE]", 6) == 0)
                v->done = true;
        else {
                v->data = json_loadb(data, n, 0, NULL);
                if (!v->data)
                        e->bad = true;
        }
        return 0;
}

static inline void evs_done(Evs *e) {
        for (size_t i = 0; i < e->n; i++)
                json_decref(e->items[i].data);
        free(e->items);
        *e = (Evs){};
}

static inline int evs_parse(const char *s, size_t n, Evs *ret) {
        SseParser p;
        int r;

        *ret = (Evs){};
        sse_parser_init(&p, 64U << 20);
        r = sse_parser_feed(&p, s, n, evs_add, ret);
        if (r >= 0)
                r = sse_parser_finish(&p, evs_add, ret);
        sse_parser_done(&p);
        return r < 0 ? r : ret->bad ? -EBADMSG : 0;
}

static inline const char *jstr(const json_t *o, const char *k) {
        return json_string_value(json_object_get(o, k));
}

/* Why a stream breaks its dialect's rules, or NULL. *ret_end: "complete" or "error". */
#define CHECK(cond, ...)                                                       \
        do {                                                                   \
                if (!(cond)) {                                                 \
                        snprintf(why, sizeof why, __VA_ARGS__);                \
                        return why;                                            \
                }                                                              \
        } while (0)

static inline const char *validate_anthropic(const Evs *e, const char **ret_end) {
        static char why[256];
        enum { BEFORE, IDLE, OPEN, DELTA_SEEN, STOPPED } state = BEFORE;
        const char *kind = NULL;
        bool signed_block = false, has_content = false;
        int64_t next = 0;

        for (size_t i = 0; i < e->n; i++) {
                const Ev *v = &e->items[i];
                const char *type = jstr(v->data, "type");

                CHECK(v->data && type && streq(v->name, type), "event %zu: name '%s' and type differ", i,
                      v->name);
                if (streq(type, "error")) {
                        CHECK(i + 1 == e->n, "event %zu: error is not last", i);
                        CHECK(jstr(json_object_get(v->data, "error"), "type") &&
                              jstr(json_object_get(v->data, "error"), "message"), "error without type/message");
                        *ret_end = "error";
                        return NULL;
                }
                if (streq(type, "ping"))
                        continue;
                switch (state) {
                case BEFORE:
                        CHECK(streq(type, "message_start"), "event %zu: %s before message_start", i, type);
                        CHECK(json_is_object(json_object_get(json_object_get(v->data, "message"), "usage")),
                              "message_start without usage");
                        state = IDLE;
                        break;
                case IDLE:
                        if (streq(type, "content_block_start")) {
                                const json_t *b = json_object_get(v->data, "content_block");
                                CHECK(json_integer_value(json_object_get(v->data, "index")) == next,
                                      "event %zu: block index %lld, expected %lld", i,
                                      (long long) json_integer_value(json_object_get(v->data, "index")),
                                      (long long) next);
                                kind = jstr(b, "type");
                                CHECK(kind, "block without type");
                                if (streq(kind, "tool_use"))
                                        CHECK(jstr(b, "id") && jstr(b, "name") &&
                                                      json_is_object(json_object_get(b, "input")),
                                              "tool_use start incomplete");
                                signed_block = false;
                                has_content = streq(kind, "tool_use") || streq(kind, "redacted_thinking");
                                state = OPEN;
                                break;
                        }
                        CHECK(streq(type, "message_delta"), "event %zu: %s between blocks", i, type);
                        CHECK(jstr(json_object_get(v->data, "delta"), "stop_reason"),
                              "message_delta without stop_reason");
                        CHECK(json_is_integer(
                                      json_object_get(json_object_get(v->data, "usage"), "output_tokens")),
                              "message_delta without usage.output_tokens");
                        state = STOPPED;
                        break;
                case OPEN:
                case DELTA_SEEN:
                        CHECK(json_integer_value(json_object_get(v->data, "index")) == next,
                              "event %zu: wrong index", i);
                        if (streq(type, "content_block_delta")) {
                                const json_t *d = json_object_get(v->data, "delta");
                                const char *dt = jstr(d, "type");
                                CHECK(dt, "delta without type");
                                if (streq(kind, "text"))
                                        CHECK(streq(dt, "text_delta"), "event %zu: %s in a text block", i, dt);
                                else if (streq(kind, "thinking")) {
                                        CHECK(streq(dt, "thinking_delta") || streq(dt, "signature_delta"),
                                              "event %zu: %s in a thinking block", i, dt);
                                        if (streq(dt, "signature_delta"))
                                                signed_block = true;
                                } else if (streq(kind, "tool_use"))
                                        CHECK(streq(dt, "input_json_delta"),
                                              "event %zu: %s in a tool_use block", i, dt);
                                else
                                        CHECK(false, "event %zu: delta in a %s block", i, kind);
                                if ((jstr(d, "text") && *jstr(d, "text")) ||
                                    (jstr(d, "thinking") && *jstr(d, "thinking")))
                                        has_content = true;
                                state = DELTA_SEEN;
                                break;
                        }
                        CHECK(streq(type, "content_block_stop"), "event %zu: %s inside a block", i, type);
                        CHECK(!streq(kind, "thinking") || signed_block,
                              "thinking block without signature_delta");
                        CHECK(has_content, "event %zu: block %lld was opened without content", i,
                              (long long) next);
                        next++;
                        state = IDLE;
                        break;
                case STOPPED:
                        CHECK(streq(type, "message_stop"), "event %zu: %s after message_delta", i, type);
                        CHECK(i + 1 == e->n, "events after message_stop");
                        *ret_end = "complete";
                        return NULL;
                }
        }
        CHECK(false, "stream ended without message_stop or error");
}

static inline const char *validate_chat(const Evs *e, bool include_usage, const char **ret_end) {
        static char why[256];
        const char *id = NULL;
        bool finished = false, usage_seen = false;
        int64_t tools = 0;

        for (size_t i = 0; i < e->n; i++) {
                const Ev *v = &e->items[i];
                const json_t *choices, *c, *delta, *tc;
                size_t k;

                CHECK(v->name[0] == 0, "event %zu has an event name", i);
                if (v->done) {
                        CHECK(i + 1 == e->n, "[DONE] is not last");
                        CHECK(finished, "[DONE] without finish_reason");
                        CHECK(!include_usage || usage_seen, "no usage chunk");
                        *ret_end = "complete";
                        return NULL;
                }
                if (json_object_get(v->data, "error")) {
                        CHECK(i + 1 == e->n, "error is not last");
                        CHECK(jstr(json_object_get(v->data, "error"), "message"), "error without message");
                        *ret_end = "error";
                        return NULL;
                }
                CHECK(streq(jstr(v->data, "object") ?: "", "chat.completion.chunk"), "event %zu: not a chunk",
                      i);
                CHECK(streq(jstr(v->data, "model") ?: "", "client-model"), "event %zu: wrong model", i);
                if (!id)
                        id = jstr(v->data, "id");
                CHECK(id && streq(jstr(v->data, "id") ?: "", id), "event %zu: id changed", i);
                choices = json_object_get(v->data, "choices");
                CHECK(json_is_array(choices), "no choices");
                if (json_array_size(choices) == 0) {
                        CHECK(include_usage && finished, "usage chunk not asked for or early");
                        CHECK(json_is_integer(
                                      json_object_get(json_object_get(v->data, "usage"), "prompt_tokens")),
                              "usage chunk without prompt_tokens");
                        usage_seen = true;
                        continue;
                }
                CHECK(!finished, "event %zu: choice chunk after finish_reason", i);
                c = json_array_get(choices, 0);
                delta = json_object_get(c, "delta");
                if (i == 0)
                        CHECK(streq(jstr(delta, "role") ?: "", "assistant"),
                              "first chunk without role assistant");
                else
                        CHECK(!json_object_get(delta, "role"), "role after the first chunk");
                json_array_foreach(json_object_get(delta, "tool_calls"), k, tc) {
                        int64_t idx = json_integer_value(json_object_get(tc, "index"));
                        const json_t *fn = json_object_get(tc, "function");
                        CHECK(json_is_integer(json_object_get(tc, "index")), "tool call without index");
                        CHECK(idx <= tools && idx >= tools - 1, "event %zu: tool index %lld out of order", i,
                              (long long) idx);
                        if (idx == tools) {
                                CHECK(jstr(tc, "id") && streq(jstr(tc, "type") ?: "", "function") &&
                                              jstr(fn, "name") && jstr(fn, "arguments"),
                                      "first delta of tool call %lld incomplete", (long long) idx);
                                tools++;
                        } else
                                CHECK(!jstr(tc, "id") && jstr(fn, "arguments") && *jstr(fn, "arguments"),
                                      "event %zu: bad argument delta", i);
                }
                if (jstr(c, "finish_reason"))
                        finished = true;
        }
        CHECK(false, "stream ended without [DONE] or error");
}

static inline const char *validate_responses(const Evs *e, const char **ret_end) {
        static char why[256];
        int64_t items = 0, open_index = -1;
        const char *item_id = NULL;
        _cleanup_(buf_done) Buf text = {};

        for (size_t i = 0; i < e->n; i++) {
                const Ev *v = &e->items[i];
                const char *type = jstr(v->data, "type");

                CHECK(v->data && type && streq(type, v->name), "event %zu: name and type differ", i);
                CHECK(json_integer_value(json_object_get(v->data, "sequence_number")) == (json_int_t) i &&
                              json_is_integer(json_object_get(v->data, "sequence_number")),
                      "event %zu: bad sequence_number", i);
                if (i == 0)
                        CHECK(streq(type, "response.created"), "first event is %s", type);
                else if (i == 1)
                        CHECK(streq(type, "response.in_progress") || streq(type, "error"), "second event is %s",
                              type);
                if (streq(type, "error")) {
                        CHECK(jstr(v->data, "message"), "error without message");
                        CHECK(i + 2 == e->n && streq(e->items[i + 1].name, "response.failed"),
                              "error not followed by response.failed at the end");
                        *ret_end = "error";
                        return NULL;
                }
                if (streq(type, "response.output_item.added")) {
                        CHECK(open_index < 0, "event %zu: item added while another is open", i);
                        CHECK(json_integer_value(json_object_get(v->data, "output_index")) == items,
                              "event %zu: output_index out of order", i);
                        item_id = jstr(json_object_get(v->data, "item"), "id");
                        CHECK(item_id, "item without id");
                        open_index = items;
                        buf_clear(&text);
                        continue;
                }
                if (streq(type, "response.output_item.done")) {
                        CHECK(open_index == json_integer_value(json_object_get(v->data, "output_index")),
                              "event %zu: done for an item that is not open", i);
                        open_index = -1;
                        items++;
                        continue;
                }
                if (streq(type, "response.completed") || streq(type, "response.incomplete")) {
                        const json_t *resp = json_object_get(v->data, "response");
                        CHECK(open_index < 0, "completed with an open item");
                        CHECK((int64_t) json_array_size(json_object_get(resp, "output")) == items,
                              "output count differs");
                        CHECK(i + 1 == e->n, "events after completion");
                        *ret_end = "complete";
                        return NULL;
                }
                if (startswith(type, "response.output_text.") || startswith(type, "response.content_part.") ||
                    startswith(type, "response.function_call_arguments.") ||
                    startswith(type, "response.reasoning_summary_") || startswith(type, "response.refusal.")) {
                        CHECK(open_index >= 0 &&
                                      json_integer_value(json_object_get(v->data, "output_index")) ==
                                              open_index &&
                                      streq(jstr(v->data, "item_id") ?: "", item_id),
                              "event %zu: %s for the wrong item", i, type);
                        if (endswith(type, ".delta"))
                                buf_append_str(&text, jstr(v->data, "delta") ?: "");
                        if (streq(type, "response.output_text.done") ||
                            streq(type, "response.reasoning_summary_text.done"))
                                CHECK(strlen(jstr(v->data, "text") ?: "") == buf_len(&text) &&
                                      memcmp(jstr(v->data, "text"), buf_data(&text), buf_len(&text)) == 0,
                                      "event %zu: done text differs from the deltas", i);
                        if (streq(type, "response.function_call_arguments.done"))
                                CHECK(strlen(jstr(v->data, "arguments") ?: "") == buf_len(&text) &&
                                      memcmp(jstr(v->data, "arguments"), buf_data(&text), buf_len(&text)) == 0,
                                      "event %zu: arguments differ from the deltas", i);
                        continue;
                }
                CHECK(streq(type, "response.created") || streq(type, "response.in_progress"),
                      "unexpected event %s", type);
        }
        CHECK(false, "stream ended without completion or error");
}

/* Validates a client stream of kind k; returns NULL and the end, or why it is wrong. */
static inline const char *validate_stream(TranslateKind k, const char *out, size_t n, bool include_usage,
                                          const char **ret_end) {
        static char why[64];
        Evs e;
        const char *v;

        if (evs_parse(out, n, &e) < 0) {
                evs_done(&e);
                snprintf(why, sizeof why, "output is not SSE with JSON data");
                return why;
        }
        if (k == TRANSLATE_MESSAGES_TO_CHAT)
                v = validate_anthropic(&e, ret_end);
        else if (k == TRANSLATE_CHAT_TO_MESSAGES)
                v = validate_chat(&e, include_usage, ret_end);
        else
                v = validate_responses(&e, ret_end);
        evs_done(&e);
        return v;
}

/* json_equal after removing members that hold the time. */
static inline void strip_times(json_t *j) {
        json_object_del(j, "created");
        json_object_del(j, "created_at");
}
