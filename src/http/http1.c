/* HTTP/1.1 server sessions: strict request framing over a Stream, in-order responses, keep-alive, limits. */
#include <inttypes.h>
#include <strings.h>

#include "http/request.h"
#include "http/server.h"
#include "net/timers.h"
#include "shared/buf.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/util.h"

/*
 * Requests are parsed here, in one pass over each byte, by a strict RFC 9112 state machine (h1_scan):
 * CRLF line ends, token methods and field names directly followed by ':', field values without CTLs, no
 * obsolete folding, strict chunk framing, one framing per message. (Debian's libhttp-parser is built
 * non-strict, taking bare LF, folding and "gzip, chunked"; an earlier version ran this scanner in front
 * of it, which did the work twice.) Runs of ordinary bytes are taken at once by class (char_class).
 */

/* A chunk-size line with extensions is not stored, but must not be endless either. */
#define CHUNK_LINE_MAX 4096U
/* Below this a body write is copied into the output buffer (one write with its framing); above it the
 * buffer is flushed and the data written straight through. */
#define COPY_MAX (16U << 10)

typedef enum H1Phase {
        H1_IDLE,                /* between requests: nothing of the next one seen yet */
        H1_HEAD,                /* request line and header fields */
        H1_BODY,
        H1_HANDLING,            /* dispatched; no more parsing until the response has ended */
        H1_BACKLOG,             /* response ended, but the client must take more of it first */
} H1Phase;

typedef enum H1Timer {
        H1_TIMER_NONE,
        H1_TIMER_HEADER,
        H1_TIMER_BODY,
        H1_TIMER_IDLE,
        H1_TIMER_SEND,
        H1_TIMER_ABORT,         /* a write failed: tear down from the loop, not from inside the handler */
} H1Timer;

typedef enum H1Close {
        H1_CLOSE_FLUSH,         /* send what is queued, then shut down */
        H1_CLOSE_ABORT,         /* drop everything */
        H1_CLOSE_GONE,          /* the stream is already gone */
} H1Close;

typedef enum ScanState {
        SCAN_START,             /* empty lines before the request line are allowed */
        SCAN_START_LF,
        SCAN_LINE,
        SCAN_LINE_LF,
        SCAN_FIELD_START,
        SCAN_NAME,
        SCAN_VALUE,
        SCAN_VALUE_LF,
        SCAN_END_LF,
        SCAN_HEAD_DONE,         /* the parser's on_headers_complete decides what follows */
        SCAN_BODY,
        SCAN_CHUNK_SIZE_START,
        SCAN_CHUNK_SIZE,
        SCAN_CHUNK_EXT,
        SCAN_CHUNK_SIZE_LF,
        SCAN_CHUNK_DATA,
        SCAN_CHUNK_DATA_CR,
        SCAN_CHUNK_DATA_LF,
        SCAN_DONE,
} ScanState;

typedef enum RespFraming {
        RESP_NONE,              /* no body at all (HEAD, 204, 304) */
        RESP_LENGTH,
        RESP_CHUNKED,
        RESP_CLOSE,             /* HTTP/1.0 client, length unknown: the end of the connection ends it */
} RespFraming;

typedef struct H1Error {
        unsigned status;
        const char *code;
        const char *message;
} H1Error;

typedef struct Http1Session {
        HttpSession session;    /* first: the server's list links these */
        unsigned n_ref;
        HttpServer *server;
        Stream *stream;         /* NULL once closed or gone */
        Timer timer;                    /* in timers, the event loop's shared queue */
        TimerQueue *timers;
        H1Timer timer_kind;
        usec_t timer_deadline;          /* when timer_kind expires; USEC_INFINITY for none */
        H1Phase phase;
        bool closed;
        bool in_read;           /* inside on_read: output goes out once at its end */
        bool dispatching;       /* inside request_dispatch(): the parse loop finishes the response */
        bool read_paused;
        bool want_writable;
        bool draining;

        ScanState scan;
        bool scan_trailers;
        uint8_t scan_prev;
        unsigned scan_spaces;
        unsigned scan_digits;
        uint32_t scan_bytes;
        uint32_t scan_fields;
        uint64_t scan_size;     /* remaining body or chunk bytes; the chunk size while reading it */

        /* The request being read or handled. */
        Request *request;
        Buf url, field, value, te;
        char method[16];                /* as received; overlong: method_len == sizeof method */
        uint8_t method_len;
        char version[9];
        uint8_t version_len;
        bool conn_close, conn_keep_alive;       /* Connection: close / keep-alive */
        bool headers_done;
        bool message_complete;
        bool dispatched;
        bool req_head;
        bool http10;
        bool keep_alive;        /* what the client allows */
        unsigned n_host, n_content_length, n_transfer_encoding;
        bool expect_continue, expect_other;
        uint64_t content_length;
        H1Error error;

        /* The response. */
        Buf out;                /* not yet handed to the stream */
        bool flush_queued;      /* in the server's h1_flush_list, holding a reference */
        struct Http1Session *flush_prev, *flush_next;
        RespFraming framing;
        uint64_t resp_remaining;
        bool resp_head_sent;
        bool resp_done;
        bool resp_keep_alive;
} Http1Session;

static const RequestProtoOps h1_request_ops;

static void h1_close(Http1Session *h, H1Close mode);

static Http1Session *h1_ref(Http1Session *h) {
        h->n_ref++;
        return h;
}

static Http1Session *h1_unref(Http1Session *h) {
        if (!h || --h->n_ref > 0)
                return NULL;
        timer_disarm(h->timers, &h->timer);
        h->timers = timer_queue_free(h->timers);
        request_unref(h->request);
        buf_done(&h->url);
        buf_done(&h->field);
        buf_done(&h->value);
        buf_done(&h->te);
        buf_done(&h->out);
        free(h);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Http1Session *, h1_unref);

/* ---- small helpers ---- */

/* Character classes of RFC 9110/9112, one table lookup per byte on the path of every request.
 * CLASS_TCHAR: token characters (method, field names). CLASS_FIELD: field values and chunk extensions
 * (HTAB, SP, VCHAR, obs-text; no other CTL, no DEL). CLASS_LINE: what the request line holds between
 * its spaces (VCHAR). */
enum {
        CLASS_TCHAR = 1 << 0,
        CLASS_FIELD = 1 << 1,
        CLASS_LINE = 1 << 2,
};

static const uint8_t char_class[256] = {
        0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        2, 7, 6, 7, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6,
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6,
        6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
        7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 7, 6, 7, 0,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
        2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
};

static bool is_tchar(uint8_t c) {
        return char_class[c] & CLASS_TCHAR;
}

static bool is_field_char(uint8_t c) {
        return char_class[c] & CLASS_FIELD;
}

/* How many bytes from p on are all of class cls (at most n). */
static size_t span_class(const uint8_t *p, size_t n, uint8_t cls) {
        size_t i = 0;

        while (i < n && (char_class[p[i]] & cls))
                i++;
        return i;
}

