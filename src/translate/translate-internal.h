/* Shared inside src/translate: the dialect-neutral answer model, JSON helpers, drop lists, id and usage mapping. */
#pragma once

#include <jansson.h>
#include <stdarg.h>

#include "shared/buf.h"
#include "shared/macro.h"
#include "translate/translate.h"

/* jansson ships json_decrefp() (NULL-safe) for its json_auto_t. */
#define _cleanup_json_ _cleanup_(json_decrefp)

/* ---- JSON ---- */

/* Parses a JSON object; -EBADMSG when the text is not JSON or not an object, -E2BIG past
 * TRANSLATE_JSON_MAX_VALUES values. */
int json_parse_object(const char *s, size_t n, json_t **ret);
/* The same, making only the members keep names (json-fast.h): accepted and refused alike. */
typedef struct JsonKeep JsonKeep;
int json_parse_object_keep(const char *s, size_t n, const JsonKeep *keep, json_t **ret);
/* Compact dumps. */
int json_dump_to_buf(const json_t *j, Buf *b);
int json_dump_to_string(const json_t *j, char **ret, size_t *ret_len);
/* json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY), in memory from malloc(): free() it. NULL on failure. */
char *json_dump_any(const json_t *j);
/* The same text as a JSON string value (tool call arguments), made once from the writer's buffer. */
json_t *json_dump_any_string(const json_t *j);
/* Not json_dumps(): inside a translation its string would come from the scratch arena (json-scratch.h), and
 * free() on it would be wrong. (Tests that dump their own trees define TRANSLATE_ALLOW_JSON_DUMPS.) */
#ifndef TRANSLATE_ALLOW_JSON_DUMPS
#define json_dumps(...) json_dumps_is_not_for_translate(__VA_ARGS__)
#endif

static inline const char *json_get_str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}
static inline bool json_get_true(const json_t *o, const char *key) {
        return json_is_true(json_object_get(o, key));
}
/* Integer members that may come as JSON reals ("max_tokens": 100.0): -1 when absent or not a whole number. */
int64_t json_get_uint(const json_t *o, const char *key);

/* set/append that take ownership of v (also on failure) and turn a NULL v (a failed constructor) into
 * -ENOMEM, so calls can be chained with `if (r >= 0)`. */
int json_set(json_t *o, const char *key, json_t *v);
int json_append(json_t *a, json_t *v);
/* json_set() of the member key of from, when it is present, shared (json_incref), not copied.
 *
 * The request translators share what they pass on unchanged (texts, ids, names, schemas) between the client's
 * tree and the upstream's instead of copying it: a copy of a string is jansson's UTF-8 check and a memcpy of
 * every byte, and an agent's request is 100-300 KB of them. That is safe because both trees live and die in
 * one translate_request() (one JSON scratch scope) and no translator changes a value once it is in its output
 * (a shared value must never be modified: that would change the input too). */
int json_share_member(json_t *to, const json_t *from, const char *key);
static inline json_t *json_share(const json_t *v) {
        return json_incref((json_t *) v);
}
/* An object of the members key, value, ..., ended by a NULL key: what json_pack("{s:o, ...}") makes, without
 * parsing a format or checking the keys (string literals) again, for the small objects a request translation
 * makes per message and block. Takes the values (also on failure); NULL when one of them is NULL or on ENOMEM. */
json_t *json_object_build(const char *key, ...) __attribute__((sentinel));
/* A JSON string of n bytes that are UTF-8 by construction: only made of strings from a parsed tree (the
 * reader refuses any that are not UTF-8), gate's own ASCII, or JSON gate wrote. Skips jansson's byte-by-byte
 * check. (Were it wrong, the writer would still refuse the string: the upstream never gets invalid UTF-8.) */
static inline json_t *json_stringn_utf8(const char *s, size_t n) {
        return json_stringn_nocheck(s, n);
}

/* The length of the UTF-8 sequence a lead byte opens, 0 for a byte that cannot open one. */
static inline size_t utf8_sequence_length(unsigned char c) {
        if (c < 0x80)
                return 1;
        if ((c & 0xe0) == 0xc0)
                return 2;
        if ((c & 0xf0) == 0xe0)
                return 3;
        if ((c & 0xf8) == 0xf0)
                return 4;
        return 0;
}

/* A JSON string value from bytes that may not be UTF-8 (invalid sequences become U+FFFD). */
json_t *json_stringn_lossy(const char *s, size_t n);

/* ---- SSE output ---- */

/* "event: NAME\ndata: JSON\n\n" (no event line when name is NULL). */
int sse_put(Buf *out, const char *event, const json_t *j);

/* ---- request translation context ---- */

typedef struct ReqCtx {
        char **dropped;                 /* field names, each once */
        size_t n_dropped;
        char *error;                    /* the 400 message once refused */
        TranslateKind kind;
} ReqCtx;

void req_ctx_done(ReqCtx *c);
/* Records a field that could not be expressed and was left out. -ENOMEM. */
int req_drop(ReqCtx *c, const char *field);
/* Refuses the request: records the message (the first one wins) and returns -EINVAL (-ENOMEM). */
int req_refuse(ReqCtx *c, const char *format, ...) _printf_(2, 3);
/* "a,b,c" or NULL when nothing was dropped. */
int req_dropped_join(ReqCtx *c, char **ret);

/* The three request translators (request-*.c); each fills *ret (a new JSON object) or fails with -EINVAL
 * after req_refuse(). from_responses lets chat_to_messages read the thinking blocks that
 * responses_to_chat attaches to assistant messages (the Responses dialect can carry them, chat cannot). */
