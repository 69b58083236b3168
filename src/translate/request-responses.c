/* OpenAI Responses request (client, stateless parts) -> chat completions request; for an Anthropic upstream
 * request-chat.c then takes it the rest of the way.
 *
 * Field by field. "dropped" fields are left out and listed in x-gate-translation-dropped; "refused" ones get
 * a 400 in the OpenAI dialect. Nothing else changes meaning. Conversations kept on the server are refused:
 * gate stores nothing, so there is nothing for previous_response_id to point at.
 *
 * | Responses                              | chat completions                        | decision            |
 * |----------------------------------------|-----------------------------------------|---------------------|
 * | model                                  | model (the routed upstream name)        | replaced            |
 * | instructions                           | first message, role system              | mapped              |
 * | input: string                          | one user message                        | mapped              |
 * | message items user/system/developer/   | messages of that role                   | mapped              |
 * | assistant (type "message" or none)     |                                         |                     |
 * | input_text, output_text                | text parts                              | mapped              |
 * | refusal (assistant)                    | refusal                                 | mapped              |
 * | input_image image_url (+ detail)       | image_url                               | mapped              |
 * | input_file file_data (+ filename)      | file part                               | mapped              |
 * | input_image / input_file file_id,      | -                                       | refused             |
 * | input_file file_url, input_audio       |                                         |                     |
 * | function_call items                    | tool_calls of one assistant message     | mapped              |
 * | function_call_output (string or text)  | tool message                            | mapped              |
 * | function_call_output images / files    | - (tool messages carry text only)       | refused             |
 * | reasoning items                        | chat upstream: -                        | dropped             |
 * |                                        | Anthropic upstream: thinking block      | mapped              |
 * |                                        | (summary text, encrypted_content as the |                     |
 * |                                        | signature) of the next assistant turn   |                     |
 * | item_reference, built-in tool items    | -                                       | refused             |
 * | max_output_tokens                      | max_completion_tokens                   | mapped              |
 * | temperature, top_p                     | temperature, top_p                      | passed              |
 * | tools[] function (strict)              | tools[] function (strict)               | mapped              |
 * | tools[] built-in (web_search, ...)     | -                                       | refused             |
 * | tool_choice none/auto/required/function| the same in chat's shape                | mapped              |
 * | tool_choice other                      | -                                       | refused             |
 * | parallel_tool_calls                    | parallel_tool_calls                     | passed              |
 * | reasoning.effort                       | reasoning_effort                        | mapped              |
 * | reasoning.summary                      | (reasoning the upstream returns comes   | mapped              |
 * |                                        | back as a summary)                      |                     |
 * | text.format text / json_object /       | response_format                         | mapped              |
 * | json_schema                            |                                         |                     |
 * | text.verbosity                         | verbosity                               | passed              |
 * | stream                                 | stream, stream_options.include_usage    | mapped (usage is    |
 * |                                        | = true                                  | always asked for)   |
 * | user, safety_identifier,               | the same                                | passed              |
 * | prompt_cache_key, prompt_cache_        |                                         |                     |
 * | retention, service_tier                |                                         |                     |
 * | store: true                            | -                                       | refused             |
 * | store: false or absent                 | (nothing is stored)                     | mapped              |
 * | previous_response_id, conversation,    | -                                       | refused             |
 * | background: true, prompt               |                                         |                     |
 * | include reasoning.encrypted_content    | (signatures always come back)           | mapped              |
 * | include, other values                  | -                                       | dropped             |
 * | truncation "auto"                      | -                                       | dropped             |
 * | metadata, top_logprobs, max_tool_calls,| -                                       | dropped             |
 * | context_management, unknown fields     |                                         |                     |
 */
#include <stdio.h>

#include "shared/util.h"
#include "translate/translate-internal.h"

static int refuse_field(ReqCtx *c, const char *field) {
        return req_refuse(c, "'%s' is not supported by this gateway's Responses translation (it keeps no state "
                          "and speaks chat completions or Anthropic upstream)", field);
}

/* A text part around a string of the input (shared, not copied). */
static json_t *text_part(const json_t *text) {
        return json_object_build("type", json_string_nocheck("text"), "text", json_share(text), NULL);
}

