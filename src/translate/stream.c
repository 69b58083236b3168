/* Streaming translation: upstream SSE bytes -> neutral block events -> client SSE events (stream-emit.c).
 *
 * OpenAI chat upstreams send text, reasoning (reasoning_content, or reasoning) and tool calls as deltas
 * that may interleave, parallel tool calls keyed by tool_calls[].index. Blocks are queued in order of first
 * appearance; the first open one streams live and the ones behind it keep their deltas (at most
 * TRANSLATE_STREAM_BUFFER_MAX bytes in all) until it is done. A text or reasoning block is done once any
 * later block exists (new text after that opens a new block); a tool call once its arguments form a whole
 * JSON value, or at the end. An upstream that streams one tool call after another so never makes the
 * client wait; one that interleaves them gets each call whole and in order.
 *
 * Anthropic upstreams already send one block at a time; their blocks pass through. Server tool blocks
 * are skipped (requests with server tools are refused, so they are not the client's).
 *
 * The upstream's last event is `data: [DONE]` (chat) or message_stop (Anthropic). A stream that ends
 * cleanly after its finish_reason / message_delta but without that event still counts as whole (some
 * OpenAI-compatible servers leave [DONE] out); anything less gets the client an error event and
 * stream_translator_finish() returns -EPIPE: never a made-up success.
 */
#include <time.h>

#include "shared/log.h"
#include "shared/util.h"
#include "translate/json-fast.h"
#include "translate/json-scratch.h"
#include "translate/stream-internal.h"

/* ---- lifecycle ---- */

int stream_translator_new(TranslateKind k, const char *client_model, bool include_usage,
                          StreamTranslator **ret) {
        StreamTranslator *t;

        if (k < 0 || k >= _TRANSLATE_KIND_MAX || !client_model)
                return -EINVAL;
        t = new0(StreamTranslator, 1);
        if (!t)
                return -ENOMEM;
        t->kind = k;
        t->include_usage = include_usage;
        t->created = (int64_t) time(NULL);
        t->last_tool_index = -1;
        t->a_index = -1;
        sse_parser_init(&t->sse, TRANSLATE_STREAM_BUFFER_MAX);
        t->client_model = strdup(client_model);
        t->output = json_array();
        if (!t->client_model || !t->output)
                return (void) stream_translator_free(t), -ENOMEM;
        *ret = t;
        return 0;
}

static void slots_free(StreamTranslator *t) {
        for (size_t i = 0; i < t->n_slots; i++) {
                free(t->slots[i].id);
                free(t->slots[i].name);
                buf_done(&t->slots[i].pending);
        }
        free(t->slots);
        t->slots = NULL;
        t->n_slots = t->cur = 0;
}

StreamTranslator *stream_translator_free(StreamTranslator *t) {
        if (!t)
                return NULL;
        sse_parser_done(&t->sse);
        slots_free(t);
        free(t->client_model);
        free(t->upstream_id);
        free(t->fallback_id);
        free(t->stop_sequence);
        free(t->client_id);
        free(t->block_id);
        free(t->block_name);
        free(t->block_signature);
        free(t->block_call_id);
        buf_done(&t->block_text);
        json_decref(t->output);
        free(t);
        return NULL;
}

void stream_translator_set_input_tokens(StreamTranslator *t, uint64_t n) {
        t->input_estimate = n;
}

void stream_translator_set_created(StreamTranslator *t, int64_t created) {
        t->created = created;
}

void stream_translator_get_usage(const StreamTranslator *t, TranslateUsage *ret) {
        *ret = t->usage;
}

bool stream_translator_upstream_failed(const StreamTranslator *t) {
        return t->upstream_failed;
}

static int set_upstream_id(StreamTranslator *t, const char *id) {
        if (!id || t->upstream_id)
                return 0;
        t->upstream_id = strdup(id);
        return t->upstream_id ? 0 : -ENOMEM;
}

static int set_stop_sequence(StreamTranslator *t, const char *s) {
        free(t->stop_sequence);
        t->stop_sequence = strdup_or_null(s);
        return !s || t->stop_sequence ? 0 : -ENOMEM;
}

