/* OpenAI chat completions request (client) -> Anthropic Messages request (upstream).
 *
 * Field by field. "dropped" fields are left out and listed in x-gate-translation-dropped; "refused" ones get
 * a 400 in the OpenAI dialect. Nothing else changes meaning.
 *
 * | OpenAI chat completions                | Anthropic Messages                      | decision            |
 * |----------------------------------------|-----------------------------------------|---------------------|
 * | model                                  | model (the routed upstream name)        | replaced            |
 * | leading system / developer messages    | system (string, or text blocks)         | mapped              |
 * | later system / developer messages      | role system message at that place       | mapped              |
 * | user content: string, text parts       | text blocks                             | mapped              |
 * | image_url data:...;base64 / http(s)    | image base64 / url source               | mapped              |
 * | image_url.detail other than auto       | -                                       | dropped             |
 * | file part file_data (data: URL)        | document base64                         | mapped              |
 * | file part file_id                      | -                                       | refused             |
 * | input_audio part, assistant audio,     | -                                       | refused             |
 * | modalities with audio, audio           |                                         |                     |
 * | assistant content, refusal             | text blocks                             | mapped              |
 * | assistant tool_calls                   | tool_use blocks (input = the parsed     | mapped; arguments   |
 * |                                        | arguments)                              | not a JSON object:  |
 * |                                        |                                         | refused             |
 * | assistant reasoning_content            | - (a thinking block needs Anthropic's   | dropped             |
 * |                                        | signature)                              |                     |
 * | tool messages                          | tool_result blocks, first in the next   | mapped              |
 * |                                        | user turn                               |                     |
 * | final assistant message                | - (Anthropic would continue it: prefill)| refused             |
 * | messages[].name                        | -                                       | dropped             |
 * | function role, functions,              | -                                       | refused             |
 * | function_call (deprecated)             |                                         |                     |
 * | max_completion_tokens / max_tokens     | max_tokens (default 4096, see header)   | mapped              |
 * | temperature 0...1 / above 1            | temperature / -                         | passed / refused    |
 * | top_p, top_k (an extension)            | top_p, top_k                            | passed              |
 * | n: 1 / above 1                         | - / -                                   | mapped / refused    |
 * | stop: string or array                  | stop_sequences                          | mapped              |
 * | stream                                 | stream                                  | mapped              |
 * | stream_options.include_usage           | (Anthropic always streams usage)        | mapped: final usage |
 * |                                        |                                         | chunk               |
 * | tools[] function                       | tools[] name, description, input_schema | mapped              |
 * | tools[].function.strict                | strict                                  | mapped              |
 * | tools[] custom                         | -                                       | refused             |
 * | tool_choice none/auto/required/function| none / auto / any / tool                | mapped              |
 * | tool_choice allowed_tools / custom     | -                                       | refused             |
 * | parallel_tool_calls: false             | tool_choice.disable_parallel_tool_use   | mapped              |
 * | reasoning_effort                       | thinking enabled, budget_tokens (table  | mapped              |
 * |                                        | in common.c; below max_tokens)          |                     |
 * | reasoning_effort with max tokens under | -                                       | dropped             |
 * | Anthropic's minimum budget + 1         |                                         |                     |
 * | response_format text                   | (nothing)                               | mapped              |
 * | response_format json_schema            | output_config.format json_schema        | mapped              |
 * | response_format json_object            | - (no schema-less JSON mode; OpenAI     | dropped             |
 * |                                        | already requires JSON in the prompt)    |                     |
 * | user / safety_identifier               | metadata.user_id                        | mapped              |
 * | service_tier auto / other              | service_tier auto / -                   | mapped / dropped    |
 * | store, metadata, logprobs,             | -                                       | dropped             |
 * | top_logprobs, logit_bias, seed,        |                                         |                     |
 * | presence_penalty, frequency_penalty,   |                                         |                     |
 * | prediction, verbosity,                 |                                         |                     |
 * | prompt_cache_key, prompt_cache_retention,                                        |                     |
 * | unknown fields                         |                                         |                     |
 * | web_search_options                     | -                                       | refused             |
 *
 * Without max tokens and with reasoning_effort, max_tokens is 4096 + the thinking budget, so thinking does
 * not eat the answer's default room.
 */