/* Message content: a string, or input/output parts. Appends chat parts. */
static int content_parts(ReqCtx *c, const json_t *content, const char *where, json_t *parts, json_t *msg) {
        const json_t *p;
        size_t i;
        int r;

        if (json_is_string(content))
                return json_append(parts, text_part(content));
        if (!json_is_array(content))
                return req_refuse(c, "%s: must be a string or an array of content parts", where);
        json_array_foreach(content, i, p) {
                const char *type = json_get_str(p, "type");

                if (!type)
                        return req_refuse(c, "%s[%zu]: a content part needs a type", where, i);
                if (streq(type, "input_text") || streq(type, "output_text") || streq(type, "text")) {
                        if (!json_get_str(p, "text"))
                                return req_refuse(c, "%s[%zu]: needs text", where, i);
                        r = json_append(parts, text_part(json_object_get(p, "text")));
                } else if (streq(type, "refusal") && msg)
                        r = json_set(msg, "refusal", json_get_str(p, "refusal") ?
                                                     json_share(json_object_get(p, "refusal")) :
                                                     json_string_nocheck(""));
                else if (streq(type, "input_image")) {
                        const char *url = json_get_str(p, "image_url"), *detail = json_get_str(p, "detail");
                        json_t *iu;

                        if (!url)
                                return req_refuse(c,
                                                  "%s[%zu]: only input_image with image_url can be translated "
                                                  "(file_id refers to storage gate does not have)",
                                                  where, i);
                        iu = json_pack("{s:O}", "url", json_object_get(p, "image_url"));
                        if (iu && detail && json_set(iu, "detail", json_share(json_object_get(p, "detail"))) < 0)
                                iu = (json_decref(iu), NULL);
                        r = json_append(parts, json_pack("{s:s, s:o}", "type", "image_url", "image_url", iu));
                } else if (streq(type, "input_file")) {
                        const char *data = json_get_str(p, "file_data"), *name = json_get_str(p, "filename");
                        json_t *f;

                        if (!data)
                                return req_refuse(c,
                                                  "%s[%zu]: only input_file with file_data can be translated",
                                                  where, i);
                        f = json_pack("{s:O}", "file_data", json_object_get(p, "file_data"));
                        if (f && name && json_set(f, "filename", json_share(json_object_get(p, "filename"))) < 0)
                                f = (json_decref(f), NULL);
                        r = json_append(parts, json_pack("{s:s, s:o}", "type", "file", "file", f));
                } else
                        return req_refuse(c, "%s[%zu]: content type '%s' cannot be translated", where, i, type);
                if (r < 0)
                        return r;
        }
        return 0;
}

static json_t *parts_to_content(json_t *parts) {
        if (json_array_size(parts) == 1 && streq(json_get_str(json_array_get(parts, 0), "type") ?: "", "text"))
                return json_incref(json_object_get(json_array_get(parts, 0), "text"));
        return json_incref(parts);
}

typedef struct Items {
        ReqCtx *c;
        bool for_messages;
        json_t *messages;
        json_t *assistant;              /* the assistant message function_calls join, or NULL */
        json_t *thinking;               /* reasoning items waiting for their assistant turn */
} Items;

static int take_thinking(Items *it, json_t *msg) {
        int r;

        if (json_array_size(it->thinking) == 0)
                return 0;
        r = json_set(msg, GATE_THINKING_MEMBER, json_incref(it->thinking));
        if (r < 0)
                return r;
        json_decref(it->thinking);
        it->thinking = json_array();
        return it->thinking ? 0 : -ENOMEM;
}

static int reasoning_item(Items *it, const json_t *item, size_t i) {
        const json_t *summary = json_object_get(item, "summary"), *content = json_object_get(item, "content"),
                     *s;
        const char *enc = json_get_str(item, "encrypted_content");
        _cleanup_(buf_done) Buf text = {};
        size_t k;

        if (!it->for_messages)
                return req_drop(it->c, "reasoning");
        /* What response rendering produced for a redacted thinking block goes back as one. */
        if (enc && startswith(enc, "redacted:"))
                return json_append(it->thinking, json_pack("{s:s, s:s}", "type", "redacted_thinking", "data",
                                                           enc + STRLEN("redacted:")));
        json_array_foreach(json_is_array(summary) && json_array_size(summary) > 0 ? summary : content, k, s) {
                const json_t *t = json_object_get(s, "text");
                if (json_is_string(t) &&
                    ((buf_len(&text) > 0 && buf_append_str(&text, "\n\n") < 0) ||
                     buf_append(&text, json_string_value(t), json_string_length(t)) < 0))
                        return -ENOMEM;
        }
        /* Without its signature a thinking block is rejected by Anthropic, and it is only context. */
        if (!enc)
                return req_drop(it->c, "reasoning");
        /* Parsed texts joined by ASCII: UTF-8. */
        return json_append(it->thinking,
                           json_pack("{s:s, s:o, s:O}", "type", "thinking", "thinking",
                                     json_stringn_utf8((const char *) buf_data(&text), buf_len(&text)),
                                     "signature", json_object_get(item, "encrypted_content")));
}

