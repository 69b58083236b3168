/* The stream translator's state, shared by the upstream readers (stream.c) and client writers (stream-emit.c). */
#pragma once

#include "translate/sse.h"
#include "translate/translate-internal.h"

/* Tracks whether streamed tool arguments have formed one complete JSON object or array yet, so the next
 * parallel call can stream without waiting for the end. */
typedef struct JsonProgress {
        unsigned depth;
        bool started, in_string, escape, complete;
} JsonProgress;

/* A content block of an OpenAI upstream stream. OpenAI interleaves text, reasoning and tool calls freely;
 * clients of the other dialects need one block at a time, so blocks are queued in order of appearance and
 * the ones behind the live block hold their deltas until it is done. */
typedef struct Slot {
        BlockKind kind;
        int64_t tool_index;             /* OpenAI tool_calls[].index, -1 for other blocks */
        char *id, *name;
        Buf pending;
        bool live, closed;
        JsonProgress json;
} Slot;

struct StreamTranslator {
        TranslateKind kind;
        char *client_model;
        bool include_usage;
        int64_t created;
        uint64_t input_estimate;
        SseParser sse;
        Buf *out;                       /* where events go during feed() and finish() */

        /* What the upstream said. */
        char *upstream_id;
        char *fallback_id;              /* tests: instead of a random id when the upstream sends none */
        TranslateUsage usage;
        StopReason stop;
        char *stop_sequence;
        bool saw_refusal;
        bool saw_finish;                /* chat: a finish_reason; Anthropic: message_delta */
        bool upstream_failed;           /* an upstream error event */
        int error;                      /* sticky failure */
        bool ended;                     /* the client stream has its last event */

        /* OpenAI upstream: the block queue. */
        Slot *slots;
        size_t n_slots, cur;
        size_t pending_bytes;           /* deltas held behind the live block */
        size_t meta_bytes;              /* tool ids and names held */
        int64_t last_tool_index;

        /* Anthropic upstream: the block being read. */
        bool a_started;
        bool a_open, a_skip;
        int64_t a_index;
        BlockKind a_kind;

        /* The client stream. */
        char *client_id;
        bool started;
        bool block_open;
        BlockKind block_kind;
        bool block_signed;              /* Anthropic: the thinking block's signature_delta was sent */
        unsigned n_blocks;              /* Anthropic content block index / Responses output index */
        unsigned n_tools;               /* chat tool_calls index */
        char *block_id, *block_name, *block_signature, *block_call_id;
        Buf block_text;                 /* Responses: the block's text for its .done events */
        size_t output_bytes;
        uint64_t seq;                   /* Responses sequence_number */
        json_t *output;                 /* Responses: finished output items */
};

/* Client writers: one block open at a time. */
int emit_start(StreamTranslator *t);
int emit_block_start(StreamTranslator *t, BlockKind kind, const char *id, const char *name, const char *data);
int emit_block_delta(StreamTranslator *t, const char *s, size_t n);
int emit_block_signature(StreamTranslator *t, const char *signature);
int emit_block_stop(StreamTranslator *t);
/* The last events of a good stream (stop reason and usage from t). */
int emit_finish(StreamTranslator *t);
/* An error event in the client's dialect; the client stream ends with it. type is Anthropic's error type
 * or OpenAI's (upstream dialect), code OpenAI's (may be NULL). */
int emit_error(StreamTranslator *t, const char *type, const char *code, const char *message);

/* For tests: a fixed creation time makes output byte-stable. */
void stream_translator_set_created(StreamTranslator *t, int64_t created);
