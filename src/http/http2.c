/* HTTP/2 server sessions: nghttp2 over a Stream, each HTTP/2 stream carried as a neutral Request. */
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>

#include "http/request.h"
#include "shared/errors.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/util.h"

/* Receive window per stream. Bodies are bounded by max_body_bytes anyway; a larger window only saves
 * round trips on uploads. The connection window is a few streams' worth. */
#define H2_STREAM_WINDOW (256U << 10)
#define H2_CONNECTION_WINDOW (1U << 20)
/* Output taken from nghttp2 is collected up to this much before one stream_write(): small frames
 * (HEADERS, WINDOW_UPDATE, acks) then cost one write instead of one each. */
#define H2_WRITE_CHUNK (64U << 10)
/* A draining session waits this long for the PING ack (one round trip) before the final GOAWAY. */
#define H2_DRAIN_GRACE (1 * USEC_PER_SEC)
/* Handlers woken by on_writable may queue more: bound how often one pass loops before yielding. */
#define H2_MAX_PASSES 16
/* Per-frame flood defences: the library defaults, stated here so they are visible and reviewed. */
#define H2_MAX_SETTINGS_ENTRIES 32
#define H2_MAX_OUTBOUND_ACK 1000
#define H2_RESET_BURST 1000
#define H2_RESET_RATE 33
#define H2_MAX_SEND_HEADER_BLOCK (64U << 10)
#define H2_DEFLATE_TABLE_SIZE 4096

static const uint8_t drain_ping[8] = { 'g', 'a', 't', 'e', 'd', 'r', 'n', '1' };

typedef struct H2Session H2Session;
typedef struct H2Stream H2Stream;

struct H2Stream {
        H2Session *session;
        H2Stream *prev, *next;
        int32_t id;
        Request *request;       /* our reference; NULL once detached */
        Buf out;                /* response body not yet taken by nghttp2 */

        uint64_t header_bytes;  /* counted like SETTINGS_MAX_HEADER_LIST_SIZE: name + value + 32 */
        unsigned n_headers;
        uint64_t declared_length;
        usec_t deadline;        /* header or body timeout while the request arrives */

        bool headers_done;
        bool remote_closed;     /* END_STREAM received: the request is complete */
        bool headers_too_large;
        bool rejected;          /* answered by us (4xx), the handler never sees it */
        bool dispatched;
        bool is_head;
        bool has_provider;      /* the response body flows through h2_data_read() */
        bool no_body;           /* HEAD, 204, 304: body writes are dropped */
        bool eof;               /* send_end() seen */
        bool reset_after_flush; /* reset() seen: send what is queued, then RST_STREAM, never END_STREAM */
        bool deferred;          /* h2_data_read() returned NGHTTP2_ERR_DEFERRED */
        bool detached;          /* h2_data_read() ended its provider without END_STREAM */
        bool response_sent;     /* END_STREAM went out */
        bool notify;            /* fell below low water: wake the handler after this pass */
        bool queued;            /* output nghttp2 has not taken yet: counted in n_queued */
};

struct H2Session {
        HttpSession session;    /* first: the server hands us this pointer back */
        unsigned n_ref;
        HttpServer *server;
        Stream *stream;         /* NULL once closed, or once the transport ended */
        nghttp2_session *h2;
        H2Stream *streams;
        unsigned n_streams;
        /* Each pass would otherwise walk every stream (three times) for what is nearly always none of
         * them: with a hundred streams on a connection those walks cost more than the DATA frame the
         * pass sends. These let a pass skip a walk that would find nothing. */
        unsigned n_queued;      /* streams with queued output (h2_stream_update_queued()) */
        unsigned n_deadlines;   /* streams whose deadline is not USEC_INFINITY */
        bool notify_pending;    /* some stream has notify set */
        Buf wbuf;

        sd_event_source *timer;
        sd_event_source *defer;

        usec_t preface_deadline;
        usec_t idle_since;
        usec_t stall_since;
        usec_t drain_deadline;

        bool busy;              /* inside mem_recv or a send pass: no nested mem_send */
        bool kicked;            /* the defer source is armed: another kick needs no sd-event call */
        bool yielded;           /* armed by a pass that hit H2_MAX_PASSES: send from the dispatch */
        bool need_pass;         /* output was queued while busy */
        bool closed;
        bool got_settings;
        bool write_blocked;     /* waiting for on_writable */
        bool draining;
        bool goaway_final;
};

static void session_process(H2Session *s);
static void session_close(H2Session *s, bool flush);