static int message_item(Items *it, const json_t *item, size_t i) {
        ReqCtx *c = it->c;
        const char *role = json_get_str(item, "role");
        _cleanup_json_ json_t *parts = json_array(), *msg = NULL;
        char where[48];
        int r;

        if (!parts)
                return -ENOMEM;
        if (!role || (!streq(role, "user") && !streq(role, "assistant") && !streq(role, "system") &&
                      !streq(role, "developer")))
                return req_refuse(c, "input[%zu]: unknown role '%s'", i, role ?: "(none)");
        /* OpenAI reads a system message as a developer message; OpenAI-compatible servers may know only
         * "system". */
        msg = json_pack("{s:s}", "role", streq(role, "developer") ? "system" : role);
        if (!msg)
                return -ENOMEM;
        (void) snprintf(where, sizeof where, "input[%zu].content", i);
        r = content_parts(c, json_object_get(item, "content"), where, parts,
                          streq(role, "assistant") ? msg : NULL);
        if (r < 0)
                return r;
        r = json_set(msg, "content", json_array_size(parts) > 0 ? parts_to_content(parts) :
                                     streq(role, "assistant") ? json_null() : json_string(""));
        if (r < 0)
                return r;
        if (streq(role, "assistant")) {
                r = take_thinking(it, msg);
                if (r < 0)
                        return r;
                it->assistant = msg;
        } else
                it->assistant = NULL;
        return json_append(it->messages, TAKE_PTR(msg));
}

static int function_call_item(Items *it, const json_t *item, size_t i) {
        const char *call_id = json_get_str(item, "call_id"), *name = json_get_str(item, "name");
        const json_t *args = json_object_get(item, "arguments");
        json_t *calls;
        int r;

        if (!call_id || !name)
                return req_refuse(it->c, "input[%zu]: a function_call needs call_id and name", i);
        if (!it->assistant) {
                json_t *msg = json_pack("{s:s, s:n}", "role", "assistant", "content");
                if (!msg)
                        return -ENOMEM;
                r = take_thinking(it, msg);
                if (r >= 0)
                        r = json_append(it->messages, json_incref(msg));
                json_decref(msg);
                if (r < 0)
                        return r;
                it->assistant = msg;
        }
        calls = json_object_get(it->assistant, "tool_calls");
        if (!calls) {
                calls = json_array();
                r = json_set(it->assistant, "tool_calls", calls);
                if (r < 0)
                        return r;
        }
        return json_append(calls, json_object_build(
                                          "id", json_share(json_object_get(item, "call_id")),
                                          "type", json_string_nocheck("function"),
                                          "function", json_object_build(
                                                  "name", json_share(json_object_get(item, "name")),
                                                  "arguments",
                                                  json_is_string(args) ? json_share(args) : json_string_nocheck(""),
                                                  NULL),
                                          NULL));
}

static int function_output_item(Items *it, const json_t *item, size_t i) {
        const char *call_id = json_get_str(item, "call_id");
        const json_t *output = json_object_get(item, "output"), *p;
        _cleanup_(buf_done) Buf text = {};
        size_t k;

        if (!call_id)
                return req_refuse(it->c, "input[%zu]: a function_call_output needs call_id", i);
        it->assistant = NULL;
        if (json_is_string(output))
                return json_append(it->messages,
                                   json_object_build("role", json_string_nocheck("tool"), "tool_call_id",
                                                     json_share(json_object_get(item, "call_id")), "content",
                                                     json_share(output), NULL));
        if (!json_is_array(output))
                return req_refuse(it->c, "input[%zu].output: must be a string or an array", i);
        json_array_foreach(output, k, p) {
                const char *type = json_get_str(p, "type");
                const json_t *t = json_object_get(p, "text");

                if (!type || !streq(type, "input_text") || !json_is_string(t))
                        return req_refuse(it->c,
                                          "input[%zu].output[%zu]: only text can be returned by a function "
                                          "through this translation",
                                          i, k);
                if ((buf_len(&text) > 0 && buf_append_str(&text, "\n\n") < 0) ||
                    buf_append(&text, json_string_value(t), json_string_length(t)) < 0)
                        return -ENOMEM;
        }
        /* Parsed texts joined by ASCII: UTF-8. */
        return json_append(it->messages,
                           json_object_build("role", json_string_nocheck("tool"), "tool_call_id",
                                             json_share(json_object_get(item, "call_id")), "content",
                                             json_stringn_utf8((const char *) buf_data(&text), buf_len(&text)),
                                             NULL));
}

