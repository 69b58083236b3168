/* Request: the protocol-neutral request and response that handlers see, with a streaming response API. */
#pragma once

#include "http/server.h"
#include "shared/arena.h"
#include "shared/buf.h"
#include "shared/macro.h"

typedef struct HttpHeader {
        const char *name;       /* lowercase for request headers */
        const char *value;
} HttpHeader;

typedef struct RequestProtoOps {
        /* content_length < 0: length unknown, the body streams (chunked on HTTP/1.1). */
        int (*send_head)(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                         int64_t content_length);
        int (*send_body)(Request *r, const void *p, size_t n);
        int (*send_end)(Request *r);
        /* Response bytes queued for this request and not yet taken by the transport. */
        size_t (*pending)(Request *r);
        /* Ends the response abnormally so the client sees it broke (HTTP/2: RST_STREAM INTERNAL_ERROR;
         * HTTP/1.1: the connection closes without the final chunk). The request is aborted after. */
        void (*reset)(Request *r);
        /* request_uncork(): hand on what request_write() held back while corked. NULL: nothing is held. */
        void (*flush)(Request *r);
} RequestProtoOps;

typedef struct RequestHooks {
        /* The response queue drained below the low-water mark after request_write() returned 1. */
        void (*on_writable)(Request *r, void *userdata);
        /* The client went away (connection closed, stream reset, shutdown timeout). Writes fail from
         * now on; the handler cancels what it does on the request's behalf and drops its reference. */
        void (*on_abort)(Request *r, void *userdata);
} RequestHooks;

struct Request {
        unsigned n_ref;
        HttpServer *server;

        /* Set by the protocol layer; proto_ops is NULL once the client is gone. */
        const RequestProtoOps *proto_ops;
        void *proto;
        const char *protocol;           /* "HTTP/1.1" or "HTTP/2" */

        /* Strings and the header array live in the request's arena (set them with the setters
         * below), freed all at once with the request: no allocation per header. */
        const char *method;
        const char *target;             /* raw request target: path and query */
        const char *path;               /* target without the query */
        const char *authority;          /* Host or :authority, may be NULL */
        HttpHeader *headers;
        size_t n_headers, n_headers_alloc;
        Buf body;

        StreamInfo *info;               /* of the connection; valid while proto_ops is set */
        struct sockaddr_storage peer;   /* copied: valid for the request's whole life */
        bool secure;
        usec_t start_usec;              /* CLOCK_MONOTONIC when the headers were complete */

        unsigned status;
        bool head_sent;
        bool ended;
        bool aborted;
        bool want_writable;
        bool corked;            /* request_cork(): writes wait for request_uncork() */
        uint64_t bytes_out;

        const RequestHooks *hooks;
        void *hooks_userdata;

        char id[48];                    /* x-request-id: the client's (when sane) or generated; "" until asked */
        usec_t upstream_wait;           /* time spent waiting on upstreams, not gate's own (for the overhead) */

        Arena arena;
        max_align_t arena_first[1024 / sizeof(max_align_t)];   /* enough for a typical head */
};

/* For the protocol layers. */
int request_new(HttpServer *server, const RequestProtoOps *ops, void *proto, Request **ret);
int request_add_header(Request *r, const char *name, size_t name_len, const char *value, size_t value_len);
int request_set_target(Request *r, const char *target, size_t len);
int request_set_method(Request *r, const char *method, size_t len);
int request_set_authority(Request *r, const char *authority, size_t len);
void request_notify_writable(Request *r);   /* protocol: queue fell below low water */
void request_abort(Request *r);             /* protocol: client gone; calls on_abort once, detaches */
void request_dispatch(Request *r);          /* protocol: headers and body complete */

/* Appends to the request body within the limits: -EFBIG beyond max_body_bytes (answer 413), -ENOBUFS
 * when all bodies held at once would pass max_body_bytes_total (answer 503), -ENOMEM. */
int request_body_append(Request *r, const void *p, size_t n);

Request *request_ref(Request *r);
Request *request_unref(Request *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(Request *, request_unref);

/* For handlers. */
const char *request_header(const Request *r, const char *lowercase_name);
/* The API key the client presented: x-api-key, else the Authorization: Bearer value; NULL if none. */
const char *request_api_key(const Request *r);
/* The request's id: the client's x-request-id when it is a sane token, else a new random one. Every
 * response carries it as x-request-id, and x-gate-overhead-us (time since the request was complete,
 * minus r->upstream_wait), unless the handler set them itself. */
const char *request_id(Request *r);
void request_set_hooks(Request *r, const RequestHooks *hooks, void *userdata);
bool request_is_loopback(const Request *r);

/* Whole response at once. content_type may be NULL. */
int request_reply(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                  const char *content_type, const void *body, size_t len);
/* JSON error body {"error":{"message":...,"type":...,"code":...}} (the default dialect until the API
 * layer picks another). */
int request_reply_error(Request *r, unsigned status, const char *type, const char *code, const char *message);

/* Streaming: head, then writes, then finish. request_write() returns 1 when the queue for this request
 * is above the high-water mark: the handler should stop producing until hooks->on_writable. */
int request_start(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers);
/* Like request_start() with the body length known up front (content_length >= 0), or -1 for unknown. */
int request_start_length(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                         int64_t content_length);
int request_write(Request *r, const void *p, size_t n);
/* Between request_cork() and request_uncork(), writes are held (below the high-water mark) and go out
 * together at the uncork: a handler relaying several upstream chunks from one read makes one write to the
 * client (HTTP/1.1; HTTP/2 coalesces its sends per loop iteration anyway). request_finish() sends what was
 * held, corked or not. */
void request_cork(Request *r);
void request_uncork(Request *r);
int request_finish(Request *r);
/* The response cannot be completed (upstream broke mid-stream): make the client see a broken response,
 * never a truncated one that looks whole. */
void request_reset(Request *r);

/* Appends a JSON string literal (with quotes) to b. */
int json_escape_append(Buf *b, const char *s);
/* Appends the JSON error body used by request_reply_error(); for protocol layers that must answer
 * without a complete Request (431, 408 ...). */
int http_error_json(Buf *b, const char *type, const char *code, const char *message);
/* "OK", "Not Found", ...; "Unknown" for codes we do not know. */
const char *http_status_reason(unsigned status);
/* The current time as an IMF-fixdate for the Date header, cached per second. */
const char *http_date_now(void);