/* buf_data() of a never-filled Buf is NULL + 0, which sanitizers rightly flag. */
static const char *buf_chars(const Buf *b) {
        return buf_empty(b) ? "" : (const char *) buf_data(b);
}

/* uri-host [ ":" port ]: enough to refuse what could not be an authority at all. */
static bool host_valid(const char *s) {
        for (; *s; s++) {
                uint8_t c = (uint8_t) *s;
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      strchr("-._~%!$&'()*+,;=:[]", c)))
                        return false;
        }
        return true;
}

static void trim_ows(const char **s, size_t *n) {
        while (*n > 0 && ((*s)[0] == ' ' || (*s)[0] == '\t')) {
                (*s)++;
                (*n)--;
        }
        while (*n > 0 && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
                (*n)--;
}

/* Transfer-Encoding as a list: 0 if it is exactly "chunked", -EBADMSG if malformed or if chunked is
 * not applied exactly once and last (400), -EOPNOTSUPP for codings we do not implement (501). */
static int transfer_encoding_check(const char *s, size_t n) {
        const char *end = s + n;
        unsigned n_items = 0, n_chunked = 0;
        bool chunked_last = false, params = false;

        if (n == 0)
                return -EBADMSG;
        for (;;) {
                const char *comma = memchr(s, ',', (size_t) (end - s)), *item = s;
                size_t len = (size_t) ((comma ?: end) - s), tlen = 0;

                trim_ows(&item, &len);
                while (tlen < len && is_tchar((uint8_t) item[tlen]))
                        tlen++;
                if (tlen == 0)
                        return -EBADMSG;
                if (tlen < len) {
                        const char *rest = item + tlen;
                        size_t rlen = len - tlen;

                        trim_ows(&rest, &rlen);
                        if (rlen == 0 || rest[0] != ';')
                                return -EBADMSG;
                }
                n_items++;
                chunked_last = tlen == STRLEN("chunked") && strncasecmp(item, "chunked", tlen) == 0;
                if (chunked_last) {
                        n_chunked++;
                        if (tlen < len)
                                params = true;
                }
                if (!comma)
                        break;
                s = comma + 1;
        }
        if (n_chunked > 1 || (n_chunked == 1 && (!chunked_last || params)))
                return -EBADMSG;
        if (n_items == 1 && n_chunked == 1)
                return 0;
        return -EOPNOTSUPP;
}

/* ---- timers ---- */

static void h1_on_timer(Timer *t);

/* Timers are lazy, as in nginx and h2o: a keep-alive connection moves between the header, idle and
 * handling phases with every request, and moving its timer in the heap each time is work for nothing.
 * So the phase's deadline is only recorded; the timer stays armed at an earlier time when it is, and
 * when it fires early, it re-arms itself for the real deadline. */
static void h1_timer_arm(Http1Session *h, usec_t when) {
        int r;

        r = timer_arm(h->timers, &h->timer, when);
        if (r < 0)
                log_debug_errno(r, "Failed to arm HTTP/1.1 timer, ignoring: %m");
}

static void h1_timer_set(Http1Session *h, H1Timer kind, usec_t usec) {
        usec_t now;

        if (h->closed || !h->timers)
                return;
        h->timer_kind = kind;
        /* 0 means "no limit" in the configuration, except for the immediate abort. */
        if (kind == H1_TIMER_NONE || (usec == 0 && kind != H1_TIMER_ABORT) || usec == USEC_INFINITY) {
                h->timer_kind = H1_TIMER_NONE;
                h->timer_deadline = USEC_INFINITY;
                return;         /* an armed source fires once more and finds nothing to do */
        }
        if (sd_event_now(h->server->event, CLOCK_MONOTONIC, &now) < 0)
                now = now_mono();
        h->timer_deadline = usec > USEC_INFINITY - now ? USEC_INFINITY : now + usec;
        if (!timer_armed(&h->timer) || h->timer.deadline > h->timer_deadline)
                h1_timer_arm(h, h->timer_deadline);
}

static void h1_timer_for_phase(Http1Session *h) {
        const HttpLimits *l = &h->server->limits;

        if (h->timer_kind == H1_TIMER_ABORT)
                return;
        switch (h->phase) {
        case H1_IDLE:
                if (h->timer_kind != H1_TIMER_IDLE)
                        h1_timer_set(h, H1_TIMER_IDLE, l->idle_timeout);
                break;
        case H1_HEAD:
                /* Armed once at the first byte: trickling bytes must not extend it (slowloris). */
                if (h->timer_kind != H1_TIMER_HEADER)
                        h1_timer_set(h, H1_TIMER_HEADER, l->header_timeout);
                break;
        case H1_BODY:
                h1_timer_set(h, H1_TIMER_BODY, l->body_timeout);
                break;
        case H1_HANDLING:
        case H1_BACKLOG:
                if (h->want_writable) {
                        if (h->timer_kind != H1_TIMER_SEND)
                                h1_timer_set(h, H1_TIMER_SEND, l->send_timeout);
                } else
                        h1_timer_set(h, H1_TIMER_NONE, 0);
                break;
        }
}

/* ---- output ---- */

static void h1_schedule_abort(Http1Session *h) {
        if (!h->closed && h->timer_kind != H1_TIMER_ABORT)
                h1_timer_set(h, H1_TIMER_ABORT, 0);
}

static size_t h1_pending(Http1Session *h) {
        return (h->stream ? stream_pending(h->stream) : 0) + buf_len(&h->out);
}

static void h1_check_high_water(Http1Session *h) {
        if (h->want_writable || !h->stream)
                return;
        /* The request may have been told to pause while our own buffer still held its output (inside
         * on_read): then it waits for on_writable even if the stream took most of it at once. */
        if (stream_pending(h->stream) <= h->server->limits.send_high_water &&
            !(h->request && h->request->want_writable && h->phase == H1_HANDLING))
                return;
        h->want_writable = true;
        stream_want_writable(h->stream);
        if (h->phase == H1_HANDLING || h->phase == H1_BACKLOG)
                h1_timer_for_phase(h);
}

static int h1_write(Http1Session *h, const void *p, size_t n) {
        int r;

        if (!h->stream || n == 0)
                return 0;
        r = stream_write(h->stream, p, n);
        if (r < 0) {
                log_debug_errno(r, "HTTP/1.1 write failed: %m");
                h1_schedule_abort(h);
        }
        return r;
}

static void h1_flush_unqueue(Http1Session *h) {
        if (!h->flush_queued)
                return;
        LIST_REMOVE(h->server->h1_flush_list, h, flush_prev, flush_next);
        h->flush_queued = false;
        h1_unref(h);
}

static int h1_flush(Http1Session *h) {
        int r = 0;

        h1_flush_unqueue(h);

        if (!buf_empty(&h->out)) {
                r = h1_write(h, buf_data(&h->out), buf_len(&h->out));
                buf_clear(&h->out);
                buf_shrink(&h->out, 16U << 10);
        }
        h1_check_high_water(h);
        return r;
}

/* Sends every queued session's output. Runs as the defer source's prepare callback, at the start of the
 * loop iteration after the dispatch that queued it (before its epoll_wait()), and as its dispatch callback
 * when queued later than that. */
static int h1_flush_queued(sd_event_source *es, void *userdata) {
        HttpServer *server = userdata;

        (void) sd_event_source_set_enabled(es, SD_EVENT_OFF);
        while (server->h1_flush_list) {
                Http1Session *h = h1_ref(server->h1_flush_list);

                (void) h1_flush(h);     /* unqueues it */
                h1_unref(h);
        }
        return 0;
}

static int h1_on_flush_dispatch(sd_event_source *es, void *userdata) {
        return h1_flush_queued(es, userdata);
}

/* A streamed head written outside on_read (a handler answering later: a relayed upstream stream) goes out
 * when the current dispatch returns, or with the first body bytes if they come first: the head of a stream
 * and its first event, which usually come in one upstream read, leave in one send (one TLS record, one
 * wake-up of the client). The send happens before the loop waits again, so nothing is later than a write of
 * its own would have been. Only small output waits: past the high-water mark it goes out now. Where the
 * queue cannot be armed, the output goes out now. */
static int h1_queue_flush(Http1Session *h) {
        HttpServer *server = h->server;
        int r;

        if (!h->stream || h1_pending(h) > server->limits.send_high_water)
                return h1_flush(h);
        if (h->flush_queued)
                return 0;
        if (!server->h1_flush_source) {
                r = sd_event_add_defer(server->event, &server->h1_flush_source, h1_on_flush_dispatch, server);
                if (r >= 0)
                        r = sd_event_source_set_prepare(server->h1_flush_source, h1_flush_queued);
                if (r < 0) {
                        server->h1_flush_source = sd_event_source_disable_unref(server->h1_flush_source);
                        return h1_flush(h);
                }
                /* The server owns it (http_server_done() frees it), not the loop: its userdata is the
                 * server, which may end before the loop does (fuzz-http1 keeps one loop for all inputs). */
                (void) sd_event_source_set_description(server->h1_flush_source, "http1-flush");
        }
        if (!server->h1_flush_list) {
                r = sd_event_source_set_enabled(server->h1_flush_source, SD_EVENT_ONESHOT);
                if (r < 0)
                        return h1_flush(h);
        }
        LIST_PREPEND(server->h1_flush_list, h1_ref(h), flush_prev, flush_next);
        h->flush_queued = true;
        return 0;
}

static void h1_set_read_paused(Http1Session *h, bool paused) {
        if (!h->stream || h->read_paused == paused)
                return;
        h->read_paused = paused;
        stream_set_read_paused(h->stream, paused);
}

/* ---- errors produced by the session itself ---- */

static int h1_error(Http1Session *h, unsigned status, const char *code, const char *message) {
        /* The first problem found is the one reported. */
        if (h->error.status == 0)
                h->error = (H1Error){ status, code, message };
        return -1;
}

/* Answers with an error and closes: after a framing problem nothing that follows can be trusted. */
static void h1_fail(Http1Session *h, unsigned status, const char *code, const char *message) {
        _cleanup_(buf_done) Buf body = {};
        size_t len = buf_len(&h->out);
        const char *type;
        int r;

        if (h->closed)
                return;
        log_debug("HTTP/1.1 request failed with %u: %s", status, message);
        if (h->resp_head_sent || !h->stream) {
                h1_close(h, H1_CLOSE_ABORT);
                return;
        }
        type = status >= 500 && status != 501 && status != 505 ? "server_error" : "invalid_request_error";
        r = http_error_json(&body, type, code, message);
        if (r >= 0)
                r = buf_printf(&h->out,
                               "HTTP/1.1 %u %s\r\n"
                               "content-type: application/json\r\n"
                               "content-length: %zu\r\n"
                               "date: %s\r\n"
                               "connection: close\r\n"
                               "\r\n",
                               status, http_status_reason(status), buf_len(&body), http_date_now());
        if (r >= 0 && !h->req_head)
                r = buf_append(&h->out, buf_data(&body), buf_len(&body));
        if (r < 0) {
                h->out.tail = h->out.head + len;
                h1_close(h, H1_CLOSE_ABORT);
                return;
        }
        h1_close(h, H1_CLOSE_FLUSH);
}

static void h1_fail_with_error(Http1Session *h) {
        if (h->error.status == 0)
                h->error = (H1Error){ 400, "bad_request", "Malformed request." };
        h1_fail(h, h->error.status, h->error.code, h->error.message);
}

/* ---- session end ---- */

/* The protocol is done with a request: the handler may keep its reference, but must not reach us. */
static void h1_release_request(Http1Session *h) {
        Request *r = TAKE_PTR(h->request);

        if (!r)
                return;
        if (h->dispatched && !r->ended && !r->aborted)
                request_abort(r);
        else {
                r->proto_ops = NULL;
                r->proto = NULL;
                r->info = NULL;
        }
        request_unref(r);
}

static void h1_close(Http1Session *h, H1Close mode) {
        Stream *stream;

        if (h->closed)
                return;
        h->closed = true;
        timer_disarm(h->timers, &h->timer);
        h->timer_kind = H1_TIMER_NONE;

        h1_flush_unqueue(h);            /* what it queued goes out below, or nowhere */
        stream = TAKE_PTR(h->stream);
        if (mode == H1_CLOSE_GONE)
                stream = NULL;
        /* Output first: aborting the request may run handler code that should find the stream closed. */
        if (stream) {
                if (mode == H1_CLOSE_FLUSH && !buf_empty(&h->out))
                        (void) stream_write(stream, buf_data(&h->out), buf_len(&h->out));
                stream_close(stream, mode == H1_CLOSE_FLUSH);
        }
        buf_clear(&h->out);
        h1_release_request(h);
        /* Last: with the server draining, this may run its on_idle callback. */
        http_server_remove_session(h->server, &h->session);
        h1_unref(h);
}

/* ---- per message ---- */

static void h1_reset_message(Http1Session *h) {
        buf_clear(&h->url);
        buf_clear(&h->field);
        buf_clear(&h->value);
        buf_clear(&h->te);
        h->headers_done = h->message_complete = h->dispatched = false;
        h->method_len = h->version_len = 0;
        h->conn_close = h->conn_keep_alive = false;
        h->req_head = h->http10 = h->keep_alive = false;
        h->n_host = h->n_content_length = h->n_transfer_encoding = 0;
        h->expect_continue = h->expect_other = false;
        h->content_length = 0;
        h->error = (H1Error){};
        h->framing = RESP_NONE;
        h->resp_remaining = 0;
        h->resp_head_sent = h->resp_done = h->resp_keep_alive = false;
}

static void h1_begin_message(Http1Session *h) {
        h1_reset_message(h);
        h->scan = SCAN_START;
        h->scan_trailers = false;
        h->scan_prev = 0;
        h->scan_spaces = h->scan_digits = 0;
        h->scan_bytes = h->scan_fields = 0;
        h->scan_size = 0;
        h->phase = H1_HEAD;
        h1_timer_for_phase(h);
}

/* The response has ended (and the parse loop is not on the stack): next request, or close. */
static void h1_request_done(Http1Session *h) {
        bool keep = h->resp_keep_alive && !h->draining && !h->server->draining;

        h1_release_request(h);
        h1_reset_message(h);
        if (!keep) {
                h1_close(h, H1_CLOSE_FLUSH);
                return;
        }
        h->phase = H1_IDLE;
        /* A client that pipelines but does not read would have us queue responses without bound: wait
         * until it took the backlog before reading the next request. */
        if (h1_pending(h) > h->server->limits.send_high_water) {
                (void) h1_flush(h);
                if (h->closed)
                        return;
                if (h->want_writable) {
                        h->phase = H1_BACKLOG;
                        h1_set_read_paused(h, true);
                        h1_timer_for_phase(h);
                        return;
                }
        }
        h1_timer_for_phase(h);
        if (!h->in_read) {
                (void) h1_flush(h);
                h1_set_read_paused(h, false);
        }
}

static void h1_dispatch(Http1Session *h) {
        Request *r = h->request;

        h->message_complete = false;
        h->dispatched = true;
        h->phase = H1_HANDLING;
        h1_timer_for_phase(h);

        h->dispatching = true;
        request_dispatch(r);
        /* Answering later takes a reference: with ours the only one left, nobody ever will. */
        if (!h->closed && !h->resp_done && r->n_ref == 1) {
                log_debug("Handler for %s %s neither answered nor kept the request.", r->method, r->path);
                if (r->head_sent) {
                        h->dispatching = false;
                        h1_close(h, H1_CLOSE_ABORT);
                        return;
                }
                (void) request_reply_error(r, 500, "server_error", "internal_error",
                                           "Request was not answered.");
        }
        h->dispatching = false;

        if (!h->closed && h->resp_done)
                h1_request_done(h);
}

/* ---- the parser ---- */

static int h1_scan_error(Http1Session *h, unsigned status, const char *code, const char *message) {
        (void) h1_error(h, status, code, message);
        return -EBADMSG;
}

static int h1_scan_bad(Http1Session *h, const char *message) {
        return h1_scan_error(h, 400, "bad_request", message);
}

static int h1_oom(Http1Session *h) {
        return h1_scan_error(h, 500, "internal_error", "Out of memory.");
}

/* The methods we know (RFC 9110 9.3 and PATCH): the strings handlers see are these constants. */
static const char *h1_method(const char *m, size_t n) {
        static const char *const known[] = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS",
                                             "TRACE", "PATCH" };

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (strlen(known[i]) == n && memcmp(known[i], m, n) == 0)
                        return known[i];
        return NULL;
}

