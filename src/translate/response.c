/* Whole (non-streaming) answers: upstream chat completion or Anthropic message -> the client's answer body.
 *
 * The upstream body is read into a neutral Reply (blocks, stop reason, normalised usage), then written in
 * the client's dialect:
 *
 * | neutral           | Anthropic message        | chat completion               | Responses output item        |
 * |-------------------|--------------------------|-------------------------------|------------------------------|
 * | text              | text block               | message.content (joined)      | message, output_text part    |
 * | thinking          | thinking block           | message.reasoning_content     | reasoning, summary_text;     |
 * |                   | (signature, "" if none)  |                               | signature = encrypted_content|
 * | redacted thinking | redacted_thinking block  | - (opaque, unreadable)        | reasoning, encrypted_content |
 * |                   |                          |                               | "redacted:" + data           |
 * | tool call         | tool_use (input parsed;  | tool_calls[] (arguments text) | function_call                |
 * |                   | the text itself when the |                               |                              |
 * |                   | model wrote no JSON)     |                               |                              |
 * | refusal           | text block, stop_reason  | message.refusal               | message, refusal part        |
 * |                   | refusal                  |                               |                              |
 *
 * Stop reasons: end_turn <-> stop, max_tokens <-> length, tool_use <-> tool_calls, stop_sequence -> stop,
 * refusal <-> content_filter, model_context_window_exceeded -> length; Responses: max tokens ->
 * incomplete (max_output_tokens), refusal -> incomplete (content_filter). A vLLM-style choice.stop_reason
 * string (the stop sequence that matched) becomes stop_sequence.
 *
 * Usage: Anthropic input_tokens excludes cache reads and writes; OpenAI prompt_tokens includes them
 * (prompt_tokens_details.cached_tokens are the reads). Both sides also carry cache_read_input_tokens and
 * cache_creation_input_tokens so reads and writes stay apart for billing.
 */
#include <stdio.h>
#include <time.h>

#include "shared/util.h"
#include "translate/json-scratch.h"
#include "translate/json-fast.h"
#include "translate/translate-internal.h"

/* ---- upstream -> neutral ---- */

static int add_text(Reply *r, BlockKind kind, const char *text, size_t n) {
        ReplyBlock *b = reply_add_block(r, kind);

        if (!b)
                return -ENOMEM;
        b->text = strndup(text, n);
        return b->text ? 0 : -ENOMEM;
}

static int add_tool(Reply *r, const char *id, const char *name, const char *args) {
        ReplyBlock *b = reply_add_block(r, BLOCK_TOOL_USE);

        if (!b)
                return -ENOMEM;
        b->id = strdup_or_null(id);
        b->name = strdup(name);
        b->text = strdup(args ?: "");
        return (!id || b->id) && b->name && b->text ? 0 : -ENOMEM;
}