#include <stdio.h>

#include "shared/util.h"
#include "translate/json-fast.h"
#include "translate/translate-internal.h"

static int refuse_field(ReqCtx *c, const char *field) {
        return req_refuse(c, "'%s' cannot be expressed for an Anthropic upstream", field);
}

/* "data:image/png;base64,AAAA" -> media type and data. */
static int parse_data_url(const char *url, char **ret_media, const char **ret_data) {
        const char *semi, *b64;

        if (!startswith(url, "data:"))
                return -EINVAL;
        b64 = strstr(url, ";base64,");
        if (!b64)
                return -EINVAL;
        semi = strchr(url + 5, ';');
        *ret_media = strndup(url + 5, (size_t) (semi - url - 5));
        if (!*ret_media)
                return -ENOMEM;
        *ret_data = b64 + STRLEN(";base64,");
        return 0;
}

static int image_block(ReqCtx *c, const json_t *part, const char *where, json_t **ret) {
        const json_t *iu = json_object_get(part, "image_url");
        const json_t *url_json = json_is_string(iu) ? iu : json_object_get(iu, "url");
        const char *url = json_string_value(url_json);
        const char *detail = json_get_str(iu, "detail");
        _cleanup_free_ char *media = NULL;
        const char *data;
        int r;

        if (!url)
                return req_refuse(c, "%s: image_url needs a url", where);
        if (detail && !streq(detail, "auto") && (r = req_drop(c, "image_url.detail")) < 0)
                return r;
        if (startswith(url, "data:")) {
                r = parse_data_url(url, &media, &data);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return req_refuse(c, "%s: only base64 data: URLs can be sent to an Anthropic upstream",
                                          where);
                /* Both are pieces of a parsed string cut at ASCII bytes: UTF-8 still, and data can be
                 * megabytes. */
                *ret = json_pack("{s:s, s:{s:s, s:o, s:o}}", "type", "image", "source", "type", "base64",
                                 "media_type", json_stringn_utf8(media, strlen(media)), "data",
                                 json_stringn_utf8(data, strlen(data)));
        } else
                *ret = json_pack("{s:s, s:{s:s, s:O}}", "type", "image", "source", "type", "url", "url",
                                 url_json);
        return *ret ? 0 : -ENOMEM;
}

static int file_block(ReqCtx *c, const json_t *part, const char *where, json_t **ret) {
        const json_t *file = json_object_get(part, "file");
        const char *data_url = json_get_str(file, "file_data"), *filename = json_get_str(file, "filename");
        _cleanup_free_ char *media = NULL;
        const char *data;
        int r;

        if (json_object_get(file, "file_id"))
                return req_refuse(c, "%s: file_id cannot be expressed for an Anthropic upstream", where);
        if (!data_url)
                return req_refuse(c, "%s: file needs file_data", where);
        r = parse_data_url(data_url, &media, &data);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return req_refuse(c, "%s: file_data must be a base64 data: URL", where);
        /* Anthropic takes base64 documents as PDF only (plain text goes as text, which the client can send
         * as a text part itself). */
        if (!streq(media, "application/pdf"))
                return req_refuse(c, "%s: only PDF files can be sent to an Anthropic upstream", where);
        *ret = json_pack("{s:s, s:{s:s, s:s, s:o}}", "type", "document", "source", "type", "base64",
                         "media_type", media, "data", json_stringn_utf8(data, strlen(data)));
        if (*ret && filename && json_set(*ret, "title", json_share(json_object_get(file, "filename"))) < 0)
                return -ENOMEM;
        return *ret ? 0 : -ENOMEM;
}

/* A text block around a string of the input (shared, not copied). */
static json_t *text_block(const json_t *text) {
        return json_object_build("type", json_string_nocheck("text"), "text", json_share(text), NULL);
}