/* ---- tool argument progress ---- */

static void json_progress_feed(JsonProgress *p, const char *s, size_t n) {
        for (size_t i = 0; i < n && !p->complete; i++) {
                char c = s[i];

                if (p->in_string) {
                        if (p->escape)
                                p->escape = false;
                        else if (c == '\\')
                                p->escape = true;
                        else if (c == '"')
                                p->in_string = false;
                        continue;
                }
                if (!p->started) {
                        if (c == '{' || c == '[') {
                                p->started = true;
                                p->depth = 1;
                        } else if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
                                /* Not an object or array: its end cannot be told before the stream's. */
                                p->started = true, p->depth = UINT32_MAX / 2;
                        continue;
                }
                if (c == '"')
                        p->in_string = true;
                else if (c == '{' || c == '[')
                        p->depth++;
                else if (c == '}' || c == ']') {
                        if (p->depth > 0 && --p->depth == 0)
                                p->complete = true;
                }
        }
}

static bool all_space(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r')
                        return false;
        return true;
}

/* ---- OpenAI chat upstream ---- */

static Slot *slot_new(StreamTranslator *t, BlockKind kind, int64_t tool_index) {
        Slot *s;

        if (t->n_slots >= TRANSLATE_STREAM_BLOCKS_MAX)
                return NULL;
        s = reallocarray(t->slots, t->n_slots + 1, sizeof(Slot));
        if (!s)
                return NULL;
        t->slots = s;
        s = &t->slots[t->n_slots++];
        *s = (Slot){ .kind = kind, .tool_index = tool_index };
        return s;
}

static int slot_append(StreamTranslator *t, Slot *s, const char *p, size_t n) {
        if (n == 0)
                return 0;
        if (s->closed)
                /* Only a tool call whose arguments were already a whole JSON value gets here. */
                return all_space(p, n) ? 0 : -EBADMSG;
        if (s->kind == BLOCK_TOOL_USE)
                json_progress_feed(&s->json, p, n);
        if (s->live)
                return emit_block_delta(t, p, n);
        if (t->pending_bytes + t->meta_bytes + n > TRANSLATE_STREAM_BUFFER_MAX)
                return -E2BIG;
        t->pending_bytes += n;
        return buf_append(&s->pending, p, n);
}

/* Text, reasoning and refusal continue the newest block when it is of their kind, else open a new one. */
static int chat_text(StreamTranslator *t, BlockKind kind, const json_t *v) {
        Slot *s = t->n_slots > 0 ? &t->slots[t->n_slots - 1] : NULL;

        if (!json_is_string(v) || json_string_length(v) == 0)
                return 0;
        if (!s || s->kind != kind || s->closed) {
                s = slot_new(t, kind, -1);
                if (!s)
                        return t->n_slots >= TRANSLATE_STREAM_BLOCKS_MAX ? -E2BIG : -ENOMEM;
        }
        return slot_append(t, s, json_string_value(v), json_string_length(v));
}