int reply_from_chat(const json_t *in, Reply *ret) {
        _cleanup_(reply_done) Reply r = {};
        const json_t *choices = json_object_get(in, "choices"), *choice, *msg, *content, *calls, *call;
        const char *reasoning, *finish;
        size_t i;
        int k;

        if (!json_is_array(choices))
                return -EBADMSG;
        r.id = strdup_or_null(json_get_str(in, "id"));
        if (json_get_str(in, "id") && !r.id)
                return -ENOMEM;
        usage_from_openai(json_object_get(in, "usage"), &r.usage);
        choice = json_array_get(choices, 0);
        if (!choice) {
                /* No choice at all (a filtered prompt): an empty answer. */
                r.stop = STOP_END_TURN;
                *ret = r, r = (Reply){};
                return 0;
        }
        msg = json_object_get(choice, "message");
        if (!json_is_object(msg))
                return -EBADMSG;

        /* OpenAI-compatible servers put reasoning in reasoning_content (DeepSeek, vLLM) or reasoning. */
        reasoning = json_get_str(msg, "reasoning_content") ?: json_get_str(msg, "reasoning");
        if (!isempty(reasoning) && (k = add_text(&r, BLOCK_THINKING, reasoning, strlen(reasoning))) < 0)
                return k;

        content = json_object_get(msg, "content");
        if (json_is_string(content) && json_string_length(content) > 0)
                k = add_text(&r, BLOCK_TEXT, json_string_value(content), json_string_length(content));
        else if (json_is_array(content)) {
                const json_t *p;
                k = 0;
                json_array_foreach(content, i, p)
                        if (json_get_str(p, "text") && k >= 0)
                                k = add_text(&r, BLOCK_TEXT, json_get_str(p, "text"),
                                             strlen(json_get_str(p, "text")));
        } else if (content && !json_is_null(content) && !json_is_string(content))
                return -EBADMSG;
        else
                k = 0;
        if (k < 0)
                return k;
        if (!isempty(json_get_str(msg, "refusal")) &&
            (k = add_text(&r, BLOCK_REFUSAL, json_get_str(msg, "refusal"),
                          strlen(json_get_str(msg, "refusal")))) < 0)
                return k;

        calls = json_object_get(msg, "tool_calls");
        if (calls && !json_is_null(calls) && !json_is_array(calls))
                return -EBADMSG;
        json_array_foreach(calls, i, call) {
                const json_t *fn = json_object_get(call, "function");
                if (!json_get_str(fn, "name"))
                        return -EBADMSG;
                k = add_tool(&r, json_get_str(call, "id"), json_get_str(fn, "name"),
                             json_get_str(fn, "arguments"));
                if (k < 0)
                        return k;
        }
        call = json_object_get(msg, "function_call");
        if (json_get_str(call, "name") &&
            (k = add_tool(&r, NULL, json_get_str(call, "name"), json_get_str(call, "arguments"))) < 0)
                return k;

        finish = json_get_str(choice, "finish_reason");
        r.stop = stop_reason_from_openai(finish);
        if (r.stop < 0)
                r.stop = STOP_END_TURN;         /* servers have their own ("eos"): the answer did end */
        if (r.stop == STOP_END_TURN && json_get_str(choice, "stop_reason")) {
                r.stop = STOP_STOP_SEQUENCE;
                r.stop_sequence = strdup(json_get_str(choice, "stop_reason"));
                if (!r.stop_sequence)
                        return -ENOMEM;
        }
        *ret = r, r = (Reply){};
        return 0;
}

int reply_from_messages(const json_t *in, Reply *ret) {
        _cleanup_(reply_done) Reply r = {};
        const json_t *content = json_object_get(in, "content"), *b;
        size_t i;
        int k;

        if (!json_is_array(content))
                return -EBADMSG;
        r.id = strdup_or_null(json_get_str(in, "id"));
        if (json_get_str(in, "id") && !r.id)
                return -ENOMEM;
        usage_from_anthropic(json_object_get(in, "usage"), &r.usage);
        json_array_foreach(content, i, b) {
                const char *type = json_get_str(b, "type");

                if (!type)
                        return -EBADMSG;
                if (streq(type, "text")) {
                        const char *t = json_get_str(b, "text");
                        if (!t)
                                return -EBADMSG;
                        k = add_text(&r, BLOCK_TEXT, t, strlen(t));
                } else if (streq(type, "thinking")) {
                        const char *t = json_get_str(b, "thinking");
                        if (!t)
                                return -EBADMSG;
                        k = add_text(&r, BLOCK_THINKING, t, strlen(t));
                        if (k >= 0 && json_get_str(b, "signature")) {
                                r.blocks[r.n_blocks - 1].signature = strdup(json_get_str(b, "signature"));
                                if (!r.blocks[r.n_blocks - 1].signature)
                                        k = -ENOMEM;
                        }
                } else if (streq(type, "redacted_thinking")) {
                        const char *d = json_get_str(b, "data");
                        if (!d)
                                return -EBADMSG;
                        k = add_text(&r, BLOCK_REDACTED_THINKING, d, strlen(d));
                } else if (streq(type, "tool_use")) {
                        _cleanup_free_ char *args = NULL;
                        const json_t *input = json_object_get(b, "input");

                        if (!json_get_str(b, "name") || !json_get_str(b, "id"))
                                return -EBADMSG;
                        args = json_dump_any(input ?: json_null());
                        if (!args)
                                return -ENOMEM;
                        k = add_tool(&r, json_get_str(b, "id"), json_get_str(b, "name"),
                                     !input || json_is_null(input) ? "{}" : args);
                } else
                        /* Server tool blocks: requests with server tools are refused, so these are not ours. */
                        k = 0;
                if (k < 0)
                        return k;
        }
        r.stop = stop_reason_from_anthropic(json_get_str(in, "stop_reason"));
        if (r.stop < 0)
                r.stop = STOP_END_TURN;
        if (json_get_str(in, "stop_sequence")) {
                r.stop_sequence = strdup(json_get_str(in, "stop_sequence"));
                if (!r.stop_sequence)
                        return -ENOMEM;
        }
        *ret = r, r = (Reply){};
        return 0;
}