/* A run of request-line bytes belongs to the method, the target or the version: which one, the number
 * of spaces seen so far tells. Overlong methods and versions are marked, and refused at the line end. */
static int h1_line_append(Http1Session *h, const uint8_t *p, size_t n) {
        switch (h->scan_spaces) {
        case 0:
                if (h->method_len + n >= sizeof h->method) {
                        h->method_len = sizeof h->method;
                        return 0;
                }
                memcpy(h->method + h->method_len, p, n);
                h->method_len += (uint8_t) n;
                return 0;
        case 1:
                return buf_append(&h->url, p, n);
        default:
                if (h->version_len + n >= sizeof h->version) {
                        h->version_len = sizeof h->version;
                        return 0;
                }
                memcpy(h->version + h->version_len, p, n);
                h->version_len += (uint8_t) n;
                return 0;
        }
}

static int h1_message_begin(Http1Session *h) {
        if (h->request)
                return h1_scan_bad(h, "Malformed request.");
        if (request_new(h->server, &h1_request_ops, h, &h->request) < 0)
                return h1_oom(h);
        return 0;
}

/* method SP request-target SP HTTP-version, all seen: judge them (RFC 9112 3). */
static int h1_request_line(Http1Session *h) {
        const char *target = buf_chars(&h->url);
        size_t tn = buf_len(&h->url);
        const char *method;

        method = h->method_len < sizeof h->method ? h1_method(h->method, h->method_len) : NULL;
        if (!method)
                return h1_scan_error(h, 501, "not_implemented", "Unsupported request method.");
        if (h->version_len != 8 || memcmp(h->version, "HTTP/", 5) != 0 || h->version[5] < '0' ||
            h->version[5] > '9' || h->version[6] != '.' || h->version[7] < '0' || h->version[7] > '9')
                return h1_scan_bad(h, "Malformed request line.");
        if (h->version[5] != '1')
                return h1_scan_error(h, 505, "http_version_not_supported", "HTTP version not supported.");
        /* A higher minor version is served as the highest we know (RFC 9110 2.5). */
        h->http10 = h->version[7] == '0';

        /* origin-form, absolute-form, asterisk-form (OPTIONS), authority-form (CONNECT). */
        if (!(target[0] == '/' ||
              (tn > 7 && strncasecmp(target, "http://", 7) == 0) ||
              (tn > 8 && strncasecmp(target, "https://", 8) == 0) ||
              (tn == 1 && target[0] == '*' && streq(method, "OPTIONS")) ||
              (streq(method, "CONNECT") && !memchr(target, '/', tn))))
                return h1_scan_bad(h, "Malformed request target.");
        h->request->method = method;
        h->req_head = streq(method, "HEAD");
        return 0;
}

