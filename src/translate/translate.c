/* Entry points: kinds, request translation dispatch, and upstream error bodies in the client's dialect. */
#include <stdio.h>

#include "shared/util.h"
#include "translate/json-scratch.h"
#include "translate/translate-internal.h"

static const char *const kind_table[_TRANSLATE_KIND_MAX] = {
        [TRANSLATE_MESSAGES_TO_CHAT] = "messages-to-chat",
        [TRANSLATE_CHAT_TO_MESSAGES] = "chat-to-messages",
        [TRANSLATE_RESPONSES_TO_CHAT] = "responses-to-chat",
        [TRANSLATE_RESPONSES_TO_MESSAGES] = "responses-to-messages",
};

const char *translate_kind_to_string(TranslateKind k) {
        if (k < 0 || k >= _TRANSLATE_KIND_MAX)
                return NULL;
        return kind_table[k];
}

bool translate_client_is_anthropic(TranslateKind k) {
        return k == TRANSLATE_MESSAGES_TO_CHAT;
}

bool translate_upstream_is_anthropic(TranslateKind k) {
        return k == TRANSLATE_CHAT_TO_MESSAGES || k == TRANSLATE_RESPONSES_TO_MESSAGES;
}

const char *translate_upstream_path(TranslateKind k) {
        if (k < 0 || k >= _TRANSLATE_KIND_MAX)
                return NULL;
        return translate_upstream_is_anthropic(k) ? "/messages" : "/chat/completions";
}

void translated_request_done(TranslatedRequest *t) {
        if (!t)
                return;
        free(t->body);
        free(t->dropped);
        *t = (TranslatedRequest){};
}

/* The most room made at once for an upstream body: beyond it the buffer grows by doubling (buf_reserve()
 * rounds up to a power of two, so a 32 MiB body would otherwise take 64 MiB of address space at once). */
#define TRANSLATE_RESERVE_MAX (4U << 20)

static int translate_request_in_scope(TranslateKind k, const char *body, size_t len, const char *upstream_model,
                                      TranslatedRequest *ret, char **ret_error) {
        _cleanup_(req_ctx_done) ReqCtx c = { .kind = k };
        /* All three are made in this scope from the body alone: json_scratch_drop() lets the arena have them. */
        _cleanup_(json_scratch_dropp) json_t *in = NULL, *out = NULL, *mid = NULL;
        _cleanup_free_ char *dropped = NULL, *s = NULL;
        _cleanup_(buf_done) Buf b = {};
        size_t n;
        int r;

        if (k < 0 || k >= _TRANSLATE_KIND_MAX || !upstream_model)
                return -EINVAL;

        r = json_parse_object(body, len, &in);
        if (r == -ENOMEM)
                return r;
        if (r == -E2BIG)
                r = req_refuse(&c, "The request body has more than %u JSON values, more than gate translates.",
                               TRANSLATE_JSON_MAX_VALUES);
        else if (r < 0)
                r = req_refuse(&c, "The request body is not a valid JSON object.");
        else
                switch (k) {
                case TRANSLATE_MESSAGES_TO_CHAT:
                        r = request_messages_to_chat(&c, in, upstream_model, &out);
                        break;
                case TRANSLATE_CHAT_TO_MESSAGES:
                        r = request_chat_to_messages(&c, in, upstream_model, false, &out);
                        break;
                case TRANSLATE_RESPONSES_TO_CHAT:
                        r = request_responses_to_chat(&c, in, upstream_model, false, &out);
                        break;
                case TRANSLATE_RESPONSES_TO_MESSAGES:
                        r = request_responses_to_chat(&c, in, upstream_model, true, &mid);
                        if (r >= 0)
                                r = request_chat_to_messages(&c, mid, upstream_model, true, &out);
                        break;
                default:
                        return -EINVAL;
                }
        if (r == -EINVAL && c.error) {
                if (ret_error)
                        *ret_error = TAKE_PTR(c.error);
                return -EINVAL;
        }
        if (r < 0)
                return r;

        r = req_dropped_join(&c, &dropped);
        if (r < 0)
                return r;
        /* The upstream body comes out about as long as the client's: room for it at once, where growing from
         * 1 KB would copy what was written at each doubling (a quarter megabyte for an agent's request). */
        if (!buf_reserve(&b, len >= TRANSLATE_RESERVE_MAX ? TRANSLATE_RESERVE_MAX : len + len / 8 + 1024))
                return -ENOMEM;
        r = json_dump_to_buf(out, &b);
        if (r < 0)
                return r;
        s = buf_steal_str(&b, &n);
        if (!s)
                return -ENOMEM;

        *ret = (TranslatedRequest){
                .body = TAKE_PTR(s),
                .len = n,
                .stream = json_get_true(in, "stream"),
                .include_usage = k == TRANSLATE_CHAT_TO_MESSAGES && json_get_true(in, "stream") &&
                                 json_get_true(json_object_get(in, "stream_options"), "include_usage"),
                .dropped = TAKE_PTR(dropped),
                /* Only an Anthropic client's stream reads it (its message_start), and it costs a pass over
                 * every string of the request. */
                .input_tokens_estimate = translate_client_is_anthropic(k) && json_get_true(in, "stream") ?
                                         estimate_request_tokens(in) : 0,
        };
        return 0;
}

