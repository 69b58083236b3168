/* Client stream writers: neutral block events -> Anthropic SSE, OpenAI chat chunks, or Responses events.
 *
 * Anthropic (what the Messages API sends, in this order):
 *   message_start (usage known then: the upstream's, or the request estimate) -> ping ->
 *   per block: content_block_start / content_block_delta* / content_block_stop, indexes 0, 1, 2... ->
 *   message_delta (stop_reason, stop_sequence, usage with output and input tokens) -> message_stop.
 *   Text is text_delta, reasoning is a thinking block with thinking_delta and, before its stop, a
 *   signature_delta: the upstream's signature, or "" when it has none (an OpenAI upstream never has one;
 *   gate drops thinking blocks from later requests to such an upstream, so the empty signature is never
 *   checked). Tool calls are tool_use blocks with input_json_delta.
 * OpenAI chat: a first chunk with delta.role "assistant"; content / reasoning_content / refusal deltas;
 *   tool_calls deltas with a stable 0-based index, id, type and function.name on the first, arguments
 *   after; finish_reason on the last choice chunk; with include_usage a usage chunk (choices []) and
 *   "usage": null on the others; then data: [DONE].
 * Responses: response.created, response.in_progress, then per output item output_item.added, its part
 *   events and deltas, its .done events and output_item.done; response.completed (or response.incomplete)
 *   with the whole response and usage. Every event has a sequence_number.
 * Errors: Anthropic `event: error`; chat `data: {"error":{...}}` and no [DONE]; Responses `error` then
 *   response.failed.
 */
#include <assert.h>
#include <stdio.h>

#include "shared/util.h"
#include "translate/json-fast.h"
#include "translate/json-scratch.h"
#include "translate/stream-internal.h"

typedef enum ClientDialect {
        CLIENT_ANTHROPIC,
        CLIENT_CHAT,
        CLIENT_RESPONSES,
} ClientDialect;

static ClientDialect client_dialect(const StreamTranslator *t) {
        switch (t->kind) {
        case TRANSLATE_MESSAGES_TO_CHAT: return CLIENT_ANTHROPIC;
        case TRANSLATE_CHAT_TO_MESSAGES: return CLIENT_CHAT;
        default: return CLIENT_RESPONSES;
        }
}

/* The distinctive part of the client id ("msg_abc" -> "abc"), for ids made from it. */
static const char *client_id_base(const StreamTranslator *t) {
        const char *u = strpbrk(t->client_id, "_-");
        return u ? u + 1 : t->client_id;
}

/* Consumes j. */
static int put(StreamTranslator *t, const char *event, json_t *j) {
        int r;

        if (!j)
                return -ENOMEM;
        r = sse_put(t->out, event, j);
        json_decref(j);
        return r;
}

/* ---- Anthropic ---- */

static int anthropic_start(StreamTranslator *t) {
        TranslateUsage u = t->usage;
        json_t *msg;
        int r;

        if (!u.known)
                u.input = t->input_estimate;
        u.output = 0;
        msg = json_pack("{s:s, s:s, s:s, s:[], s:s, s:n, s:n, s:o}", "id", t->client_id, "type", "message",
                        "role", "assistant", "content", "model", t->client_model, "stop_reason",
                        "stop_sequence", "usage", usage_to_anthropic(&u));
        r = put(t, "message_start", json_pack("{s:s, s:o}", "type", "message_start", "message", msg));
        if (r < 0)
                return r;
        /* Byte for byte what the API sends. */
        return buf_append_str(t->out, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
}

static int anthropic_block_start(StreamTranslator *t, BlockKind kind, const char *id, const char *name,
                                 const char *data) {
        _cleanup_free_ char *tid = NULL;
        json_t *block;

        switch (kind) {
        case BLOCK_THINKING:
                block = json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "", "signature", "");
                break;
        case BLOCK_REDACTED_THINKING:
                block = json_pack("{s:s, s:s}", "type", "redacted_thinking", "data", data ?: "");
                break;
        case BLOCK_TOOL_USE:
                if (tool_id_sanitize("toolu_", id, client_id_base(t), t->n_tools, &tid) < 0)
                        return -ENOMEM;
                block = json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", tid, "name", name,
                                  "input");
                break;
        default:
                block = json_pack("{s:s, s:s}", "type", "text", "text", "");
        }
        return put(t, "content_block_start",
                   json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", (int) t->n_blocks,
                             "content_block", block));
}