/* Ends a field line of the head (trailers are checked, not kept). */
static int h1_commit_header(Http1Session *h) {
        Request *r = h->request;
        const char *name, *value = buf_chars(&h->value);
        size_t vlen = buf_len(&h->value);
        int k;

        trim_ows(&value, &vlen);
        k = request_add_header(r, buf_chars(&h->field), buf_len(&h->field), value, vlen);
        if (k < 0)
                return h1_oom(h);

        name = r->headers[r->n_headers - 1].name;
        value = r->headers[r->n_headers - 1].value;
        switch (name[0]) {
        case 'c':
                if (streq(name, "content-length")) {
                        uint64_t v = 0;

                        if (++h->n_content_length > 1)
                                return h1_scan_bad(h, "Duplicate Content-Length.");
                        if (isempty(value))
                                return h1_scan_bad(h, "Invalid Content-Length.");
                        for (const char *c = value; *c; c++) {
                                if (*c < '0' || *c > '9' || v > (UINT64_MAX - 9) / 10)
                                        return h1_scan_bad(h, "Invalid Content-Length.");
                                v = v * 10 + (uint64_t) (*c - '0');
                        }
                        h->content_length = v;
                } else if (streq(name, "connection")) {
                        size_t n = strlen(value);
                        if (http_list_has_token(value, n, "close"))
                                h->conn_close = true;
                        if (http_list_has_token(value, n, "keep-alive"))
                                h->conn_keep_alive = true;
                }
                break;
        case 't':
                if (streq(name, "transfer-encoding")) {
                        h->n_transfer_encoding++;
                        if ((!buf_empty(&h->te) && buf_append_str(&h->te, ",") < 0) ||
                            buf_append_str(&h->te, value) < 0)
                                return h1_oom(h);
                }
                break;
        case 'h':
                if (streq(name, "host"))
                        h->n_host++;
                break;
        case 'e':
                if (streq(name, "expect")) {
                        if (strcasecmp(value, "100-continue") == 0)
                                h->expect_continue = true;
                        else
                                h->expect_other = true;
                }
                break;
        }
        return 0;
}

