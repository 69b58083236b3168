/* The mock's OpenAI endpoints: chat completions, completions, responses, embeddings and models. */
#include <inttypes.h>
#include <stdio.h>

#include "mock.h"

/* ---- shared ---- */

#define SERVER_ERROR_MESSAGE "The server had an error while processing your request. Sorry about that!"

static const char *const chat_max_fields[] = { "max_completion_tokens", "max_tokens", NULL };
static const char *const completions_max_fields[] = { "max_tokens", NULL };
static const char *const responses_max_fields[] = { "max_output_tokens", NULL };

static int require_model(MockCall *c) {
        if (!json_is_string(json_object_get(c->body, "model")))
                return call_bad_request(c, "you must provide a model parameter", NULL, NULL);
        return 0;
}

static void read_stream_flags(MockCall *c) {
        json_t *options = json_object_get(c->body, "stream_options");

        c->stream = json_is_true(json_object_get(c->body, "stream"));
        c->include_usage = c->stream && json_is_true(json_object_get(options, "include_usage"));
}

/* Chat Completions' usage: prompt_tokens includes the cached tokens, which the details break out. */
static json_t *chat_usage(MockCall *c) {
        uint64_t prompt = c->input_tokens + c->d.cache_read, completion = call_output_tokens(c);

        return json_pack("{s:I, s:I, s:I, s:{s:I, s:i}, s:{s:i, s:i, s:i, s:i}}",
                         "prompt_tokens", (json_int_t) prompt,
                         "completion_tokens", (json_int_t) completion,
                         "total_tokens", (json_int_t) (prompt + completion),
                         "prompt_tokens_details", "cached_tokens", (json_int_t) c->d.cache_read, "audio_tokens", 0,
                         "completion_tokens_details", "reasoning_tokens", 0, "audio_tokens", 0,
                         "accepted_prediction_tokens", 0, "rejected_prediction_tokens", 0);
}

static json_t *completions_usage(MockCall *c) {
        uint64_t prompt = c->input_tokens + c->d.cache_read, completion = call_output_tokens(c);

        return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t) prompt, "completion_tokens",
                         (json_int_t) completion, "total_tokens", (json_int_t) (prompt + completion));
}

static json_t *text_full_json(MockCall *c) {
        _cleanup_(buf_done) Buf b = {};

        if (call_text_full(c, &b) < 0)
                return NULL;
        return json_from_buf(&b);
}

static json_t *tool_args_json(MockCall *c, uint32_t t) {
        _cleanup_(buf_done) Buf b = {};

        if (call_tool_args(c, t, &b) < 0)
                return NULL;
        return json_from_buf(&b);
}

/* The endpoints' piece hooks (Endpoint.piece, for mock-stream.c) return 1 once they appended a piece. */
static int piece_of(int r) {
        return r < 0 ? r : 1;
}

static int openai_stream_error(MockCall *c, Buf *out) {
        /* What OpenAI sends when generation fails after the 200: an error object as a data event. */
        return sse_put(out, NULL,
                       json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", SERVER_ERROR_MESSAGE,
                                 "type", "server_error", "param", "code"));
}

static int done_event(Buf *out) {
        return buf_append_str(out, "data: [DONE]\n\n");
}

/* ---- POST /v1/chat/completions ---- */

enum {
        CHAT_ROLE,
        CHAT_TEXT,
        CHAT_TOOL_START,
        CHAT_TOOL_ARGS,
        CHAT_FINISH,
        CHAT_USAGE,
        CHAT_DONE,
};

static int chat_prepare(MockCall *c) {
        int r;

        r = require_model(c);
        if (r < 0)
                return r;
        if (!json_is_array(json_object_get(c->body, "messages")))
                return call_bad_request(c, "Missing required parameter: 'messages'.", "messages",
                                        "missing_required_parameter");
        read_stream_flags(c);
        call_apply_max_tokens(c, chat_max_fields);
        return 0;
}

static const char *chat_finish_reason(MockCall *c) {
        return c->d.tools > 0 ? "tool_calls" : c->truncated ? "length" : "stop";
}

/* Without a text preamble, the first tool call rides in the first chunk, as OpenAI sends it. */
static bool chat_role_has_tool(MockCall *c) {
        return c->d.tools > 0 && !c->d.preamble;
}