static int anthropic_delta(StreamTranslator *t, json_t *delta) {
        return put(t, "content_block_delta",
                   json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index", (int) t->n_blocks,
                             "delta", delta));
}

/* FIELD":"s" of a member whose opening quote is written already; the direct delta writers' common part. */
static int append_member_string(Buf *b, const char *field, const char *s, size_t n) {
        int r;

        r = buf_append_str(b, field);
        if (r >= 0)
                r = buf_append_str(b, "\":");
        if (r >= 0)
                r = json_write_string(s, n, b);
        return r;
}

/* The hot path of a translated stream, one delta: the event written straight as bytes, exactly what put()
 * writes for the json_pack()ed event (key order, escapes: test-translate-stream compares the two). The
 * jansson way cost ~9k instructions a delta (bench/callgrind-request, "stream, translated"). -EINVAL with
 * nothing written when a string is not UTF-8: the caller takes the jansson path, which replaces what is not. */
static int anthropic_delta_direct(StreamTranslator *t, const char *type, const char *field, const char *s, size_t n) {
        Buf *b = t->out;
        size_t len = buf_len(b);
        int r;

        /* Not buf_printf(): vsnprintf() cost 4k instructions a delta here. */
        r = buf_append_str(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":");
        if (r >= 0)
                r = buf_append_uint(b, t->n_blocks, 10);
        if (r >= 0)
                r = buf_append_str(b, ",\"delta\":{\"type\":\"");
        if (r >= 0)
                r = buf_append_str(b, type);
        if (r >= 0)
                r = buf_append_str(b, "\",\"");
        if (r >= 0)
                r = append_member_string(b, field, s, n);
        if (r >= 0)
                r = buf_append_str(b, "}}\n\n");
        if (r < 0)
                b->tail = b->head + len;
        return r;
}

static int anthropic_block_delta(StreamTranslator *t, const char *s, size_t n) {
        int r;

        switch (t->block_kind) {
        case BLOCK_THINKING:
                r = anthropic_delta_direct(t, "thinking_delta", "thinking", s, n);
                break;
        case BLOCK_TOOL_USE:
                r = anthropic_delta_direct(t, "input_json_delta", "partial_json", s, n);
                break;
        case BLOCK_REDACTED_THINKING:
                return 0;
        default:
                r = anthropic_delta_direct(t, "text_delta", "text", s, n);
                break;
        }
        if (r != -EINVAL)
                return r;
        switch (t->block_kind) {
        case BLOCK_THINKING:
                return anthropic_delta(t, json_pack("{s:s, s:o}", "type", "thinking_delta", "thinking",
                                                    json_stringn_lossy(s, n)));
        case BLOCK_TOOL_USE:
                return anthropic_delta(t, json_pack("{s:s, s:o}", "type", "input_json_delta", "partial_json",
                                                    json_stringn_lossy(s, n)));
        case BLOCK_REDACTED_THINKING:
                return 0;
        default:
                return anthropic_delta(t, json_pack("{s:s, s:o}", "type", "text_delta", "text",
                                                    json_stringn_lossy(s, n)));
        }
}

static int anthropic_signature(StreamTranslator *t, const char *signature) {
        t->block_signed = true;
        return anthropic_delta(t, json_pack("{s:s, s:s}", "type", "signature_delta", "signature", signature));
}

static int anthropic_block_stop(StreamTranslator *t) {
        int r;

        if (t->block_kind == BLOCK_THINKING && !t->block_signed) {
                r = anthropic_signature(t, "");
                if (r < 0)
                        return r;
        }
        return put(t, "content_block_stop",
                   json_pack("{s:s, s:i}", "type", "content_block_stop", "index", (int) t->n_blocks));
}

