/* Anthropic Messages request (client) -> OpenAI chat completions request (upstream).
 *
 * Field by field. "dropped" fields are left out and listed in x-gate-translation-dropped; "refused" ones get
 * a 400 in the Anthropic dialect. Nothing else changes meaning.
 *
 * | Anthropic                              | OpenAI chat completions                 | decision            |
 * |----------------------------------------|-----------------------------------------|---------------------|
 * | model                                  | model (the routed upstream name)        | replaced            |
 * | max_tokens (required)                  | max_completion_tokens                   | mapped              |
 * | system: string / text blocks           | first message, role system              | mapped              |
 * | messages[].role user/assistant         | user / assistant (+ tool messages)      | mapped              |
 * | messages[].role system (mid-turn)      | system message at that place            | mapped              |
 * | text block                             | text part (string when alone)           | mapped              |
 * | text block citations                   | -                                       | dropped             |
 * | image base64 / url                     | image_url data: URL / URL               | mapped              |
 * | image file (file_id)                   | -                                       | refused             |
 * | document base64 PDF                    | file part, file_data data: URL          | mapped              |
 * | document text / content source         | text (and image) parts                  | mapped              |
 * | document title, context, citations     | -                                       | dropped             |
 * | document url / file source             | -                                       | refused             |
 * | tool_use (assistant)                   | tool_calls[] (arguments = input JSON)   | mapped              |
 * | tool_result                            | role tool message, before the turn's    | mapped              |
 * |                                        | other user content                      |                     |
 * | tool_result is_error: true             | content prefixed "Error: "              | mapped (expressed)  |
 * | tool_result images / documents         | user message right after the tool       | mapped (moved: tool |
 * |                                        | messages, labelled with the tool id     | messages are text)  |
 * | thinking / redacted_thinking (history) | -                                       | dropped ("thinking")|
 * | server tool blocks, search_result,     | -                                       | refused             |
 * | container_upload, other block types    |                                         |                     |
 * | final assistant message (prefill)      | -                                       | refused             |
 * | cache_control (anywhere)               | - (OpenAI caches by itself)             | dropped             |
 * | metadata.user_id                       | user                                    | mapped              |
 * | stop_sequences                         | stop                                    | mapped              |
 * | stream                                 | stream, stream_options.include_usage    | mapped (usage is    |
 * |                                        | = true                                  | always asked for)   |
 * | temperature, top_p                     | temperature, top_p                      | passed              |
 * | top_k                                  | -                                       | dropped             |
 * | tools[] (custom)                       | tools[] {type: function, function}      | mapped              |
 * | tools[].strict                         | function.strict                         | mapped              |
 * | tools[] input_examples, defer_loading, | -                                       | dropped             |
 * | allowed_callers, eager_input_streaming |                                         |                     |
 * | tools[] server tools (typed)           | -                                       | refused             |
 * | tool_choice auto / any / tool / none   | "auto" / "required" / {function} /"none"| mapped              |
 * | tool_choice.disable_parallel_tool_use  | parallel_tool_calls: false              | mapped              |
 * | thinking enabled (budget_tokens)       | reasoning_effort (table in common.c)    | mapped              |
 * | thinking adaptive / between_tools      | reasoning_effort from output_config.    | mapped              |
 * |                                        | effort, else "medium"                   |                     |
 * | thinking disabled                      | (nothing)                               | mapped              |
 * | thinking.display                       | -                                       | dropped             |
 * | output_config.effort                   | reasoning_effort ("max" -> "xhigh")     | mapped              |
 * | output_config.format / output_format   | response_format json_schema (strict)    | mapped              |
 * | service_tier "standard_only"           | -                                       | dropped             |
 * | inference_geo, speed, diagnostics,     | -                                       | dropped             |
 * | unknown fields                         |                                         |                     |
 * | container, mcp_servers,                | -                                       | refused             |
 * | context_management                     |                                         |                     |
 * | thread (server-held conversation)      | - (gate keeps no state: a continuation  | refused             |
 * |                                        | carries only the new turn)              |                     |
 */
#include <stdio.h>

#include "shared/util.h"
#include "translate/translate-internal.h"