/* ---- shared pieces ---- */

json_t *anthropic_tool_input(const char *args) {
        json_t *v;

        if (isempty(args))
                return json_object();
        if (json_read(args, strlen(args), JSON_DECODE_ANY, &v) >= 0)
                return v;
        /* Not JSON: the model's text as it is, which request-messages.c sends back unchanged. */
        return json_string(args);
}

const char *responses_status(StopReason stop) {
        return stop_reason_to_responses_incomplete(stop) ? "incomplete" : "completed";
}

json_t *responses_object(const char *id, const char *model, int64_t created, const char *status,
                         StopReason stop, json_t *output, const TranslateUsage *usage) {
        const char *reason = streq(status, "incomplete") ? stop_reason_to_responses_incomplete(stop) : NULL;
        json_t *j;

        if (!output)
                return NULL;
        /* The request's settings are not known here: the echo of them holds the API's defaults. */
        j = json_pack(
                "{s:s, s:s, s:I, s:s, s:b, s:n, s:o, s:n, s:n, s:s, s:o, s:b, s:n, s:{s:n, s:n}, s:b, s:n,"
                " s:{s:{s:s}}, s:s, s:[], s:n, s:s, s:o, s:n, s:{}}",
                "id", id, "object", "response", "created_at", (json_int_t) created, "status", status,
                "background", 0, "error", "incomplete_details",
                reason ? json_pack("{s:s}", "reason", reason) : json_null(), "instructions",
                "max_output_tokens", "model", model, "output", output, "parallel_tool_calls", 1,
                "previous_response_id", "reasoning", "effort", "summary", "store", 0, "temperature", "text",
                "format", "type", "text", "tool_choice", "auto", "tools", "top_p", "truncation", "disabled",
                "usage", usage && usage->known ? usage_to_responses(usage) : json_null(), "user", "metadata");
        return j;
}

json_t *responses_message_item(const char *id, const char *status, BlockKind kind, const char *text) {
        json_t *part;

        if (kind == BLOCK_REFUSAL)
                part = json_pack("{s:s, s:s}", "type", "refusal", "refusal", text ?: "");
        else
                part = json_pack("{s:s, s:[], s:[], s:s}", "type", "output_text", "annotations", "logprobs",
                                 "text", text ?: "");
        return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id, "type", "message", "status", status, "role",
                         "assistant", "content",
                         text ? json_pack("[o]", part) : (json_decref(part), json_array()));
}

json_t *responses_reasoning_item(const char *id, const char *status, BlockKind kind, const char *text,
                                 const char *signature) {
        _cleanup_free_ char *enc = NULL;
        json_t *j;

        if (kind == BLOCK_REDACTED_THINKING) {
                if (asprintf(&enc, "redacted:%s", text ?: "") < 0)
                        return NULL;
                return json_pack("{s:s, s:s, s:[], s:s, s:s}", "id", id, "type", "reasoning", "summary",
                                 "encrypted_content", enc, "status", status);
        }
        j = json_pack("{s:s, s:s, s:o, s:s}", "id", id, "type", "reasoning", "summary",
                      text ? json_pack("[{s:s, s:s}]", "type", "summary_text", "text", text) : json_array(),
                      "status", status);
        /* The signature lets the next request give Anthropic its thinking block back. */
        if (j && !isempty(signature) && json_set(j, "encrypted_content", json_string(signature)) < 0)
                j = (json_decref(j), NULL);
        return j;
}