static int anthropic_finish(StreamTranslator *t) {
        StopReason stop = t->stop == STOP_NONE ? STOP_END_TURN : t->stop;
        int r;

        if (stop == STOP_END_TURN && t->saw_refusal)
                stop = STOP_REFUSAL;
        r = put(t, "message_delta",
                json_pack("{s:s, s:{s:s, s:s?}, s:o}", "type", "message_delta", "delta", "stop_reason",
                          stop_reason_to_anthropic(stop), "stop_sequence",
                          stop == STOP_STOP_SEQUENCE ? t->stop_sequence : NULL, "usage",
                          /* Counts the upstream never gave are left out: message_start's stand. */
                          t->usage.known ? usage_to_anthropic(&t->usage) : json_pack("{s:i}", "output_tokens", 0)));
        if (r < 0)
                return r;
        return put(t, "message_stop", json_pack("{s:s}", "type", "message_stop"));
}

/* ---- OpenAI chat ---- */

static int chat_chunk(StreamTranslator *t, json_t *delta, const char *finish_reason) {
        json_t *j;

        if (!delta)
                return -ENOMEM;
        j = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:n, s:o}]}", "id", t->client_id, "object",
                      "chat.completion.chunk", "created", (json_int_t) t->created, "model", t->client_model,
                      "choices", "index", 0, "delta", delta, "logprobs", "finish_reason",
                      finish_reason ? json_string(finish_reason) : json_null());
        /* With include_usage OpenAI sends "usage": null on every chunk but the last. */
        if (j && t->include_usage && json_object_set_new(j, "usage", json_null()) < 0)
                j = (json_decref(j), NULL);
        return put(t, NULL, j);
}

static int chat_start(StreamTranslator *t) {
        return chat_chunk(t, json_pack("{s:s, s:s, s:n}", "role", "assistant", "content", "", "refusal"), NULL);
}

static int chat_block_start(StreamTranslator *t, BlockKind kind, const char *id, const char *name) {
        _cleanup_free_ char *tid = NULL;

        if (kind != BLOCK_TOOL_USE)
                return 0;       /* text starts with its first delta */
        if (tool_id_sanitize("call_", id, client_id_base(t), t->n_tools, &tid) < 0)
                return -ENOMEM;
        return chat_chunk(t,
                          json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index",
                                    (int) t->n_tools, "id", tid, "type", "function", "function", "name", name,
                                    "arguments", ""),
                          NULL);
}