typedef struct Conv {
        ReqCtx *c;
        json_t *messages;               /* the chat messages being built */
} Conv;

static int note_block_extras(ReqCtx *c, const json_t *block) {
        if (json_object_get(block, "cache_control"))
                return req_drop(c, "cache_control");
        return 0;
}

/* "data:MEDIA;base64,DATA", from two parsed strings (data can be megabytes of an image: built once, and not
 * checked again). */
static json_t *data_url(const json_t *media_type, const json_t *data) {
        _cleanup_(buf_done) Buf b = {};

        if (buf_append_str(&b, "data:") < 0 ||
            buf_append(&b, json_string_value(media_type), json_string_length(media_type)) < 0 ||
            buf_append_str(&b, ";base64,") < 0 ||
            buf_append(&b, json_string_value(data), json_string_length(data)) < 0)
                return NULL;
        return json_stringn_utf8((const char *) buf_data(&b), buf_len(&b));
}

static int image_part(ReqCtx *c, const json_t *block, const char *where, json_t **ret) {
        const json_t *source = json_object_get(block, "source");
        const char *type = json_get_str(source, "type");
        json_t *url;

        if (type && streq(type, "base64")) {
                const json_t *media = json_object_get(source, "media_type"), *data = json_object_get(source, "data");
                if (!json_is_string(media) || !json_is_string(data))
                        return req_refuse(c, "%s: image source needs media_type and data", where);
                url = data_url(media, data);
        } else if (type && streq(type, "url")) {
                const json_t *u = json_object_get(source, "url");
                if (!json_is_string(u))
                        return req_refuse(c, "%s: image source needs url", where);
                url = json_share(u);
        } else
                return req_refuse(c, "%s: image source type '%s' cannot be expressed for an OpenAI upstream",
                                  where, type ?: "(none)");
        *ret = json_pack("{s:s, s:{s:o}}", "type", "image_url", "image_url", "url", url);
        return *ret ? note_block_extras(c, block) : -ENOMEM;
}

/* A text part around a string of the input (shared, not copied). */
static json_t *text_part(const json_t *text) {
        return json_object_build("type", json_string_nocheck("text"), "text", json_share(text), NULL);
}

/* Appends the parts a document block becomes. */
static int document_parts(ReqCtx *c, const json_t *block, const char *where, json_t *parts) {
        const json_t *source = json_object_get(block, "source");
        const char *type = json_get_str(source, "type");
        int r;

        /* A PDF's title becomes its file name; a text document's title and any context have no place. */
        if (json_object_get(block, "context") && (r = req_drop(c, "document.context")) < 0)
                return r;
        if (json_object_get(block, "title") && !streq(type ?: "", "base64") &&
            (r = req_drop(c, "document.title")) < 0)
                return r;
        if (json_object_get(block, "citations"))
                if ((r = req_drop(c, "citations")) < 0)
                        return r;
        r = note_block_extras(c, block);
        if (r < 0)
                return r;

        if (type && streq(type, "base64")) {
                const json_t *media = json_object_get(source, "media_type"), *data = json_object_get(source, "data");
                const json_t *title = json_object_get(block, "title");
                if (!json_is_string(media) || !json_is_string(data))
                        return req_refuse(c, "%s: document source needs media_type and data", where);
                return json_append(parts, json_pack("{s:s, s:{s:o, s:o}}", "type", "file", "file", "file_data",
                                                    data_url(media, data), "filename",
                                                    json_is_string(title) ? json_share(title) :
                                                                            json_string("document.pdf")));
        }
        if (type && streq(type, "text")) {
                const json_t *data = json_object_get(source, "data");
                if (!json_is_string(data))
                        return req_refuse(c, "%s: document source needs data", where);
                return json_append(parts, text_part(data));
        }
        if (type && streq(type, "content")) {
                const json_t *content = json_object_get(source, "content"), *b;
                size_t i;

                if (json_is_string(content))
                        return json_append(parts, text_part(content));
                if (!json_is_array(content))
                        return req_refuse(c, "%s: document content must be a string or an array", where);
                json_array_foreach(content, i, b) {
                        const char *bt = json_get_str(b, "type");
                        json_t *p = NULL;

                        if (bt && streq(bt, "text") && json_get_str(b, "text"))
                                r = json_append(parts, text_part(json_object_get(b, "text")));
                        else if (bt && streq(bt, "image")) {
                                r = image_part(c, b, where, &p);
                                if (r >= 0)
                                        r = json_append(parts, p);
                        } else
                                r = req_refuse(c, "%s: document content block type '%s' is not supported",
                                               where, bt ?: "(none)");
                        if (r < 0)
                                return r;
                }
                return 0;
        }
        return req_refuse(c, "%s: document source type '%s' cannot be expressed for an OpenAI upstream", where,
                          type ?: "(none)");
}