static usec_t usec_add(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

static bool timeout_enabled(usec_t t) {
        return t > 0 && t != USEC_INFINITY;
}

static usec_t session_now(H2Session *s) {
        uint64_t t;

        if (s->server->event && sd_event_now(s->server->event, CLOCK_MONOTONIC, &t) >= 0)
                return t;
        return now_mono();
}

static void h2_stream_set_deadline(H2Stream *st, usec_t deadline) {
        bool had = st->deadline != USEC_INFINITY, has = deadline != USEC_INFINITY;

        st->deadline = deadline;
        if (had != has) {
                if (has)
                        st->session->n_deadlines++;
                else
                        st->session->n_deadlines--;
        }
}

/* Keeps st->queued (and the session's count) equal to what session_stalled() asks of a stream; called
 * wherever one of its inputs changes. */
static void h2_stream_update_queued(H2Stream *st) {
        bool q = st->has_provider && !st->response_sent && (!buf_empty(&st->out) || st->eof);

        if (q == st->queued)
                return;
        st->queued = q;
        if (q)
                st->session->n_queued++;
        else
                st->session->n_queued--;
}

static bool h2_name_eq(const uint8_t *name, size_t len, const char *s) {
        return len == strlen(s) && memcmp(name, s, len) == 0;
}

/* Stream bookkeeping. */

static void h2_stream_detach(H2Stream *st) {
        Request *r = TAKE_PTR(st->request);

        if (!r)
                return;
        /* A handler that finished may have freed what its hooks point to: only an unfinished
         * response is reported as aborted. */
        if (!r->ended)
                request_abort(r);
        else {
                r->proto_ops = NULL;
                r->proto = NULL;
                r->info = NULL;
        }
        request_unref(r);
}

static H2Stream *h2_stream_free(H2Stream *st) {
        H2Session *s;

        if (!st)
                return NULL;
        s = st->session;
        LIST_REMOVE(s->streams, st, prev, next);
        if (s->n_streams > 0 && --s->n_streams == 0 && !s->closed)
                s->idle_since = session_now(s);

        /* After the detach: an aborted handler may still queue output on its way out. */
        h2_stream_detach(st);
        if (st->queued)
                s->n_queued--;
        if (st->deadline != USEC_INFINITY)
                s->n_deadlines--;
        buf_done(&st->out);
        free(st);
        return NULL;
}

static const RequestProtoOps h2_proto_ops;

static int h2_stream_new(H2Session *s, int32_t id, H2Stream **ret) {
        const HttpLimits *l = &s->server->limits;
        H2Stream *st;
        Request *r;
        int k;

        st = new0(H2Stream, 1);
        if (!st)
                return -ENOMEM;
        k = request_new(s->server, &h2_proto_ops, st, &r);
        if (k < 0) {
                free(st);
                return k;
        }
        r->protocol = "HTTP/2";
        r->info = &s->stream->info;
        r->peer = s->stream->info.peer;
        r->secure = s->stream->info.secure;

        st->session = s;
        st->id = id;
        st->request = r;
        st->declared_length = UINT64_MAX;
        st->deadline = USEC_INFINITY;
        h2_stream_set_deadline(st, timeout_enabled(l->header_timeout) ?
                                   usec_add(session_now(s), l->header_timeout) : USEC_INFINITY);
        LIST_PREPEND(s->streams, st, prev, next);
        s->n_streams++;
        *ret = st;
        return 0;
}

/* Answers a request ourselves (413, 431, 405, 408): the handler never sees it. */
static void h2_stream_reject(H2Stream *st, unsigned status, const char *code, const char *message) {
        H2Session *s = st->session;
        int k;

        if (st->rejected || !st->request)
                return;
        st->rejected = true;
        h2_stream_set_deadline(st, USEC_INFINITY);
        buf_done(&st->request->body);
        if (st->request->head_sent)
                k = -EBUSY;
        else
                k = request_reply_error(st->request, status, "invalid_request_error", code, message);
        if (k < 0) {
                log_debug_errno(k, "HTTP/2 stream %" PRIi32 ": failed to send %u, resetting: %m", st->id,
                                status);
                (void) nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_INTERNAL_ERROR);
        }
}

static void h2_stream_reset(H2Stream *st, uint32_t error_code) {
        st->rejected = true;
        h2_stream_set_deadline(st, USEC_INFINITY);
        (void) nghttp2_submit_rst_stream(st->session->h2, NGHTTP2_FLAG_NONE, st->id, error_code);
}