static json_t *chat_tool_start(MockCall *c, uint32_t t) {
        char id[32];

        (void) snprintf(id, sizeof id, "call_%" PRIu32, t);
        return json_pack("{s:i, s:s, s:s, s:{s:s, s:s}}", "index", (int) t, "id", id, "type", "function",
                         "function", "name", call_tool_name(c, t), "arguments", "");
}

static json_t *chat_chunk(MockCall *c, json_t *delta, const char *finish_reason, bool usage_chunk) {
        char id[48];
        json_t *j, *choices;

        (void) snprintf(id, sizeof id, "chatcmpl-mock-%" PRIu64, c->id);
        if (usage_chunk) {
                json_decref(delta);
                choices = json_array();
        } else
                choices = json_pack("[{s:i, s:o, s:n, s:o}]", "index", 0, "delta", delta, "logprobs",
                                    "finish_reason", finish_reason ? json_string(finish_reason) : json_null());
        j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:o}", "id", id, "object", "chat.completion.chunk",
                      "created", MOCK_CREATED, "model", c->model, "service_tier", "default",
                      "system_fingerprint", "fp_mock", "choices", choices);
        /* With include_usage every chunk carries "usage": null, and the last one the totals. */
        if (j && c->include_usage && c->d.usage &&
            json_object_set_new(j, "usage", usage_chunk ? chat_usage(c) : json_null()) < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static int chat_plan(MockCall *c) {
        int r = 0;

        r = call_add_step(c, CHAT_ROLE, 0, 1);
        if (r >= 0)
                r = call_add_step(c, CHAT_TEXT, 0, c->n_text);
        for (uint32_t t = 0; r >= 0 && t < c->d.tools; t++) {
                if (t > 0 || !chat_role_has_tool(c))
                        r = call_add_step(c, CHAT_TOOL_START, t, 1);
                if (r >= 0)
                        r = call_add_step(c, CHAT_TOOL_ARGS, t, MOCK_TOOL_PIECES);
        }
        if (r >= 0)
                r = call_add_step(c, CHAT_FINISH, 0, 1);
        if (r >= 0 && c->include_usage && c->d.usage)
                r = call_add_step(c, CHAT_USAGE, 0, 1);
        if (r >= 0)
                r = call_add_step(c, CHAT_DONE, 0, 1);
        return r;
}

static int chat_piece(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        switch (s->kind) {
        case CHAT_TEXT:
                return piece_of(call_text_piece(c, i, out));
        case CHAT_TOOL_ARGS:
                return piece_of(call_tool_piece(c, s->index, i, out));
        }
        return 0;
}

static int chat_render(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        json_t *delta;

        switch (s->kind) {
        case CHAT_ROLE:
                if (chat_role_has_tool(c))
                        delta = json_pack("{s:s, s:n, s:[o], s:n}", "role", "assistant", "content", "tool_calls",
                                          chat_tool_start(c, 0), "refusal");
                else
                        delta = json_pack("{s:s, s:s, s:n}", "role", "assistant", "content", "", "refusal");
                return sse_put(out, NULL, chat_chunk(c, delta, NULL, false));
        case CHAT_TEXT:
                delta = json_pack("{s:o}", "content", stream_piece_json(c, s, i));
                return sse_put(out, NULL, chat_chunk(c, delta, NULL, false));
        case CHAT_TOOL_START:
                delta = json_pack("{s:[o]}", "tool_calls", chat_tool_start(c, s->index));
                return sse_put(out, NULL, chat_chunk(c, delta, NULL, false));
        case CHAT_TOOL_ARGS:
                delta = json_pack("{s:[{s:i, s:{s:o}}]}", "tool_calls", "index", (int) s->index, "function",
                                  "arguments", stream_piece_json(c, s, i));
                return sse_put(out, NULL, chat_chunk(c, delta, NULL, false));
        case CHAT_FINISH:
                return sse_put(out, NULL, chat_chunk(c, json_object(), chat_finish_reason(c), false));
        case CHAT_USAGE:
                return sse_put(out, NULL, chat_chunk(c, NULL, NULL, true));
        case CHAT_DONE:
                return done_event(out);
        }
        return -EINVAL;
}

static int chat_body(MockCall *c, Buf *out) {
        char id[48], call_id[32];
        json_t *message, *j, *calls;

        (void) snprintf(id, sizeof id, "chatcmpl-mock-%" PRIu64, c->id);
        message = json_pack("{s:s, s:o}", "role", "assistant", "content",
                            c->n_text > 0 || c->d.tools == 0 ? text_full_json(c) : json_null());
        if (!message)
                return -ENOMEM;
        if (c->d.tools > 0) {
                calls = json_array();
                if (!calls || json_object_set_new(message, "tool_calls", calls) < 0) {
                        json_decref(message);
                        return -ENOMEM;
                }
                for (uint32_t t = 0; t < c->d.tools; t++) {
                        (void) snprintf(call_id, sizeof call_id, "call_%" PRIu32, t);
                        json_t *tc = json_pack("{s:s, s:s, s:{s:s, s:o}}", "id", call_id, "type", "function",
                                               "function", "name", call_tool_name(c, t), "arguments",
                                               tool_args_json(c, t));
                        if (json_array_append_new(calls, tc) < 0) {
                                json_decref(message);
                                return -ENOMEM;
                        }
                }
        }
        if (json_object_set_new(message, "refusal", json_null()) < 0 ||
            json_object_set_new(message, "annotations", json_array()) < 0) {
                json_decref(message);
                return -ENOMEM;
        }
        j = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:n, s:s}]}", "id", id, "object", "chat.completion",
                      "created", MOCK_CREATED, "model", c->model, "choices", "index", 0, "message", message,
                      "logprobs", "finish_reason", chat_finish_reason(c));
        if (j && c->d.usage && json_object_set_new(j, "usage", chat_usage(c)) < 0)
                j = (json_decref(j), NULL);
        if (j && (json_object_set_new(j, "service_tier", json_string("default")) < 0 ||
                  json_object_set_new(j, "system_fingerprint", json_string("fp_mock")) < 0))
                j = (json_decref(j), NULL);
        /* OpenAI pretty-prints whole (non-streamed) answers. */
        return buf_put_json(out, j, JSON_INDENT(2));
}