/* The head is complete: check it as a whole, hand the request its fields, and say what follows. */
static int h1_head_complete(Http1Session *h) {
        const HttpLimits *l = &h->server->limits;
        Request *r = h->request;
        const char *host;
        bool chunked = false;
        int k;

        h->headers_done = true;
        if (h->n_host > 1)
                return h1_scan_bad(h, "Duplicate Host header.");
        if (h->n_host == 0 && !h->http10)
                return h1_scan_bad(h, "Missing Host header.");
        host = request_header(r, "host");
        if (host && !host_valid(host))
                return h1_scan_bad(h, "Invalid Host header.");

        if (h->n_transfer_encoding > 0) {
                if (h->n_content_length > 0)
                        return h1_scan_bad(h, "Both Content-Length and Transfer-Encoding.");
                /* HTTP/1.0 has no chunked coding: such framing is faulty by definition. */
                if (h->http10)
                        return h1_scan_bad(h, "Transfer-Encoding in an HTTP/1.0 request.");
                k = transfer_encoding_check(buf_chars(&h->te), buf_len(&h->te));
                if (k == -EOPNOTSUPP)
                        return h1_scan_error(h, 501, "not_implemented", "Unsupported transfer coding.");
                if (k < 0)
                        return h1_scan_bad(h, "Invalid Transfer-Encoding.");
                chunked = true;
        }
        if (h->n_content_length > 0 && h->content_length > l->max_body_bytes)
                return h1_scan_error(h, 413, "request_too_large", "Request body too large.");
        if (h->expect_other)
                return h1_scan_error(h, 417, "expectation_failed", "Unsupported expectation.");

        if (request_set_target(r, buf_chars(&h->url), buf_len(&h->url)) < 0)
                return h1_oom(h);
        if (!isempty(host))
                r->authority = host;    /* the header's value lives as long as the request */
        r->protocol = h->http10 ? "HTTP/1.0" : "HTTP/1.1";
        r->info = &h->stream->info;
        r->peer = h->stream->info.peer;
        r->secure = h->stream->info.secure;
        r->start_usec = now_mono();
        /* RFC 9112 9.3: HTTP/1.1 persists unless told otherwise; HTTP/1.0 only when asked to. */
        h->keep_alive = !h->conn_close && (!h->http10 || h->conn_keep_alive);

        if (chunked)
                h->scan = SCAN_CHUNK_SIZE_START;
        else if (h->content_length > 0) {
                h->scan = SCAN_BODY;
                h->scan_size = h->content_length;
        } else
                h->scan = SCAN_DONE;

        if (chunked || h->content_length > 0) {
                /* RFC 9110 10.1.1: 100-continue from an HTTP/1.0 client is to be ignored. */
                if (h->expect_continue && !h->http10 &&
                    buf_append_str(&h->out, "HTTP/1.1 100 Continue\r\n\r\n") < 0)
                        return h1_oom(h);
                h->phase = H1_BODY;
                h1_timer_for_phase(h);
        }
        return 0;
}

static int h1_body(Http1Session *h, const uint8_t *p, size_t n) {
        int k = request_body_append(h->request, p, n);

        if (k == -EFBIG)
                return h1_scan_error(h, 413, "request_too_large", "Request body too large.");
        if (k == -ENOBUFS)
                return h1_scan_error(h, 503, "overloaded", "Too many request bodies in flight; try again shortly.");
        if (k < 0)
                return h1_oom(h);
        return 0;
}

/*
 * Parses one request from the bytes it is given, strictly (RFC 9112): CRLF line ends, token methods and
 * field names directly followed by ':', field values without CTLs, no obsolete folding, strict chunk
 * framing, one framing per message (request smuggling). Stops at the end of the message (h->scan ==
 * SCAN_DONE): what follows is the next request, parsed once this one is answered. *ret is how many
 * bytes were used; with an error returned (h->error says which), those before the bad byte.
 */