int translate_request(TranslateKind k, const char *body, size_t len, const char *upstream_model,
                      TranslatedRequest *ret, char **ret_error) {
        int r;

        json_scratch_begin();
        r = translate_request_in_scope(k, body, len, upstream_model, ret, ret_error);
        json_scratch_end();
        return r;
}

/* ---- errors ---- */

const char *openai_error_type_from_anthropic(const char *anthropic_type, unsigned status) {
        static const struct {
                const char *anthropic, *openai;
        } table[] = {
                { "invalid_request_error", "invalid_request_error" },
                { "authentication_error", "authentication_error" },
                { "permission_error", "permission_error" },
                { "not_found_error", "invalid_request_error" },
                { "request_too_large", "invalid_request_error" },
                { "rate_limit_error", "rate_limit_error" },
                { "billing_error", "insufficient_quota" },
                { "api_error", "server_error" },
                { "overloaded_error", "server_error" },
                { "timeout_error", "server_error" },
        };

        for (size_t i = 0; anthropic_type && i < ELEMENTSOF(table); i++)
                if (streq(table[i].anthropic, anthropic_type))
                        return table[i].openai;
        switch (status) {
        case 401: return "authentication_error";
        case 403: return "permission_error";
        case 429: return "rate_limit_error";
        default: return status >= 500 || status < 400 ? "server_error" : "invalid_request_error";
        }
}

const char *anthropic_error_type_from_openai(const char *openai_type, const char *code, unsigned status) {
        const char *t = openai_type ?: "", *c = code ?: "";

        if (status == 401 || streq(c, "invalid_api_key") || streq(t, "authentication_error"))
                return "authentication_error";
        if (streq(t, "insufficient_quota") || streq(c, "insufficient_quota"))
                return "billing_error";
        if (status == 429 || strstr(t, "rate_limit") || streq(c, "rate_limit_exceeded") ||
            streq(t, "requests") || streq(t, "tokens"))
                return "rate_limit_error";
        switch (status) {
        case 402: return "billing_error";
        case 403: return "permission_error";
        case 404: return "not_found_error";
        case 413: return "request_too_large";
        case 503:
        case 529: return "overloaded_error";
        case 504: return "timeout_error";
        default: return status >= 500 || status < 400 ? "api_error" : "invalid_request_error";
        }
}

json_t *openai_error_object(const char *message, const char *type, const char *param, const char *code) {
        /* OpenAI sends param and code always, null when they say nothing. */
        return json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message, "type", type, "param",
                         param ? json_string(param) : json_null(), "code",
                         code ? json_string(code) : json_null());
}

json_t *anthropic_error_object(const char *type, const char *message) {
        return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", message);
}