/* Request side: nghttp2 callbacks. */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata) {
        H2Session *s = userdata;
        H2Stream *st;
        int k;

        if (s->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
                return 0;

        k = h2_stream_new(s, frame->hd.stream_id, &st);
        if (k < 0) {
                log_debug_errno(k, "HTTP/2 stream %" PRIi32 ": failed to allocate request: %m",
                                frame->hd.stream_id);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        k = nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, st);
        if (k < 0) {
                h2_stream_free(st);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *userdata) {
        H2Session *s = userdata;
        const HttpLimits *l = &s->server->limits;
        H2Stream *st;
        Request *r;
        int k = 0;

        if (s->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (!st || !st->request)
                return 0;
        r = st->request;

        /* HPACK lets a few bytes on the wire expand to a lot of header data: count what was decoded,
         * and once over the limit keep decoding (the compression state is shared by the connection)
         * but store nothing more. */
        st->header_bytes += namelen + valuelen + 32;
        st->n_headers++;
        if (st->header_bytes > l->max_header_bytes || st->n_headers > l->max_headers)
                st->headers_too_large = true;
        if (st->headers_too_large || st->headers_done)
                return 0; /* trailers are not passed on */

        if (namelen > 0 && name[0] == ':') {
                if (h2_name_eq(name, namelen, ":method"))
                        k = request_set_method(r, (const char *) value, valuelen);
                else if (h2_name_eq(name, namelen, ":path"))
                        k = request_set_target(r, (const char *) value, valuelen);
                else if (h2_name_eq(name, namelen, ":authority"))
                        k = request_set_authority(r, (const char *) value, valuelen);
                /* :scheme was validated by nghttp2; r->secure tells handlers what they need. */
        } else {
                if (h2_name_eq(name, namelen, "content-length")) {
                        _cleanup_free_ char *v = strndup((const char *) value, valuelen);
                        uint64_t u;

                        if (!v)
                                k = -ENOMEM;
                        else if (parse_uint64(v, &u) >= 0)
                                st->declared_length = u;
                }
                if (k >= 0)
                        k = request_add_header(r, (const char *) name, namelen, (const char *) value,
                                               valuelen);
        }
        if (k < 0) {
                log_debug_errno(k, "HTTP/2 stream %" PRIi32 ": failed to store header: %m", st->id);
                return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        return 0;
}

static void h2_stream_headers_done(H2Stream *st, bool end_stream) {
        H2Session *s = st->session;
        const HttpLimits *l = &s->server->limits;
        Request *r = st->request;
        const char *host;
        int k;

        st->headers_done = true;
        h2_stream_set_deadline(st, USEC_INFINITY);
        if (!r)
                return;
        r->start_usec = now_mono();

        if (st->headers_too_large)
                return h2_stream_reject(st, 431, "request_header_fields_too_large",
                                        "Request header fields too large.");

        /* nghttp2 rejects requests without the mandatory pseudo-headers already; do not rely on
         * that for what the handlers dereference. */
        if (!r->method || (!streq(r->method, "CONNECT") && !r->path))
                return h2_stream_reset(st, NGHTTP2_PROTOCOL_ERROR);
        if (streq(r->method, "CONNECT"))
                return h2_stream_reject(st, 405, "method_not_allowed", "CONNECT is not supported.");
        st->is_head = streq(r->method, "HEAD");

        if (st->declared_length != UINT64_MAX && st->declared_length > l->max_body_bytes)
                return h2_stream_reject(st, 413, "request_too_large", "Request body too large.");

        /* Handlers look at either; HTTP/2 clients usually send only :authority. */
        host = request_header(r, "host");
        if (!r->authority && host)
                r->authority = host;    /* the header's value lives as long as the request */
        else if (r->authority && !host) {
                k = request_add_header(r, "host", 4, r->authority, strlen(r->authority));
                if (k < 0)
                        return h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        }

        if (!end_stream && timeout_enabled(l->body_timeout))
                h2_stream_set_deadline(st, usec_add(session_now(s), l->body_timeout));
}

static void h2_stream_end_of_request(H2Stream *st) {
        st->remote_closed = true;
        h2_stream_set_deadline(st, USEC_INFINITY);
        if (st->rejected || st->dispatched || !st->request || !st->headers_done)
                return;
        st->dispatched = true;
        /* The handler may answer right here; nghttp2 allows submitting from inside callbacks, and the
         * output goes out in the send pass after mem_recv returns. */
        request_dispatch(st->request);
}

static void session_drain_final(H2Session *s) {
        int k;

        if (s->goaway_final)
                return;
        s->goaway_final = true;
        k = nghttp2_submit_goaway(s->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s->h2),
                                  NGHTTP2_NO_ERROR, NULL, 0);
        if (k < 0)
                log_debug("HTTP/2: failed to submit GOAWAY: %s", nghttp2_error_string(k));
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata) {
        H2Session *s = userdata;
        bool end_stream = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
        H2Stream *st;

        if (s->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;

        switch (frame->hd.type) {
        case NGHTTP2_SETTINGS:
                if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && !s->got_settings) {
                        s->got_settings = true;
                        s->idle_since = session_now(s);
                }
                break;
        case NGHTTP2_PING:
                if ((frame->hd.flags & NGHTTP2_FLAG_ACK) && s->draining &&
                    memcmp(frame->ping.opaque_data, drain_ping, sizeof(drain_ping)) == 0)
                        session_drain_final(s);
                break;
        case NGHTTP2_HEADERS:
                st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
                if (!st)
                        break;
                if (frame->headers.cat == NGHTTP2_HCAT_REQUEST)
                        h2_stream_headers_done(st, end_stream);
                if (end_stream && !s->closed)
                        h2_stream_end_of_request(st);
                break;
        case NGHTTP2_DATA:
                st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
                if (st && end_stream)
                        h2_stream_end_of_request(st);
                break;
        default:
                break;
        }
        return s->closed ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int on_data_chunk_recv(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                              size_t len, void *userdata) {
        H2Session *s = userdata;
        const HttpLimits *l = &s->server->limits;
        H2Stream *st;
        Request *r;
        int k;

        if (s->closed)
                return NGHTTP2_ERR_CALLBACK_FAILURE;
        st = nghttp2_session_get_stream_user_data(h2, stream_id);
        if (!st || !st->request || st->rejected || !st->headers_done)
                return 0;
        r = st->request;

        k = request_body_append(r, data, len);
        if (k == -EFBIG) {
                h2_stream_reject(st, 413, "request_too_large", "Request body too large.");
                return 0;
        }
        if (k == -ENOBUFS) {
                h2_stream_reject(st, 503, "overloaded", "Too many request bodies in flight; try again shortly.");
                return 0;
        }
        if (k < 0) {
                h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
                return 0;
        }
        if (timeout_enabled(l->body_timeout))
                h2_stream_set_deadline(st, usec_add(session_now(s), l->body_timeout));
        return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *userdata) {
        H2Stream *st;

        if (!(frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) ||
            !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
                return 0;
        st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
        if (!st)
                return 0;
        st->response_sent = true;
        h2_stream_update_queued(st);
        /* We answered before the request was complete (413, 431 ...): tell the client to stop
         * sending rather than keep receiving a body nobody reads (RFC 9113 8.1). */
        if (!st->remote_closed)
                (void) nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
        return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code, void *userdata) {
        H2Stream *st;

        st = nghttp2_session_get_stream_user_data(h2, stream_id);
        if (!st)
                return 0;
        if (error_code != NGHTTP2_NO_ERROR)
                log_debug("HTTP/2 stream %" PRIi32 " closed: %s", stream_id,
                          nghttp2_http2_strerror(error_code));
        (void) nghttp2_session_set_stream_user_data(h2, stream_id, NULL);
        /* Reports an unfinished response to the handler as aborted (client reset or gone). */
        h2_stream_free(st);
        return 0;
}

static int on_error(nghttp2_session *h2, int lib_error_code, const char *msg, size_t len, void *userdata) {
        log_debug("HTTP/2: %.*s", (int) MIN(len, (size_t) 512), msg);
        return 0;
}

/* Response side: RequestProtoOps and the data provider. */

static void session_kick(H2Session *s) {
        if (s->closed)
                return;
        if (s->busy) {
                s->need_pass = true;
                return;
        }
        /* Called by handlers, possibly deep inside their own code: send from the loop, not from here.
         * Every body write kicks; arming the defer source once per loop iteration is enough. The
         * send happens in the source's prepare callback (session_on_prepare()), at the start of the
         * next iteration, so after everything the current dispatch (an upstream batch) queued. */
        if (s->kicked)
                return;
        s->kicked = true;
        (void) sd_event_source_set_enabled(s->defer, SD_EVENT_ONESHOT);
}

static ssize_t h2_data_read(nghttp2_session *h2, int32_t stream_id, uint8_t *buf, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *userdata) {
        H2Stream *st = source->ptr;
        H2Session *s = st->session;
        size_t n = MIN(length, buf_len(&st->out));

        if (n > 0) {
                memcpy(buf, buf_data(&st->out), n);
                buf_consume(&st->out, n);
                h2_stream_update_queued(st);
        }
        if (buf_empty(&st->out)) {
                buf_shrink(&st->out, 16U << 10);
                /* nghttp2 answers this with RST_STREAM INTERNAL_ERROR: the client sees a broken stream. */
                if (st->reset_after_flush && n == 0)
                        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                if (st->reset_after_flush)
                        return (ssize_t) n;
                if (st->eof)
                        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
                else if (n == 0) {
                        st->deferred = true;
                        return NGHTTP2_ERR_DEFERRED;
                } else {
                        /* All that is queued goes in this frame. Ending the provider here (without
                         * END_STREAM) spares nghttp2 asking again only to be told DEFERRED, deferring
                         * the stream and, on the next write, resuming it: the next write attaches a
                         * new provider instead (h2_stream_resume()). The frames are the same. */
                        *data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
                        st->detached = true;
                }
        }
        /* Not from here: the handler would queue and resume data from inside nghttp2's send path. */
        if (st->request && st->request->want_writable &&
            buf_len(&st->out) < s->server->limits.send_low_water) {
                st->notify = true;
                s->notify_pending = true;
                s->need_pass = true;
        }
        return (ssize_t) n;
}

static int h2_send_head(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                        int64_t content_length) {
        static const char *const hop_by_hop[] = {
                "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection",
        };
        H2Stream *st = r->proto;
        H2Session *s = st->session;
        _cleanup_free_ nghttp2_nv *nva = NULL;
        _cleanup_free_ char *names = NULL;
        char status_str[4], length_str[21];
        size_t n = 0, names_len = 0, off = 0;
        bool have_date = false, have_length = false, no_body;
        nghttp2_data_provider provider = {
                .source.ptr = st,
                .read_callback = h2_data_read,
        };
        int k;

        /* Interim (1xx) responses are not part of the Request API. */
        if (status < 200 || status > 999)
                return -EINVAL;
        no_body = st->is_head || status == 204 || status == 304 || content_length == 0;

        for (size_t i = 0; i < n_headers; i++)
                names_len += strlen(headers[i].name) + 1;
        nva = new(nghttp2_nv, n_headers + 3);
        names = malloc(MAX(names_len, (size_t) 1));
        if (!nva || !names)
                return -ENOMEM;

        (void) snprintf(status_str, sizeof status_str, "%u", status);
        nva[n++] = (nghttp2_nv){ (uint8_t *) ":status", (uint8_t *) status_str, 7, 3, NGHTTP2_NV_FLAG_NONE };

        for (size_t i = 0; i < n_headers; i++) {
                size_t len = strlen(headers[i].name), vlen = strlen(headers[i].value);
                char *lc = names + off;
                bool skip = false;

                /* HTTP/2 field names are lowercase on the wire; uppercase is a protocol error. */
                for (size_t j = 0; j < len; j++) {
                        char c = headers[i].name[j];
                        lc[j] = c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
                }
                lc[len] = 0;
                off += len + 1;

                for (size_t j = 0; j < ELEMENTSOF(hop_by_hop); j++)
                        if (streq(lc, hop_by_hop[j]))
                                skip = true;
                if (skip || len == 0 || lc[0] == ':' ||
                    !nghttp2_check_header_name((const uint8_t *) lc, len) ||
                    !nghttp2_check_header_value((const uint8_t *) headers[i].value, vlen)) {
                        if (!skip && len > 0 && lc[0] != ':')
                                log_debug("HTTP/2 stream %" PRIi32 ": dropping invalid response header "
                                          "\"%s\"", st->id, lc);
                        continue;
                }
                if (streq(lc, "content-length")) {
                        /* Ours is authoritative when known; a body-less response carries none. */
                        if (content_length >= 0 || status == 204)
                                continue;
                        have_length = true;
                }
                if (streq(lc, "date"))
                        have_date = true;
                nva[n++] = (nghttp2_nv){ (uint8_t *) lc, (uint8_t *) headers[i].value, len, vlen,
                                         NGHTTP2_NV_FLAG_NONE };
        }

        if (!have_date) {
                const char *d = http_date_now();
                nva[n++] = (nghttp2_nv){ (uint8_t *) "date", (uint8_t *) d, 4, strlen(d),
                                         NGHTTP2_NV_FLAG_NONE };
        }
        if (content_length >= 0 && !have_length && status != 204) {
                (void) snprintf(length_str, sizeof length_str, "%" PRIi64, content_length);
                nva[n++] = (nghttp2_nv){ (uint8_t *) "content-length", (uint8_t *) length_str, 14,
                                         strlen(length_str), NGHTTP2_NV_FLAG_NONE };
        }

        k = nghttp2_submit_response(s->h2, st->id, nva, n, no_body ? NULL : &provider);
        if (k < 0) {
                log_debug("HTTP/2 stream %" PRIi32 ": failed to submit response: %s", st->id,
                          nghttp2_error_string(k));
                return errno_from_nghttp2(k);
        }
        st->no_body = no_body;
        st->has_provider = !no_body;
        h2_stream_update_queued(st);
        session_kick(s);
        return 0;
}

static void h2_stream_resume(H2Stream *st) {
        if (st->detached) {
                /* nghttp2 let go of the last provider before it reported that frame sent (so
                 * before mem_send returned): no provider is attached now. */
                nghttp2_data_provider provider = {
                        .source.ptr = st,
                        .read_callback = h2_data_read,
                };
                int k;

                st->detached = false;
                k = nghttp2_submit_data(st->session->h2, NGHTTP2_FLAG_END_STREAM, st->id, &provider);
                if (k < 0) {
                        log_debug("HTTP/2 stream %" PRIi32 ": failed to submit data, resetting: %s", st->id,
                                  nghttp2_error_string(k));
                        h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
                }
                return;
        }
        if (!st->deferred)
                return;
        st->deferred = false;
        (void) nghttp2_session_resume_data(st->session->h2, st->id);
}

static int h2_send_body(Request *r, const void *p, size_t n) {
        H2Stream *st = r->proto;
        int k;

        if (st->no_body || n == 0)
                return 0;
        k = buf_append(&st->out, p, n);
        if (k < 0)
                return k;
        h2_stream_update_queued(st);
        h2_stream_resume(st);
        session_kick(st->session);
        return 0;
}

static int h2_send_end(Request *r) {
        H2Stream *st = r->proto;

        st->eof = true;
        h2_stream_update_queued(st);
        if (st->has_provider) {
                h2_stream_resume(st);
                session_kick(st->session);
        }
        return 0;
}

static size_t h2_pending(Request *r) {
        H2Stream *st = r->proto;

        return buf_len(&st->out);
}

static void h2_reset(Request *r) {
        H2Stream *st = r->proto;

        /* What was queued before the break still goes out (the upstream sent it, the client should see
         * it), then the stream ends with RST_STREAM: broken, never short but "complete". */
        if (st->has_provider && !buf_empty(&st->out)) {
                st->reset_after_flush = true;
                h2_stream_resume(st);
        } else
                h2_stream_reset(st, NGHTTP2_INTERNAL_ERROR);
        session_kick(st->session);
}

static const RequestProtoOps h2_proto_ops = {
        .send_head = h2_send_head,
        .send_body = h2_send_body,
        .send_end = h2_send_end,
        .pending = h2_pending,
        .reset = h2_reset,
};

/* Session lifetime. Every entry point (stream callbacks, timers, server ops) holds a reference, so a
 * session closed from inside a callback is freed only once the outermost caller is done with it. */

static H2Session *session_free(H2Session *s) {
        if (!s)
                return NULL;
        while (s->streams)
                h2_stream_free(s->streams);
        nghttp2_session_del(s->h2);
        sd_event_source_disable_unref(s->timer);
        sd_event_source_disable_unref(s->defer);
        buf_done(&s->wbuf);
        /* Not linked unless closed first (which unlinks): the server may be gone by now. */
        free(s);
        return NULL;
}

static H2Session *session_ref(H2Session *s) {
        s->n_ref++;
        return s;
}

static H2Session *session_unref(H2Session *s) {
        if (s && --s->n_ref == 0)
                session_free(s);
        return NULL;
}

static void session_unrefp(H2Session **s) {
        session_unref(*s);
}

static void session_close(H2Session *s, bool flush) {
        Stream *stream;

        if (s->closed)
                return;
        s->closed = true;
        s->timer = sd_event_source_disable_unref(s->timer);
        s->defer = sd_event_source_disable_unref(s->defer);

        /* Transport first, so nothing a handler does from on_abort can reach it. */
        stream = TAKE_PTR(s->stream);
        if (stream)
                stream_close(stream, flush);
        for (H2Stream *st = s->streams; st; st = st->next)
                h2_stream_detach(st);

        /* Last: with the server draining this may call on_idle, which may tear the server down. */
        http_server_remove_session(s->server, &s->session);
        session_unref(s);
}

static int session_flush_wbuf(H2Session *s) {
        int k;

        if (buf_empty(&s->wbuf))
                return 0;
        k = stream_write(s->stream, buf_data(&s->wbuf), buf_len(&s->wbuf));
        buf_clear(&s->wbuf);
        buf_shrink(&s->wbuf, H2_WRITE_CHUNK * 2);
        return k;
}

static int session_send(H2Session *s) {
        size_t high = MAX(s->server->limits.send_high_water, (size_t) 16384);
        bool blocked = false;
        int k;

        for (;;) {
                const uint8_t *data;
                ssize_t n;

                /* Connection-level backpressure: leave frames inside nghttp2 (where its flood
                 * limits apply) rather than queueing without bound in the transport. */
                if (stream_pending(s->stream) + buf_len(&s->wbuf) >= high) {
                        blocked = nghttp2_session_want_write(s->h2);
                        break;
                }
                n = nghttp2_session_mem_send(s->h2, &data);
                if (n < 0)
                        return errno_from_nghttp2((int) n);
                if (s->closed)
                        return 0;
                if (n == 0)
                        break;
                s->stall_since = 0;
                k = buf_append(&s->wbuf, data, (size_t) n);
                if (k < 0)
                        return k;
                if (buf_len(&s->wbuf) >= H2_WRITE_CHUNK) {
                        k = session_flush_wbuf(s);
                        if (k < 0)
                                return k;
                }
        }
        k = session_flush_wbuf(s);
        if (k < 0)
                return k;
        if (blocked && !s->write_blocked) {
                s->write_blocked = true;
                stream_want_writable(s->stream);
        }
        return 0;
}

static void session_notify_writable(H2Session *s) {
        if (!s->notify_pending)
                return;
        s->notify_pending = false;
        /* Streams are only freed from inside mem_recv/mem_send or by session_free(), neither of which
         * can run while we hold the session busy: the list is stable across the handler calls. */
        for (H2Stream *st = s->streams; st && !s->closed; st = st->next) {
                if (!st->notify)
                        continue;
                st->notify = false;
                if (st->request)
                        request_notify_writable(st->request);
        }
}

/* Output is queued but the client takes nothing: the transport is full, or a stream or the connection
 * has no flow-control window left. */
static bool session_stalled(H2Session *s) {
        if (s->write_blocked)
                return true;
        if (s->n_queued == 0)
                return false;
        if (nghttp2_session_get_remote_window_size(s->h2) <= 0)
                return true;
        for (H2Stream *st = s->streams; st; st = st->next) {
                if (!st->has_provider || st->response_sent || (buf_empty(&st->out) && !st->eof))
                        continue;
                if (nghttp2_session_get_stream_remote_window_size(s->h2, st->id) <= 0)
                        return true;
        }
        return false;
}

static void session_arm_timer(H2Session *s) {
        const HttpLimits *l = &s->server->limits;
        usec_t now = session_now(s), deadline = USEC_INFINITY;

        if (!s->timer)
                return;
        if (!s->got_settings)
                deadline = MIN(deadline, s->preface_deadline);
        else if (s->n_streams == 0 && timeout_enabled(l->idle_timeout))
                deadline = MIN(deadline, usec_add(s->idle_since, l->idle_timeout));

        if (session_stalled(s)) {
                if (s->stall_since == 0)
                        s->stall_since = now;
                if (timeout_enabled(l->send_timeout))
                        deadline = MIN(deadline, usec_add(s->stall_since, l->send_timeout));
        } else
                s->stall_since = 0;

        if (s->draining && !s->goaway_final)
                deadline = MIN(deadline, s->drain_deadline);
        if (s->n_deadlines > 0)
                for (H2Stream *st = s->streams; st; st = st->next)
                        deadline = MIN(deadline, st->deadline);

        if (deadline == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_time(s->timer, deadline);
        (void) sd_event_source_set_enabled(s->timer, SD_EVENT_ONESHOT);
}

/* The one place output is produced: only from the outermost entry point, never nested in nghttp2. */
static void session_process(H2Session *s) {
        _cleanup_(session_unrefp) H2Session *ref = NULL;
        int k;

        if (s->closed)
                return;
        if (s->busy) {
                s->need_pass = true;
                return;
        }
        ref = session_ref(s);
        s->busy = true;
        for (unsigned pass = 0;; pass++) {
                s->need_pass = false;
                k = session_send(s);
                if (k < 0) {
                        log_debug_errno(k, "HTTP/2: failed to send, closing: %m");
                        session_close(s, false);
                        return;
                }
                if (s->closed)
                        return;
                session_notify_writable(s);
                if (s->closed)
                        return;
                if (!s->need_pass)
                        break;
                if (pass + 1 >= H2_MAX_PASSES) {
                        s->kicked = true;
                        s->yielded = true;
                        (void) sd_event_source_set_enabled(s->defer, SD_EVENT_ONESHOT);
                        break;
                }
        }
        s->busy = false;

        if (!nghttp2_session_want_read(s->h2) && !nghttp2_session_want_write(s->h2)) {
                /* GOAWAY sent or received and no streams left: done, let the transport flush. */
                session_close(s, true);
                return;
        }
        session_arm_timer(s);
}

static ssize_t session_on_read(void *userdata, const uint8_t *p, size_t n) {
        H2Session *s = userdata;
        _cleanup_(session_unrefp) H2Session *ref = NULL;
        ssize_t k;

        if (s->closed)
                return (ssize_t) n;
        if (s->busy)
                return 0; /* re-entered from below while we write: offered again later */

        ref = session_ref(s);
        s->busy = true;
        k = nghttp2_session_mem_recv(s->h2, p, n);
        s->busy = false;
        if (s->closed)
                return (ssize_t) n;
        if (k < 0) {
                log_debug("HTTP/2: closing connection: %s", nghttp2_error_string((int) k));
                /* Whatever nghttp2 queued (GOAWAY) is useless after a fatal error; what was written
                 * before still goes out. */
                session_close(s, true);
                return (ssize_t) n;
        }
        session_process(s);
        return (ssize_t) n;
}

static void session_on_writable(void *userdata) {
        H2Session *s = userdata;
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);

        s->write_blocked = false;
        s->stall_since = 0;
        session_process(s);
}

static void session_on_close(void *userdata, int error) {
        H2Session *s = userdata;
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);

        if (error < 0)
                log_debug_errno(error, "HTTP/2: connection lost: %m");
        s->stream = NULL; /* gone: must not be touched again */
        session_close(s, false);
}

static const StreamUpper h2_upper = {
        .on_read = session_on_read,
        .on_writable = session_on_writable,
        .on_close = session_on_close,
};

static int session_on_defer(sd_event_source *es, void *userdata) {
        H2Session *s = userdata;
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);

        s->kicked = false;      /* a ONESHOT source is off again once dispatched */
        s->yielded = false;
        session_process(s);
        return 0;
}

/* sd-event runs prepare callbacks of enabled sources at the start of every iteration, before its
 * epoll_wait(): that is right after the dispatch that kicked us returned (one source per iteration),
 * with all it queued (a batch of upstream reads, net/poller.h) in the streams. Sending here and turning
 * the source off spares the iteration the defer source would be dispatched in: an epoll_wait() and the
 * loop's bookkeeping per kick, a fifth of a relayed delta's cost (bench/h2-relay). This is the loop's
 * top level, never inside nghttp2 or one of our callbacks. A post source would not do: one armed from
 * inside a dispatch runs only after some other source's next dispatch, however long that takes.
 *
 * The defer dispatch remains for what this does not cover: a pass that yielded (sending here again
 * would not yield to the other sources at all), and a kick after this iteration's prepare callbacks.
 * A pass here that yields is followed by that dispatch in the same iteration: at most twice
 * H2_MAX_PASSES passes between two epoll_wait()s, once. */
static int session_on_prepare(sd_event_source *es, void *userdata) {
        H2Session *s = userdata;
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);

        if (s->yielded)
                return 0;
        s->kicked = false;
        (void) sd_event_source_set_enabled(es, SD_EVENT_OFF);
        session_process(s);
        return 0;
}

static int session_on_timer(sd_event_source *es, uint64_t usec, void *userdata) {
        H2Session *s = userdata;
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);
        const HttpLimits *l = &s->server->limits;
        usec_t now = session_now(s);

        if (!s->got_settings && now >= s->preface_deadline) {
                log_debug("HTTP/2: no client preface in time, closing.");
                session_close(s, false);
                return 0;
        }
        if (s->stall_since > 0 && timeout_enabled(l->send_timeout) &&
            now >= usec_add(s->stall_since, l->send_timeout) && session_stalled(s)) {
                log_debug("HTTP/2: client stopped reading, closing.");
                session_close(s, false);
                return 0;
        }
        if (s->got_settings && s->n_streams == 0 && timeout_enabled(l->idle_timeout) &&
            now >= usec_add(s->idle_since, l->idle_timeout))
                (void) nghttp2_session_terminate_session(s->h2, NGHTTP2_NO_ERROR);
        if (s->draining && !s->goaway_final && now >= s->drain_deadline)
                session_drain_final(s);

        for (H2Stream *st = s->streams; st; st = st->next) {
                if (st->deadline > now)
                        continue;
                h2_stream_set_deadline(st, USEC_INFINITY);
                if (!st->headers_done) {
                        /* Stuck inside a header block: nothing else can happen on this connection. */
                        log_debug("HTTP/2 stream %" PRIi32 ": headers timed out, closing.", st->id);
                        (void) nghttp2_session_terminate_session(s->h2, NGHTTP2_NO_ERROR);
                        break;
                }
                h2_stream_reject(st, 408, "request_timeout", "Request body timed out.");
        }
        session_process(s);
        return 0;
}

static H2Session *session_from(HttpSession *hs) {
        return (H2Session *) hs;
}

static void session_drain(HttpSession *hs) {
        H2Session *s = session_from(hs);
        _cleanup_(session_unrefp) H2Session *ref = NULL;
        int k;

        if (s->closed || s->draining)
                return;
        ref = session_ref(s);
        s->draining = true;
        if (!s->got_settings) {
                session_close(s, false);
                return;
        }
        /* Two-step GOAWAY: the notice stops new streams without refusing those already in flight;
         * the final one, an RTT later (our PING comes back), names the last stream we took. */
        k = nghttp2_submit_shutdown_notice(s->h2);
        if (k >= 0)
                k = nghttp2_submit_ping(s->h2, NGHTTP2_FLAG_NONE, drain_ping);
        if (k < 0)
                session_drain_final(s);
        s->drain_deadline = usec_add(session_now(s), H2_DRAIN_GRACE);
        session_process(s);
}

static void session_abort(HttpSession *hs) {
        H2Session *s = session_from(hs);
        _unused_ _cleanup_(session_unrefp) H2Session *ref = session_ref(s);

        session_close(s, false);
}

static const HttpSessionOps h2_session_ops = {
        .drain = session_drain,
        .abort = session_abort,
};

static void callbacks_delp(nghttp2_session_callbacks **p) {
        if (*p)
                nghttp2_session_callbacks_del(*p);
}

static void option_delp(nghttp2_option **p) {
        if (*p)
                nghttp2_option_del(*p);
}

static void session_freep(H2Session **s) {
        session_free(*s);
}

int http2_session_new(HttpServer *server, Stream *stream) {
        _cleanup_(session_freep) H2Session *s = NULL;
        _cleanup_(callbacks_delp) nghttp2_session_callbacks *cbs = NULL;
        _cleanup_(option_delp) nghttp2_option *opt = NULL;
        const HttpLimits *l = &server->limits;
        const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, l->h2_max_concurrent_streams },
                { NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, l->max_header_bytes },
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW },
                /* The RFC 7540 priority tree costs CPU and memory per stream and buys us nothing. */
                { NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1 },
        };
        int k;

        s = new0(H2Session, 1);
        if (!s)
                return -ENOMEM;
        s->n_ref = 1;
        s->server = server;
        s->stream = stream;
        s->session.ops = &h2_session_ops;

        if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
                return -ENOMEM;
        nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
        nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
        nghttp2_session_callbacks_set_error_callback2(cbs, on_error);

        nghttp2_option_set_no_closed_streams(opt, 1);
        nghttp2_option_set_max_settings(opt, H2_MAX_SETTINGS_ENTRIES);
        nghttp2_option_set_max_outbound_ack(opt, H2_MAX_OUTBOUND_ACK);
        nghttp2_option_set_stream_reset_rate_limit(opt, H2_RESET_BURST, H2_RESET_RATE);
        /* A full header block in 16 KiB frames, plus slack for clients that split it finer. */
        nghttp2_option_set_max_continuations(opt, MAX((size_t) 8, (size_t) l->max_header_bytes / 16384 + 4));
        nghttp2_option_set_max_send_header_block_length(opt, H2_MAX_SEND_HEADER_BLOCK);
        nghttp2_option_set_max_deflate_dynamic_table_size(opt, H2_DEFLATE_TABLE_SIZE);

        k = nghttp2_session_server_new2(&s->h2, cbs, s, opt);
        if (k != 0)
                return errno_from_nghttp2(k);
        k = nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings));
        if (k != 0)
                return errno_from_nghttp2(k);
        k = nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0, H2_CONNECTION_WINDOW);
        if (k != 0)
                return errno_from_nghttp2(k);

        /* A client that never completes the preface and SETTINGS is bounded like a slow header. */
        s->preface_deadline = timeout_enabled(l->header_timeout) ?
                usec_add(session_now(s), l->header_timeout) : USEC_INFINITY;
        k = sd_event_add_time(server->event, &s->timer, CLOCK_MONOTONIC, s->preface_deadline, 0,
                              session_on_timer, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(s->timer, "http2-timeout");
        if (s->preface_deadline == USEC_INFINITY)
                (void) sd_event_source_set_enabled(s->timer, SD_EVENT_OFF);

        k = sd_event_add_defer(server->event, &s->defer, session_on_defer, s);
        if (k < 0)
                return k;
        (void) sd_event_source_set_description(s->defer, "http2-send");
        (void) sd_event_source_set_enabled(s->defer, SD_EVENT_OFF);
        k = sd_event_source_set_prepare(s->defer, session_on_prepare);
        if (k < 0)
                return k;

        http_server_add_session(server, &s->session);
        stream_attach(stream, &h2_upper, s);
        TAKE_PTR(s);
        return 0;
}