/* As anthropic_delta_direct(), for a chat chunk whose delta is {FIELD: s}: what chat_chunk() writes. */
static int chat_delta_direct(StreamTranslator *t, const char *field, const char *s, size_t n) {
        Buf *b = t->out;
        size_t len = buf_len(b);
        int r;

        r = buf_append_str(b, "data: {\"id\":");
        if (r >= 0)
                r = json_write_string(t->client_id, strlen(t->client_id), b);
        if (r >= 0)
                r = buf_append_str(b, t->created < 0 ? ",\"object\":\"chat.completion.chunk\",\"created\":-" :
                                                       ",\"object\":\"chat.completion.chunk\",\"created\":");
        if (r >= 0)
                r = buf_append_uint(b, t->created < 0 ? -(uint64_t) t->created : (uint64_t) t->created, 10);
        if (r >= 0)
                r = buf_append_str(b, ",\"model\":");
        if (r >= 0)
                r = json_write_string(t->client_model, strlen(t->client_model), b);
        if (r >= 0)
                r = buf_append_str(b, ",\"choices\":[{\"index\":0,\"delta\":{\"");
        if (r >= 0)
                r = append_member_string(b, field, s, n);
        if (r >= 0)
                r = buf_append_str(b, t->include_usage ? "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n" :
                                                         "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
        if (r < 0)
                b->tail = b->head + len;
        return r;
}

static int chat_block_delta(StreamTranslator *t, const char *s, size_t n) {
        int r = -EINVAL;

        if (t->block_kind == BLOCK_TEXT)
                r = chat_delta_direct(t, "content", s, n);
        else if (t->block_kind == BLOCK_THINKING)
                r = chat_delta_direct(t, "reasoning_content", s, n);
        if (r != -EINVAL)
                return r;
        switch (t->block_kind) {
        case BLOCK_THINKING:
                return chat_chunk(t, json_pack("{s:o}", "reasoning_content", json_stringn_lossy(s, n)), NULL);
        case BLOCK_REFUSAL:
                return chat_chunk(t, json_pack("{s:o}", "refusal", json_stringn_lossy(s, n)), NULL);
        case BLOCK_TOOL_USE:
                return chat_chunk(t, json_pack("{s:[{s:i, s:{s:o}}]}", "tool_calls", "index", (int) t->n_tools,
                                               "function", "arguments", json_stringn_lossy(s, n)),
                                  NULL);
        case BLOCK_REDACTED_THINKING:
                return 0;       /* opaque: nothing an OpenAI client can read */
        default:
                return chat_chunk(t, json_pack("{s:o}", "content", json_stringn_lossy(s, n)), NULL);
        }
}

static int chat_finish(StreamTranslator *t) {
        StopReason stop = t->stop;
        json_t *j;
        int r;

        if (stop == STOP_NONE && t->n_tools > 0)
                stop = STOP_TOOL_USE;
        r = chat_chunk(t, json_object(), stop_reason_to_openai(stop));
        if (r < 0)
                return r;
        if (t->include_usage) {
                j = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", t->client_id, "object",
                              "chat.completion.chunk", "created", (json_int_t) t->created, "model",
                              t->client_model, "choices", "usage", usage_to_openai(&t->usage));
                r = put(t, NULL, j);
                if (r < 0)
                        return r;
        }
        return buf_append_str(t->out, "data: [DONE]\n\n");
}

/* ---- Responses ---- */

/* t->output, the finished items, lives across events, outside the feed's JSON scratch scope
 * (json-scratch.h): an item goes in as a copy, made and appended with jansson on malloc(). */
static int resp_output_append(StreamTranslator *t, const json_t *item) {
        unsigned saved = json_scratch_suspend();
        int r;

        r = json_append(t->output, json_deep_copy(item));
        json_scratch_resume(saved);
        return r;
}

/* {"type": TYPE, FIELDS..., "sequence_number": N}; consumes fields. */
static int resp_event(StreamTranslator *t, const char *type, json_t *fields) {
        json_t *j;
        int r;

        if (!fields)
                return -ENOMEM;
        j = json_pack("{s:s}", "type", type);
        if (!j || json_object_update(j, fields) < 0 ||
            json_object_set_new(j, "sequence_number", json_integer((json_int_t) t->seq++)) < 0) {
                json_decref(j);
                json_decref(fields);
                return -ENOMEM;
        }
        json_decref(fields);
        r = sse_put(t->out, type, j);
        json_decref(j);
        return r;
}

static json_t *resp_object(StreamTranslator *t, const char *status, bool with_output) {
        return responses_object(t->client_id, t->client_model, t->created, status, t->stop,
                                with_output ? json_incref(t->output) : json_array(),
                                with_output ? &t->usage : NULL);
}

static int responses_start(StreamTranslator *t) {
        int r;

        r = resp_event(t, "response.created",
                       json_pack("{s:o}", "response", resp_object(t, "in_progress", false)));
        if (r >= 0)
                r = resp_event(t, "response.in_progress",
                               json_pack("{s:o}", "response", resp_object(t, "in_progress", false)));
        return r;
}

static const char *resp_base(const StreamTranslator *t) {
        return startswith(t->client_id, "resp_") ? t->client_id + 5 : t->client_id;
}

static json_t *resp_item(StreamTranslator *t, const char *status, bool final) {
        const char *text = final ? (const char *) buf_data(&t->block_text) : NULL;

        switch (t->block_kind) {
        case BLOCK_THINKING:
        case BLOCK_REDACTED_THINKING:
                return responses_reasoning_item(t->block_id, status, t->block_kind, text, t->block_signature);
        case BLOCK_TOOL_USE:
                return responses_function_item(t->block_id, status, t->block_call_id, t->block_name,
                                               final ? text : "");
        default:
                return responses_message_item(t->block_id, status, t->block_kind, text);
        }
}

