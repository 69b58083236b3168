/* The mock's Anthropic endpoints: messages (plain and streamed), count_tokens and models. */
#include <inttypes.h>
#include <stdio.h>

#include "mock.h"
#include "shared/util.h"

static const char *const messages_max_fields[] = { "max_tokens", NULL };

/* ---- POST /v1/messages ---- */

enum {
        MSG_START,
        MSG_TEXT_START,
        MSG_PING,
        MSG_TEXT_DELTA,
        MSG_BLOCK_STOP,
        MSG_TOOL_START,
        MSG_TOOL_DELTA,
        MSG_DELTA,
        MSG_STOP,
};

static int messages_prepare(MockCall *c) {
        if (!json_is_string(json_object_get(c->body, "model")))
                return call_bad_request(c, "model: Field required", NULL, NULL);
        if (!json_is_integer(json_object_get(c->body, "max_tokens")))
                return call_bad_request(c, "max_tokens: Field required", NULL, NULL);
        if (!json_is_array(json_object_get(c->body, "messages")))
                return call_bad_request(c, "messages: Field required", NULL, NULL);
        c->stream = json_is_true(json_object_get(c->body, "stream"));
        call_apply_max_tokens(c, messages_max_fields);
        return 0;
}

static bool messages_has_text(MockCall *c) {
        return c->d.tools == 0 || c->d.preamble;
}

static const char *messages_stop_reason(MockCall *c) {
        return c->d.tools > 0 ? "tool_use" : c->truncated ? "max_tokens" : "end_turn";
}

/* Anthropic's input_tokens leaves out cache reads and writes; they are counted apart. */
static json_t *messages_usage(MockCall *c, uint64_t output_tokens) {
        return json_pack("{s:I, s:I, s:I, s:I}", "input_tokens", (json_int_t) c->input_tokens,
                         "cache_creation_input_tokens", (json_int_t) c->d.cache_write, "cache_read_input_tokens",
                         (json_int_t) c->d.cache_read, "output_tokens", (json_int_t) output_tokens);
}

/* The message envelope: for message_start (content [] and no stop reason yet) or the whole answer. */
static json_t *messages_object(MockCall *c, json_t *content, bool final) {
        char id[48];
        json_t *j;

        if (!content)
                return NULL;
        (void) snprintf(id, sizeof id, "msg_mock_%" PRIu64, c->id);
        j = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:n}", "id", id, "type", "message", "role", "assistant",
                      "model", c->model, "content", content, "stop_reason",
                      final ? json_string(messages_stop_reason(c)) : json_null(), "stop_sequence");
        /* message_start reports the input and a first output token, as the API does. */
        if (j && c->d.usage &&
            json_object_set_new(j, "usage", messages_usage(c, final ? call_output_tokens(c) : 1)) < 0)
                j = (json_decref(j), NULL);
        return j;
}

static json_t *tool_input_json(MockCall *c, uint32_t t) {
        _cleanup_(buf_done) Buf b = {};

        if (call_tool_args(c, t, &b) < 0)
                return NULL;
        return json_loadb((const char *) buf_data(&b), buf_len(&b), 0, NULL);
}

static void tool_id(uint32_t t, char *buf, size_t n) {
        (void) snprintf(buf, n, "toolu_%" PRIu32, t);
}

static int messages_plan(MockCall *c) {
        uint32_t b = 0;
        int r;

        r = call_add_step(c, MSG_START, 0, 1);
        if (r >= 0 && messages_has_text(c)) {
                r = call_add_step(c, MSG_TEXT_START, b, 1);
                if (r >= 0)
                        r = call_add_step(c, MSG_PING, 0, 1);
                if (r >= 0)
                        r = call_add_step(c, MSG_TEXT_DELTA, b, c->n_text);
                if (r >= 0)
                        r = call_add_step(c, MSG_BLOCK_STOP, b, 1);
                b++;
        }
        for (uint32_t t = 0; r >= 0 && t < c->d.tools; t++, b++) {
                r = call_add_step(c, MSG_TOOL_START, b, 1);
                /* The ping follows the first content_block_start, whatever the block. */
                if (r >= 0 && b == 0)
                        r = call_add_step(c, MSG_PING, 0, 1);
                /* An empty partial_json opens every tool input, as the API sends it. */
                if (r >= 0)
                        r = call_add_step(c, MSG_TOOL_DELTA, b, MOCK_TOOL_PIECES + 1);
                if (r >= 0)
                        r = call_add_step(c, MSG_BLOCK_STOP, b, 1);
        }
        if (r >= 0)
                r = call_add_step(c, MSG_DELTA, 0, 1);
        if (r >= 0)
                r = call_add_step(c, MSG_STOP, 0, 1);
        return r;
}