static int chat_tool(StreamTranslator *t, const json_t *tc) {
        const json_t *fn = json_object_get(tc, "function"), *iv = json_object_get(tc, "index");
        const char *id = json_get_str(tc, "id"), *name = json_get_str(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        Slot *s = NULL;
        int64_t index;

        if (!json_is_object(tc) || (fn && !json_is_object(fn)) ||
            (args && !json_is_string(args) && !json_is_null(args)))
                return -EBADMSG;
        if (json_is_integer(iv) && json_integer_value(iv) >= 0)
                index = json_integer_value(iv);
        else if (iv && !json_is_null(iv))
                return -EBADMSG;
        else {
                /* No index (some OpenAI-compatible servers): a new id is a new call, else the last one goes on. */
                Slot *last = NULL;
                for (size_t i = t->n_slots; i > 0 && !last; i--)
                        if (t->slots[i - 1].kind == BLOCK_TOOL_USE)
                                last = &t->slots[i - 1];
                if (last && (!id || (last->id && streq(last->id, id))))
                        index = last->tool_index;
                else
                        index = t->last_tool_index + 1;
        }

        for (size_t i = t->n_slots; i > 0 && !s; i--)
                if (t->slots[i - 1].kind == BLOCK_TOOL_USE && t->slots[i - 1].tool_index == index)
                        s = &t->slots[i - 1];
        if (!s) {
                s = slot_new(t, BLOCK_TOOL_USE, index);
                if (!s)
                        return t->n_slots >= TRANSLATE_STREAM_BLOCKS_MAX ? -E2BIG : -ENOMEM;
                t->last_tool_index = MAX(t->last_tool_index, index);
        }
        /* Ids and names are held until their block starts: they count against the bound too. */
        if ((id && !s->id) || (!isempty(name) && !s->name)) {
                size_t add = (id && !s->id ? strlen(id) : 0) + (!isempty(name) && !s->name ? strlen(name) : 0);
                if (t->pending_bytes + t->meta_bytes + add > TRANSLATE_STREAM_BUFFER_MAX)
                        return -E2BIG;
                t->meta_bytes += add;
        }
        if (id && !s->id && !(s->id = strdup(id)))
                return -ENOMEM;
        if (!isempty(name) && !s->name && !(s->name = strdup(name)))
                return -ENOMEM;
        if (json_is_string(args))
                return slot_append(t, s, json_string_value(args), json_string_length(args));
        return 0;
}

static bool slot_done(const Slot *s) {
        return s->kind != BLOCK_TOOL_USE || s->json.complete;
}

/* Starts what can start, streams what it held, and closes blocks that are done; at the end, all of them. */
static int chat_advance(StreamTranslator *t, bool final) {
        int r;

        while (t->cur < t->n_slots) {
                Slot *s = &t->slots[t->cur];

                if (!s->live) {
                        if (s->kind == BLOCK_TOOL_USE && !s->name) {
                                if (final)
                                        return -EBADMSG;        /* a tool call that never got its name */
                                return 0;
                        }
                        r = emit_block_start(t, s->kind, s->id, s->name, NULL);
                        if (r < 0)
                                return r;
                        s->live = true;
                        if (!buf_empty(&s->pending)) {
                                r = emit_block_delta(t, (const char *) buf_data(&s->pending),
                                                     buf_len(&s->pending));
                                if (r < 0)
                                        return r;
                                t->pending_bytes -= buf_len(&s->pending);
                                buf_done(&s->pending);
                        }
                }
                if (!final && !(t->cur + 1 < t->n_slots && slot_done(s)))
                        return 0;
                r = emit_block_stop(t);
                if (r < 0)
                        return r;
                s->live = false;
                s->closed = true;
                t->cur++;
        }
        return 0;
}

static int chat_choice(StreamTranslator *t, const json_t *choice) {
        const json_t *delta = json_object_get(choice, "delta"), *calls, *tc, *v;
        const char *finish;
        size_t i;
        int r;

        if (!json_is_object(choice) || (delta && !json_is_null(delta) && !json_is_object(delta)))
                return -EBADMSG;
        /* OpenAI-compatible servers name reasoning reasoning_content (DeepSeek, vLLM) or reasoning. */
        v = json_object_get(delta, "reasoning_content");
        r = chat_text(t, BLOCK_THINKING, json_is_string(v) ? v : json_object_get(delta, "reasoning"));
        if (r >= 0)
                r = chat_text(t, BLOCK_TEXT, json_object_get(delta, "content"));
        if (r >= 0)
                r = chat_text(t, BLOCK_REFUSAL, json_object_get(delta, "refusal"));
        if (r < 0)
                return r;
        calls = json_object_get(delta, "tool_calls");
        if (calls && !json_is_null(calls) && !json_is_array(calls))
                return -EBADMSG;
        json_array_foreach(calls, i, tc) {
                r = chat_tool(t, tc);
                if (r < 0)
                        return r;
        }
        finish = json_get_str(choice, "finish_reason");
        if (finish) {
                t->stop = stop_reason_from_openai(finish);
                if (t->stop < 0)
                        t->stop = STOP_END_TURN;
                if (t->stop == STOP_END_TURN && json_get_str(choice, "stop_reason")) {
                        t->stop = STOP_STOP_SEQUENCE;
                        r = set_stop_sequence(t, json_get_str(choice, "stop_reason"));
                        if (r < 0)
                                return r;
                }
                t->saw_finish = true;
        }
        return 0;
}

static int chat_end(StreamTranslator *t) {
        int r;

        r = chat_advance(t, true);
        if (r < 0)
                return r;
        return emit_finish(t);
}

/* What chat_event() and chat_choice() read of a chunk, and nothing else: a chunk's id, object, created, model,
 * service_tier, system_fingerprint, obfuscation and logprobs are checked but never made (json_read_keep()). A
 * member read below must be named here, or it reads as absent. */
static const JsonKeep chat_choice_keep[] = {
        { "index" }, { "delta" }, { "finish_reason" }, { "stop_reason" }, {}
};
static const JsonKeep chat_chunk_keep[] = {
        { "id" }, { "error" }, { "usage" }, { "choices", chat_choice_keep }, {}
};

static int chat_event(StreamTranslator *t, const char *data, size_t n) {
        _cleanup_(json_scratch_dropp) json_t *j = NULL;        /* a parsed event: see json_scratch_drop() */
        const json_t *choices, *choice, *err;
        size_t i;
        int r;

        if (n >= 6 && strneq(data, "[DONE]", 6) && all_space(data + 6, n - 6))
                return chat_end(t);
        r = json_parse_object_keep(data, n, chat_chunk_keep, &j);
        if (r < 0)
                return r;
        err = json_object_get(j, "error");
        if (err && !json_is_null(err)) {
                const json_t *code = json_object_get(err, "code");
                t->upstream_failed = true;
                return emit_error(t, json_get_str(err, "type"), json_string_value(code),
                                  json_get_str(err, "message") ?: json_string_value(err) ?: "Upstream error");
        }
        r = set_upstream_id(t, json_get_str(j, "id"));
        if (r < 0)
                return r;
        if (json_is_object(json_object_get(j, "usage")))
                usage_from_openai(json_object_get(j, "usage"), &t->usage);
        r = emit_start(t);
        if (r < 0)
                return r;
        choices = json_object_get(j, "choices");
        if (choices && !json_is_array(choices))
                return -EBADMSG;
        json_array_foreach(choices, i, choice) {
                const json_t *idx = json_object_get(choice, "index");
                /* One answer is asked for; a server that sends more gets the first one read. */
                if (json_is_integer(idx) ? json_integer_value(idx) != 0 : i != 0)
                        continue;
                r = chat_choice(t, choice);
                if (r < 0)
                        return r;
        }
        return chat_advance(t, false);
}

/* ---- Anthropic upstream ---- */

static int messages_block_start(StreamTranslator *t, const json_t *j) {
        const json_t *block = json_object_get(j, "content_block");
        const char *type = json_get_str(block, "type");
        int64_t index = json_get_uint(j, "index");
        const char *s;
        int r;

        if (!t->a_started || t->a_open || index < 0 || !type)
                return -EBADMSG;
        t->a_open = true;
        t->a_index = index;
        t->a_skip = false;
        if (streq(type, "text")) {
                t->a_kind = BLOCK_TEXT;
                r = emit_block_start(t, BLOCK_TEXT, NULL, NULL, NULL);
                s = json_get_str(block, "text");
                if (r >= 0 && s)
                        r = emit_block_delta(t, s, strlen(s));
                return r;
        }
        if (streq(type, "thinking")) {
                t->a_kind = BLOCK_THINKING;
                r = emit_block_start(t, BLOCK_THINKING, NULL, NULL, NULL);
                s = json_get_str(block, "thinking");
                if (r >= 0 && s)
                        r = emit_block_delta(t, s, strlen(s));
                s = json_get_str(block, "signature");
                if (r >= 0 && !isempty(s))
                        r = emit_block_signature(t, s);
                return r;
        }
        if (streq(type, "redacted_thinking")) {
                t->a_kind = BLOCK_REDACTED_THINKING;
                return emit_block_start(t, BLOCK_REDACTED_THINKING, NULL, NULL,
                                        json_get_str(block, "data") ?: "");
        }
        if (streq(type, "tool_use")) {
                const json_t *input = json_object_get(block, "input");
                const char *id = json_get_str(block, "id"), *name = json_get_str(block, "name");

                if (!id || !name)
                        return -EBADMSG;
                t->a_kind = BLOCK_TOOL_USE;
                r = emit_block_start(t, BLOCK_TOOL_USE, id, name, NULL);
                /* The API starts with input {} and streams it; a server that sends it whole here is read too. */
                if (r >= 0 && input && !(json_is_object(input) && json_object_size(input) == 0)) {
                        _cleanup_free_ char *dump = json_dump_any(input);
                        if (!dump)
                                return -ENOMEM;
                        r = emit_block_delta(t, dump, strlen(dump));
                }
                return r;
        }
        t->a_skip = true;
        return 0;
}

static int messages_block_delta(StreamTranslator *t, const json_t *j) {
        const json_t *delta = json_object_get(j, "delta");
        const char *type = json_get_str(delta, "type"), *s;

        if (!t->a_open || json_get_uint(j, "index") != t->a_index || !type)
                return -EBADMSG;
        if (t->a_skip)
                return 0;
        if (streq(type, "text_delta") && t->a_kind == BLOCK_TEXT && (s = json_get_str(delta, "text")))
                return emit_block_delta(t, s, strlen(s));
        if (streq(type, "thinking_delta") && t->a_kind == BLOCK_THINKING &&
            (s = json_get_str(delta, "thinking")))
                return emit_block_delta(t, s, strlen(s));
        if (streq(type, "input_json_delta") && t->a_kind == BLOCK_TOOL_USE &&
            (s = json_get_str(delta, "partial_json")))
                return emit_block_delta(t, s, strlen(s));
        if (streq(type, "signature_delta") && t->a_kind == BLOCK_THINKING &&
            (s = json_get_str(delta, "signature")))
                return emit_block_signature(t, s);
        if (streq(type, "citations_delta"))
                return 0;       /* citations have no place in the OpenAI dialects */
        if (streq(type, "text_delta") || streq(type, "thinking_delta") || streq(type, "input_json_delta") ||
            streq(type, "signature_delta"))
                return -EBADMSG;        /* a delta that does not fit its block */
        return 0;                       /* a delta type newer than this code */
}

static int messages_event(StreamTranslator *t, const char *event, const char *data, size_t n) {
        _cleanup_(json_scratch_dropp) json_t *j = NULL;        /* a parsed event: see json_scratch_drop() */
        const char *type;
        int r;

        r = json_parse_object(data, n, &j);
        if (r < 0)
                return r;
        type = json_get_str(j, "type") ?: event;

        if (streq(type, "message_start")) {
                const json_t *msg = json_object_get(j, "message");
                if (t->a_started || !json_is_object(msg))
                        return -EBADMSG;
                t->a_started = true;
                r = set_upstream_id(t, json_get_str(msg, "id"));
                if (r < 0)
                        return r;
                usage_from_anthropic(json_object_get(msg, "usage"), &t->usage);
                return emit_start(t);
        }
        if (streq(type, "content_block_start"))
                return messages_block_start(t, j);
        if (streq(type, "content_block_delta"))
                return messages_block_delta(t, j);
        if (streq(type, "content_block_stop")) {
                if (!t->a_open || json_get_uint(j, "index") != t->a_index)
                        return -EBADMSG;
                t->a_open = false;
                return t->a_skip ? 0 : emit_block_stop(t);
        }
        if (streq(type, "message_delta")) {
                const json_t *delta = json_object_get(j, "delta");
                if (!t->a_started)
                        return -EBADMSG;
                if (json_get_str(delta, "stop_reason")) {
                        t->stop = stop_reason_from_anthropic(json_get_str(delta, "stop_reason"));
                        if (t->stop < 0)
                                t->stop = STOP_END_TURN;
                }
                r = set_stop_sequence(t, json_get_str(delta, "stop_sequence"));
                if (r < 0)
                        return r;
                usage_from_anthropic(json_object_get(j, "usage"), &t->usage);
                t->saw_finish = true;
                return 0;
        }
        if (streq(type, "message_stop")) {
                if (!t->a_started || t->a_open)
                        return -EBADMSG;
                return emit_finish(t);
        }
        if (streq(type, "error")) {
                const json_t *err = json_object_get(j, "error");
                t->upstream_failed = true;
                return emit_error(t, json_get_str(err, "type") ?: "api_error", NULL,
                                  json_get_str(err, "message") ?: "Upstream error");
        }
        return 0;                       /* ping, and event types newer than this code */
}

/* ---- feeding ---- */

static int on_event(void *userdata, const char *event, const char *data, size_t n) {
        StreamTranslator *t = userdata;

        if (t->ended)
                return 0;               /* anything after the last event is not the client's business */
        if (translate_upstream_is_anthropic(t->kind))
                return messages_event(t, event, data, n);
        return chat_event(t, data, n);
}

/* The upstream broke the stream or its rules: the client gets an error event in its dialect. */
static int fail(StreamTranslator *t, int error, const char *message) {
        bool up_anthropic = translate_upstream_is_anthropic(t->kind);
        int r;

        log_debug_errno(error, "Translating the upstream stream (%s) failed: %s",
                        translate_kind_to_string(t->kind), message);
        t->error = error;
        if (t->ended)
                return error;
        r = emit_error(t, up_anthropic ? "api_error" : "server_error", NULL, message);
        return r < 0 ? r : error;
}

static int fail_for(StreamTranslator *t, int r) {
        if (r == -EBADMSG)
                return fail(t, r, "The upstream stream was malformed and could not be translated.");
        if (r == -E2BIG)
                return fail(t, r, "The upstream stream exceeded the gateway's translation buffer.");
        t->error = r;
        return r;
}

/* feed() and finish() run in a JSON scratch scope (json-scratch.h): each event's trees are made and dropped
 * within it. What lives across events holds no jansson memory of the scope (strings are strdup()ed; the
 * Responses output items are copied out, resp_output_append()). */
int stream_translator_feed(StreamTranslator *t, const void *p, size_t n, Buf *out) {
        int r;

        if (t->error)
                return t->error;
        if (t->ended)
                return 0;
        json_scratch_begin();
        t->out = out;
        r = sse_parser_feed(&t->sse, p, n, on_event, t);
        if (r < 0)
                r = fail_for(t, r);
        t->out = NULL;
        json_scratch_end();
        return r;
}

int stream_translator_finish(StreamTranslator *t, bool upstream_complete, Buf *out) {
        int r = 0;

        if (t->error)
                return t->error;
        if (t->ended)
                return 0;
        json_scratch_begin();
        t->out = out;
        /* A last event without its blank line still counts; a half event is a cut, below. */
        if (upstream_complete)
                r = sse_parser_finish(&t->sse, on_event, t);
        if (r < 0 && r != -EBADMSG)
                r = fail_for(t, r);
        else if (r >= 0 && !t->ended && upstream_complete && t->saw_finish &&
                 !(translate_upstream_is_anthropic(t->kind) && t->a_open)) {
                /* The answer was complete; only the closing event is missing. */
                r = translate_upstream_is_anthropic(t->kind) ? emit_finish(t) : chat_end(t);
                if (r < 0)
                        r = fail_for(t, r);
        } else if (!t->ended && upstream_complete)
                r = fail(t, -EPIPE, "The upstream stream ended before the answer was complete.");
        else if (!t->ended)
                r = fail(t, -EPIPE, "The upstream connection broke before the answer was complete.");
        t->out = NULL;
        json_scratch_end();
        return r;
}