const Endpoint endpoint_openai_chat = {
        .name = "chat.completions",
        .dialect = DIALECT_OPENAI,
        .body_required = true,
        .prepare = chat_prepare,
        .body = chat_body,
        .plan = chat_plan,
        .render = chat_render,
        .stream_error = openai_stream_error,
        .piece = chat_piece,
};

/* ---- POST /v1/completions (legacy) ---- */

enum {
        COMPL_TEXT,
        COMPL_FINISH,
        COMPL_USAGE,
        COMPL_DONE,
};

static int completions_prepare(MockCall *c) {
        int r;

        r = require_model(c);
        if (r < 0)
                return r;
        read_stream_flags(c);
        c->d.tools = 0;         /* no tool calls in this API */
        call_apply_max_tokens(c, completions_max_fields);
        return 0;
}

static json_t *completions_chunk(MockCall *c, json_t *text, const char *finish_reason, bool usage_chunk) {
        char id[48];
        json_t *j, *choices;

        (void) snprintf(id, sizeof id, "cmpl-mock-%" PRIu64, c->id);
        if (usage_chunk) {
                json_decref(text);
                choices = json_array();
        } else
                choices = json_pack("[{s:o, s:i, s:n, s:o}]", "text", text, "index", 0, "logprobs",
                                    "finish_reason", finish_reason ? json_string(finish_reason) : json_null());
        j = json_pack("{s:s, s:s, s:i, s:o, s:s, s:s}", "id", id, "object", "text_completion", "created",
                      MOCK_CREATED, "choices", choices, "model", c->model, "system_fingerprint", "fp_mock");
        if (j && c->include_usage && c->d.usage &&
            json_object_set_new(j, "usage", usage_chunk ? completions_usage(c) : json_null()) < 0) {
                json_decref(j);
                return NULL;
        }
        return j;
}