/* A list of parts as chat content: a lone text part becomes a plain string, which every
 * OpenAI-compatible server understands. */
static json_t *parts_to_content(json_t *parts) {
        if (json_array_size(parts) == 1) {
                const json_t *p = json_array_get(parts, 0);
                const char *t = json_get_str(p, "type");
                if (t && streq(t, "text"))
                        return json_incref(json_object_get(p, "text"));
        }
        return json_incref(parts);
}

static int tool_result_message(Conv *v, const json_t *block, const char *where, json_t *moved) {
        ReqCtx *c = v->c;
        const char *id = json_get_str(block, "tool_use_id");
        const json_t *content = json_object_get(block, "content"), *b;
        bool is_error = json_get_true(block, "is_error");
        _cleanup_(buf_done) Buf text = {};
        _cleanup_free_ char *tid = NULL, *label = NULL;
        bool labelled = false;
        size_t i;
        int r;

        if (!id)
                return req_refuse(c, "%s: tool_result needs tool_use_id", where);
        r = tool_id_sanitize("toolu_", id, NULL, 0, &tid);
        if (r < 0)
                return r;
        r = note_block_extras(c, block);
        if (r < 0)
                return r;
        if (is_error && buf_append_str(&text, "Error: ") < 0)
                return -ENOMEM;

        if (json_is_string(content)) {
                if (is_error && buf_append(&text, json_string_value(content), json_string_length(content)) < 0)
                        return -ENOMEM;
        } else if (json_is_array(content)) {
                bool first = true;
                json_array_foreach(content, i, b) {
                        const char *bt = json_get_str(b, "type");

                        if (bt && streq(bt, "text") && json_get_str(b, "text")) {
                                /* Text blocks of one result read as one text, a blank line apart. */
                                const json_t *t = json_object_get(b, "text");
                                if ((!first && buf_append_str(&text, "\n\n") < 0) ||
                                    buf_append(&text, json_string_value(t), json_string_length(t)) < 0)
                                        return -ENOMEM;
                                first = false;
                                if ((r = note_block_extras(c, b)) < 0)
                                        return r;
                                continue;
                        }
                        if (!bt || (!streq(bt, "image") && !streq(bt, "document")))
                                return req_refuse(c,
                                                  "%s: tool_result content type '%s' cannot be expressed for "
                                                  "an OpenAI upstream",
                                                  where, bt ?: "(none)");
                        /* Tool messages carry text only: what else the tool returned follows in a user
                         * message that says where it came from. */
                        if (!labelled) {
                                if (asprintf(&label, "Content returned by tool call %s:", tid) < 0)
                                        return -ENOMEM;
                                r = json_append(moved, json_pack("{s:s, s:s}", "type", "text", "text", label));
                                if (r < 0)
                                        return r;
                                labelled = true;
                        }
                        if (streq(bt, "image")) {
                                json_t *p = NULL;
                                r = image_part(c, b, where, &p);
                                if (r >= 0)
                                        r = json_append(moved, p);
                        } else
                                r = document_parts(c, b, where, moved);
                        if (r < 0)
                                return r;
                }
        } else if (content && !json_is_null(content))
                return req_refuse(c, "%s: tool_result content must be a string or an array", where);

        /* A lone string result goes as it came; else the text is made of parsed strings and our ASCII. */
        return json_append(v->messages,
                           json_object_build("role", json_string_nocheck("tool"), "tool_call_id",
                                             json_stringn_utf8(tid, strlen(tid)), "content",
                                             json_is_string(content) && !is_error ?
                                             json_share(content) :
                                             json_stringn_utf8((const char *) buf_data(&text), buf_len(&text)),
                                             NULL));
}