static int h1_scan(Http1Session *h, const uint8_t *p, size_t n, size_t *ret) {
        const HttpLimits *l = &h->server->limits;
        size_t i = 0;
        int r = 0, digit;

        while (i < n && h->scan != SCAN_DONE) {
                uint8_t c = p[i];
                bool in_head = h->scan <= SCAN_END_LF;

                if (h->scan == SCAN_BODY || h->scan == SCAN_CHUNK_DATA) {
                        size_t k = (size_t) MIN(h->scan_size, (uint64_t) (n - i));

                        r = h1_body(h, p + i, k);
                        if (r < 0)
                                break;
                        i += k;
                        h->scan_size -= k;
                        if (h->scan_size == 0)
                                h->scan = h->scan == SCAN_BODY ? SCAN_DONE : SCAN_CHUNK_DATA_CR;
                        continue;
                }
                /* The bulk of a head is field names, values and the request target: take runs of
                 * ordinary bytes at once, within the header size limit, and leave the bytes that
                 * change state to the switch below. */
                if (in_head && h->scan_bytes < l->max_header_bytes) {
                        uint8_t cls = h->scan == SCAN_VALUE ? CLASS_FIELD :
                                      h->scan == SCAN_NAME ? CLASS_TCHAR :
                                      h->scan == SCAN_LINE ? CLASS_LINE : 0;

                        if (cls) {
                                size_t k = span_class(p + i, MIN(n - i, (size_t) (l->max_header_bytes -
                                                                                   h->scan_bytes)), cls);

                                if (k > 0) {
                                        if (h->scan == SCAN_LINE)
                                                r = h1_line_append(h, p + i, k);
                                        else if (!h->scan_trailers)
                                                r = buf_append(h->scan == SCAN_NAME ? &h->field : &h->value,
                                                               p + i, k);
                                        if (r < 0) {
                                                r = h1_oom(h);
                                                break;
                                        }
                                        h->scan_bytes += k;
                                        h->scan_prev = p[i + k - 1];
                                        i += k;
                                        continue;
                                }
                        }
                }
                if (in_head && ++h->scan_bytes > l->max_header_bytes) {
                        r = h1_scan_error(h, 431, "header_too_large",
                                          h->scan_trailers ? "Request trailers too large." :
                                                             "Request header too large.");
                        break;
                }

                switch (h->scan) {
                case SCAN_START:
                        if (c == '\r')
                                h->scan = SCAN_START_LF;
                        else if (is_tchar(c)) {
                                r = h1_message_begin(h);
                                if (r >= 0)
                                        r = h1_line_append(h, &c, 1);
                                h->scan = SCAN_LINE;
                                h->scan_spaces = 0;
                        } else
                                r = h1_scan_bad(h, "Malformed request line.");
                        break;
                case SCAN_START_LF:
                        if (c == '\n')
                                h->scan = SCAN_START;
                        else
                                r = h1_scan_bad(h, "Bare CR in request.");
                        break;
                case SCAN_LINE:
                        /* method SP request-target SP HTTP-version: exactly two single spaces. */
                        if (c == ' ') {
                                if (h->scan_prev == ' ' || ++h->scan_spaces > 2)
                                        r = h1_scan_bad(h, "Malformed request line.");
                        } else if (c == '\r') {
                                if (h->scan_spaces != 2 || h->scan_prev == ' ')
                                        r = h1_scan_bad(h, "Malformed request line.");
                                else
                                        h->scan = SCAN_LINE_LF;
                        } else if (c < 0x21 || c > 0x7e)
                                r = h1_scan_bad(h, "Invalid character in request line.");
                        else
                                r = h1_line_append(h, &c, 1);
                        break;
                case SCAN_LINE_LF:
                        if (c != '\n')
                                r = h1_scan_bad(h, "Bare CR in request header.");
                        else {
                                r = h1_request_line(h);
                                h->scan = SCAN_FIELD_START;
                        }
                        break;
                case SCAN_VALUE_LF:
                        if (c != '\n')
                                r = h1_scan_bad(h, "Bare CR in request header.");
                        else {
                                if (!h->scan_trailers)
                                        r = h1_commit_header(h);
                                h->scan = SCAN_FIELD_START;
                        }
                        break;
                case SCAN_FIELD_START:
                        if (c == '\r')
                                h->scan = SCAN_END_LF;
                        else if (is_tchar(c)) {
                                if (++h->scan_fields > l->max_headers)
                                        r = h1_scan_error(h, 431, "header_too_large",
                                                          "Too many header fields.");
                                else {
                                        h->scan = SCAN_NAME;
                                        if (!h->scan_trailers) {
                                                buf_clear(&h->field);
                                                buf_clear(&h->value);
                                                r = buf_append(&h->field, &c, 1) < 0 ? h1_oom(h) : 0;
                                        }
                                }
                        } else if (c == ' ' || c == '\t')
                                r = h1_scan_bad(h, "Obsolete line folding is not allowed.");
                        else
                                r = h1_scan_bad(h, "Invalid header field name.");
                        break;
                case SCAN_NAME:
                        if (c == ':')
                                h->scan = SCAN_VALUE;
                        else if (!is_tchar(c))
                                r = h1_scan_bad(h, "Invalid header field name.");
                        else if (!h->scan_trailers && buf_append(&h->field, &c, 1) < 0)
                                r = h1_oom(h);
                        break;
                case SCAN_VALUE:
                        if (c == '\r')
                                h->scan = SCAN_VALUE_LF;
                        else if (!is_field_char(c))
                                r = h1_scan_bad(h, "Invalid character in header field value.");
                        else if (!h->scan_trailers && buf_append(&h->value, &c, 1) < 0)
                                r = h1_oom(h);
                        break;
                case SCAN_END_LF:
                        if (c != '\n')
                                r = h1_scan_bad(h, "Bare CR in request header.");
                        else if (h->scan_trailers)
                                h->scan = SCAN_DONE;
                        else
                                r = h1_head_complete(h);        /* sets what follows */
                        break;
                case SCAN_CHUNK_SIZE_START:
                        h->scan_bytes = 1;
                        h->scan_digits = 1;
                        digit = unhexchar((char) c);
                        if (digit < 0)
                                r = h1_scan_bad(h, "Invalid chunk size.");
                        else {
                                h->scan_size = (uint64_t) digit;
                                h->scan = SCAN_CHUNK_SIZE;
                        }
                        break;
                case SCAN_CHUNK_SIZE:
                        h->scan_bytes++;
                        digit = unhexchar((char) c);
                        if (digit >= 0) {
                                /* 15 hex digits are far beyond any body limit; more would overflow. */
                                if (++h->scan_digits > 15)
                                        r = h1_scan_bad(h, "Invalid chunk size.");
                                else
                                        h->scan_size = h->scan_size * 16 + (uint64_t) digit;
                        } else if (c == ';' || c == ' ' || c == '\t')
                                h->scan = SCAN_CHUNK_EXT;
                        else if (c == '\r')
                                h->scan = SCAN_CHUNK_SIZE_LF;
                        else
                                r = h1_scan_bad(h, "Invalid chunk size.");
                        break;
                case SCAN_CHUNK_EXT:
                        if (++h->scan_bytes > CHUNK_LINE_MAX)
                                r = h1_scan_bad(h, "Chunk extension too long.");
                        else if (c == '\r')
                                h->scan = SCAN_CHUNK_SIZE_LF;
                        else if (!is_field_char(c))
                                r = h1_scan_bad(h, "Invalid chunk extension.");
                        break;
                case SCAN_CHUNK_SIZE_LF:
                        if (c != '\n')
                                r = h1_scan_bad(h, "Bare CR in chunk size.");
                        else if (h->scan_size == 0) {
                                h->scan_trailers = true;
                                h->scan_bytes = h->scan_fields = 0;
                                h->scan = SCAN_FIELD_START;
                        } else if (h->scan_size > l->max_body_bytes - MIN(l->max_body_bytes,
                                                                          (uint64_t) buf_len(&h->request->body)))
                                /* Refuse a chunk that cannot fit before reading any of it. */
                                r = h1_scan_error(h, 413, "request_too_large", "Request body too large.");
                        else
                                h->scan = SCAN_CHUNK_DATA;
                        break;
                case SCAN_CHUNK_DATA_CR:
                        if (c == '\r')
                                h->scan = SCAN_CHUNK_DATA_LF;
                        else
                                r = h1_scan_bad(h, "Chunk data longer than its size.");
                        break;
                case SCAN_CHUNK_DATA_LF:
                        if (c == '\n')
                                h->scan = SCAN_CHUNK_SIZE_START;
                        else
                                r = h1_scan_bad(h, "Bare CR after chunk data.");
                        break;
                default:
                        r = h1_scan_bad(h, "Malformed request.");
                }
                if (r < 0)
                        break;
                h->scan_prev = c;
                i++;
        }
        *ret = i;
        return r;
}