static int completions_plan(MockCall *c) {
        int r;

        r = call_add_step(c, COMPL_TEXT, 0, c->n_text);
        if (r >= 0)
                r = call_add_step(c, COMPL_FINISH, 0, 1);
        if (r >= 0 && c->include_usage && c->d.usage)
                r = call_add_step(c, COMPL_USAGE, 0, 1);
        if (r >= 0)
                r = call_add_step(c, COMPL_DONE, 0, 1);
        return r;
}

static int completions_piece(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        return s->kind == COMPL_TEXT ? piece_of(call_text_piece(c, i, out)) : 0;
}

static int completions_render(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        switch (s->kind) {
        case COMPL_TEXT:
                return sse_put(out, NULL, completions_chunk(c, stream_piece_json(c, s, i), NULL, false));
        case COMPL_FINISH:
                return sse_put(out, NULL, completions_chunk(c, json_string(""), c->truncated ? "length" : "stop",
                                                            false));
        case COMPL_USAGE:
                return sse_put(out, NULL, completions_chunk(c, NULL, NULL, true));
        case COMPL_DONE:
                return done_event(out);
        }
        return -EINVAL;
}

static int completions_body(MockCall *c, Buf *out) {
        char id[48];
        json_t *j;

        (void) snprintf(id, sizeof id, "cmpl-mock-%" PRIu64, c->id);
        j = json_pack("{s:s, s:s, s:i, s:s, s:s, s:[{s:o, s:i, s:n, s:s}]}", "id", id, "object",
                      "text_completion", "created", MOCK_CREATED, "model", c->model, "system_fingerprint",
                      "fp_mock", "choices", "text", text_full_json(c), "index", 0, "logprobs", "finish_reason",
                      c->truncated ? "length" : "stop");
        if (j && c->d.usage && json_object_set_new(j, "usage", completions_usage(c)) < 0)
                j = (json_decref(j), NULL);
        return buf_put_json(out, j, JSON_INDENT(2));
}

const Endpoint endpoint_openai_completions = {
        .name = "completions",
        .dialect = DIALECT_OPENAI,
        .body_required = true,
        .prepare = completions_prepare,
        .body = completions_body,
        .plan = completions_plan,
        .render = completions_render,
        .stream_error = openai_stream_error,
        .piece = completions_piece,
};

/* ---- POST /v1/responses ---- */

enum {
        RESP_CREATED,
        RESP_IN_PROGRESS,
        RESP_MSG_ADDED,
        RESP_PART_ADDED,
        RESP_TEXT_DELTA,
        RESP_TEXT_DONE,
        RESP_PART_DONE,
        RESP_MSG_DONE,
        RESP_FC_ADDED,
        RESP_FC_DELTA,
        RESP_FC_ARGS_DONE,
        RESP_FC_DONE,
        RESP_COMPLETED,
};

static int responses_prepare(MockCall *c) {
        if (!json_is_string(json_object_get(c->body, "model")))
                return call_bad_request(c, "Missing required parameter: 'model'.", "model",
                                        "missing_required_parameter");
        read_stream_flags(c);
        c->include_usage = false;
        call_apply_max_tokens(c, responses_max_fields);
        return 0;
}

static bool responses_has_message(MockCall *c) {
        return c->d.tools == 0 || c->d.preamble;
}

static uint32_t responses_fc_index(MockCall *c, uint32_t t) {
        return t + (responses_has_message(c) ? 1 : 0);
}

static json_t *echo(MockCall *c, const char *key, json_t *fallback) {
        json_t *v = json_object_get(c->body, key);

        if (v) {
                json_decref(fallback);
                return json_incref(v);
        }
        return fallback;
}

static json_t *responses_message_item(MockCall *c, bool final) {
        char id[48];

        (void) snprintf(id, sizeof id, "msg_mock_%" PRIu64, c->id);
        if (!final)
                return json_pack("{s:s, s:s, s:s, s:[], s:s}", "id", id, "type", "message",
                                 "status", "in_progress", "content", "role", "assistant");
        return json_pack("{s:s, s:s, s:s, s:[{s:s, s:[], s:[], s:o}], s:s}", "id", id, "type", "message",
                         "status", c->truncated ? "incomplete" : "completed",
                         "content", "type", "output_text", "annotations", "logprobs", "text", text_full_json(c),
                         "role", "assistant");
}