int request_messages_to_chat(ReqCtx *c, json_t *in, const char *upstream_model, json_t **ret);
int request_chat_to_messages(ReqCtx *c, json_t *in, const char *upstream_model, bool from_responses,
                             json_t **ret);
int request_responses_to_chat(ReqCtx *c, json_t *in, const char *upstream_model, bool for_messages,
                              json_t **ret);
/* The member name responses_to_chat uses for thinking blocks on an assistant message (never sent upstream). */
#define GATE_THINKING_MEMBER "x_gate_thinking"

/* ---- the dialect-neutral answer ---- */

typedef enum BlockKind {
        BLOCK_TEXT,
        BLOCK_THINKING,
        BLOCK_REDACTED_THINKING,
        BLOCK_TOOL_USE,
        BLOCK_REFUSAL,
        _BLOCK_KIND_MAX,
        _BLOCK_KIND_INVALID = -EINVAL,
} BlockKind;

typedef enum StopReason {
        STOP_NONE,                      /* not known (yet) */
        STOP_END_TURN,
        STOP_MAX_TOKENS,
        STOP_STOP_SEQUENCE,
        STOP_TOOL_USE,
        STOP_REFUSAL,
        STOP_PAUSE_TURN,
        STOP_CONTEXT_WINDOW,
        _STOP_REASON_MAX,
        _STOP_REASON_INVALID = -EINVAL,
} StopReason;

StopReason stop_reason_from_anthropic(const char *s);
StopReason stop_reason_from_openai(const char *s);
const char *stop_reason_to_anthropic(StopReason r);
const char *stop_reason_to_openai(StopReason r);
/* Responses: NULL for a complete answer, else the incomplete_details.reason. */
const char *stop_reason_to_responses_incomplete(StopReason r);

typedef struct ReplyBlock {
        BlockKind kind;
        char *text;                     /* text, thinking, refusal; redacted data; tool arguments (JSON text) */
        char *signature;                /* thinking */
        char *id;                       /* tool_use */
        char *name;                     /* tool_use */
} ReplyBlock;

typedef struct Reply {
        char *id;                       /* upstream id */
        ReplyBlock *blocks;
        size_t n_blocks;
        StopReason stop;
        char *stop_sequence;
        TranslateUsage usage;
} Reply;

void reply_done(Reply *r);
ReplyBlock *reply_add_block(Reply *r, BlockKind kind);

/* Upstream answers into the neutral form (-EBADMSG when the body is not what the API documents). */
int reply_from_chat(const json_t *in, Reply *ret);
int reply_from_messages(const json_t *in, Reply *ret);

/* Pieces of the client answers, shared by the whole-body and the streaming translators. */
/* Anthropic tool_use input from arguments text: the JSON value, or the text itself when it is not JSON. */
json_t *anthropic_tool_input(const char *args);
json_t *responses_object(const char *id, const char *model, int64_t created, const char *status,
                         StopReason stop, json_t *output, const TranslateUsage *usage);
json_t *responses_message_item(const char *id, const char *status, BlockKind kind, const char *text);
json_t *responses_reasoning_item(const char *id, const char *status, BlockKind kind, const char *text,
                                 const char *signature);
json_t *responses_function_item(const char *id, const char *status, const char *call_id, const char *name,
                                const char *arguments);
/* The Responses status for a finished answer: "completed" or "incomplete". */
const char *responses_status(StopReason stop);

/* ---- usage ---- */

/* Chat completions usage (prompt_tokens includes cached_tokens) into the normalised form. */
void usage_from_openai(const json_t *u, TranslateUsage *ret);
/* Anthropic usage: members present overwrite (message_delta carries cumulative totals). */
void usage_from_anthropic(const json_t *u, TranslateUsage *ret);
json_t *usage_to_openai(const TranslateUsage *u);
json_t *usage_to_anthropic(const TranslateUsage *u);
json_t *usage_to_responses(const TranslateUsage *u);

/* ---- ids ---- */

/* prefix + the distinctive part of the upstream id ("chatcmpl-abc" -> "msg_abc"); random when there is none. */
int id_derive(const char *prefix, const char *upstream_id, char **ret);
/* Tool call ids as Anthropic accepts them (^[a-zA-Z0-9_-]+$): other bytes become '_', so tool_use and
 * tool_result still match. A missing id becomes prefix + base + "_" + n. */
int tool_id_sanitize(const char *prefix, const char *id, const char *base, unsigned n, char **ret);
void random_hex(char *buf, size_t n_hex);

/* ---- reasoning ---- */

/* Documented in util.c: Anthropic thinking.budget_tokens <-> OpenAI reasoning_effort. */
#define THINKING_BUDGET_MIN 1024
const char *reasoning_effort_from_budget(int64_t budget);
int64_t thinking_budget_from_effort(const char *effort);     /* 0: no thinking, -1: unknown value */

/* ---- errors ---- */

const char *openai_error_type_from_anthropic(const char *anthropic_type, unsigned status);
const char *anthropic_error_type_from_openai(const char *openai_type, const char *code, unsigned status);
json_t *openai_error_object(const char *message, const char *type, const char *param, const char *code);
json_t *anthropic_error_object(const char *type, const char *message);

/* ---- count tokens ---- */

uint64_t estimate_text_tokens(const char *s, size_t n);
/* The estimator over a request (Anthropic-shaped; chat and Responses shapes are read too). */
uint64_t estimate_request_tokens(const json_t *req);