static int convert_input(ReqCtx *c, const json_t *in, bool for_messages, json_t *messages) {
        const json_t *input = json_object_get(in, "input"), *item;
        const char *instructions = json_get_str(in, "instructions");
        Items it = { .c = c, .for_messages = for_messages, .messages = messages, .thinking = json_array() };
        size_t i;
        int r = 0;

        if (!it.thinking)
                return -ENOMEM;
        if (instructions)
                r = json_append(messages, json_pack("{s:s, s:O}", "role", "system", "content",
                                                    json_object_get(in, "instructions")));
        if (r >= 0 && json_is_string(input))
                r = json_append(messages, json_pack("{s:s, s:O}", "role", "user", "content", input));
        else if (r >= 0 && json_is_array(input))
                json_array_foreach(input, i, item) {
                        const char *type = json_get_str(item, "type");

                        if (!type || streq(type, "message"))
                                r = message_item(&it, item, i);
                        else if (streq(type, "function_call"))
                                r = function_call_item(&it, item, i);
                        else if (streq(type, "function_call_output"))
                                r = function_output_item(&it, item, i);
                        else if (streq(type, "reasoning"))
                                r = reasoning_item(&it, item, i);
                        else
                                r = req_refuse(
                                        c,
                                        "input[%zu]: item type '%s' cannot be translated (built-in tools "
                                        "and item references need OpenAI's own state)",
                                        i, type);
                        if (r < 0)
                                break;
                }
        else if (r >= 0 && input && !json_is_null(input))
                r = req_refuse(c, "input: must be a string or an array of items");
        if (r >= 0 && json_array_size(it.thinking) > 0)
                r = req_drop(c, "reasoning");
        json_decref(it.thinking);
        return r;
}

static int convert_tools(ReqCtx *c, const json_t *tools, json_t *out) {
        _cleanup_json_ json_t *list = json_array();
        const json_t *t;
        size_t i;
        int r;

        if (!list)
                return -ENOMEM;
        json_array_foreach(tools, i, t) {
                const char *type = json_get_str(t, "type"), *name = json_get_str(t, "name");
                json_t *fn;

                if (!type || !streq(type, "function"))
                        return req_refuse(c, "tools[%zu]: tool type '%s' cannot be translated (only function "
                                          "tools)", i, type ?: "(none)");
                if (!name)
                        return req_refuse(c, "tools[%zu]: a function tool needs a name", i);
                fn = json_pack("{s:O}", "name", json_object_get(t, "name"));
                r = json_share_member(fn, t, "description");
                if (r >= 0)
                        r = json_share_member(fn, t, "parameters");
                if (r >= 0 && json_is_boolean(json_object_get(t, "strict")))
                        r = json_share_member(fn, t, "strict");
                if (r >= 0)
                        r = json_append(list, json_pack("{s:s, s:o}", "type", "function", "function", fn));
                else
                        json_decref(fn);
                if (r < 0)
                        return r;
        }
        return json_set(out, "tools", json_incref(list));
}

static int convert_tool_choice(ReqCtx *c, const json_t *tc, json_t *out) {
        const char *s = json_string_value(tc), *type = json_get_str(tc, "type");

        if (!tc || json_is_null(tc))
                return 0;
        if (s && (streq(s, "none") || streq(s, "auto") || streq(s, "required")))
                return json_set(out, "tool_choice", json_string(s));
        if (type && streq(type, "function") && json_get_str(tc, "name"))
                return json_set(out, "tool_choice", json_pack("{s:s, s:{s:s}}", "type", "function", "function",
                                                              "name", json_get_str(tc, "name")));
        return req_refuse(c, "tool_choice: this value cannot be translated (only none, auto, required or a "
                          "function)");
}