static json_t *responses_fc_item(MockCall *c, uint32_t t, bool final) {
        char id[48], call_id[32];

        (void) snprintf(id, sizeof id, "fc_mock_%" PRIu64 "_%" PRIu32, c->id, t);
        (void) snprintf(call_id, sizeof call_id, "call_%" PRIu32, t);
        return json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "id", id, "type", "function_call", "status",
                         final ? "completed" : "in_progress", "arguments",
                         final ? tool_args_json(c, t) : json_string(""), "call_id", call_id, "name",
                         call_tool_name(c, t));
}

static json_t *responses_usage(MockCall *c) {
        uint64_t in = c->input_tokens + c->d.cache_read, out = call_output_tokens(c);

        return json_pack("{s:I, s:{s:I}, s:I, s:{s:i}, s:I}", "input_tokens", (json_int_t) in,
                         "input_tokens_details", "cached_tokens", (json_int_t) c->d.cache_read, "output_tokens",
                         (json_int_t) out, "output_tokens_details", "reasoning_tokens", 0, "total_tokens",
                         (json_int_t) (in + out));
}

/* The response object; `final` adds the output and usage (response.completed and the plain answer). */
static json_t *responses_object(MockCall *c, bool final) {
        char id[48];
        json_t *j, *output = json_array();
        const char *status = !final ? "in_progress" : c->truncated ? "incomplete" : "completed";

        if (!output)
                return NULL;
        if (final) {
                if (responses_has_message(c) && json_array_append_new(output, responses_message_item(c, true)) < 0)
                        goto oom;
                for (uint32_t t = 0; t < c->d.tools; t++)
                        if (json_array_append_new(output, responses_fc_item(c, t, true)) < 0)
                                goto oom;
        }
        (void) snprintf(id, sizeof id, "resp_mock_%" PRIu64, c->id);
        j = json_pack("{s:s, s:s, s:i, s:s, s:b, s:n, s:o, s:o, s:o, s:s, s:o, s:b, s:o, s:{s:n, s:n}, s:o, s:o,"
                      " s:{s:{s:s}}, s:o, s:o, s:o, s:s, s:o, s:n, s:o}",
                      "id", id, "object", "response", "created_at", MOCK_CREATED, "status", status,
                      "background", 0, "error",
                      "incomplete_details",
                      final && c->truncated ? json_pack("{s:s}", "reason", "max_output_tokens") : json_null(),
                      "instructions", echo(c, "instructions", json_null()),
                      "max_output_tokens", echo(c, "max_output_tokens", json_null()),
                      "model", c->model,
                      "output", output,
                      "parallel_tool_calls", 1,
                      "previous_response_id", echo(c, "previous_response_id", json_null()),
                      "reasoning", "effort", "summary",
                      "store", echo(c, "store", json_true()),
                      "temperature", echo(c, "temperature", json_real(1.0)),
                      "text", "format", "type", "text",
                      "tool_choice", echo(c, "tool_choice", json_string("auto")),
                      "tools", echo(c, "tools", json_array()),
                      "top_p", echo(c, "top_p", json_real(1.0)),
                      "truncation", "disabled",
                      "usage", final && c->d.usage ? responses_usage(c) : json_null(),
                      "user",
                      "metadata", echo(c, "metadata", json_object()));
        return j;
oom:
        json_decref(output);
        return NULL;
}

static int responses_plan(MockCall *c) {
        int r;

        r = call_add_step(c, RESP_CREATED, 0, 1);
        if (r >= 0)
                r = call_add_step(c, RESP_IN_PROGRESS, 0, 1);
        if (r >= 0 && responses_has_message(c)) {
                r = call_add_step(c, RESP_MSG_ADDED, 0, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_PART_ADDED, 0, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_TEXT_DELTA, 0, c->n_text);
                if (r >= 0)
                        r = call_add_step(c, RESP_TEXT_DONE, 0, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_PART_DONE, 0, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_MSG_DONE, 0, 1);
        }
        for (uint32_t t = 0; r >= 0 && t < c->d.tools; t++) {
                r = call_add_step(c, RESP_FC_ADDED, t, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_FC_DELTA, t, MOCK_TOOL_PIECES);
                if (r >= 0)
                        r = call_add_step(c, RESP_FC_ARGS_DONE, t, 1);
                if (r >= 0)
                        r = call_add_step(c, RESP_FC_DONE, t, 1);
        }
        if (r >= 0)
                r = call_add_step(c, RESP_COMPLETED, 0, 1);
        return r;
}