/* ---- input ---- */

/* Parses as far as we may; returns how many bytes were used. */
static size_t h1_process(Http1Session *h, const uint8_t *p, size_t n) {
        size_t done = 0;

        while (!h->closed && done < n) {
                size_t ok = 0;
                int k;

                if (h->phase == H1_HANDLING || h->phase == H1_BACKLOG)
                        break;
                if (h->phase == H1_IDLE)
                        h1_begin_message(h);

                k = h1_scan(h, p + done, n - done, &ok);
                done += ok;
                if (h->closed)
                        break;
                if (k < 0) {
                        h1_fail_with_error(h);
                        break;
                }
                if (h->scan == SCAN_DONE) {
                        h1_dispatch(h);
                        continue;
                }
                if (h->phase == H1_BODY)
                        h1_timer_for_phase(h);
        }
        return done;
}

static ssize_t h1_on_read(void *userdata, const uint8_t *p, size_t n) {
        Http1Session *h = userdata;
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);
        size_t done;

        if (h->closed)
                return 0;
        h->in_read = true;
        done = h1_process(h, p, n);
        h->in_read = false;
        if (h->closed)
                return (ssize_t) n;

        (void) h1_flush(h);
        if (h->closed)
                return (ssize_t) n;
        /* While a request is handled the rest stays with the stream: it is the next request. */
        h1_set_read_paused(h, h->phase == H1_HANDLING || h->phase == H1_BACKLOG);
        return (ssize_t) done;
}

static void h1_on_writable(void *userdata) {
        Http1Session *h = userdata;
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);

        h->want_writable = false;
        if (h->closed)
                return;
        if (h->timer_kind == H1_TIMER_SEND)
                h1_timer_set(h, H1_TIMER_NONE, 0);
        if (h->phase == H1_BACKLOG) {
                h->phase = H1_IDLE;
                h1_timer_for_phase(h);
                h1_set_read_paused(h, false);
                return;
        }
        if (h->phase == H1_HANDLING && h->request) {
                _cleanup_(request_unrefp) Request *r = request_ref(h->request);
                request_notify_writable(r);
        }
}

static void h1_on_close(void *userdata, int error) {
        Http1Session *h = userdata;
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);

        if (error < 0)
                log_debug_errno(error, "HTTP/1.1 connection failed: %m");
        h->stream = NULL;
        h1_close(h, H1_CLOSE_GONE);
}

static const StreamUpper h1_upper = {
        .on_read = h1_on_read,
        .on_writable = h1_on_writable,
        .on_close = h1_on_close,
};

static void h1_on_timer(Timer *t) {
        Http1Session *h = container_of(t, Http1Session, timer);
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);
        H1Timer kind = h->timer_kind;
        usec_t usec = t->deadline;

        if (kind == H1_TIMER_NONE)
                return;
        if (usec < h->timer_deadline) {
                /* Armed for an earlier phase's deadline: the current one is later. */
                h1_timer_arm(h, h->timer_deadline);
                return;
        }
        h->timer_kind = H1_TIMER_NONE;
        h->timer_deadline = USEC_INFINITY;
        switch (kind) {
        case H1_TIMER_HEADER:
        case H1_TIMER_BODY:
                log_debug("HTTP/1.1 client too slow sending its request, closing.");
                h1_fail(h, 408, "timeout", "Timed out waiting for the request.");
                break;
        case H1_TIMER_IDLE:
                h1_close(h, H1_CLOSE_FLUSH);
                break;
        case H1_TIMER_SEND:
                log_debug("HTTP/1.1 client stopped reading, closing.");
                h1_close(h, H1_CLOSE_ABORT);
                break;
        case H1_TIMER_ABORT:
                h1_close(h, H1_CLOSE_ABORT);
                break;
        case H1_TIMER_NONE:
                break;
        }
}

/* ---- HttpSession ---- */

static void h1_drain(HttpSession *session) {
        Http1Session *h = (Http1Session *) session;
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);

        h->draining = true;
        /* A request being read or handled is answered (with "connection: close"); otherwise go now. */
        if (h->phase == H1_IDLE || h->phase == H1_BACKLOG)
                h1_close(h, H1_CLOSE_FLUSH);
}

static void h1_abort(HttpSession *session) {
        Http1Session *h = (Http1Session *) session;
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = h1_ref(h);

        h1_close(h, H1_CLOSE_ABORT);
}

static const HttpSessionOps h1_session_ops = {
        .drain = h1_drain,
        .abort = h1_abort,
};

/* ---- RequestProtoOps ---- */

static Http1Session *h1_from_request(Request *r) {
        Http1Session *h = r->proto;

        if (!h || h->closed || h->request != r || h->phase != H1_HANDLING || h->resp_done)
                return NULL;
        return h;
}

/* Framing and connection management belong to this layer: handlers' values for these are dropped.
 * Every response header passes here, so the length picks the one or two names worth comparing. */
static bool header_is_ours(const char *name, size_t n) {
        switch (n) {
        case 2:
                return strcaseeq(name, "te");
        case 4:
                return strcaseeq(name, "date");
        case 7:
                return strcaseeq(name, "upgrade") || strcaseeq(name, "trailer");
        case 10:
                return strcaseeq(name, "connection") || strcaseeq(name, "keep-alive");
        case 14:
                return strcaseeq(name, "content-length");
        case 16:
                return strcaseeq(name, "proxy-connection");
        case 17:
                return strcaseeq(name, "transfer-encoding");
        default:
                return false;
        }
}

