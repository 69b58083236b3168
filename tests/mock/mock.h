/* The mock upstream's shared types: a call (one request being answered), its directives, its stream plan. */
#pragma once

#include <jansson.h>
#include <systemd/sd-event.h>

#include "http/request.h"
#include "net/timers.h"
#include "shared/buf.h"

typedef enum Dialect {
        DIALECT_OPENAI,
        DIALECT_ANTHROPIC,
        _DIALECT_MAX,
        _DIALECT_INVALID = -EINVAL,
} Dialect;

/* Behaviour picked per request through the model name: "gpt-4o+chunks=10+pace_ms=20". */
typedef struct Directives {
        uint32_t chunks;                /* text deltas when streaming */
        uint32_t chunk_bytes;           /* 0: natural length ("tok7") */
        uint32_t pace_ms;               /* between stream events */
        uint32_t ttfb_ms;               /* before the response head */
        uint32_t error;                 /* HTTP status to fail with, 0: none */
        int64_t retry_after;            /* seconds for a retry-after header, -1: none */
        int64_t reset_after;            /* stream events before a reset, -1: never */
        int64_t stall_after;            /* stream events before going silent, -1: never */
        int64_t error_after;            /* stream events before an in-stream error event, -1: never */
        uint32_t tools;                 /* tool calls instead of text */
        uint32_t fail_times;            /* the first N calls with this model string fail */
        bool has_fail_times;
        bool usage;                     /* usage=0 leaves usage out */
        bool preamble;                  /* a text block before the tool calls */
        uint32_t cache_read;            /* prompt tokens read from / written to the cache */
        uint32_t cache_write;
} Directives;

#define DIRECTIVES_DEFAULT                                                                      \
        ((Directives){                                                                          \
                .chunks = 5,                                                                    \
                .retry_after = -1,                                                              \
                .reset_after = -1,                                                              \
                .stall_after = -1,                                                              \
                .error_after = -1,                                                              \
                .usage = true,                                                                  \
        })

/* Upper bounds for directive values, so a typo cannot make the mock allocate without bound. */
#define MOCK_MAX_TOOLS 64U
#define MOCK_MAX_CHUNK_BYTES (16U << 20)
/* Tool arguments always stream in this many pieces. */
#define MOCK_TOOL_PIECES 4U
/* A fixed creation time keeps every answer byte-stable. */
#define MOCK_CREATED 1700000000

/* A stream is a list of steps, each emitting `count` events of one kind (dialect specific). */
typedef struct Step {
        uint16_t kind;
        uint32_t index;                 /* block, tool or output item the step belongs to */
        uint32_t count;
} Step;

typedef struct MockCall MockCall;

typedef struct Endpoint {
        const char *name;
        Dialect dialect;
        bool body_required;             /* POST with a JSON body */
        /* Checks the request body and fills in the call; returns -EBADMSG after call_bad_request(). */
        int (*prepare)(MockCall *c);
        /* The whole (non-streaming) answer. */
        int (*body)(MockCall *c, Buf *out);
        /* Streaming: plan the steps, render event i of a step, and an error event sent mid-stream. */
        int (*plan)(MockCall *c);
        int (*render)(MockCall *c, const Step *s, uint32_t i, Buf *out);
        int (*stream_error)(MockCall *c, Buf *out);
        /* The streaming fast path (mock-stream.c): appends the raw bytes (text or tool arguments) that event
         * i of step s carries and returns 1, or returns 0 for a step whose events carry no such piece. */
        int (*piece)(MockCall *c, const Step *s, uint32_t i, Buf *out);
        bool sequenced;                 /* events carry "sequence_number" (c->seq) */
} Endpoint;

typedef struct MockConn MockConn;
typedef struct Mock Mock;

/* A delta step's events rendered once with holes where the sequence number and the piece go
 * (mock-stream.c): text is the event without them, seq_at and piece_at where they belong. */
typedef struct DeltaTemplate {
        Buf text;
        size_t step;                    /* the step it was made for, when built */
        size_t seq_at, piece_at;
        bool built;
        bool usable;                    /* false: this step's events take the slow path */
        bool marking;                   /* render() is drawing the template: pieces are the marker */
} DeltaTemplate;

typedef enum CallState {
        CALL_WAITING,                   /* ttfb timer armed */
        CALL_STREAMING,
        CALL_STALLED,
        CALL_ENDED,
} CallState;

struct MockCall {
        unsigned n_ref;
        Mock *mock;
        Request *request;
        uint64_t id;
        const Endpoint *ep;
        Dialect dialect;
        char request_id[32];            /* "req_mock_N" */