/* Every Responses event is "event: TYPE" with {"type": TYPE, "sequence_number": N, ...}. */
static int responses_event(MockCall *c, Buf *out, const char *type, json_t *rest) {
        json_t *j;

        if (!rest)
                return -ENOMEM;
        j = json_pack("{s:s, s:I}", "type", type, "sequence_number", (json_int_t) c->seq++);
        if (!j || json_object_update(j, rest) < 0) {
                json_decref(j);
                json_decref(rest);
                return -ENOMEM;
        }
        json_decref(rest);
        return sse_put(out, type, j);
}

static int responses_piece(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        switch (s->kind) {
        case RESP_TEXT_DELTA:
                return piece_of(call_text_piece(c, i, out));
        case RESP_FC_DELTA:
                return piece_of(call_tool_piece(c, s->index, i, out));
        }
        return 0;
}

static int responses_render(MockCall *c, const Step *s, uint32_t i, Buf *out) {
        char msg_id[48], fc_id[48];
        uint32_t fo = responses_fc_index(c, s->index);

        (void) snprintf(msg_id, sizeof msg_id, "msg_mock_%" PRIu64, c->id);
        (void) snprintf(fc_id, sizeof fc_id, "fc_mock_%" PRIu64 "_%" PRIu32, c->id, s->index);
        switch (s->kind) {
        case RESP_CREATED:
                return responses_event(c, out, "response.created",
                                       json_pack("{s:o}", "response", responses_object(c, false)));
        case RESP_IN_PROGRESS:
                return responses_event(c, out, "response.in_progress",
                                       json_pack("{s:o}", "response", responses_object(c, false)));
        case RESP_MSG_ADDED:
                return responses_event(c, out, "response.output_item.added",
                                       json_pack("{s:i, s:o}", "output_index", 0, "item",
                                                 responses_message_item(c, false)));
        case RESP_PART_ADDED:
                return responses_event(c, out, "response.content_part.added",
                                       json_pack("{s:s, s:i, s:i, s:{s:s, s:[], s:[], s:s}}", "item_id", msg_id,
                                                 "output_index", 0, "content_index", 0, "part", "type",
                                                 "output_text", "annotations", "logprobs", "text", ""));
        case RESP_TEXT_DELTA:
                return responses_event(c, out, "response.output_text.delta",
                                       json_pack("{s:s, s:i, s:i, s:o, s:[]}", "item_id", msg_id,
                                                 "output_index", 0, "content_index", 0,
                                                 "delta", stream_piece_json(c, s, i), "logprobs"));
        case RESP_TEXT_DONE:
                return responses_event(c, out, "response.output_text.done",
                                       json_pack("{s:s, s:i, s:i, s:o, s:[]}", "item_id", msg_id,
                                                 "output_index", 0, "content_index", 0,
                                                 "text", text_full_json(c), "logprobs"));
        case RESP_PART_DONE:
                return responses_event(c, out, "response.content_part.done",
                                       json_pack("{s:s, s:i, s:i, s:{s:s, s:[], s:[], s:o}}", "item_id", msg_id,
                                                 "output_index", 0, "content_index", 0, "part", "type",
                                                 "output_text", "annotations", "logprobs", "text",
                                                 text_full_json(c)));
        case RESP_MSG_DONE:
                return responses_event(c, out, "response.output_item.done",
                                       json_pack("{s:i, s:o}", "output_index", 0, "item",
                                                 responses_message_item(c, true)));
        case RESP_FC_ADDED:
                return responses_event(c, out, "response.output_item.added",
                                       json_pack("{s:i, s:o}", "output_index", (int) fo, "item",
                                                 responses_fc_item(c, s->index, false)));
        case RESP_FC_DELTA:
                return responses_event(c, out, "response.function_call_arguments.delta",
                                       json_pack("{s:s, s:i, s:o}", "item_id", fc_id, "output_index", (int) fo,
                                                 "delta", stream_piece_json(c, s, i)));
        case RESP_FC_ARGS_DONE:
                return responses_event(c, out, "response.function_call_arguments.done",
                                       json_pack("{s:s, s:i, s:o}", "item_id", fc_id, "output_index", (int) fo,
                                                 "arguments", tool_args_json(c, s->index)));
        case RESP_FC_DONE:
                return responses_event(c, out, "response.output_item.done",
                                       json_pack("{s:i, s:o}", "output_index", (int) fo, "item",
                                                 responses_fc_item(c, s->index, true)));
        case RESP_COMPLETED:
                return responses_event(c, out, c->truncated ? "response.incomplete" : "response.completed",
                                       json_pack("{s:o}", "response", responses_object(c, true)));
        }
        return -EINVAL;
}