static json_t *resp_part(StreamTranslator *t, bool final) {
        const char *text = final ? (const char *) buf_data(&t->block_text) : "";

        if (t->block_kind == BLOCK_REFUSAL)
                return json_pack("{s:s, s:s}", "type", "refusal", "refusal", text);
        return json_pack("{s:s, s:[], s:[], s:s}", "type", "output_text", "annotations", "logprobs", "text",
                         text);
}

static int responses_block_start(StreamTranslator *t, BlockKind kind, const char *id, const char *name,
                                 const char *data) {
        const char *prefix = kind == BLOCK_TOOL_USE ? "fc" :
                             kind == BLOCK_THINKING || kind == BLOCK_REDACTED_THINKING ? "rs" : "msg";
        unsigned idx = t->n_blocks;
        int r;

        buf_clear(&t->block_text);
        if (asprintf(&t->block_id, "%s_%s_%u", prefix, resp_base(t), idx) < 0) {
                t->block_id = NULL;
                return -ENOMEM;
        }
        if (kind == BLOCK_TOOL_USE) {
                t->block_name = strdup(name);
                if (!t->block_name ||
                    tool_id_sanitize("call_", id, client_id_base(t), t->n_tools, &t->block_call_id) < 0)
                        return -ENOMEM;
        }
        if (kind == BLOCK_REDACTED_THINKING && data) {
                if (t->output_bytes + strlen(data) > TRANSLATE_STREAM_OUTPUT_MAX)
                        return -E2BIG;
                t->output_bytes += strlen(data);
                if (buf_append_str(&t->block_text, data) < 0)
                        return -ENOMEM;
        }

        r = resp_event(
                t, "response.output_item.added",
                json_pack("{s:i, s:o}", "output_index", (int) idx, "item", resp_item(t, "in_progress", false)));
        if (r < 0)
                return r;
        if (kind == BLOCK_TEXT || kind == BLOCK_REFUSAL)
                return resp_event(t, "response.content_part.added",
                                  json_pack("{s:s, s:i, s:i, s:o}", "item_id", t->block_id, "output_index",
                                            (int) idx, "content_index", 0, "part", resp_part(t, false)));
        if (kind == BLOCK_THINKING)
                return resp_event(t, "response.reasoning_summary_part.added",
                                  json_pack("{s:s, s:i, s:i, s:{s:s, s:s}}", "item_id", t->block_id,
                                            "output_index", (int) idx, "summary_index", 0, "part", "type",
                                            "summary_text", "text", ""));
        return 0;
}

static int responses_block_delta(StreamTranslator *t, const char *s, size_t n) {
        int idx = (int) t->n_blocks;
        json_t *d;

        if (t->block_kind == BLOCK_REDACTED_THINKING)
                return 0;
        if (t->output_bytes + n > TRANSLATE_STREAM_OUTPUT_MAX)
                return -E2BIG;
        t->output_bytes += n;
        if (buf_append(&t->block_text, s, n) < 0)
                return -ENOMEM;
        d = json_stringn_lossy(s, n);
        switch (t->block_kind) {
        case BLOCK_THINKING:
                return resp_event(t, "response.reasoning_summary_text.delta",
                                  json_pack("{s:s, s:i, s:i, s:o}", "item_id", t->block_id, "output_index", idx,
                                            "summary_index", 0, "delta", d));
        case BLOCK_TOOL_USE:
                return resp_event(
                        t, "response.function_call_arguments.delta",
                        json_pack("{s:s, s:i, s:o}", "item_id", t->block_id, "output_index", idx, "delta", d));
        case BLOCK_REFUSAL:
                return resp_event(t, "response.refusal.delta",
                                  json_pack("{s:s, s:i, s:i, s:o}", "item_id", t->block_id, "output_index", idx,
                                            "content_index", 0, "delta", d));
        default:
                return resp_event(t, "response.output_text.delta",
                                  json_pack("{s:s, s:i, s:i, s:o, s:[]}", "item_id", t->block_id,
                                            "output_index", idx, "content_index", 0, "delta", d, "logprobs"));
        }
}