/* Some text for a body that is not the dialect's error: its start, printable, so the client sees what came. */
static char *body_snippet(unsigned status, const char *body, size_t len) {
        _cleanup_(buf_done) Buf b = {};
        size_t n = 0;

        if (buf_printf(&b, "Upstream returned HTTP %u", status) < 0)
                return NULL;
        while (len > 0 && (body[0] == ' ' || body[0] == '\n' || body[0] == '\r' || body[0] == '\t'))
                body++, len--;
        if (len > 0 && buf_append_str(&b, ": ") < 0)
                return NULL;
        for (size_t i = 0; i < len && n < 200; i++, n++) {
                char ch = body[i];
                if ((unsigned char) ch < 0x20 || ch == 0x7f)
                        ch = ' ';
                else if ((unsigned char) ch >= 0x80)
                        ch = '?';
                if (buf_append(&b, &ch, 1) < 0)
                        return NULL;
        }
        if (len > n && buf_append_str(&b, "...") < 0)
                return NULL;
        return buf_steal_str(&b, NULL);
}

static int translate_error_in_scope(TranslateKind k, unsigned status, const char *body, size_t len, char **ret,
                                    size_t *ret_len) {
        _cleanup_json_ json_t *in = NULL, *out = NULL;
        _cleanup_free_ char *fallback = NULL, *code_buf = NULL;
        const char *message = NULL, *type = NULL, *param = NULL, *code = NULL;
        const json_t *err;
        int r;

        if (k < 0 || k >= _TRANSLATE_KIND_MAX)
                return -EINVAL;
        r = json_parse_object(body, len, &in);
        if (r == -ENOMEM)
                return r;
        err = json_object_get(in, "error");
        if (json_is_object(err)) {
                const json_t *cv = json_object_get(err, "code");

                message = json_get_str(err, "message");
                type = json_get_str(err, "type");
                param = json_get_str(err, "param");
                if (json_is_string(cv))
                        code = json_string_value(cv);
                else if (json_is_integer(cv)) {
                        if (asprintf(&code_buf, "%" JSON_INTEGER_FORMAT, json_integer_value(cv)) < 0)
                                return -ENOMEM;
                        code = code_buf;
                }
        } else if (json_is_string(err))
                message = json_string_value(err);
        /* OpenAI-compatible servers: vLLM {"object":"error","message":...}, FastAPI {"detail":...}. */
        if (!message)
                message = json_get_str(in, "message") ?: json_get_str(in, "detail");
        if (!type && json_get_str(in, "type") && !streq(json_get_str(in, "type"), "error"))
                type = json_get_str(in, "type");
        if (isempty(message)) {
                fallback = body_snippet(status, body ?: "", body ? len : 0);
                if (!fallback)
                        return -ENOMEM;
                message = fallback;
        }

        if (translate_client_is_anthropic(k))
                out = anthropic_error_object(anthropic_error_type_from_openai(type, code, status), message);
        else if (translate_upstream_is_anthropic(k))
                /* The Anthropic type stays visible as the code: "overloaded_error" says more than server_error. */
                out = openai_error_object(message, openai_error_type_from_anthropic(type, status), NULL,
                                          status == 429 ? "rate_limit_exceeded" : type);
        else
                out = openai_error_object(message, type ?: openai_error_type_from_anthropic(NULL, status),
                                          param, code);
        if (!out)
                return -ENOMEM;
        return json_dump_to_string(out, ret, ret_len);
}

int translate_error(TranslateKind k, unsigned status, const char *body, size_t len, char **ret,
                    size_t *ret_len) {
        int r;

        json_scratch_begin();
        r = translate_error_in_scope(k, status, body, len, ret, ret_len);
        json_scratch_end();
        return r;
}

int translate_error_body(TranslateKind k, unsigned status, const char *message, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *out = NULL;

        if (k < 0 || k >= _TRANSLATE_KIND_MAX)
                return -EINVAL;
        if (translate_client_is_anthropic(k))
                out = anthropic_error_object(anthropic_error_type_from_openai(NULL, NULL, status),
                                             message ?: "");
        else
                out = openai_error_object(message ?: "", openai_error_type_from_anthropic(NULL, status), NULL,
                                          NULL);
        if (!out)
                return -ENOMEM;
        return json_dump_to_string(out, ret, ret_len);
}