static int responses_stream_error(MockCall *c, Buf *out) {
        return responses_event(c, out, "error",
                               json_pack("{s:s, s:s, s:n}", "code", "server_error", "message",
                                         SERVER_ERROR_MESSAGE, "param"));
}

static int responses_body(MockCall *c, Buf *out) {
        return buf_put_json(out, responses_object(c, true), JSON_INDENT(2));
}

const Endpoint endpoint_openai_responses = {
        .name = "responses",
        .dialect = DIALECT_OPENAI,
        .body_required = true,
        .prepare = responses_prepare,
        .body = responses_body,
        .plan = responses_plan,
        .render = responses_render,
        .stream_error = responses_stream_error,
        .piece = responses_piece,
        .sequenced = true,
};

/* ---- POST /v1/embeddings ---- */

#define EMBEDDING_DIMENSIONS_DEFAULT 8
#define EMBEDDING_DIMENSIONS_MAX 8192

static int embeddings_prepare(MockCall *c) {
        json_t *input = json_object_get(c->body, "input"), *dims = json_object_get(c->body, "dimensions");
        const char *format = json_string_value(json_object_get(c->body, "encoding_format"));
        int r;

        r = require_model(c);
        if (r < 0)
                return r;
        if (!json_is_string(input) && !(json_is_array(input) && json_array_size(input) > 0))
                return call_bad_request(c, "Missing required parameter: 'input'.", "input",
                                        "missing_required_parameter");
        if (dims && (!json_is_integer(dims) || json_integer_value(dims) < 1 ||
                     json_integer_value(dims) > EMBEDDING_DIMENSIONS_MAX))
                return call_bad_request(c, "Invalid value for 'dimensions'.", "dimensions", "invalid_value");
        if (json_object_get(c->body, "encoding_format") &&
            (!format || (!streq(format, "float") && !streq(format, "base64"))))
                return call_bad_request(c, "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
                                        "encoding_format", "invalid_value");
        return 0;
}

/* FNV-1a of the input's JSON, then xorshift: the same input always gets the same vector. Values are
 * multiples of 1/1024, exact in float32 and printed exactly. */
static uint64_t embedding_seed(json_t *item) {
        _cleanup_free_ char *s = json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);
        uint64_t h = 0xcbf29ce484222325ULL;

        for (const char *p = s ?: ""; *p; p++)
                h = (h ^ (uint8_t) *p) * 0x100000001b3ULL;
        return h ?: 1;
}

static float embedding_value(uint64_t *state) {
        uint64_t x = *state;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        return (float) ((int) (x % 2049) - 1024) / 1024.0f;
}

static json_t *embedding_of(json_t *item, size_t dims, bool base64) {
        uint64_t state = embedding_seed(item);
        json_t *a;

        if (base64) {
                _cleanup_(buf_done) Buf raw = {}, enc = {};
                for (size_t j = 0; j < dims; j++) {
                        float f = embedding_value(&state);
                        uint8_t le[4];
                        uint32_t u;

                        memcpy(&u, &f, 4);
                        le[0] = (uint8_t) u, le[1] = (uint8_t) (u >> 8), le[2] = (uint8_t) (u >> 16);
                        le[3] = (uint8_t) (u >> 24);
                        if (buf_append(&raw, le, 4) < 0)
                                return NULL;
                }
                if (base64_append(&enc, buf_data(&raw), buf_len(&raw)) < 0)
                        return NULL;
                return json_from_buf(&enc);
        }
        a = json_array();
        for (size_t j = 0; a && j < dims; j++)
                if (json_array_append_new(a, json_real(embedding_value(&state))) < 0)
                        a = (json_decref(a), NULL);
        return a;
}

