/* API errors in the caller's dialect: OpenAI {"error":{...}} or Anthropic {"type":"error","error":{...}}. */
#pragma once

#include "http/request.h"
#include "proxy/provider.h"

/* The dialect a request speaks, from its path (and, for GET /v1/models, the anthropic-version header). */
Dialect api_request_dialect(const Request *r);

/* Replies with status and a body in the dialect; the error type is derived from the status (OpenAI:
 * invalid_request_error, authentication_error, ...; Anthropic: not_found_error, overloaded_error, ...).
 * code (OpenAI only; may be NULL) is e.g. "model_not_found". Extra headers (retry-after) may be given. */
int api_reply_error(Request *r, Dialect d, unsigned status, const char *code, const HttpHeader *headers,
                    size_t n_headers, const char *format, ...) _printf_(7, 8);