static int responses_block_stop(StreamTranslator *t) {
        int idx = (int) t->n_blocks, r = 0;
        json_t *item;

        /* .done events carry the whole text: make it a string (the buffer holds UTF-8 from JSON strings). */
        if (!buf_reserve(&t->block_text, 1))
                return -ENOMEM;
        t->block_text.data[t->block_text.tail] = 0;

        switch (t->block_kind) {
        case BLOCK_THINKING:
                r = resp_event(t, "response.reasoning_summary_text.done",
                               json_pack("{s:s, s:i, s:i, s:s}", "item_id", t->block_id, "output_index", idx,
                                         "summary_index", 0, "text", (const char *) buf_data(&t->block_text)));
                if (r >= 0)
                        r = resp_event(t, "response.reasoning_summary_part.done",
                                       json_pack("{s:s, s:i, s:i, s:{s:s, s:s}}", "item_id", t->block_id,
                                                 "output_index", idx, "summary_index", 0, "part", "type",
                                                 "summary_text", "text",
                                                 (const char *) buf_data(&t->block_text)));
                break;
        case BLOCK_TOOL_USE:
                r = resp_event(t, "response.function_call_arguments.done",
                               json_pack("{s:s, s:i, s:s, s:s}", "item_id", t->block_id, "output_index", idx,
                                         "name", t->block_name, "arguments",
                                         (const char *) buf_data(&t->block_text)));
                break;
        case BLOCK_REDACTED_THINKING:
                break;
        case BLOCK_REFUSAL:
                r = resp_event(t, "response.refusal.done",
                               json_pack("{s:s, s:i, s:i, s:s}", "item_id", t->block_id, "output_index", idx,
                                         "content_index", 0, "refusal",
                                         (const char *) buf_data(&t->block_text)));
                if (r >= 0)
                        r = resp_event(t, "response.content_part.done",
                                       json_pack("{s:s, s:i, s:i, s:o}", "item_id", t->block_id, "output_index",
                                                 idx, "content_index", 0, "part", resp_part(t, true)));
                break;
        default:
                r = resp_event(t, "response.output_text.done",
                               json_pack("{s:s, s:i, s:i, s:s, s:[]}", "item_id", t->block_id, "output_index",
                                         idx, "content_index", 0, "text",
                                         (const char *) buf_data(&t->block_text), "logprobs"));
                if (r >= 0)
                        r = resp_event(t, "response.content_part.done",
                                       json_pack("{s:s, s:i, s:i, s:o}", "item_id", t->block_id, "output_index",
                                                 idx, "content_index", 0, "part", resp_part(t, true)));
        }
        if (r < 0)
                return r;
        item = resp_item(t, "completed", true);
        if (!item)
                return -ENOMEM;
        r = resp_event(t, "response.output_item.done",
                       json_pack("{s:i, s:O}", "output_index", idx, "item", item));
        if (r >= 0)
                r = resp_output_append(t, item);
        json_decref(item);
        return r;
}

static int responses_finish(StreamTranslator *t) {
        const char *status = responses_status(t->stop);

        return resp_event(t, streq(status, "completed") ? "response.completed" : "response.incomplete",
                          json_pack("{s:o}", "response", resp_object(t, status, true)));
}

/* ---- dispatch ---- */

int emit_start(StreamTranslator *t) {
        int r;

        if (t->started)
                return 0;
        r = id_derive(client_dialect(t) == CLIENT_ANTHROPIC ? "msg_" : client_dialect(t) == CLIENT_CHAT ?
                      "chatcmpl-" : "resp_", !isempty(t->upstream_id) ? t->upstream_id : t->fallback_id,
                      &t->client_id);
        if (r < 0)
                return r;
        t->started = true;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC: return anthropic_start(t);
        case CLIENT_CHAT: return chat_start(t);
        default: return responses_start(t);
        }
}