/* User or system content: a string, or parts. Appends blocks. */
static int content_blocks(ReqCtx *c, const json_t *content, const char *where, bool text_only, json_t *blocks) {
        const json_t *p;
        char w[96];
        size_t i;
        int r;

        if (json_is_string(content))
                return json_append(blocks, text_block(content));
        if (!json_is_array(content))
                return req_refuse(c, "%s: must be a string or an array of parts", where);
        json_array_foreach(content, i, p) {
                const char *type = json_get_str(p, "type");
                json_t *b = NULL;

                (void) snprintf(w, sizeof w, "%s[%zu]", where, i);
                if (!type)
                        return req_refuse(c, "%s: a content part needs a type", w);
                if (streq(type, "text")) {
                        if (!json_get_str(p, "text"))
                                return req_refuse(c, "%s: text part needs text", w);
                        r = json_append(blocks, text_block(json_object_get(p, "text")));
                } else if (streq(type, "refusal") && json_get_str(p, "refusal"))
                        r = json_append(blocks, text_block(json_object_get(p, "refusal")));
                else if (text_only)
                        return req_refuse(c, "%s: only text parts are allowed here", w);
                else if (streq(type, "image_url")) {
                        r = image_block(c, p, w, &b);
                        if (r >= 0)
                                r = json_append(blocks, b);
                } else if (streq(type, "file")) {
                        r = file_block(c, p, w, &b);
                        if (r >= 0)
                                r = json_append(blocks, b);
                } else
                        return req_refuse(c, "%s: content part type '%s' cannot be expressed for an Anthropic "
                                          "upstream", w, type);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* The system prompt: one string stays a string; anything else becomes text blocks. */
static int system_value(ReqCtx *c, const json_t *msgs, size_t n_leading, json_t **ret) {
        _cleanup_json_ json_t *blocks = json_array();
        char where[48];
        int r;

        if (!blocks)
                return -ENOMEM;
        if (n_leading == 1 && json_is_string(json_object_get(json_array_get(msgs, 0), "content"))) {
                *ret = json_incref(json_object_get(json_array_get(msgs, 0), "content"));
                return 0;
        }
        for (size_t i = 0; i < n_leading; i++) {
                (void) snprintf(where, sizeof where, "messages[%zu].content", i);
                r = content_blocks(c, json_object_get(json_array_get(msgs, i), "content"), where, true, blocks);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(blocks);
        return 0;
}

static int tool_use_block(ReqCtx *c, const json_t *call, const char *where, json_t **ret) {
        const json_t *fn = json_object_get(call, "function");
        const char *id = json_get_str(call, "id"), *name = json_get_str(fn, "name");
        const json_t *args_json = json_object_get(fn, "arguments");
        const char *args = json_string_value(args_json), *type = json_get_str(call, "type");
        _cleanup_free_ char *tid = NULL;
        json_t *input = NULL;
        int r;

        if (type && !streq(type, "function"))
                return req_refuse(c, "%s: tool call type '%s' cannot be expressed for an Anthropic upstream",
                                  where, type);
        if (!name || !id)
                return req_refuse(c, "%s: a tool call needs id and function.name", where);
        if (isempty(args))
                input = json_object();
        else {
                r = json_read(args, json_string_length(args_json), 0, &input);
                if (r == -ENOMEM)
                        return r;
                if (!json_is_object(input)) {
                        json_decref(input);
                        return req_refuse(c, "%s: function.arguments must be a JSON object for an Anthropic "
                                          "upstream", where);
                }
        }
        r = tool_id_sanitize("toolu_", id, NULL, 0, &tid);
        if (r < 0) {
                json_decref(input);
                return r;
        }
        *ret = json_object_build("type", json_string_nocheck("tool_use"), "id",
                                 json_stringn_utf8(tid, strlen(tid)), "name", json_share(json_object_get(fn, "name")),
                                 "input", input, NULL);
        return *ret ? 0 : -ENOMEM;
}

/* Thinking blocks that the Responses translator attached to an assistant message. */
static int gate_thinking_blocks(ReqCtx *c, const json_t *msg, json_t *blocks) {
        const json_t *list = json_object_get(msg, GATE_THINKING_MEMBER), *b;
        size_t i;
        int r;

        json_array_foreach(list, i, b) {
                r = json_append(blocks, json_share(b));
                if (r < 0)
                        return r;
        }
        return 0;
}

typedef struct Turns {
        json_t *messages;               /* Anthropic messages */
        json_t *pending_results;        /* tool_result blocks waiting for their user turn */
} Turns;

static int flush_results(Turns *t) {
        int r;

        if (json_array_size(t->pending_results) == 0)
                return 0;
        /* A copy: the list is cleared for the next turn. */
        r = json_append(t->messages, json_object_build("role", json_string_nocheck("user"), "content",
                                                       json_copy(t->pending_results), NULL));
        if (r >= 0 && json_array_clear(t->pending_results) < 0)
                r = -ENOMEM;
        return r;
}

static int convert_messages(ReqCtx *c, const json_t *msgs, size_t first, bool from_responses, json_t *out) {
        _cleanup_json_ json_t *messages = json_array(), *pending = json_array();
        Turns t = { .messages = messages, .pending_results = pending };
        const json_t *m;
        char where[64];
        int r;

        if (!messages || !pending)
                return -ENOMEM;
        for (size_t i = first; i < json_array_size(msgs); i++) {
                const char *role;
                _cleanup_json_ json_t *blocks = json_array();

                if (!blocks)
                        return -ENOMEM;
                m = json_array_get(msgs, i);
                role = json_get_str(m, "role");
                (void) snprintf(where, sizeof where, "messages[%zu].content", i);
                if (!role)
                        return req_refuse(c, "messages[%zu]: missing role", i);
                if (json_object_get(m, "name") && (r = req_drop(c, "messages.name")) < 0)
                        return r;

                if (streq(role, "tool")) {
                        const char *id = json_get_str(m, "tool_call_id");
                        const json_t *content = json_object_get(m, "content");
                        _cleanup_free_ char *tid = NULL;
                        json_t *rc;

                        if (!id)
                                return req_refuse(c, "messages[%zu]: a tool message needs tool_call_id", i);
                        r = tool_id_sanitize("toolu_", id, NULL, 0, &tid);
                        if (r < 0)
                                return r;
                        if (json_is_string(content))
                                rc = json_share(content);
                        else if (!content || json_is_null(content))
                                rc = json_string_nocheck("");
                        else {
                                rc = json_array();
                                r = rc ? content_blocks(c, content, where, true, rc) : -ENOMEM;
                                if (r < 0) {
                                        json_decref(rc);
                                        return r;
                                }
                        }
                        r = json_append(pending, json_object_build("type", json_string_nocheck("tool_result"),
                                                                   "tool_use_id",
                                                                   json_stringn_utf8(tid, strlen(tid)),
                                                                   "content", rc, NULL));
                        if (r < 0)
                                return r;
                        continue;
                }

                if (streq(role, "user")) {
                        /* Tool results open the user turn that follows them. */
                        r = json_array_extend(blocks, pending) < 0 ? -ENOMEM : 0;
                        if (r >= 0 && json_array_clear(pending) < 0)
                                r = -ENOMEM;
                        if (r >= 0)
                                r = content_blocks(c, json_object_get(m, "content"), where, false, blocks);
                        if (r >= 0)
                                r = json_append(messages, json_object_build("role", json_string_nocheck("user"),
                                                                            "content", json_share(blocks),
                                                                            NULL));
                        if (r < 0)
                                return r;
                        continue;
                }

                r = flush_results(&t);
                if (r < 0)
                        return r;

                if (streq(role, "system") || streq(role, "developer")) {
                        r = content_blocks(c, json_object_get(m, "content"), where, true, blocks);
                        if (r >= 0)
                                r = json_append(messages, json_pack("{s:s, s:O}", "role", "system", "content",
                                                                    blocks));
                } else if (streq(role, "assistant")) {
                        const json_t *content = json_object_get(m, "content"),
                                     *calls = json_object_get(m, "tool_calls");
                        const json_t *call;
                        size_t k;

                        if (i + 1 == json_array_size(msgs))
                                return req_refuse(
                                        c,
                                        "messages[%zu]: a final assistant message cannot be expressed "
                                        "for an Anthropic upstream (it would be continued, not answered)",
                                        i);
                        if (json_object_get(m, "audio") && !json_is_null(json_object_get(m, "audio")))
                                return refuse_field(c, "audio");
                        if (json_object_get(m, "function_call") &&
                            !json_is_null(json_object_get(m, "function_call")))
                                return refuse_field(c, "function_call");
                        if (json_object_get(m, "reasoning_content") &&
                            (r = req_drop(c, "reasoning_content")) < 0)
                                return r;
                        if (from_responses && (r = gate_thinking_blocks(c, m, blocks)) < 0)
                                return r;
                        if (content && !json_is_null(content)) {
                                r = content_blocks(c, content, where, true, blocks);
                                if (r < 0)
                                        return r;
                        }
                        if (json_get_str(m, "refusal") &&
                            (r = json_append(blocks, text_block(json_object_get(m, "refusal")))) < 0)
                                return r;
                        json_array_foreach(calls, k, call) {
                                json_t *b = NULL;
                                char w[80];

                                (void) snprintf(w, sizeof w, "messages[%zu].tool_calls[%zu]", i, k);
                                r = tool_use_block(c, call, w, &b);
                                if (r >= 0)
                                        r = json_append(blocks, b);
                                if (r < 0)
                                        return r;
                        }
                        /* Anthropic rejects empty text blocks and empty turns; an empty assistant turn says
                         * nothing. */
                        for (size_t k2 = json_array_size(blocks); k2 > 0; k2--) {
                                const json_t *b = json_array_get(blocks, k2 - 1);
                                const char *bt = json_get_str(b, "type");
                                if (bt && streq(bt, "text") && isempty(json_get_str(b, "text")) &&
                                    json_array_remove(blocks, k2 - 1) < 0)
                                        return -ENOMEM;
                        }
                        if (json_array_size(blocks) == 0)
                                continue;
                        r = json_append(messages, json_object_build("role", json_string_nocheck("assistant"),
                                                                    "content", json_share(blocks), NULL));
                } else if (streq(role, "function"))
                        return refuse_field(c, "function role");
                else
                        return req_refuse(c, "messages[%zu]: unknown role '%s'", i, role);
                if (r < 0)
                        return r;
        }
        r = flush_results(&t);
        if (r < 0)
                return r;
        return json_set(out, "messages", json_incref(messages));
}

static int convert_tools(ReqCtx *c, const json_t *tools, json_t *out) {
        _cleanup_json_ json_t *list = json_array();
        const json_t *t;
        size_t i;
        int r;

        if (!list)
                return -ENOMEM;
        if (!json_is_array(tools))
                return req_refuse(c, "tools: must be an array");
        json_array_foreach(tools, i, t) {
                const char *type = json_get_str(t, "type");
                const json_t *fn = json_object_get(t, "function"), *params = json_object_get(fn, "parameters");
                const char *name = json_get_str(fn, "name");
                json_t *tool;

                if (!type || !streq(type, "function"))
                        return req_refuse(c, "tools[%zu]: tool type '%s' cannot be expressed for an Anthropic "
                                          "upstream", i, type ?: "(none)");
                if (!name)
                        return req_refuse(c, "tools[%zu]: function.name is required", i);
                /* OpenAI allows leaving parameters out for a function without arguments. */
                if (json_is_object(params))
                        tool = json_object_build("name", json_share(json_object_get(fn, "name")), "input_schema",
                                                 json_share(params), NULL);
                else
                        tool = json_pack("{s:O, s:{s:s, s:{}}}", "name", json_object_get(fn, "name"),
                                         "input_schema", "type", "object", "properties");
                r = json_share_member(tool, fn, "description");
                if (r >= 0 && json_is_boolean(json_object_get(fn, "strict")))
                        r = json_share_member(tool, fn, "strict");
                if (r >= 0)
                        r = json_append(list, tool);
                else
                        json_decref(tool);
                if (r < 0)
                        return r;
        }
        return json_set(out, "tools", json_incref(list));
}

static int convert_tool_choice(ReqCtx *c, const json_t *in, bool have_tools, json_t *out) {
        const json_t *tc = json_object_get(in, "tool_choice");
        bool parallel_off = json_is_false(json_object_get(in, "parallel_tool_calls"));
        json_t *v = NULL;

        if (tc && !json_is_null(tc)) {
                const char *s = json_string_value(tc), *type = json_get_str(tc, "type");

                if (s && streq(s, "none"))
                        v = json_pack("{s:s}", "type", "none");
                else if (s && streq(s, "auto"))
                        v = json_pack("{s:s}", "type", "auto");
                else if (s && streq(s, "required"))
                        v = json_pack("{s:s}", "type", "any");
                else if (type && streq(type, "function") &&
                         json_get_str(json_object_get(tc, "function"), "name"))
                        v = json_pack("{s:s, s:O}", "type", "tool", "name",
                                      json_object_get(json_object_get(tc, "function"), "name"));
                else
                        return req_refuse(
                                c, "tool_choice: this value cannot be expressed for an Anthropic upstream");
                if (!v)
                        return -ENOMEM;
        }
        if (!have_tools) {
                /* Without tools Anthropic only accepts "none", and "none" is what no tools means anyway. */
                json_decref(v);
                return 0;
        }
        if (parallel_off) {
                if (!v)
                        v = json_pack("{s:s}", "type", "auto");
                if (!v)
                        return -ENOMEM;
                if (!streq(json_get_str(v, "type"), "none") &&
                    json_object_set_new(v, "disable_parallel_tool_use", json_true()) < 0) {
                        json_decref(v);
                        return -ENOMEM;
                }
        }
        return v ? json_set(out, "tool_choice", v) : 0;
}

static int convert_response_format(ReqCtx *c, const json_t *rf, json_t *out) {
        const char *type = json_get_str(rf, "type");
        const json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");

        if (!rf || json_is_null(rf) || (type && streq(type, "text")))
                return 0;
        if (type && streq(type, "json_object"))
                return req_drop(c, "response_format");
        if (type && streq(type, "json_schema")) {
                if (!json_is_object(schema))
                        return req_refuse(c, "response_format.json_schema.schema is required");
                return json_set(out, "output_config",
                                json_pack("{s:{s:s, s:O}}", "format", "type", "json_schema", "schema", schema));
        }
        return req_refuse(c, "response_format: type '%s' cannot be expressed for an Anthropic upstream",
                          type ?: "(none)");
}

int request_chat_to_messages(ReqCtx *c, json_t *in, const char *upstream_model, bool from_responses,
                             json_t **ret) {
        static const char *const handled[] = {
                "model",
                "messages",
                "max_tokens",
                "max_completion_tokens",
                "temperature",
                "top_p",
                "top_k",
                "n",
                "stop",
                "stream",
                "stream_options",
                "tools",
                "tool_choice",
                "parallel_tool_calls",
                "reasoning_effort",
                "response_format",
                "user",
                "safety_identifier",
                "service_tier",
                "modalities",
        };
        static const char *const refused[] = { "audio", "web_search_options", "functions", "function_call" };
        _cleanup_json_ json_t *out = json_object();
        const json_t *msgs = json_object_get(in, "messages"), *v;
        int64_t max_tokens = -1, budget = 0;
        size_t n_leading = 0;
        bool have_tools;
        const char *key;
        int r;

        if (!out)
                return -ENOMEM;
        if (!json_is_array(msgs))
                return req_refuse(c, "Missing required parameter: 'messages'.");

        json_object_foreach(in, key, v) {
                if (json_is_null(v))
                        continue;
                if (STRING_IN_TABLE(key, refused))
                        return refuse_field(c, key);
                if (STRING_IN_TABLE(key, handled))
                        continue;
                /* Defaults say nothing: do not report them as dropped. */
                if ((streq(key, "store") || streq(key, "logprobs")) && json_is_false(v))
                        continue;
                if ((streq(key, "presence_penalty") || streq(key, "frequency_penalty")) && json_is_number(v) &&
                    json_number_value(v) == 0)
                        continue;
                if ((r = req_drop(c, key)) < 0)
                        return r;
        }

        v = json_object_get(in, "n");
        if (json_is_number(v) && json_number_value(v) != 1)
                return req_refuse(c, "'n' other than 1 cannot be expressed for an Anthropic upstream");
        v = json_object_get(in, "modalities");
        if (json_is_array(v)) {
                const json_t *x;
                size_t i;
                json_array_foreach(v, i, x)
                        if (!json_is_string(x) || !streq(json_string_value(x), "text"))
                                return refuse_field(c, "modalities");
        }
        v = json_object_get(in, "temperature");
        if (json_is_number(v) && (json_number_value(v) < 0 || json_number_value(v) > 1))
                return req_refuse(c, "'temperature' above 1 cannot be expressed for an Anthropic upstream "
                                  "(its range is 0 to 1)");

        r = json_set(out, "model", json_string(upstream_model));
        if (r < 0)
                return r;

        while (n_leading < json_array_size(msgs)) {
                const char *role = json_get_str(json_array_get(msgs, n_leading), "role");
                if (!role || (!streq(role, "system") && !streq(role, "developer")))
                        break;
                n_leading++;
        }
        if (n_leading > 0) {
                json_t *system = NULL;
                r = system_value(c, msgs, n_leading, &system);
                if (r >= 0)
                        r = json_set(out, "system", system);
                if (r < 0)
                        return r;
        }
        r = convert_messages(c, msgs, n_leading, from_responses, out);
        if (r < 0)
                return r;

        if (json_get_uint(in, "max_completion_tokens") >= 0)
                max_tokens = json_get_uint(in, "max_completion_tokens");
        else if (json_get_uint(in, "max_tokens") >= 0)
                max_tokens = json_get_uint(in, "max_tokens");

        v = json_object_get(in, "reasoning_effort");
        if (json_is_string(v)) {
                budget = thinking_budget_from_effort(json_string_value(v));
                if (budget < 0)
                        return req_refuse(c, "reasoning_effort: unknown value '%s'", json_string_value(v));
                if (budget > 0 && max_tokens >= 0 && budget >= max_tokens) {
                        budget = max_tokens - 1;
                        if (budget < THINKING_BUDGET_MIN) {
                                budget = 0;
                                if ((r = req_drop(c, "reasoning_effort")) < 0)
                                        return r;
                        }
                }
        }
        if (max_tokens < 0)
                max_tokens = TRANSLATE_DEFAULT_MAX_TOKENS + budget;
        r = json_set(out, "max_tokens", json_integer(max_tokens));
        if (r >= 0 && budget > 0)
                r = json_set(out, "thinking", json_pack("{s:s, s:I}", "type", "enabled", "budget_tokens",
                                                        (json_int_t) budget));

        v = json_object_get(in, "stop");
        if (r >= 0 && json_is_string(v))
                r = json_set(out, "stop_sequences", json_pack("[O]", v));
        else if (r >= 0 && json_is_array(v) && json_array_size(v) > 0)
                r = json_set(out, "stop_sequences", json_share(v));

        if (r >= 0 && json_get_true(in, "stream"))
                r = json_set(out, "stream", json_true());
        if (r >= 0 && json_is_number(json_object_get(in, "temperature")))
                r = json_share_member(out, in, "temperature");
        if (r >= 0 && json_is_number(json_object_get(in, "top_p")))
                r = json_share_member(out, in, "top_p");
        if (r >= 0 && json_is_integer(json_object_get(in, "top_k")))
                r = json_share_member(out, in, "top_k");

        v = json_object_get(in, "tools");
        have_tools = json_is_array(v) && json_array_size(v) > 0;
        if (r >= 0 && have_tools)
                r = convert_tools(c, v, out);
        if (r >= 0)
                r = convert_tool_choice(c, in, have_tools, out);
        if (r >= 0)
                r = convert_response_format(c, json_object_get(in, "response_format"), out);

        const json_t *user = json_get_str(in, "user") ? json_object_get(in, "user") :
                             json_get_str(in, "safety_identifier") ? json_object_get(in, "safety_identifier") : NULL;
        if (r >= 0 && user)
                r = json_set(out, "metadata", json_pack("{s:O}", "user_id", user));

        v = json_object_get(in, "service_tier");
        if (r >= 0 && json_is_string(v)) {
                if (streq(json_string_value(v), "auto"))
                        r = json_set(out, "service_tier", json_string("auto"));
                else
                        r = req_drop(c, "service_tier");
        }
        if (r < 0)
                return r;

        *ret = TAKE_PTR(out);
        return 0;
}