static int embeddings_body(MockCall *c, Buf *out) {
        json_t *input = json_object_get(c->body, "input"), *data = json_array(), *j;
        json_t *dims = json_object_get(c->body, "dimensions");
        const char *format = json_string_value(json_object_get(c->body, "encoding_format"));
        size_t n_dims = dims ? (size_t) json_integer_value(dims) : EMBEDDING_DIMENSIONS_DEFAULT;
        bool base64 = format && streq(format, "base64");
        /* A string, a list of strings, one list of token ids, or a list of token lists. */
        bool single = json_is_string(input) || json_is_integer(json_array_get(input, 0));
        size_t n = single ? 1 : json_array_size(input);

        if (!data)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_t *vector = embedding_of(single ? input : json_array_get(input, i), n_dims, base64);

                if (json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding",
                                                          "index", (int) i, "embedding", vector)) < 0) {
                        json_decref(data);
                        return -ENOMEM;
                }
        }
        j = json_pack("{s:s, s:o, s:s}", "object", "list", "data", data, "model", c->model);
        if (j && c->d.usage &&
            json_object_set_new(j, "usage", json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t) c->input_tokens,
                                                      "total_tokens", (json_int_t) c->input_tokens)) < 0)
                j = (json_decref(j), NULL);
        return buf_put_json(out, j, JSON_INDENT(2));
}

const Endpoint endpoint_openai_embeddings = {
        .name = "embeddings",
        .dialect = DIALECT_OPENAI,
        .body_required = true,
        .prepare = embeddings_prepare,
        .body = embeddings_body,
};

/* ---- GET /v1/models and /v1/models/{id} ---- */

static const struct {
        const char *id;
        int64_t created;
        const char *owned_by;
} openai_models[] = {
        { "gpt-4o", 1715367049, "system" },
        { "gpt-4o-mini", 1721172741, "system" },
        { "gpt-4.1", 1744316542, "system" },
        { "o3-mini", 1737146383, "system" },
        { "text-embedding-3-small", 1705948997, "system" },
};

static json_t *openai_model_json(size_t i) {
        return json_pack("{s:s, s:s, s:I, s:s}", "id", openai_models[i].id, "object", "model", "created",
                         (json_int_t) openai_models[i].created, "owned_by", openai_models[i].owned_by);
}

static int models_body(MockCall *c, Buf *out) {
        json_t *data = json_array();

        for (size_t i = 0; data && i < ELEMENTSOF(openai_models); i++)
                if (json_array_append_new(data, openai_model_json(i)) < 0)
                        data = (json_decref(data), NULL);
        if (!data)
                return -ENOMEM;
        return buf_put_json(out, json_pack("{s:s, s:o}", "object", "list", "data", data), JSON_INDENT(2));
}

const Endpoint endpoint_openai_models = {
        .name = "models",
        .dialect = DIALECT_OPENAI,
        .body = models_body,
};

static ssize_t openai_model_find(const char *id) {
        for (size_t i = 0; i < ELEMENTSOF(openai_models); i++)
                if (streq(openai_models[i].id, id))
                        return (ssize_t) i;
        return -1;
}

static int model_prepare(MockCall *c) {
        if (openai_model_find(c->path_arg) < 0) {
                (void) snprintf(c->bad_buf, sizeof c->bad_buf, "The model '%s' does not exist", c->path_arg);
                return call_reject(c, 404, "invalid_request_error", c->bad_buf, "model", "model_not_found");
        }
        return 0;
}

static int model_body(MockCall *c, Buf *out) {
        return buf_put_json(out, openai_model_json((size_t) openai_model_find(c->path_arg)), JSON_INDENT(2));
}

const Endpoint endpoint_openai_model = {
        .name = "model",
        .dialect = DIALECT_OPENAI,
        .prepare = model_prepare,
        .body = model_body,
};