int emit_block_start(StreamTranslator *t, BlockKind kind, const char *id, const char *name, const char *data) {
        int r;

        assert(!t->block_open);
        r = emit_start(t);
        if (r < 0)
                return r;
        if (kind == BLOCK_REFUSAL)
                t->saw_refusal = true;
        t->block_open = true;
        t->block_kind = kind;
        t->block_signed = false;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC: return anthropic_block_start(t, kind, id, name, data);
        case CLIENT_CHAT: return chat_block_start(t, kind, id, name);
        default: return responses_block_start(t, kind, id, name, data);
        }
}

int emit_block_delta(StreamTranslator *t, const char *s, size_t n) {
        assert(t->block_open);
        if (n == 0)
                return 0;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC: return anthropic_block_delta(t, s, n);
        case CLIENT_CHAT: return chat_block_delta(t, s, n);
        default: return responses_block_delta(t, s, n);
        }
}

int emit_block_signature(StreamTranslator *t, const char *signature) {
        assert(t->block_open);
        if (t->block_kind != BLOCK_THINKING)
                return 0;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC:
                return anthropic_signature(t, signature);
        case CLIENT_RESPONSES: {
                /* Signatures may come in pieces; they are held for output_item.done. */
                char *s;
                if (t->output_bytes + strlen(signature) > TRANSLATE_STREAM_OUTPUT_MAX)
                        return -E2BIG;
                t->output_bytes += strlen(signature);
                s = strjoin_free(t->block_signature ?: strdup(""), signature);
                if (!s)
                        return -ENOMEM;
                t->block_signature = s;
                return 0;
        }
        default:
                return 0;
        }
}

int emit_block_stop(StreamTranslator *t) {
        int r;

        assert(t->block_open);
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC: r = anthropic_block_stop(t); break;
        case CLIENT_CHAT: r = 0; break;
        default: r = responses_block_stop(t);
        }
        if (t->block_kind == BLOCK_TOOL_USE)
                t->n_tools++;
        t->n_blocks++;
        t->block_open = false;
        t->block_id = mfree(t->block_id);
        t->block_name = mfree(t->block_name);
        t->block_signature = mfree(t->block_signature);
        t->block_call_id = mfree(t->block_call_id);
        buf_clear(&t->block_text);
        return r;
}

int emit_finish(StreamTranslator *t) {
        int r;

        r = emit_start(t);
        if (r < 0)
                return r;
        if (t->block_open) {
                r = emit_block_stop(t);
                if (r < 0)
                        return r;
        }
        t->ended = true;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC: return anthropic_finish(t);
        case CLIENT_CHAT: return chat_finish(t);
        default: return responses_finish(t);
        }
}

int emit_error(StreamTranslator *t, const char *type, const char *code, const char *message) {
        bool up_anthropic = translate_upstream_is_anthropic(t->kind);
        json_t *obj;
        int r;

        t->ended = true;
        switch (client_dialect(t)) {
        case CLIENT_ANTHROPIC:
                return put(t, "error",
                           anthropic_error_object(anthropic_error_type_from_openai(type, code, 0), message));
        case CLIENT_CHAT:
                return put(t, NULL,
                           openai_error_object(message, openai_error_type_from_anthropic(type, 0), NULL, type));
        default:
                break;
        }
        /* Responses: the error event, then the response as failed, so clients waiting for a terminal
         * response event get one. */
        if (!t->started) {
                r = emit_start(t);
                if (r < 0)
                        return r;
        }
        code = up_anthropic ? type : code ?: type;
        r = resp_event(t, "error", json_pack("{s:s?, s:s, s:n}", "code", code, "message", message, "param"));
        if (r < 0)
                return r;
        obj = resp_object(t, "failed", true);
        if (obj && json_object_set_new(obj, "error", json_pack("{s:s, s:s}", "code", code ?: "server_error",
                                                                "message", message)) < 0)
                obj = (json_decref(obj), NULL);
        return resp_event(t, "response.failed", json_pack("{s:o}", "response", obj));
}