json_t *responses_function_item(const char *id, const char *status, const char *call_id, const char *name,
                                const char *arguments) {
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "id", id, "type", "function_call", "status", status,
                         "arguments", arguments ?: "", "call_id", call_id, "name", name);
}

/* ---- neutral -> client ---- */

/* The distinctive part of a client id ("msg_abc" -> "abc"). */
static const char *id_base(const char *id) {
        const char *u = strpbrk(id, "_-");
        return u ? u + 1 : id;
}

static json_t *render_anthropic(const Reply *r, const char *model, const char *id) {
        _cleanup_json_ json_t *content = json_array();
        StopReason stop = r->stop == STOP_NONE ? STOP_END_TURN : r->stop;

        if (!content)
                return NULL;
        for (size_t i = 0; i < r->n_blocks; i++) {
                const ReplyBlock *b = &r->blocks[i];
                _cleanup_free_ char *tid = NULL;
                json_t *j = NULL;

                switch (b->kind) {
                case BLOCK_TEXT:
                case BLOCK_REFUSAL:
                        j = json_pack("{s:s, s:s}", "type", "text", "text", b->text);
                        if (b->kind == BLOCK_REFUSAL && stop == STOP_END_TURN)
                                stop = STOP_REFUSAL;
                        break;
                case BLOCK_THINKING:
                        j = json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", b->text, "signature",
                                      b->signature ?: "");
                        break;
                case BLOCK_REDACTED_THINKING:
                        j = json_pack("{s:s, s:s}", "type", "redacted_thinking", "data", b->text);
                        break;
                case BLOCK_TOOL_USE:
                        if (tool_id_sanitize("toolu_", b->id, id_base(id), (unsigned) i, &tid) < 0)
                                return NULL;
                        j = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", tid, "name", b->name,
                                      "input", anthropic_tool_input(b->text));
                        break;
                default:
                        continue;
                }
                if (json_append(content, j) < 0)
                        return NULL;
        }
        return json_pack("{s:s, s:s, s:s, s:s, s:O, s:s, s:s?, s:o}", "id", id, "type", "message", "role",
                         "assistant", "model", model, "content", content, "stop_reason",
                         stop_reason_to_anthropic(stop), "stop_sequence",
                         stop == STOP_STOP_SEQUENCE ? r->stop_sequence : NULL, "usage",
                         usage_to_anthropic(&r->usage));
}

static json_t *render_chat(const Reply *r, const char *model, const char *id) {
        _cleanup_(buf_done) Buf text = {}, reasoning = {};
        _cleanup_json_ json_t *calls = json_array(), *msg = NULL;
        const char *refusal = NULL;
        bool has_text = false;

        if (!calls)
                return NULL;
        for (size_t i = 0; i < r->n_blocks; i++) {
                const ReplyBlock *b = &r->blocks[i];
                _cleanup_free_ char *tid = NULL;

                switch (b->kind) {
                case BLOCK_TEXT:
                        if (buf_append_str(&text, b->text) < 0)
                                return NULL;
                        has_text = true;
                        break;
                case BLOCK_THINKING:
                        if (buf_append_str(&reasoning, b->text) < 0)
                                return NULL;
                        break;
                case BLOCK_REFUSAL:
                        refusal = b->text;
                        break;
                case BLOCK_TOOL_USE:
                        if (tool_id_sanitize("call_", b->id, id_base(id), (unsigned) i, &tid) < 0 ||
                            json_append(calls,
                                        json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", tid, "type", "function",
                                                  "function", "name", b->name, "arguments", b->text)) < 0)
                                return NULL;
                        break;
                default:
                        break;
                }
        }
        msg = json_pack("{s:s, s:o, s:s?}", "role", "assistant", "content",
                        has_text ? json_stringn((const char *) buf_data(&text), buf_len(&text)) : json_null(),
                        "refusal", refusal);
        if (!msg)
                return NULL;
        if (!refusal && json_object_set_new(msg, "refusal", json_null()) < 0)
                return NULL;
        if (buf_len(&reasoning) > 0 &&
            json_set(msg, "reasoning_content",
                     json_stringn((const char *) buf_data(&reasoning), buf_len(&reasoning))) < 0)
                return NULL;
        if (json_array_size(calls) > 0 && json_object_set(msg, "tool_calls", calls) < 0)
                return NULL;
        return json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:O, s:n, s:s}], s:o}", "id", id, "object",
                         "chat.completion", "created", (json_int_t) time(NULL), "model", model, "choices",
                         "index", 0, "message", msg, "logprobs", "finish_reason",
                         stop_reason_to_openai(r->stop), "usage", usage_to_openai(&r->usage));
}