static int convert_text(ReqCtx *c, const json_t *text, json_t *out) {
        const json_t *format = json_object_get(text, "format");
        const char *type = json_get_str(format, "type");
        int r = 0;

        if (json_get_str(text, "verbosity"))
                r = json_set(out, "verbosity", json_string(json_get_str(text, "verbosity")));
        if (r < 0 || !type || streq(type, "text"))
                return r;
        if (streq(type, "json_object"))
                return json_set(out, "response_format", json_pack("{s:s}", "type", "json_object"));
        if (streq(type, "json_schema")) {
                json_t *js = json_pack("{s:s}", "name", json_get_str(format, "name") ?: "output");
                r = json_share_member(js, format, "schema");
                if (r >= 0)
                        r = json_share_member(js, format, "strict");
                if (r >= 0)
                        r = json_share_member(js, format, "description");
                if (r < 0) {
                        json_decref(js);
                        return r;
                }
                return json_set(out, "response_format", json_pack("{s:s, s:o}", "type", "json_schema",
                                                                  "json_schema", js));
        }
        return req_refuse(c, "text.format: type '%s' cannot be translated", type);
}

int request_responses_to_chat(ReqCtx *c, json_t *in, const char *upstream_model, bool for_messages,
                              json_t **ret) {
        static const char *const handled[] = {
                "model", "input", "instructions", "max_output_tokens", "temperature", "top_p", "tools",
                "tool_choice", "parallel_tool_calls", "reasoning", "text", "stream", "stream_options", "user",
                "safety_identifier", "prompt_cache_key", "prompt_cache_retention", "service_tier", "store",
                "include", "truncation",
        };
        static const char *const passed[] = { "temperature", "top_p", "parallel_tool_calls", "user",
                                              "safety_identifier", "prompt_cache_key", "prompt_cache_retention",
                                              "service_tier" };
        static const char *const refused[] = { "previous_response_id", "conversation", "prompt" };
        _cleanup_json_ json_t *out = json_object(), *messages = json_array();
        const json_t *v, *x;
        const char *key;
        size_t i;
        int r;

        if (!out || !messages)
                return -ENOMEM;
        json_object_foreach(in, key, v) {
                if (json_is_null(v))
                        continue;
                if (STRING_IN_TABLE(key, refused))
                        return refuse_field(c, key);
                if (STRING_IN_TABLE(key, handled))
                        continue;
                if (streq(key, "background") && json_is_false(v))
                        continue;
                if (streq(key, "background"))
                        return refuse_field(c, key);
                if ((r = req_drop(c, key)) < 0)
                        return r;
        }
        if (json_is_true(json_object_get(in, "store")))
                return refuse_field(c, "store: true");
        v = json_object_get(in, "truncation");
        if (json_is_string(v) && !streq(json_string_value(v), "disabled") &&
            (r = req_drop(c, "truncation")) < 0)
                return r;
        json_array_foreach(json_object_get(in, "include"), i, x)
                if (!json_is_string(x) || !streq(json_string_value(x), "reasoning.encrypted_content"))
                        if ((r = req_drop(c, "include")) < 0)
                                return r;

        r = json_set(out, "model", json_string(upstream_model));
        if (r >= 0)
                r = convert_input(c, in, for_messages, messages);
        if (r >= 0)
                r = json_set(out, "messages", json_incref(messages));
        if (r >= 0 && json_get_uint(in, "max_output_tokens") >= 0)
                r = json_set(out, "max_completion_tokens",
                             json_integer(json_get_uint(in, "max_output_tokens")));
        for (size_t k = 0; r >= 0 && k < ELEMENTSOF(passed); k++)
                if (json_object_get(in, passed[k]) && !json_is_null(json_object_get(in, passed[k])))
                        r = json_share_member(out, in, passed[k]);
        v = json_object_get(in, "tools");
        if (r >= 0 && json_is_array(v) && json_array_size(v) > 0)
                r = convert_tools(c, v, out);
        if (r >= 0 && json_object_get(out, "tools"))
                r = convert_tool_choice(c, json_object_get(in, "tool_choice"), out);
        v = json_object_get(json_object_get(in, "reasoning"), "effort");
        if (r >= 0 && json_is_string(v))
                r = json_set(out, "reasoning_effort", json_incref((json_t *) v));
        if (r >= 0)
                r = convert_text(c, json_object_get(in, "text"), out);
        if (r >= 0 && json_get_true(in, "stream")) {
                r = json_set(out, "stream", json_true());
                /* response.completed carries usage: always ask for it. */
                if (r >= 0)
                        r = json_set(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}