static int user_message(Conv *v, const json_t *msg, size_t mi) {
        ReqCtx *c = v->c;
        const json_t *content = json_object_get(msg, "content"), *b;
        _cleanup_json_ json_t *parts = json_array(), *moved = json_array();
        char where[64];
        size_t i;
        int r;

        if (!parts || !moved)
                return -ENOMEM;
        if (json_is_string(content))
                return json_append(v->messages, json_pack("{s:s, s:O}", "role", "user", "content", content));
        if (!json_is_array(content))
                return req_refuse(c, "messages.%zu.content: must be a string or an array of blocks", mi);

        json_array_foreach(content, i, b) {
                const char *type = json_get_str(b, "type");
                json_t *p = NULL;

                (void) snprintf(where, sizeof where, "messages.%zu.content.%zu", mi, i);
                if (!type)
                        return req_refuse(c, "%s: a content block needs a type", where);
                if (streq(type, "tool_result"))
                        r = tool_result_message(v, b, where, moved);
                else if (streq(type, "text")) {
                        if (!json_get_str(b, "text"))
                                return req_refuse(c, "%s: text block needs text", where);
                        r = json_append(parts, text_part(json_object_get(b, "text")));
                        if (r >= 0 && json_object_get(b, "citations"))
                                r = req_drop(c, "citations");
                        if (r >= 0)
                                r = note_block_extras(c, b);
                } else if (streq(type, "image")) {
                        r = image_part(c, b, where, &p);
                        if (r >= 0)
                                r = json_append(parts, p);
                } else if (streq(type, "document"))
                        r = document_parts(c, b, where, parts);
                else if (streq(type, "thinking") || streq(type, "redacted_thinking"))
                        r = req_drop(c, "thinking");
                else
                        r = req_refuse(c,
                                       "%s: content block type '%s' cannot be expressed for an OpenAI upstream",
                                       where, type);
                if (r < 0)
                        return r;
        }

        /* Tool results went first, as tool messages; now what they could not carry, then the turn's own. */
        if (json_array_extend(moved, parts) < 0)
                return -ENOMEM;
        if (json_array_size(moved) == 0)
                return 0;
        return json_append(v->messages, json_object_build("role", json_string_nocheck("user"), "content",
                                                          parts_to_content(moved), NULL));
}

static int assistant_message(Conv *v, const json_t *msg, size_t mi) {
        ReqCtx *c = v->c;
        const json_t *content = json_object_get(msg, "content"), *b;
        _cleanup_json_ json_t *texts = json_array(), *calls = json_array();
        json_t *m;
        char where[64];
        size_t i;
        int r;

        if (!texts || !calls)
                return -ENOMEM;
        if (json_is_string(content))
                return json_append(v->messages,
                                   json_pack("{s:s, s:O}", "role", "assistant", "content", content));
        if (!json_is_array(content))
                return req_refuse(c, "messages.%zu.content: must be a string or an array of blocks", mi);

        json_array_foreach(content, i, b) {
                const char *type = json_get_str(b, "type");

                (void) snprintf(where, sizeof where, "messages.%zu.content.%zu", mi, i);
                if (!type)
                        return req_refuse(c, "%s: a content block needs a type", where);
                if (streq(type, "text")) {
                        if (!json_get_str(b, "text"))
                                return req_refuse(c, "%s: text block needs text", where);
                        r = json_append(texts, text_part(json_object_get(b, "text")));
                        if (r >= 0 && json_object_get(b, "citations"))
                                r = req_drop(c, "citations");
                } else if (streq(type, "tool_use")) {
                        const char *id = json_get_str(b, "id");
                        const json_t *name = json_object_get(b, "name"), *input = json_object_get(b, "input");
                        _cleanup_free_ char *tid = NULL;
                        json_t *args;

                        if (!id || !json_is_string(name))
                                return req_refuse(c, "%s: tool_use needs id and name", where);
                        /* A string input is what translate_response() keeps for arguments that were not JSON:
                         * it goes back as it came. */
                        if (json_is_string(input))
                                args = json_share(input);
                        else if (!input || json_is_null(input))
                                args = json_string_nocheck("{}");
                        else
                                args = json_dump_any_string(input);
                        if (!args)
                                return -ENOMEM;
                        r = tool_id_sanitize("toolu_", id, NULL, 0, &tid);
                        if (r >= 0)
                                r = json_append(calls, json_object_build(
                                                "id", json_stringn_utf8(tid, strlen(tid)),
                                                "type", json_string_nocheck("function"),
                                                "function", json_object_build("name", json_share(name),
                                                                              "arguments", args, NULL),
                                                NULL));
                        else
                                json_decref(args);
                } else if (streq(type, "thinking") || streq(type, "redacted_thinking"))
                        r = req_drop(c, "thinking");
                else
                        r = req_refuse(c,
                                       "%s: content block type '%s' cannot be expressed for an OpenAI upstream",
                                       where, type);
                if (r >= 0)
                        r = note_block_extras(c, b);
                if (r < 0)
                        return r;
        }

        if (json_array_size(texts) == 0 && json_array_size(calls) == 0)
                return 0;       /* only thinking: nothing the upstream can read */
        m = json_object_build("role", json_string_nocheck("assistant"), "content",
                              json_array_size(texts) > 0 ? parts_to_content(texts) : json_null(), NULL);
        if (m && json_array_size(calls) > 0 && json_object_set(m, "tool_calls", calls) < 0)
                m = (json_decref(m), NULL);
        return json_append(v->messages, m);
}