        json_t *body;                   /* parsed request body, or NULL */
        const char *model;              /* full model string from the body (owned by body) */
        const char *path_arg;           /* {id} of /v1/models/{id} (owned by the request) */
        Directives d;
        bool stream;
        bool include_usage;             /* OpenAI stream_options.include_usage */
        uint64_t max_tokens;            /* 0: no limit asked for */
        uint32_t n_text;                /* text deltas in the answer (after max_tokens) */
        bool truncated;                 /* n_text was cut by max_tokens */
        uint64_t input_tokens;

        /* Refusal details set by prepare() (through call_reject()). */
        unsigned bad_status;
        const char *bad_type;
        const char *bad_message;
        const char *bad_param;
        const char *bad_code;
        char bad_buf[256];

        Step *steps;
        size_t n_steps, step;
        uint32_t sub;                   /* event within the current step */
        uint64_t events;                /* events sent */
        uint64_t seq;                   /* Responses API sequence_number */
        Buf scratch;
        DeltaTemplate tpl;
        Buf piece;                      /* the current event's piece, reused */

        CallState state;
        bool blocked;                   /* request_write() said stop; waiting for on_writable */
        bool pacing;                    /* the timer holds the next event back (pace_ms) */
        bool resetting;                 /* waiting for queued output before breaking the stream */
        unsigned reset_tries;
        unsigned status;                /* sent */
        unsigned fail;                  /* injected error status to send after ttfb_ms */
        Timer timer;                    /* ttfb, pace, reset: in the mock's TimerQueue */

        MockConn *conn;
        MockCall *conn_prev, *conn_next;
};

/* Endpoints, in mock-openai.c and mock-anthropic.c. */
extern const Endpoint endpoint_openai_chat;
extern const Endpoint endpoint_openai_completions;
extern const Endpoint endpoint_openai_responses;
extern const Endpoint endpoint_openai_embeddings;
extern const Endpoint endpoint_openai_models;
extern const Endpoint endpoint_openai_model;
extern const Endpoint endpoint_anthropic_messages;
extern const Endpoint endpoint_anthropic_count_tokens;
extern const Endpoint endpoint_anthropic_models;
extern const Endpoint endpoint_anthropic_model;

/* Shared helpers (mock-upstream.c). */
/* prepare() refuses the request: records the error (OpenAI param/code; Anthropic uses type and message)
 * and returns -EBADMSG. call_bad_request() is the common 400 invalid_request_error. */
int call_reject(MockCall *c, unsigned status, const char *type, const char *message, const char *param,
                const char *code);
int call_bad_request(MockCall *c, const char *message, const char *param, const char *code);
int call_add_step(MockCall *c, uint16_t kind, uint32_t index, uint32_t count);
/* Text delta k of the answer, and the whole text. */
int call_text_piece(MockCall *c, uint32_t k, Buf *out);
int call_text_full(MockCall *c, Buf *out);
/* Name and JSON arguments of tool call t, and piece i of the arguments (of MOCK_TOOL_PIECES). */
const char *call_tool_name(MockCall *c, uint32_t t);
int call_tool_args(MockCall *c, uint32_t t, Buf *out);
int call_tool_piece(MockCall *c, uint32_t t, uint32_t i, Buf *out);
uint64_t call_output_tokens(MockCall *c);
/* max_tokens (or the named field) caps the text deltas; sets n_text and truncated. */
void call_apply_max_tokens(MockCall *c, const char *const *fields);

/* JSON output: appends the dump of j (taking ownership; NULL means out of memory). */
int buf_put_json(Buf *b, json_t *j, size_t flags);
/* "data: {j}\n\n", or "event: NAME\ndata: {j}\n\n" when event is set. */
int sse_put(Buf *b, const char *event, json_t *j);
/* A JSON string of a Buf's bytes (which the mock produced: ASCII or UTF-8). */
json_t *json_from_buf(const Buf *b);
/* The streaming fast path (mock-stream.c). stream_render() renders event i of step s (the current step,
 * c->step) as render() would, without building it in jansson when a template can do it; render() takes
 * the pieces it puts in delta events from stream_piece_json(). */
int stream_render(MockCall *c, const Step *s, uint32_t i, Buf *out);
json_t *stream_piece_json(MockCall *c, const Step *s, uint32_t i);
void stream_done(MockCall *c);

/* Standard base64 with padding. */
int base64_append(Buf *b, const void *p, size_t n);