/* Tool t's content block index is t, or t + 1 after a text block. */
static uint32_t messages_tool(MockCall *c, const Step *s) {
        return s->index - (messages_has_text(c) ? 1 : 0);
}

/* The piece of a delta event (the stream fast path's hook): text, or a piece of a tool's input, after the
 * empty one that opens it. */
static int messages_piece(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        int r = 0;

        switch (s->kind) {
        case MSG_TEXT_DELTA:
                r = call_text_piece(c, i, out);
                break;
        case MSG_TOOL_DELTA:
                if (i > 0)
                        r = call_tool_piece(c, messages_tool(c, s), i - 1, out);
                break;
        default:
                return 0;
        }
        return r < 0 ? r : 1;
}

static int messages_render(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        uint32_t t = messages_tool(c, s);
        char id[32];
        json_t *j;

        switch (s->kind) {
        case MSG_START:
                return sse_put(out, "message_start",
                               json_pack("{s:s, s:o}", "type", "message_start", "message",
                                         messages_object(c, json_array(), false)));
        case MSG_TEXT_START:
                return sse_put(out, "content_block_start",
                               json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index",
                                         (int) s->index, "content_block", "type", "text", "text", ""));
        case MSG_PING:
                /* Byte for byte what the API sends: this one is not compact. */
                return buf_append_str(out, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
        case MSG_TEXT_DELTA:
                return sse_put(out, "content_block_delta",
                               json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta", "index",
                                         (int) s->index, "delta", "type", "text_delta", "text",
                                         stream_piece_json(c, s, i)));
        case MSG_BLOCK_STOP:
                return sse_put(out, "content_block_stop",
                               json_pack("{s:s, s:i}", "type", "content_block_stop", "index", (int) s->index));
        case MSG_TOOL_START:
                tool_id(t, id, sizeof id);
                return sse_put(out, "content_block_start",
                               json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}", "type", "content_block_start",
                                         "index", (int) s->index, "content_block", "type", "tool_use", "id", id,
                                         "name", call_tool_name(c, t), "input"));
        case MSG_TOOL_DELTA:
                return sse_put(out, "content_block_delta",
                               json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta", "index",
                                         (int) s->index, "delta", "type", "input_json_delta", "partial_json",
                                         stream_piece_json(c, s, i)));
        case MSG_DELTA:
                j = json_pack("{s:s, s:{s:s, s:n}}", "type", "message_delta", "delta", "stop_reason",
                              messages_stop_reason(c), "stop_sequence");
                if (j && c->d.usage &&
                    json_object_set_new(j, "usage", json_pack("{s:I}", "output_tokens",
                                                              (json_int_t) call_output_tokens(c))) < 0)
                        j = (json_decref(j), NULL);
                return sse_put(out, "message_delta", j);
        case MSG_STOP:
                return sse_put(out, "message_stop", json_pack("{s:s}", "type", "message_stop"));
        }
        return -EINVAL;
}

static int messages_stream_error(MockCall *c, Buf *out) {
        return sse_put(out, "error", json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
                                               "overloaded_error", "message", "Overloaded"));
}

static int messages_body(MockCall *c, Buf *out) {
        json_t *content = json_array();
        char id[32];

        if (!content)
                return -ENOMEM;
        if (messages_has_text(c)) {
                _cleanup_(buf_done) Buf text = {};
                if (call_text_full(c, &text) < 0 ||
                    json_array_append_new(content, json_pack("{s:s, s:o}", "type", "text", "text",
                                                             json_from_buf(&text))) < 0)
                        goto oom;
        }
        for (uint32_t t = 0; t < c->d.tools; t++) {
                tool_id(t, id, sizeof id);
                if (json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id,
                                                             "name", call_tool_name(c, t), "input",
                                                             tool_input_json(c, t))) < 0)
                        goto oom;
        }
        return buf_put_json(out, messages_object(c, content, true), JSON_COMPACT);
oom:
        json_decref(content);
        return -ENOMEM;
}

const Endpoint endpoint_anthropic_messages = {
        .name = "messages",
        .dialect = DIALECT_ANTHROPIC,
        .body_required = true,
        .prepare = messages_prepare,
        .body = messages_body,
        .plan = messages_plan,
        .render = messages_render,
        .stream_error = messages_stream_error,
        .piece = messages_piece,
};

/* ---- POST /v1/messages/count_tokens ---- */

static int count_tokens_prepare(MockCall *c) {
        if (!json_is_string(json_object_get(c->body, "model")))
                return call_bad_request(c, "model: Field required", NULL, NULL);
        if (!json_is_array(json_object_get(c->body, "messages")))
                return call_bad_request(c, "messages: Field required", NULL, NULL);
        return 0;
}

