/* API errors in the caller's dialect: OpenAI {"error":{...}} or Anthropic {"type":"error","error":{...}}. */
#include <stdarg.h>
#include <stdio.h>

#include "api/errors.h"
#include "shared/util.h"

Dialect api_request_dialect(const Request *r) {
        if (r->path && startswith(r->path, "/v1/messages"))
                return DIALECT_ANTHROPIC;
        /* Both SDKs list models at /v1/models; Anthropic's always sends its version header. */
        if (r->path && startswith(r->path, "/v1/models") && request_header(r, "anthropic-version"))
                return DIALECT_ANTHROPIC;
        return DIALECT_OPENAI;
}

static const char *anthropic_type(unsigned status) {
        switch (status) {
        case 400: return "invalid_request_error";
        case 401: return "authentication_error";
        case 402: return "billing_error";
        case 403: return "permission_error";
        case 404: return "not_found_error";
        case 413: return "request_too_large";
        case 429: return "rate_limit_error";
        case 503:
        case 529: return "overloaded_error";
        case 504: return "timeout_error";
        default: return status < 500 ? "invalid_request_error" : "api_error";
        }
}

static const char *openai_type(unsigned status) {
        switch (status) {
        case 401: return "authentication_error";
        case 403: return "permission_error";
        case 404: return "invalid_request_error";
        case 429: return "rate_limit_error";
        default: return status < 500 ? "invalid_request_error" : "server_error";
        }
}

int api_reply_error(Request *r, Dialect d, unsigned status, const char *code, const HttpHeader *headers,
                    size_t n_headers, const char *format, ...) {
        _cleanup_(buf_done) Buf b = {};
        char msg[1024];
        va_list ap;
        int k;

        va_start(ap, format);
        vsnprintf(msg, sizeof msg, format, ap);
        va_end(ap);

        if (d == DIALECT_ANTHROPIC) {
                k = buf_append_str(&b, "{\"type\":\"error\",\"error\":{\"type\":");
                if (k >= 0)
                        k = json_escape_append(&b, anthropic_type(status));
                if (k >= 0)
                        k = buf_append_str(&b, ",\"message\":");
                if (k >= 0)
                        k = json_escape_append(&b, msg);
                if (k >= 0)
                        k = buf_append_str(&b, "}}\n");
        } else {
                k = buf_append_str(&b, "{\"error\":{\"message\":");
                if (k >= 0)
                        k = json_escape_append(&b, msg);
                if (k >= 0)
                        k = buf_append_str(&b, ",\"type\":");
                if (k >= 0)
                        k = json_escape_append(&b, openai_type(status));
                if (k >= 0)
                        k = buf_append_str(&b, ",\"param\":null,\"code\":");
                if (k >= 0)
                        k = code ? json_escape_append(&b, code) : buf_append_str(&b, "null");
                if (k >= 0)
                        k = buf_append_str(&b, "}}\n");
        }
        if (k < 0)
                return k;
        return request_reply(r, status, headers, n_headers, "application/json", buf_data(&b), buf_len(&b));
}