static int system_message(Conv *v, const json_t *system, const char *where) {
        ReqCtx *c = v->c;
        _cleanup_json_ json_t *parts = NULL;
        const json_t *b;
        size_t i;
        int r;

        if (json_is_string(system))
                return json_append(v->messages, json_pack("{s:s, s:O}", "role", "system", "content", system));
        if (!json_is_array(system))
                return req_refuse(c, "%s: must be a string or an array of text blocks", where);
        parts = json_array();
        if (!parts)
                return -ENOMEM;
        json_array_foreach(system, i, b) {
                const char *type = json_get_str(b, "type");
                const json_t *text = json_object_get(b, "text");

                if (!type || !streq(type, "text") || !json_is_string(text))
                        return req_refuse(c, "%s.%zu: system blocks must be text blocks", where, i);
                r = json_append(parts, text_part(text));
                if (r >= 0)
                        r = note_block_extras(c, b);
                if (r >= 0 && json_object_get(b, "citations"))
                        r = req_drop(c, "citations");
                if (r < 0)
                        return r;
        }
        if (json_array_size(parts) == 0)
                return 0;
        return json_append(v->messages,
                           json_pack("{s:s, s:o}", "role", "system", "content", parts_to_content(parts)));
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
                const json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
                json_t *fn;

                if (type && !streq(type, "custom"))
                        return req_refuse(
                                c, "tools.%zu: server tool '%s' cannot be expressed for an OpenAI upstream", i,
                                type);
                if (!json_is_string(name) || !json_is_object(schema))
                        return req_refuse(c, "tools.%zu: a tool needs name and input_schema", i);
                fn = json_object_build("name", json_share(name), "parameters", json_share(schema), NULL);
                r = json_share_member(fn, t, "description");
                if (r >= 0 && json_is_boolean(json_object_get(t, "strict")))
                        r = json_share_member(fn, t, "strict");
                if (r >= 0)
                        r = json_append(list, json_object_build("type", json_string_nocheck("function"),
                                                                "function", fn, NULL));
                else
                        json_decref(fn);
                if (r < 0)
                        return r;
                if (json_object_get(t, "cache_control") && (r = req_drop(c, "cache_control")) < 0)
                        return r;
                static const char *const extras[] = { "input_examples", "defer_loading", "allowed_callers",
                                                      "eager_input_streaming" };
                for (size_t k = 0; k < ELEMENTSOF(extras); k++)
                        if (json_object_get(t, extras[k])) {
                                char f[64];
                                (void) snprintf(f, sizeof f, "tools.%s", extras[k]);
                                if ((r = req_drop(c, f)) < 0)
                                        return r;
                        }
        }
        return json_set(out, "tools", json_incref(list));
}