static int count_tokens_body(MockCall *c, Buf *out) {
        return buf_put_json(out, json_pack("{s:I}", "input_tokens", (json_int_t) c->input_tokens), JSON_COMPACT);
}

const Endpoint endpoint_anthropic_count_tokens = {
        .name = "count_tokens",
        .dialect = DIALECT_ANTHROPIC,
        .body_required = true,
        .prepare = count_tokens_prepare,
        .body = count_tokens_body,
};

/* ---- GET /v1/models and /v1/models/{id} ---- */

/* Newest first, as the API lists them. */
static const struct {
        const char *id;
        const char *display_name;
        const char *created_at;
} anthropic_models[] = {
        { "claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z" },
        { "claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z" },
        { "claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-24T00:00:00Z" },
        { "claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z" },
};

static json_t *anthropic_model_json(size_t i) {
        return json_pack("{s:s, s:s, s:s, s:s}", "type", "model", "id", anthropic_models[i].id, "display_name",
                         anthropic_models[i].display_name, "created_at", anthropic_models[i].created_at);
}

static ssize_t anthropic_model_find(const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(anthropic_models); i++)
                if (streq(anthropic_models[i].id, id))
                        return (ssize_t) i;
        return -1;
}

/* The value of a query parameter (no percent-decoding: model ids need none), or NULL. */
static char *query_param(const Request *r, const char *key) {
        const char *q = strchr(r->target, '?');
        size_t klen = strlen(key);

        for (const char *p = q ? q + 1 : NULL; p && *p;) {
                const char *end = strchrnul(p, '&');
                if ((size_t) (end - p) > klen && strneq(p, key, klen) && p[klen] == '=')
                        return strndup(p + klen + 1, (size_t) (end - p) - klen - 1);
                p = *end ? end + 1 : NULL;
        }
        return NULL;
}

static int anthropic_models_prepare(MockCall *c) {
        _cleanup_free_ char *limit = query_param(c->request, "limit");
        uint64_t v;

        if (limit && (parse_uint64(limit, &v) < 0 || v < 1 || v > 1000))
                return call_bad_request(c, "limit: Input should be greater than or equal to 1 and less than or "
                                        "equal to 1000", NULL, NULL);
        return 0;
}

static int anthropic_models_body(MockCall *c, Buf *out) {
        _cleanup_free_ char *limit_s = query_param(c->request, "limit");
        _cleanup_free_ char *after = query_param(c->request, "after_id");
        _cleanup_free_ char *before = query_param(c->request, "before_id");
        size_t from = 0, to = ELEMENTSOF(anthropic_models), limit = 20, first;
        uint64_t v;
        json_t *data = json_array();
        size_t n;
        ssize_t k;

        if (!data)
                return -ENOMEM;
        if (limit_s && parse_uint64(limit_s, &v) >= 0)
                limit = (size_t) v;
        if (after && (k = anthropic_model_find(after)) >= 0)
                from = (size_t) k + 1;
        if (before && (k = anthropic_model_find(before)) >= 0) {
                to = (size_t) k;
                from = to > limit ? to - limit : 0;
        }
        first = from;
        for (size_t i = from; i < to && i - from < limit; i++)
                if (json_array_append_new(data, anthropic_model_json(i)) < 0) {
                        json_decref(data);
                        return -ENOMEM;
                }
        n = json_array_size(data);
        return buf_put_json(out,
                            json_pack("{s:o, s:b, s:o, s:o}", "data", data,
                                      "has_more", (int) (before ? from > 0 : first + n < to),
                                      "first_id", n ? json_string(anthropic_models[first].id) : json_null(),
                                      "last_id",
                                      n ? json_string(anthropic_models[first + n - 1].id) : json_null()),
                            JSON_COMPACT);
}

const Endpoint endpoint_anthropic_models = {
        .name = "models",
        .dialect = DIALECT_ANTHROPIC,
        .prepare = anthropic_models_prepare,
        .body = anthropic_models_body,
};

static int anthropic_model_prepare(MockCall *c) {
        if (anthropic_model_find(c->path_arg) < 0) {
                (void) snprintf(c->bad_buf, sizeof c->bad_buf, "model: %s", c->path_arg);
                return call_reject(c, 404, "not_found_error", c->bad_buf, NULL, NULL);
        }
        return 0;
}

static int anthropic_model_body(MockCall *c, Buf *out) {
        return buf_put_json(out, anthropic_model_json((size_t) anthropic_model_find(c->path_arg)), JSON_COMPACT);
}

const Endpoint endpoint_anthropic_model = {
        .name = "model",
        .dialect = DIALECT_ANTHROPIC,
        .prepare = anthropic_model_prepare,
        .body = anthropic_model_body,
};