static json_t *render_responses(const Reply *r, const char *model, const char *id) {
        _cleanup_json_ json_t *output = json_array();
        const char *base = startswith(id, "resp_") ? id + 5 : id;

        if (!output)
                return NULL;
        for (size_t i = 0; i < r->n_blocks; i++) {
                const ReplyBlock *b = &r->blocks[i];
                char item_id[160];
                json_t *j;

                switch (b->kind) {
                case BLOCK_TEXT:
                case BLOCK_REFUSAL:
                        (void) snprintf(item_id, sizeof item_id, "msg_%s_%zu", base, i);
                        j = responses_message_item(item_id, "completed", b->kind, b->text);
                        break;
                case BLOCK_THINKING:
                case BLOCK_REDACTED_THINKING:
                        (void) snprintf(item_id, sizeof item_id, "rs_%s_%zu", base, i);
                        j = responses_reasoning_item(item_id, "completed", b->kind, b->text, b->signature);
                        break;
                case BLOCK_TOOL_USE: {
                        _cleanup_free_ char *tid = NULL;
                        (void) snprintf(item_id, sizeof item_id, "fc_%s_%zu", base, i);
                        if (tool_id_sanitize("call_", b->id, id_base(id), (unsigned) i, &tid) < 0)
                                return NULL;
                        j = responses_function_item(item_id, "completed", tid, b->name, b->text);
                        break;
                }
                default:
                        continue;
                }
                if (json_append(output, j) < 0)
                        return NULL;
        }
        return responses_object(id, model, time(NULL), responses_status(r->stop), r->stop, json_incref(output),
                                &r->usage);
}

static int translate_response_in_scope(TranslateKind k, const char *body, size_t len, const char *client_model,
                                      char **ret, size_t *ret_len) {
        _cleanup_(reply_done) Reply r = {};
        /* Both are made in this scope from the body alone: json_scratch_drop() lets the arena have them. */
        _cleanup_(json_scratch_dropp) json_t *in = NULL, *out = NULL;
        _cleanup_free_ char *id = NULL;
        int q;

        if (k < 0 || k >= _TRANSLATE_KIND_MAX || !client_model)
                return -EINVAL;
        q = json_parse_object(body, len, &in);
        if (q < 0)
                return q;
        q = translate_upstream_is_anthropic(k) ? reply_from_messages(in, &r) : reply_from_chat(in, &r);
        if (q < 0)
                return q;

        switch (k) {
        case TRANSLATE_MESSAGES_TO_CHAT:
                q = id_derive("msg_", r.id, &id);
                if (q >= 0)
                        out = render_anthropic(&r, client_model, id);
                break;
        case TRANSLATE_CHAT_TO_MESSAGES:
                q = id_derive("chatcmpl-", r.id, &id);
                if (q >= 0)
                        out = render_chat(&r, client_model, id);
                break;
        default:
                q = id_derive("resp_", r.id, &id);
                if (q >= 0)
                        out = render_responses(&r, client_model, id);
                break;
        }
        if (q < 0)
                return q;
        if (!out)
                return -ENOMEM;
        return json_dump_to_string(out, ret, ret_len);
}

int translate_response(TranslateKind k, const char *body, size_t len, const char *client_model, char **ret,
                       size_t *ret_len) {
        int r;

        json_scratch_begin();
        r = translate_response_in_scope(k, body, len, client_model, ret, ret_len);
        json_scratch_end();
        return r;
}