static int convert_tool_choice(ReqCtx *c, const json_t *tc, bool have_tools, json_t *out) {
        const char *type = json_get_str(tc, "type");
        json_t *v;
        int r;

        if (!type)
                return req_refuse(c, "tool_choice: needs a type");
        if (streq(type, "auto"))
                v = json_string("auto");
        else if (streq(type, "any"))
                v = json_string("required");
        else if (streq(type, "none"))
                v = json_string("none");
        else if (streq(type, "tool")) {
                const json_t *name = json_object_get(tc, "name");
                if (!json_is_string(name))
                        return req_refuse(c, "tool_choice: type tool needs a name");
                v = json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name);
        } else
                return req_refuse(c, "tool_choice: unknown type '%s'", type);
        /* OpenAI rejects tool_choice without tools; Anthropic ignores it. */
        if (!have_tools) {
                json_decref(v);
                return 0;
        }
        r = json_set(out, "tool_choice", v);
        if (r >= 0 && json_get_true(tc, "disable_parallel_tool_use"))
                r = json_set(out, "parallel_tool_calls", json_false());
        return r;
}

static const char *effort_from_anthropic(const char *effort) {
        if (!effort)
                return NULL;
        if (streq(effort, "max"))
                return "xhigh";
        if (streq(effort, "low") || streq(effort, "medium") || streq(effort, "high") || streq(effort, "xhigh"))
                return effort;
        return NULL;
}

static int convert_thinking(ReqCtx *c, const json_t *in, json_t *out) {
        const json_t *thinking = json_object_get(in, "thinking");
        const json_t *config = json_object_get(in, "output_config");
        const char *type = json_get_str(thinking, "type"), *config_effort = json_get_str(config, "effort");
        const char *effort = NULL;
        int r;

        if (config_effort) {
                effort = effort_from_anthropic(config_effort);
                if (!effort)
                        return req_refuse(c, "output_config.effort: unknown value '%s'", config_effort);
        }
        if (thinking && !json_is_null(thinking)) {
                if (!type)
                        return req_refuse(c, "thinking: needs a type");
                if (streq(type, "enabled")) {
                        int64_t budget = json_get_uint(thinking, "budget_tokens");
                        if (budget < 0)
                                return req_refuse(c, "thinking.budget_tokens: must be a non-negative integer");
                        /* An explicit budget says more than a general effort. */
                        effort = reasoning_effort_from_budget(budget);
                } else if (streq(type, "adaptive") || streq(type, "between_tools"))
                        effort = effort ?: "medium";
                else if (!streq(type, "disabled"))
                        return req_refuse(c, "thinking: unknown type '%s'", type);
                if (json_object_get(thinking, "display") && (r = req_drop(c, "thinking.display")) < 0)
                        return r;
        }
        if (!effort)
                return 0;
        return json_set(out, "reasoning_effort", json_string(effort));
}

static int convert_output_format(ReqCtx *c, const json_t *format, json_t *out) {
        const char *type = json_get_str(format, "type");
        const json_t *schema = json_object_get(format, "schema");

        if (!format || json_is_null(format))
                return 0;
        if (!type || !streq(type, "json_schema") || !json_is_object(schema))
                return req_refuse(c, "output_config.format: only type json_schema with a schema is supported");
        /* Anthropic's structured output is always strict. */
        return json_set(out, "response_format",
                        json_pack("{s:s, s:{s:s, s:O, s:b}}", "type", "json_schema", "json_schema", "name",
                                  "output", "schema", schema, "strict", 1));
}

