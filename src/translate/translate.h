/* Translation between the OpenAI (chat completions, stateless Responses) and Anthropic Messages dialects. */
#pragma once

#include "shared/buf.h"
#include "shared/macro.h"

typedef enum TranslateKind {
        TRANSLATE_MESSAGES_TO_CHAT, /* client: Anthropic /v1/messages; upstream: OpenAI /chat/completions */
        TRANSLATE_CHAT_TO_MESSAGES, /* client: OpenAI /v1/chat/completions; upstream: Anthropic /v1/messages */
        TRANSLATE_RESPONSES_TO_CHAT, /* client: OpenAI /v1/responses; upstream: OpenAI /chat/completions */
        TRANSLATE_RESPONSES_TO_MESSAGES, /* client: OpenAI /v1/responses; upstream: Anthropic /v1/messages */
        _TRANSLATE_KIND_MAX,
        _TRANSLATE_KIND_INVALID = -EINVAL,
} TranslateKind;

/* An Anthropic upstream requires max_tokens; when an OpenAI client sends neither max_tokens nor
 * max_completion_tokens (nor max_output_tokens), this is what is asked for. */
#define TRANSLATE_DEFAULT_MAX_TOKENS 4096
/* Upstream SSE: the longest partial line or event held while waiting for its end, and the most bytes
 * of parallel tool-call arguments held back while an earlier block is still streaming. */
#define TRANSLATE_STREAM_BUFFER_MAX (1U << 20)
/* Responses clients get the whole output again in response.completed: the most output text kept. */
#define TRANSLATE_STREAM_OUTPUT_MAX (16U << 20)
/* The most JSON values (scalars, arrays, objects) of a body gate translates: a body of max_body_bytes made
 * of small values would take a jansson tree (two, with the translation) of over a gigabyte. Real requests
 * (a long agent session with its tool schemas) have tens of thousands. */
#define TRANSLATE_JSON_MAX_VALUES 200000U
/* The most content blocks (text, thinking, tool calls) one streamed answer may have. */
#define TRANSLATE_STREAM_BLOCKS_MAX 1024U

const char *translate_kind_to_string(TranslateKind k);
/* True when the client speaks Anthropic (its errors and streams are Anthropic's). */
bool translate_client_is_anthropic(TranslateKind k);
bool translate_upstream_is_anthropic(TranslateKind k);

/* The upstream path to call, relative to the API root: "/chat/completions" or "/messages". */
const char *translate_upstream_path(TranslateKind k);

typedef struct TranslatedRequest {
        char *body; size_t len;          /* the upstream request body (JSON) */
        bool stream;                     /* the client asked for a stream */
        bool include_usage;              /* the client (OpenAI) asked for stream_options.include_usage */
        char *dropped; /* "field,field" that could not be expressed and were dropped, or NULL */
        uint64_t input_tokens_estimate;  /* translate_count_tokens_estimate()'s method over the request, for
                                          * stream_translator_set_input_tokens(); made only for the
                                          * stream of an Anthropic client (0 otherwise) */
} TranslatedRequest;

void translated_request_done(TranslatedRequest *t);

/* client body -> upstream body. upstream_model replaces the model name. -EINVAL with *ret_error (a message
 * for a 400 in the client's dialect) when the request cannot be translated or is malformed; -ENOMEM. */
int translate_request(TranslateKind k, const char *body, size_t len, const char *upstream_model,
                      TranslatedRequest *ret, char **ret_error);

/* A complete non-streaming upstream 2xx JSON body -> the client's JSON body. client_model is what the client
 * asked for. -EBADMSG when the upstream body is not what its API documents. */
int translate_response(TranslateKind k, const char *body, size_t len, const char *client_model, char **ret,
                       size_t *ret_len);

/* A non-2xx upstream body (any content) -> a client-dialect error body for the same status. Never fails
 * except -ENOMEM. */
int translate_error(TranslateKind k, unsigned status, const char *body, size_t len, char **ret,
                    size_t *ret_len);

/* A client-dialect error body made here (for a refused request: status 400 and translate_request()'s
 * message). */
int translate_error_body(TranslateKind k, unsigned status, const char *message, char **ret, size_t *ret_len);

typedef struct StreamTranslator StreamTranslator;

int stream_translator_new(TranslateKind k, const char *client_model, bool include_usage,
                          StreamTranslator **ret);

/* Anthropic clients read the input token count from message_start, which an OpenAI upstream only reports
 * at the end: until it does, message_start carries this estimate (TranslatedRequest.input_tokens_estimate).
 * message_delta then carries the upstream's own count. Call before the first feed. */
void stream_translator_set_input_tokens(StreamTranslator *t, uint64_t n);

/* Feeds upstream SSE bytes (split anywhere); appends complete client SSE events to out. -EBADMSG: the upstream
 * stream is malformed (an error event for the client has been appended; stop feeding). -E2BIG: a line or event
 * exceeded the bound (an error event has been appended too). Errors are sticky: later calls return them again
 * and append nothing. */
int stream_translator_feed(StreamTranslator *t, const void *p, size_t n, Buf *out);

/* The upstream stream ended. upstream_complete=false when the transfer broke. Appends the final client events.
 * Returns 0 when the client stream ended properly (an upstream error event passed on to the client counts as
 * proper: the client has its dialect's error event), -EPIPE when the upstream stream ended before its final
 * event or in the middle of one (an error event has been appended; the proxy then breaks the client stream),
 * -EBADMSG when what was held back turns out malformed at the end (an error event too), -ENOMEM, or the error
 * an earlier feed returned (nothing is appended then). */
int stream_translator_finish(StreamTranslator *t, bool upstream_complete, Buf *out);

StreamTranslator *stream_translator_free(StreamTranslator *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(StreamTranslator *, stream_translator_free);

/* Token usage as the upstream reported it, normalised: input excludes cache reads and writes (Anthropic's
 * meaning), so input + cache_read + cache_write is every prompt token. */
typedef struct TranslateUsage {
        bool known;                     /* the upstream reported usage at all */
        uint64_t input;
        uint64_t cache_read;
        uint64_t cache_write;
        uint64_t output;                /* reasoning included */
        uint64_t reasoning;             /* part of output, when the upstream says */
} TranslateUsage;

/* The usage seen so far (complete after a successful finish), for billing and logs. */
void stream_translator_get_usage(const StreamTranslator *t, TranslateUsage *ret);
/* True once the upstream sent an error event mid-stream (passed on to the client). */
bool stream_translator_upstream_failed(const StreamTranslator *t);

/* count_tokens for upstreams that have none: {"input_tokens":N,"estimated":true} from an Anthropic count_tokens
 * request body. The method and its measured error are described in count-tokens.c. -EINVAL when the body is
 * not a JSON object with a messages array. */
int translate_count_tokens_estimate(const char *body, size_t len, char **ret, size_t *ret_len);