static int h1_send_head(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                        int64_t content_length) {
        Http1Session *h = h1_from_request(r);
        size_t len;
        int k;

        if (!h)
                return -ESTALE;
        if (h->resp_head_sent)
                return -EBUSY;
        /* Interim responses are ours to send (100 Continue); switching protocols is not supported. */
        if (status < 200 || status > 999)
                return -EINVAL;

        if (h->req_head || status == 204 || status == 304)
                h->framing = RESP_NONE;
        else if (content_length >= 0) {
                h->framing = RESP_LENGTH;
                h->resp_remaining = (uint64_t) content_length;
        } else
                h->framing = h->http10 ? RESP_CLOSE : RESP_CHUNKED;
        h->resp_keep_alive = h->keep_alive && !h->draining && !h->server->draining &&
                             h->framing != RESP_CLOSE;

        len = buf_len(&h->out);
        k = buf_append_str(&h->out, "HTTP/1.1 ");
        if (k >= 0)
                k = buf_append_uint(&h->out, status, 10);
        if (k >= 0)
                k = buf_append_line(&h->out, " ", http_status_reason(status), "", "\r\n");
        for (size_t i = 0; k >= 0 && i < n_headers; i++) {
                const HttpHeader *x = headers + i;
                size_t nlen, vlen;
                uint8_t *o;

                if (!x->name || !x->value) {
                        log_debug("Dropping invalid response header \"%s\".", x->name ?: "(null)");
                        continue;
                }
                nlen = strlen(x->name);
                vlen = strlen(x->value);
                if (nlen == 0 || span_class((const uint8_t *) x->name, nlen, CLASS_TCHAR) != nlen ||
                    memchr(x->value, '\r', vlen) || memchr(x->value, '\n', vlen)) {
                        log_debug("Dropping invalid response header \"%s\".", x->name);
                        continue;
                }
                if (header_is_ours(x->name, nlen))
                        continue;
                o = buf_reserve(&h->out, nlen + vlen + 4);
                if (!o) {
                        k = -ENOMEM;
                        break;
                }
                memcpy(o, x->name, nlen);
                o[nlen] = ':';
                o[nlen + 1] = ' ';
                memcpy(o + nlen + 2, x->value, vlen);
                o[nlen + 2 + vlen] = '\r';
                o[nlen + 3 + vlen] = '\n';
                buf_commit(&h->out, nlen + vlen + 4);
        }
        if (k >= 0)
                k = buf_append_line(&h->out, "date", ": ", http_date_now(), "\r\n");
        if (k >= 0) {
                /* HEAD answers with the framing a GET would have had. */
                if (content_length >= 0 && status != 204 && status != 304) {
                        k = buf_append_str(&h->out, "content-length: ");
                        if (k >= 0)
                                k = buf_append_uint(&h->out, (uint64_t) content_length, 10);
                        if (k >= 0)
                                k = buf_append_str(&h->out, "\r\n");
                } else if (content_length < 0 && !h->http10 && status != 204 && status != 304)
                        k = buf_append_str(&h->out, "transfer-encoding: chunked\r\n");
        }
        if (k >= 0) {
                if (!h->resp_keep_alive)
                        k = buf_append_str(&h->out, "connection: close\r\n");
                else if (h->http10)
                        k = buf_append_str(&h->out, "connection: keep-alive\r\n");
        }
        if (k >= 0)
                k = buf_append_str(&h->out, "\r\n");
        if (k < 0) {
                h->out.tail = h->out.head + len;
                return k;
        }
        h->resp_head_sent = true;
        /* A streamed head goes out with this dispatch, so the client sees it before the first (maybe
         * late) data, and with that data when it came in the same read; a head with a known length
         * waits for its body, for one write. */
        if (!h->in_read && content_length < 0)
                (void) h1_queue_flush(h);
        return 0;
}

static int h1_send_body(Request *r, const void *p, size_t n) {
        Http1Session *h = h1_from_request(r);
        int k = 0;

        if (!h)
                return -ESTALE;
        if (!h->resp_head_sent)
                return -EBUSY;
        if (n == 0 || h->framing == RESP_NONE)
                return 0;

        switch (h->framing) {
        case RESP_LENGTH:
                if (n > h->resp_remaining)
                        return -EINVAL;
                h->resp_remaining -= n;
                break;
        case RESP_CHUNKED:
                k = buf_append_uint(&h->out, n, 16);
                if (k >= 0)
                        k = buf_append_str(&h->out, "\r\n");
                break;
        default:
                break;
        }
        if (k < 0)
                return k;
        if (n > COPY_MAX && !h->in_read) {
                k = h1_flush(h);
                if (k >= 0)
                        k = h1_write(h, p, n);
        } else
                k = buf_append(&h->out, p, n);
        if (k >= 0 && h->framing == RESP_CHUNKED)
                k = buf_append_str(&h->out, "\r\n");
        if (k < 0)
                return k;
        /* At once, with a streamed head still waiting (h1_queue_flush()): one write for both; or, while
         * the handler corked the request (request_cork()), at its uncork, unless past the high-water mark.
         * Deferring every write to the loop would cost an sd-event enable and a prepare callback per
         * relayed event, a quarter of a passthrough delta's instructions; the cork costs nothing. */
        if (!h->in_read && (!r->corked || h1_pending(h) > h->server->limits.send_high_water))
                (void) h1_flush(h);
        return 0;
}

static void h1_request_flush(Request *r) {
        Http1Session *h = h1_from_request(r);

        if (h && !h->in_read)
                (void) h1_flush(h);
}

static int h1_send_end(Request *r) {
        Http1Session *h = h1_from_request(r);
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = NULL;
        int k = 0;

        if (!h)
                return -ESTALE;
        ref = h1_ref(h);
        if (!h->resp_head_sent)
                return -EBUSY;
        if (h->framing == RESP_CHUNKED)
                k = buf_append_str(&h->out, "0\r\n\r\n");
        /* A body shorter than announced leaves the client waiting for the rest: only closing ends it. */
        if (k < 0 || (h->framing == RESP_LENGTH && h->resp_remaining > 0))
                h->resp_keep_alive = false;
        h->resp_done = true;
        if (!h->dispatching && !h->in_read)
                h1_request_done(h);
        return k;
}

static size_t h1_request_pending(Request *r) {
        Http1Session *h = r->proto;

        if (!h || h->closed)
                return 0;
        return h1_pending(h);
}

/* The response cannot complete: what was sent so far goes out, then the connection closes without the
 * final chunk (or short of the announced length), which every client reports as a broken transfer. */
static void h1_reset(Request *r) {
        Http1Session *h = h1_from_request(r);
        _unused_ _cleanup_(h1_unrefp) Http1Session *ref = NULL;

        if (!h)
                return;
        ref = h1_ref(h);
        h->resp_keep_alive = false;
        h1_close(h, h->resp_head_sent ? H1_CLOSE_FLUSH : H1_CLOSE_ABORT);
}

static const RequestProtoOps h1_request_ops = {
        .send_head = h1_send_head,
        .send_body = h1_send_body,
        .send_end = h1_send_end,
        .pending = h1_request_pending,
        .reset = h1_reset,
        .flush = h1_request_flush,
};

int http1_session_new(HttpServer *s, Stream *stream) {
        Http1Session *h;
        int r;

        h = new0(Http1Session, 1);
        if (!h)
                return -ENOMEM;
        h->n_ref = 1;
        h->server = s;
        h->stream = stream;
        h->session.ops = &h1_session_ops;
        h->phase = H1_IDLE;

        r = timer_queue_get_shared(s->event, &h->timers);
        if (r < 0) {
                free(h);
                return r;
        }
        h->timer.on_expire = h1_on_timer;
        h->timer_deadline = USEC_INFINITY;
        /* Until the first request's head is complete, the header timeout counts from now. */
        h1_timer_set(h, H1_TIMER_HEADER, s->limits.header_timeout);

        http_server_add_session(s, &h->session);
        stream_attach(stream, &h1_upper, h);
        return 0;
}
