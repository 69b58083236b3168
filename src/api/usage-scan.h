/* Usage scanning: the token counts and served model an upstream reports, from a JSON body or an SSE stream. */
#pragma once

#include "proxy/provider.h"
#include "shared/macro.h"

#define USAGE_SCAN_MODEL_MAX 128
#define USAGE_SCAN_MAX_DEPTH 64

/* Normalised counts: input_tokens never includes cache reads or writes, whichever dialect reported
 * them (Anthropic's input_tokens already excludes them; OpenAI's prompt_tokens and Responses'
 * input_tokens include cached_tokens, which are subtracted). */
typedef struct Usage {
        uint64_t input_tokens;
        uint64_t output_tokens;
        uint64_t cache_read_tokens;
        uint64_t cache_write_tokens;
        char model[USAGE_SCAN_MODEL_MAX];       /* what the upstream says it served; "" when it did not */
        bool found;                             /* the upstream reported any token count */
} Usage;

/* Fields of interest, as raw numbers seen. Internal, but sized here so that the scanner needs no heap. */
typedef enum UsageField {
        USAGE_FIELD_PROMPT,             /* OpenAI prompt_tokens */
        USAGE_FIELD_COMPLETION,         /* OpenAI completion_tokens */
        USAGE_FIELD_INPUT,              /* Responses and Anthropic input_tokens */
        USAGE_FIELD_OUTPUT,             /* Responses and Anthropic output_tokens */
        USAGE_FIELD_CACHED,             /* OpenAI *_tokens_details.cached_tokens */
        USAGE_FIELD_CACHE_READ,         /* Anthropic cache_read_input_tokens */
        USAGE_FIELD_CACHE_WRITE,        /* Anthropic cache_creation_input_tokens */
        _USAGE_FIELD_MAX,
        _USAGE_FIELD_INVALID = -EINVAL,
} UsageField;

/* A streaming scanner with constant memory (this struct, nothing allocated): bytes may be fed split
 * anywhere, and a megabyte-long event costs no more than a short one. It tracks the JSON path of every
 * value and keeps only numbers at the usage paths of the dialect and the served model:
 *   OpenAI:    usage.*, response.usage.* (Responses events); model, response.model
 *   Anthropic: usage.* (message_delta), message.usage.* (message_start); model, message.model
 * Counts are cumulative in both dialects' streams, so the largest value seen for a field counts.
 * Malformed JSON stops the scan of that document (in SSE mode: that event) only. */
typedef struct UsageScanner {
        Dialect dialect;
        bool sse;
        bool no_prefilter;              /* tests only: every data line through the full scan */
        uint32_t prefiltered;           /* data lines the prefilter passed over (tests check it works) */

        /* SSE lines */
        uint8_t line;                   /* LINE_* */
        uint8_t field_len;
        char field[8];
        bool after_cr;

        /* JSON */
        uint8_t state;                  /* JSON_* */
        uint8_t string_kind;            /* what the current string is: a key, a captured value, other */
        uint8_t lit_pos;
        uint8_t num_len;
        uint8_t key_len;
        uint8_t hex_count;
        bool key_overflow;
        bool model_overflow;
        uint16_t depth;
        uint32_t hex;
        uint32_t high_surrogate;
        uint64_t arrays[USAGE_SCAN_MAX_DEPTH / 64];     /* bit d: container at depth d+1 is an array */
        uint8_t path[4];                /* key ids at depth 1..4 */
        char key[32];
        char num[24];
        char lit[6];
        char capture[USAGE_SCAN_MODEL_MAX];
        uint16_t capture_len;

        /* results */
        uint64_t values[_USAGE_FIELD_MAX];
        uint32_t seen;                  /* bit per UsageField */
        char model[USAGE_SCAN_MODEL_MAX];
} UsageScanner;

/* Feed it the upstream's bytes as they arrive, before any translation: dialect is what the upstream
 * speaks, sse says its body is text/event-stream (else one JSON document). OpenAI streams report usage
 * only when the request asked for it (stream_options.include_usage); Anthropic streams always do. For
 * a key's tokens-per-minute, a request used input + cache_read + cache_write + output tokens. */
void usage_scanner_init(UsageScanner *s, Dialect dialect, bool sse);
void usage_scanner_feed(UsageScanner *s, const void *p, size_t n);
/* The normalised result so far (callable at any time, also after a broken stream). */
void usage_scanner_result(const UsageScanner *s, Usage *ret);

/* The usage of a complete non-streaming body. -EBADMSG when body is not a complete JSON document. */
int usage_from_json(Dialect dialect, const void *body, size_t len, Usage *ret);
