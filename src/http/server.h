/* HttpServer: what the HTTP protocol layers share: the loop, limits, the dispatcher, live sessions. */
#pragma once

#include <systemd/sd-event.h>

#include "net/stream.h"
#include "shared/macro.h"

typedef struct Request Request;
typedef struct HttpSession HttpSession;

typedef struct HttpLimits {
        uint64_t max_body_bytes;        /* request body; 413 beyond */
        uint64_t max_body_bytes_total;  /* all request bodies held at once, all clients; 503 beyond */
        uint32_t max_header_bytes;      /* request line + all headers; 431 beyond */
        uint32_t max_headers;           /* header count; 431 beyond */
        usec_t header_timeout;          /* first byte to end of headers; 408 beyond (slowloris) */
        usec_t body_timeout;            /* between two reads of the request body; 408 beyond */
        usec_t idle_timeout;            /* keep-alive wait for the next request */
        usec_t send_timeout;            /* client stopped reading while output is queued: close */
        uint32_t h2_max_concurrent_streams;
        size_t send_high_water;         /* per request: handler is told to pause above this */
        size_t send_low_water;          /* ... and resumed below this */
} HttpLimits;

#define HTTP_LIMITS_DEFAULT                                          \
        ((HttpLimits){                                               \
                .max_body_bytes = 32ULL << 20,                       \
                .max_body_bytes_total = 512ULL << 20,                \
                .max_header_bytes = 64U << 10,                       \
                .max_headers = 128,                                  \
                .header_timeout = 30 * USEC_PER_SEC,                 \
                .body_timeout = 60 * USEC_PER_SEC,                   \
                .idle_timeout = 75 * USEC_PER_SEC,                   \
                .send_timeout = 60 * USEC_PER_SEC,                   \
                .h2_max_concurrent_streams = 128,                    \
                .send_high_water = 256U << 10,                       \
                .send_low_water = 64U << 10,                         \
        })

/* Each protocol session (one per client connection) registers itself so the server can drain. */
typedef struct HttpSessionOps {
        /* Stop taking new requests: HTTP/1.1 closes when idle and answers in-flight ones with
         * "Connection: close"; HTTP/2 sends GOAWAY. Existing requests run to completion. */
        void (*drain)(HttpSession *s);
        /* Close now (drain timeout expired). The session frees itself. */
        void (*abort)(HttpSession *s);
} HttpSessionOps;

struct HttpSession {
        const HttpSessionOps *ops;
        HttpSession *prev, *next;
};

typedef struct HttpServer {
        sd_event *event;
        HttpLimits limits;
        /* Called when a request's headers and body are complete. The handler answers now or later
         * (taking a reference). The return value is only logged. */
        int (*dispatch)(Request *r, void *userdata);
        void *dispatch_userdata;
        /* Called when the last session went away while draining. */
        void (*on_idle)(void *userdata);
        void *on_idle_userdata;

        HttpSession *sessions;
        unsigned n_sessions;
        /* HTTP/1.1 sessions whose small output waits for the end of the current dispatch, and the defer
         * source that sends it (http1.c, h1_queue_flush(); freed by http_server_done()). */
        struct Http1Session *h1_flush_list;
        sd_event_source *h1_flush_source;
        bool draining;
        bool aborting;                  /* http_server_abort_all() is closing every session */

        /* Counters (read by metrics/D-Bus). */
        uint64_t requests_total;
        uint64_t body_bytes;            /* request body bytes held by live requests */
        unsigned active_requests;
        unsigned active_streams;        /* responses currently streaming */
} HttpServer;

void http_server_init(HttpServer *s, sd_event *event);
void http_server_add_session(HttpServer *s, HttpSession *session);
void http_server_remove_session(HttpServer *s, HttpSession *session);
void http_server_drain(HttpServer *s);
void http_server_abort_all(HttpServer *s);
/* Closes every session and frees what the server holds in the event loop: after it, the loop never calls
 * into the server, which may then go before the loop does. */
void http_server_done(HttpServer *s);

/* Picks HTTP/1.1 or HTTP/2 for a new stream: by ALPN when secure, by the h2 client preface on
 * cleartext (h2c prior knowledge). Takes over the stream as its upper. */
int http_server_attach(HttpServer *s, Stream *stream);

/* Implemented in http1.c and http2.c. Both take over the stream (as its upper) on success. */
int http1_session_new(HttpServer *s, Stream *stream);
int http2_session_new(HttpServer *s, Stream *stream);