int request_messages_to_chat(ReqCtx *c, json_t *in, const char *upstream_model, json_t **ret) {
        static const char *const handled[] = {
                "model",          "max_tokens", "messages",      "system",        "metadata",
                "stop_sequences", "stream",     "temperature",   "top_p",         "tools",
                "tool_choice",    "thinking",   "output_config", "output_format",
        };
        static const char *const refused[] = { "container", "mcp_servers", "context_management", "thread" };
        _cleanup_json_ json_t *out = json_object(), *messages = json_array();
        const json_t *msgs = json_object_get(in, "messages"), *m, *v;
        Conv conv = { .c = c, .messages = messages };
        int64_t max_tokens = json_get_uint(in, "max_tokens");
        const char *key;
        size_t i;
        int r;

        if (!out || !messages)
                return -ENOMEM;
        if (!json_is_array(msgs))
                return req_refuse(c, "messages: Field required");
        if (max_tokens < 0)
                return req_refuse(c, "max_tokens: Field required");

        json_object_foreach((json_t *) in, key, v) {
                if (streq(key, "thread") && json_is_false(v))
                        continue;
                if (STRING_IN_TABLE(key, refused))
                        return req_refuse(c, "%s: cannot be expressed for an OpenAI upstream%s", key,
                                          streq(key, "thread") ? " (gate holds no conversation state: "
                                          "send the whole history, thread: false)" : "");
                if (STRING_IN_TABLE(key, handled) || json_is_null(v))
                        continue;
                if (streq(key, "service_tier") && json_is_string(v) && streq(json_string_value(v), "auto"))
                        continue;
                r = req_drop(c, key);
                if (r < 0)
                        return r;
        }

        r = json_set(out, "model", json_string(upstream_model));
        if (r < 0)
                return r;

        v = json_object_get(in, "system");
        if (v && !json_is_null(v) && (r = system_message(&conv, v, "system")) < 0)
                return r;

        json_array_foreach(msgs, i, m) {
                const char *role = json_get_str(m, "role");

                if (!role)
                        return req_refuse(c, "messages.%zu.role: Field required", i);
                if (streq(role, "user"))
                        r = user_message(&conv, m, i);
                else if (streq(role, "assistant")) {
                        if (i + 1 == json_array_size(msgs))
                                return req_refuse(c,
                                                  "messages.%zu: a final assistant message (prefill) cannot be "
                                                  "expressed for an OpenAI upstream",
                                                  i);
                        r = assistant_message(&conv, m, i);
                } else if (streq(role, "system")) {
                        char where[48];
                        (void) snprintf(where, sizeof where, "messages.%zu.content", i);
                        r = system_message(&conv, json_object_get(m, "content"), where);
                } else
                        return req_refuse(c, "messages.%zu.role: unknown role '%s'", i, role);
                if (r < 0)
                        return r;
        }
        r = json_set(out, "messages", json_incref(messages));
        if (r >= 0)
                r = json_set(out, "max_completion_tokens", json_integer(max_tokens));

        v = json_object_get(in, "metadata");
        if (r >= 0 && json_get_str(v, "user_id"))
                r = json_set(out, "user", json_share(json_object_get(v, "user_id")));

        v = json_object_get(in, "stop_sequences");
        if (r >= 0 && json_is_array(v) && json_array_size(v) > 0)
                r = json_set(out, "stop", json_share(v));

        if (r >= 0 && json_get_true(in, "stream")) {
                r = json_set(out, "stream", json_true());
                /* Anthropic clients always get usage: ask for it. */
                if (r >= 0)
                        r = json_set(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
        }
        if (r >= 0 && json_is_number(json_object_get(in, "temperature")))
                r = json_share_member(out, in, "temperature");
        if (r >= 0 && json_is_number(json_object_get(in, "top_p")))
                r = json_share_member(out, in, "top_p");

        v = json_object_get(in, "tools");
        bool have_tools = json_is_array(v) && json_array_size(v) > 0;
        if (r >= 0 && have_tools)
                r = convert_tools(c, v, out);
        v = json_object_get(in, "tool_choice");
        if (r >= 0 && v && !json_is_null(v))
                r = convert_tool_choice(c, v, have_tools, out);

        if (r >= 0)
                r = convert_thinking(c, in, out);
        if (r >= 0)
                r = convert_output_format(c, json_object_get(json_object_get(in, "output_config"), "format"),
                                          out);
        if (r >= 0 && json_object_get(in, "output_format") && !json_object_get(out, "response_format"))
                r = convert_output_format(c, json_object_get(in, "output_format"), out);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(out);
        return 0;
}
