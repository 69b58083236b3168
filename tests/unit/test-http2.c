/* Unit tests for the HTTP/2 session: an nghttp2 client (or raw frames) against the server on a MemStream. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <systemd/sd-event.h>

#include "http/request.h"
#include "memstream.h"
#include "shared/util.h"
#include "tests.h"

#define MAX_CS 64

typedef struct ClientStream {
        int32_t id;
        unsigned status;
        char headers[8192];             /* "name: value\n" lines */
        Buf body;
        bool closed;
        uint32_t close_error;
        bool got_rst;
        const uint8_t *req_body;        /* request body the client sends */
        size_t req_len, req_off;
        bool req_defer;                 /* never send the body (body timeout) */
        unsigned n_data, n_data_empty;  /* DATA frames received, and of those without payload */
} ClientStream;

typedef struct Harness {
        sd_event *event;
        HttpServer server;
        MemStream ms;
        nghttp2_session *client;
        ClientStream cs[MAX_CS];
        unsigned n_cs;
        unsigned n_goaway;
        uint32_t goaway_error;
        int32_t goaway_last_id;
        bool idle_called;
        Buf sent;                       /* all bytes fed to the server (corpus material) */
} Harness;

/* What the test handler saw and holds. */
static struct {
        unsigned n_dispatch;
        char method[16], path[256], target[256], authority[256], host[256], xfoo[64], protocol[16];
        bool had_info, secure, loopback;
        size_t body_len;
        Request *held;
        Request *hold[8];               /* "/hold": several open streams at once */
        unsigned n_hold;
        unsigned n_abort, n_writable;
        size_t written;
        int last_write;
        bool saw_write_blocked;
} T;

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Test handler. */

static void held_on_abort(Request *r, void *userdata) {
        T.n_abort++;
        if (T.held == r)
                T.held = request_unref(T.held);
        for (unsigned i = 0; i < T.n_hold; i++)
                if (T.hold[i] == r)
                        T.hold[i] = request_unref(T.hold[i]);
}

#define SLOW_TOTAL (4U << 20)
#define SLOW_CHUNK (32U << 10)

static void slow_fill(Request *r) {
        static uint8_t chunk[SLOW_CHUNK];

        memset(chunk, 'x', sizeof chunk);
        for (unsigned i = 0; i < 64 && T.written < SLOW_TOTAL; i++) {
                T.last_write = request_write(r, chunk, sizeof chunk);
                if (T.last_write < 0)
                        return;
                T.written += sizeof chunk;
                if (T.last_write == 1) {
                        T.saw_write_blocked = true;
                        return;
                }
        }
        if (T.written >= SLOW_TOTAL) {
                (void) request_finish(r);
                if (T.held == r)
                        T.held = request_unref(T.held);
        }
}

static void slow_on_writable(Request *r, void *userdata) {
        T.n_writable++;
        slow_fill(r);
}

static const RequestHooks held_hooks = {
        .on_abort = held_on_abort,
};

static const RequestHooks slow_hooks = {
        .on_writable = slow_on_writable,
        .on_abort = held_on_abort,
};

static void copy_str(char *dst, size_t n, const char *s) {
        snprintf(dst, n, "%s", s ? s : "");
}

static int test_dispatch(Request *r, void *userdata) {
        T.n_dispatch++;
        copy_str(T.method, sizeof T.method, r->method);
        copy_str(T.path, sizeof T.path, r->path);
        copy_str(T.target, sizeof T.target, r->target);
        copy_str(T.authority, sizeof T.authority, r->authority);
        copy_str(T.host, sizeof T.host, request_header(r, "host"));
        copy_str(T.xfoo, sizeof T.xfoo, request_header(r, "x-foo"));
        copy_str(T.protocol, sizeof T.protocol, r->protocol);
        T.had_info = r->info != NULL;
        T.secure = r->secure;
        T.loopback = request_is_loopback(r);
        T.body_len = buf_len(&r->body);

        if (streq(r->path, "/hello")) {
                const HttpHeader h[] = {
                        { "X-Test", "Yes" },
                        { "Connection", "close" },
                        { "Transfer-Encoding", "chunked" },
                };
                return request_reply(r, 200, h, ELEMENTSOF(h), "text/plain", "hello world", 11);
        }
        if (streq(r->path, "/echo"))
                return request_reply(r, 200, NULL, 0, "application/octet-stream",
                                     buf_empty(&r->body) ? "" : (const char *) buf_data(&r->body),
                                     buf_len(&r->body));
        if (streq(r->path, "/empty"))
                return request_reply(r, 204, NULL, 0, NULL, NULL, 0);
        if (streq(r->path, "/stream")) {
                const HttpHeader h[] = { { "Content-Type", "text/event-stream" } };
                int k = request_start(r, 200, h, ELEMENTSOF(h));
                if (k < 0)
                        return k;
                k = request_write(r, "a", 1);
                if (k < 0)
                        return k;
                request_set_hooks(r, &held_hooks, NULL);
                T.held = request_ref(r);
                return 0;
        }
        if (streq(r->path, "/hold")) {
                int k;

                if (T.n_hold >= ELEMENTSOF(T.hold))
                        return -ENOSPC;
                k = request_start(r, 200, NULL, 0);
                if (k < 0)
                        return k;
                request_set_hooks(r, &held_hooks, NULL);
                T.hold[T.n_hold++] = request_ref(r);
                return 0;
        }
        if (streq(r->path, "/slow")) {
                int k = request_start(r, 200, NULL, 0);
                if (k < 0)
                        return k;
                request_set_hooks(r, &slow_hooks, NULL);
                T.held = request_ref(r);
                slow_fill(r);
                return 0;
        }
        return request_reply_error(r, 404, "not_found_error", "not_found", "Nothing here.");
}

/* Client side. */

static ClientStream *cs_find(Harness *h, int32_t id) {
        for (unsigned i = 0; i < h->n_cs; i++)
                if (h->cs[i].id == id)
                        return &h->cs[i];
        return NULL;
}

static int c_on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                       const uint8_t *value, size_t valuelen, uint8_t flags, void *userdata) {
        ClientStream *cs = cs_find(userdata, frame->hd.stream_id);
        size_t l;

        if (!cs)
                return 0;
        if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
                cs->status = (unsigned) atoi((const char *) value);
                return 0;
        }
        l = strlen(cs->headers);
        snprintf(cs->headers + l, sizeof cs->headers - l, "%.*s: %.*s\n", (int) namelen, name,
                 (int) valuelen, value);
        return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *userdata) {
        ClientStream *cs = cs_find(userdata, id);

        if (cs)
                (void) buf_append(&cs->body, data, len);
        return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *userdata) {
        ClientStream *cs = cs_find(userdata, id);

        if (cs) {
                cs->closed = true;
                cs->close_error = error_code;
        }
        return 0;
}

static int c_on_frame_recv(nghttp2_session *s, const nghttp2_frame *frame, void *userdata) {
        Harness *h = userdata;
        ClientStream *cs;

        if (frame->hd.type == NGHTTP2_GOAWAY) {
                h->n_goaway++;
                h->goaway_error = frame->goaway.error_code;
                h->goaway_last_id = frame->goaway.last_stream_id;
        } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
                cs = cs_find(h, frame->hd.stream_id);
                if (cs)
                        cs->got_rst = true;
        } else if (frame->hd.type == NGHTTP2_DATA) {
                cs = cs_find(h, frame->hd.stream_id);
                if (cs) {
                        cs->n_data++;
                        if (frame->hd.length == 0)
                                cs->n_data_empty++;
                }
        }
        return 0;
}

static ssize_t c_body_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                           nghttp2_data_source *source, void *userdata) {
        ClientStream *cs = source->ptr;
        size_t n;

        if (cs->req_defer)
                return NGHTTP2_ERR_DEFERRED;
        n = MIN(length, cs->req_len - cs->req_off);
        memcpy(buf, cs->req_body + cs->req_off, n);
        cs->req_off += n;
        if (cs->req_off == cs->req_len)
                *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t) n;
}

static void on_idle(void *userdata) {
        ((Harness *) userdata)->idle_called = true;
}

static void feed(Harness *h, const void *p, size_t n) {
        (void) buf_append(&h->sent, p, n);
        (void) memstream_feed(&h->ms, p, n);
}

static int harness_init(Harness *h, const HttpLimits *limits) {
        nghttp2_session_callbacks *cbs;
        const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1U << 24 },
        };
        int k;

        *h = (Harness){};
        memset(&T, 0, sizeof T);
        k = sd_event_new(&h->event);
        if (k < 0)
                return k;
        http_server_init(&h->server, h->event);
        if (limits)
                h->server.limits = *limits;
        h->server.dispatch = test_dispatch;
        h->server.on_idle = on_idle;
        h->server.on_idle_userdata = h;
        memstream_init(&h->ms, h->event);
        k = http2_session_new(&h->server, &h->ms.stream);
        if (k < 0)
                return k;

        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return -ENOMEM;
        nghttp2_session_callbacks_set_on_header_callback(cbs, c_on_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, c_on_frame_recv);
        k = nghttp2_session_client_new(&h->client, cbs, h);
        nghttp2_session_callbacks_del(cbs);
        if (k != 0)
                return -ENOMEM;
        (void) nghttp2_submit_settings(h->client, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings));
        (void) nghttp2_session_set_local_window_size(h->client, NGHTTP2_FLAG_NONE, 0, 1 << 28);
        return 0;
}

static void harness_done(Harness *h) {
        const char *dir = getenv("H2_CORPUS_DIR");

        /* Regenerates the fuzz corpus: the first byte tells the fuzzer the preface is included. */
        if (dir && !buf_empty(&h->sent) && buf_len(&h->sent) < (64U << 10)) {
                char p[512];
                FILE *f;

                snprintf(p, sizeof p, "%s/%s", dir, test_current);
                f = fopen(p, "we");
                if (f) {
                        fputc(0x01, f);
                        fwrite(buf_data(&h->sent), 1, buf_len(&h->sent), f);
                        fclose(f);
                }
        }
        T.held = request_unref(T.held);
        for (unsigned i = 0; i < T.n_hold; i++)
                T.hold[i] = request_unref(T.hold[i]);
        memstream_hangup(&h->ms, 0);
        http_server_done(&h->server);
        for (unsigned i = 0; i < h->n_cs; i++)
                buf_done(&h->cs[i].body);
        if (h->client)
                nghttp2_session_del(h->client);
        memstream_done(&h->ms);
        buf_done(&h->sent);
        sd_event_unref(h->event);
}

/* Moves bytes both ways and runs the loop until nothing moves. */
static void pump(Harness *h) {
        for (unsigned i = 0; i < 10000; i++) {
                bool progress = false;

                while (sd_event_run(h->event, 0) > 0)
                        progress = true;
                for (;;) {
                        const uint8_t *d;
                        ssize_t n = nghttp2_session_mem_send(h->client, &d);
                        if (n <= 0)
                                break;
                        progress = true;
                        feed(h, d, (size_t) n);
                }
                if (!h->ms.hold_output && !buf_empty(&h->ms.out)) {
                        size_t n = buf_len(&h->ms.out);
                        uint8_t *copy = malloc(n);

                        memcpy(copy, buf_data(&h->ms.out), n);
                        memstream_drain(&h->ms);
                        (void) nghttp2_session_mem_recv(h->client, copy, n);
                        free(copy);
                        progress = true;
                }
                if (!progress)
                        break;
        }
}

/* Like pump(), but waits on the loop for timers until cond holds or 2s passed. */
#define PUMP_UNTIL(h, cond)                                                     \
        do {                                                                    \
                usec_t _end = now_mono() + 2 * USEC_PER_SEC;                    \
                pump(h);                                                        \
                while (!(cond) && now_mono() < _end) {                          \
                        (void) sd_event_run((h)->event, 10 * USEC_PER_MSEC);    \
                        pump(h);                                                \
                }                                                               \
        } while (0)

#define NV(n, v) { (uint8_t *) (n), (uint8_t *) (v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE }

static ClientStream *submit(Harness *h, const char *method, const char *path, const nghttp2_nv *extra,
                            size_t n_extra, const void *body, size_t body_len) {
        nghttp2_nv nva[4 + n_extra];
        ClientStream *cs;
        size_t n = 0;
        nghttp2_data_provider prd;
        int32_t id;

        if (h->n_cs >= MAX_CS)
                return NULL;
        cs = &h->cs[h->n_cs];
        *cs = (ClientStream){ .req_body = body, .req_len = body_len };
        nva[n++] = (nghttp2_nv) NV(":method", method);
        nva[n++] = (nghttp2_nv) NV(":scheme", "http");
        nva[n++] = (nghttp2_nv) NV(":authority", "example.test");
        nva[n++] = (nghttp2_nv) NV(":path", path);
        for (size_t i = 0; i < n_extra; i++)
                nva[n++] = extra[i];
        prd = (nghttp2_data_provider){ .source.ptr = cs, .read_callback = c_body_read };
        id = nghttp2_submit_request(h->client, NULL, nva, n, body ? &prd : NULL, NULL);
        if (id < 0)
                return NULL;
        cs->id = id;
        h->n_cs++;
        return cs;
}

/* Hand-made frames, for what a well-behaved client library refuses to send. */
static void frame(Buf *b, uint8_t type, uint8_t flags, uint32_t sid, const void *payload, size_t len) {
        uint8_t hd[9] = {
                (uint8_t) (len >> 16), (uint8_t) (len >> 8), (uint8_t) len, type, flags,
                (uint8_t) (sid >> 24) & 0x7f, (uint8_t) (sid >> 16), (uint8_t) (sid >> 8), (uint8_t) sid,
        };
        (void) buf_append(b, hd, sizeof hd);
        (void) buf_append(b, payload, len);
}

/* HPACK without the dynamic table, so blocks can be replayed: GET, http, /, :authority localhost. */
static const uint8_t hpack_get[] = {
        0x82, 0x86, 0x84, 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
};
static const uint8_t hpack_no_path[] = {
        0x82, 0x86, 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
};

/* Scans server output for frames of a type; returns how many, and the last one's first payload word
 * (the error code of RST_STREAM, the last stream id of GOAWAY) and second (GOAWAY's error code). */
static unsigned scan_frames(const Buf *out, uint8_t type, uint32_t *ret_w0, uint32_t *ret_w1) {
        const uint8_t *p = buf_data(out);
        size_t n = buf_len(out), off = 0;
        unsigned count = 0;

        while (off + 9 <= n) {
                size_t len = (size_t) p[off] << 16 | (size_t) p[off + 1] << 8 | p[off + 2];
                if (off + 9 + len > n)
                        break;
                if (p[off + 3] == type) {
                        count++;
                        if (ret_w0 && len >= 4)
                                *ret_w0 = (uint32_t) p[off + 9] << 24 | (uint32_t) p[off + 10] << 16 |
                                          (uint32_t) p[off + 11] << 8 | p[off + 12];
                        if (ret_w1 && len >= 8)
                                *ret_w1 = (uint32_t) p[off + 13] << 24 | (uint32_t) p[off + 14] << 16 |
                                          (uint32_t) p[off + 15] << 8 | p[off + 16];
                }
                off += 9 + len;
        }
        return count;
}

/* Tests. */

TEST(get_sync) {
        _cleanup_(harness_done) Harness h;
        const nghttp2_nv extra[] = { NV("x-foo", "bar"), NV("cookie", "a=1"), NV("cookie", "b=2") };
        ClientStream *cs;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/hello?x=1", extra, ELEMENTSOF(extra), NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);

        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(cs->status, 200);
        ASSERT_EQ(buf_len(&cs->body), 11);
        ASSERT_TRUE(memcmp(buf_data(&cs->body), "hello world", 11) == 0);
        ASSERT_CONTAINS(cs->headers, "content-length: 11\n");
        ASSERT_CONTAINS(cs->headers, "content-type: text/plain\n");
        ASSERT_CONTAINS(cs->headers, "x-test: Yes\n");
        ASSERT_CONTAINS(cs->headers, "date: ");
        ASSERT_TRUE(strstr(cs->headers, "connection") == NULL);
        ASSERT_TRUE(strstr(cs->headers, "transfer-encoding") == NULL);

        ASSERT_EQ(T.n_dispatch, 1);
        ASSERT_STREQ(T.method, "GET");
        ASSERT_STREQ(T.path, "/hello");
        ASSERT_STREQ(T.target, "/hello?x=1");
        ASSERT_STREQ(T.authority, "example.test");
        ASSERT_STREQ(T.host, "example.test");
        ASSERT_STREQ(T.xfoo, "bar");
        ASSERT_STREQ(T.protocol, "HTTP/2");
        ASSERT_TRUE(T.had_info);
        ASSERT_FALSE(T.secure);
        ASSERT_TRUE(T.loopback);
        ASSERT_EQ(h.server.requests_total, 1);
        ASSERT_EQ(h.server.active_requests, 0);
        ASSERT_EQ(h.server.n_sessions, 1);
        ASSERT_FALSE(h.ms.closed);
}

TEST(post_body) {
        _cleanup_(harness_done) Harness h;
        static uint8_t body[100000];
        ClientStream *cs;

        for (size_t i = 0; i < sizeof body; i++)
                body[i] = (uint8_t) (i * 7);
        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "POST", "/echo", NULL, 0, body, sizeof body);
        ASSERT_NOT_NULL(cs);
        pump(&h);

        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->status, 200);
        ASSERT_EQ(T.body_len, sizeof body);
        ASSERT_EQ(buf_len(&cs->body), sizeof body);
        ASSERT_TRUE(memcmp(buf_data(&cs->body), body, sizeof body) == 0);
        ASSERT_CONTAINS(cs->headers, "content-length: 100000\n");
}

TEST(concurrent_streams) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs[6];

        ASSERT_OK(harness_init(&h, NULL));
        for (unsigned i = 0; i < ELEMENTSOF(cs); i++) {
                cs[i] = i % 2 ? submit(&h, "POST", "/echo", NULL, 0, "0123456789", i + 1)
                              : submit(&h, "GET", "/hello", NULL, 0, NULL, 0);
                ASSERT_NOT_NULL(cs[i]);
        }
        pump(&h);
        for (unsigned i = 0; i < ELEMENTSOF(cs); i++) {
                ASSERT_TRUE(cs[i]->closed);
                ASSERT_EQ(cs[i]->status, 200);
                ASSERT_EQ(buf_len(&cs[i]->body), i % 2 ? i + 1 : 11);
        }
        ASSERT_EQ(T.n_dispatch, ELEMENTSOF(cs));
        ASSERT_EQ(h.server.active_requests, 0);
}

static int finish_later(sd_event_source *s, uint64_t usec, void *userdata) {
        if (T.held) {
                (void) request_write(T.held, "d", 1);
                (void) request_finish(T.held);
                T.held = request_unref(T.held);
        }
        return 0;
}

TEST(streaming_later) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs, *cs2;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->status, 200);
        ASSERT_FALSE(cs->closed);
        ASSERT_CONTAINS(cs->headers, "content-type: text/event-stream\n");
        ASSERT_TRUE(strstr(cs->headers, "content-length") == NULL);
        ASSERT_EQ(buf_len(&cs->body), 1);
        ASSERT_NOT_NULL(T.held);
        ASSERT_EQ(h.server.active_streams, 1);

        /* The handler writes later, outside any session callback: output goes out from the loop. */
        ASSERT_EQ(request_write(T.held, "b", 1), 0);
        ASSERT_EQ(request_write(T.held, "c", 1), 0);
        ASSERT_EQ(buf_len(&h.ms.out), 0);
        pump(&h);
        ASSERT_EQ(buf_len(&cs->body), 3);
        ASSERT_FALSE(cs->closed);
        ASSERT_OK(request_finish(T.held));
        T.held = request_unref(T.held);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(buf_len(&cs->body), 3);
        ASSERT_TRUE(memcmp(buf_data(&cs->body), "abc", 3) == 0);
        ASSERT_EQ(h.server.active_streams, 0);

        /* Finished from a timer. */
        cs2 = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs2);
        pump(&h);
        ASSERT_NOT_NULL(T.held);
        ASSERT_OK(sd_event_add_time_relative(h.event, NULL, CLOCK_MONOTONIC, 1000, 0, finish_later, NULL));
        PUMP_UNTIL(&h, cs2->closed);
        ASSERT_TRUE(cs2->closed);
        ASSERT_EQ(buf_len(&cs2->body), 2);
        ASSERT_TRUE(memcmp(buf_data(&cs2->body), "ad", 2) == 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(head) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs, *cs2, *cs3;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "HEAD", "/hello", NULL, 0, NULL, 0);
        cs2 = submit(&h, "HEAD", "/stream", NULL, 0, NULL, 0);
        cs3 = submit(&h, "GET", "/empty", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs3);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(cs->status, 200);
        ASSERT_CONTAINS(cs->headers, "content-length: 11\n");
        ASSERT_EQ(buf_len(&cs->body), 0);

        /* A streamed HEAD response ends with its headers; later writes are dropped. */
        ASSERT_TRUE(cs2->closed);
        ASSERT_EQ(cs2->status, 200);
        ASSERT_EQ(buf_len(&cs2->body), 0);
        if (T.held) {
                (void) request_write(T.held, "zz", 2);
                (void) request_finish(T.held);
                T.held = request_unref(T.held);
        }
        pump(&h);
        ASSERT_EQ(buf_len(&cs2->body), 0);

        ASSERT_TRUE(cs3->closed);
        ASSERT_EQ(cs3->status, 204);
        ASSERT_TRUE(strstr(cs3->headers, "content-length") == NULL);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(body_too_large_by_length) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        static uint8_t body[5000];
        const nghttp2_nv extra[] = { NV("content-length", "5000") };
        ClientStream *cs;

        l.max_body_bytes = 1000;
        ASSERT_OK(harness_init(&h, &l));
        cs = submit(&h, "POST", "/echo", extra, ELEMENTSOF(extra), body, sizeof body);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->status, 413);
        ASSERT_CONTAINS(cs->headers, "content-type: application/json\n");
        (void) buf_append(&cs->body, "", 1);
        ASSERT_CONTAINS((const char *) buf_data(&cs->body), "\"request_too_large\"");
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_EQ(h.server.active_requests, 0);
        ASSERT_FALSE(h.ms.closed);
}

TEST(body_too_large_by_growth) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        static uint8_t body[50000];
        ClientStream *cs, *cs2;

        l.max_body_bytes = 1000;
        ASSERT_OK(harness_init(&h, &l));
        cs = submit(&h, "POST", "/echo", NULL, 0, body, sizeof body);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->status, 413);
        ASSERT_EQ(T.n_dispatch, 0);

        /* Exactly at the limit is fine, and the connection is still usable. */
        cs2 = submit(&h, "POST", "/echo", NULL, 0, body, 1000);
        ASSERT_NOT_NULL(cs2);
        pump(&h);
        ASSERT_TRUE(cs2->closed);
        ASSERT_EQ(cs2->status, 200);
        ASSERT_EQ(buf_len(&cs2->body), 1000);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(headers_too_large) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        char big[1000];
        nghttp2_nv extra[20];
        char names[20][16];
        ClientStream *cs, *cs2, *cs3;

        l.max_header_bytes = 4096;
        l.max_headers = 12;
        memset(big, 'v', sizeof big - 1);
        big[sizeof big - 1] = 0;
        for (unsigned i = 0; i < ELEMENTSOF(extra); i++) {
                snprintf(names[i], sizeof names[i], "x-big-%u", i);
                extra[i] = (nghttp2_nv){ (uint8_t *) names[i], (uint8_t *) big, strlen(names[i]),
                                         strlen(big), NGHTTP2_NV_FLAG_NONE };
        }
        ASSERT_OK(harness_init(&h, &l));

        /* Bytes over the limit. */
        cs = submit(&h, "GET", "/hello", extra, 8, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->status, 431);
        ASSERT_EQ(T.n_dispatch, 0);

        /* Count over the limit, small headers. */
        for (unsigned i = 0; i < ELEMENTSOF(extra); i++)
                extra[i].valuelen = 1;
        cs2 = submit(&h, "GET", "/hello", extra, 20, NULL, 0);
        ASSERT_NOT_NULL(cs2);
        pump(&h);
        ASSERT_TRUE(cs2->closed);
        ASSERT_EQ(cs2->status, 431);
        ASSERT_EQ(T.n_dispatch, 0);

        /* Within the limits. */
        cs3 = submit(&h, "GET", "/hello", extra, 5, NULL, 0);
        ASSERT_NOT_NULL(cs3);
        pump(&h);
        ASSERT_EQ(cs3->status, 200);
        ASSERT_EQ(T.n_dispatch, 1);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(connect_refused) {
        _cleanup_(harness_done) Harness h;
        const nghttp2_nv nva[] = { NV(":method", "CONNECT"), NV(":authority", "example.test:443") };
        ClientStream *cs;
        int32_t id;

        ASSERT_OK(harness_init(&h, NULL));
        id = nghttp2_submit_request(h.client, NULL, nva, ELEMENTSOF(nva), NULL, NULL);
        ASSERT_TRUE(id > 0);
        cs = &h.cs[h.n_cs++];
        *cs = (ClientStream){ .id = id };
        pump(&h);
        ASSERT_EQ(cs->status, 405);
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(missing_path) {
        _cleanup_(harness_done) Harness h;
        Buf b = {};
        uint32_t code = 0;

        ASSERT_OK(harness_init(&h, NULL));
        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, hpack_no_path,
              sizeof hpack_no_path);
        feed(&h, buf_data(&b), buf_len(&b));
        buf_done(&b);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_RST_STREAM, &code, NULL), 1);
        ASSERT_EQ(code, NGHTTP2_PROTOCOL_ERROR);
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(client_reset_aborts) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->status, 200);
        ASSERT_NOT_NULL(T.held);
        ASSERT_EQ(h.server.active_requests, 1);

        ASSERT_EQ(nghttp2_submit_rst_stream(h.client, NGHTTP2_FLAG_NONE, cs->id, NGHTTP2_CANCEL), 0);
        pump(&h);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_NULL(T.held);
        ASSERT_EQ(h.server.active_requests, 0);
        ASSERT_EQ(h.server.active_streams, 0);
        ASSERT_FALSE(h.ms.closed);

        /* The connection goes on. */
        cs = submit(&h, "GET", "/hello", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->status, 200);
}

TEST(connection_close_aborts) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;
        Request *r;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_NOT_NULL(T.held);
        r = request_ref(T.held);
        memstream_hangup(&h.ms, -ECONNRESET);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_ERROR(request_write(r, "x", 1), ECONNRESET);
        request_unref(r);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(slow_reader) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;
        unsigned w0;

        ASSERT_OK(harness_init(&h, NULL));
        h.ms.hold_output = true;
        cs = submit(&h, "GET", "/slow", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);

        /* Client reads nothing: the handler was told to stop, and the server queues boundedly. */
        ASSERT_TRUE(T.saw_write_blocked);
        ASSERT_EQ(T.last_write, 1);
        ASSERT_NOT_NULL(T.held);
        ASSERT_TRUE(T.held->want_writable);
        ASSERT_TRUE(T.written < SLOW_TOTAL);
        ASSERT_TRUE(h.ms.want_writable);
        ASSERT_TRUE(buf_len(&h.ms.out) <= h.server.limits.send_high_water + 64 * 1024);
        w0 = T.n_writable;
        pump(&h);
        ASSERT_EQ(T.n_writable, w0);

        /* The client reads: on_writable fires and the rest flows. */
        h.ms.hold_output = false;
        pump(&h);
        ASSERT_TRUE(T.n_writable > w0);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(buf_len(&cs->body), SLOW_TOTAL);
        ASSERT_NULL(T.held);
        ASSERT_EQ(T.n_abort, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(send_timeout) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        ClientStream *cs;

        l.send_timeout = 30 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        h.ms.hold_output = true;
        cs = submit(&h, "GET", "/slow", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        PUMP_UNTIL(&h, h.ms.closed);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_FALSE(h.ms.close_flush);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(drain) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_NOT_NULL(T.held);

        http_server_drain(&h.server);
        pump(&h);
        /* The notice, then (after our PING came back) the final GOAWAY naming stream 1. */
        ASSERT_EQ(h.n_goaway, 2);
        ASSERT_EQ(h.goaway_last_id, cs->id);
        ASSERT_EQ(h.goaway_error, NGHTTP2_NO_ERROR);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(h.server.n_sessions, 1);
        ASSERT_FALSE(h.idle_called);

        /* The in-flight response completes, then the connection closes. */
        ASSERT_OK(request_write(T.held, "z", 1));
        ASSERT_OK(request_finish(T.held));
        T.held = request_unref(T.held);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(buf_len(&cs->body), 2);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_TRUE(h.ms.close_flush);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_TRUE(h.idle_called);
}

TEST(garbage_preface) {
        _cleanup_(harness_done) Harness h;
        static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

        ASSERT_OK(harness_init(&h, NULL));
        feed(&h, junk, sizeof junk - 1);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(preface_timeout) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.header_timeout = 20 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        feed(&h, preface, 10);
        PUMP_UNTIL(&h, h.ms.closed);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(idle_timeout) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        ClientStream *cs;

        l.idle_timeout = 30 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        cs = submit(&h, "GET", "/hello", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->status, 200);
        PUMP_UNTIL(&h, h.ms.closed);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(h.n_goaway, 1);
        ASSERT_EQ(h.goaway_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(body_timeout) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        ClientStream *cs;

        l.body_timeout = 30 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        cs = submit(&h, "POST", "/echo", NULL, 0, "x", 1);
        ASSERT_NOT_NULL(cs);
        cs->req_defer = true;
        PUMP_UNTIL(&h, cs->closed);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->status, 408);
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(h.server.active_requests, 0);
}

static void flood(Harness *h, uint8_t type, const void *payload, size_t len) {
        Buf b = {};

        h->ms.hold_output = true;
        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        feed(h, buf_data(&b), buf_len(&b));
        buf_clear(&b);
        for (unsigned i = 0; i < 100; i++)
                frame(&b, type, 0, 0, payload, len);
        for (unsigned i = 0; i < 2000 && !h->ms.closed; i++)
                (void) memstream_feed(&h->ms, buf_data(&b), buf_len(&b));
        buf_done(&b);
}

TEST(ping_flood) {
        _cleanup_(harness_done) Harness h;

        ASSERT_OK(harness_init(&h, NULL));
        flood(&h, NGHTTP2_PING, "12345678", 8);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_TRUE(buf_len(&h.ms.out) <= h.server.limits.send_high_water + 64 * 1024);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(settings_flood) {
        _cleanup_(harness_done) Harness h;

        ASSERT_OK(harness_init(&h, NULL));
        flood(&h, NGHTTP2_SETTINGS, NULL, 0);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_TRUE(buf_len(&h.ms.out) <= h.server.limits.send_high_water + 64 * 1024);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(rapid_reset) {
        _cleanup_(harness_done) Harness h;
        static const uint8_t cancel[4] = { 0, 0, 0, NGHTTP2_CANCEL };
        uint32_t last_id = 0, code = 0;
        uint32_t sid = 1;
        Buf b = {};

        ASSERT_OK(harness_init(&h, NULL));
        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        feed(&h, buf_data(&b), buf_len(&b));
        for (unsigned round = 0; round < 200 && !h.ms.closed; round++) {
                buf_clear(&b);
                for (unsigned i = 0; i < 50; i++, sid += 2) {
                        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, sid,
                              hpack_get, sizeof hpack_get);
                        frame(&b, NGHTTP2_RST_STREAM, 0, sid, cancel, sizeof cancel);
                }
                (void) memstream_feed(&h.ms, buf_data(&b), buf_len(&b));
        }
        buf_done(&b);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_GOAWAY, &last_id, &code), 1);
        /* nghttp2's reset rate limiter answers with INTERNAL_ERROR (ENHANCE_YOUR_CALM in later
         * versions) once the burst of 1000 is used up. */
        ASSERT_TRUE(code == NGHTTP2_INTERNAL_ERROR || code == NGHTTP2_ENHANCE_YOUR_CALM);
        ASSERT_TRUE(T.n_dispatch >= 900);
        ASSERT_TRUE(sid < 200 * 50 * 2);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(hpack_bomb) {
        _cleanup_(harness_done) Harness h;
        uint8_t block[8192];
        size_t n = 0;
        Buf b = {};

        ASSERT_OK(harness_init(&h, NULL));
        /* One 4000-byte field into the dynamic table, then referenced by one byte each: ~12 MB of
         * headers from an 7 KB block. */
        memcpy(block, hpack_get, sizeof hpack_get);
        n = sizeof hpack_get;
        block[n++] = 0x40;
        block[n++] = 3;
        memcpy(block + n, "x-a", 3);
        n += 3;
        block[n++] = 0x7f;
        block[n++] = 0xa1;
        block[n++] = 0x1e;
        memset(block + n, 'v', 4000);
        n += 4000;
        while (n < 7000)
                block[n++] = 0xbe;

        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, block, n);
        feed(&h, buf_data(&b), buf_len(&b));
        buf_done(&b);
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_HEADERS, NULL, NULL), 1);
        ASSERT_NOT_NULL(memmem(buf_data(&h.ms.out), buf_len(&h.ms.out), "request_header_fields_too_large",
                               31));
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(continuation_flood) {
        _cleanup_(harness_done) Harness h;
        Buf b = {};

        ASSERT_OK(harness_init(&h, NULL));
        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1, hpack_get, sizeof hpack_get);
        for (unsigned i = 0; i < 1000 && !h.ms.closed; i++) {
                frame(&b, NGHTTP2_CONTINUATION, 0, 1, "\xa0", 1); /* cookie: (empty) */
                feed(&h, buf_data(&b), buf_len(&b));
                buf_clear(&b);
        }
        buf_done(&b);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(T.n_dispatch, 0);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

TEST(drain_without_ping_ack) {
        _cleanup_(harness_done) Harness h;
        uint32_t last_id = 0, code = 0;
        Buf b = {};

        ASSERT_OK(harness_init(&h, NULL));
        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, 1, hpack_get,
              sizeof hpack_get);
        feed(&h, buf_data(&b), buf_len(&b));
        buf_done(&b);
        ASSERT_EQ(T.n_dispatch, 1);

        /* This client never answers our PING: the final GOAWAY comes after the grace period. */
        http_server_drain(&h.server);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_GOAWAY, &last_id, NULL), 1);
        ASSERT_EQ(last_id, 0x7fffffffU);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_PING, NULL, NULL), 1);
        {
                usec_t end = now_mono() + 3 * USEC_PER_SEC;
                while (scan_frames(&h.ms.out, NGHTTP2_GOAWAY, NULL, NULL) < 2 && now_mono() < end)
                        (void) sd_event_run(h.event, 50 * USEC_PER_MSEC);
        }
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_GOAWAY, &last_id, &code), 2);
        ASSERT_EQ(last_id, 1);
        ASSERT_EQ(code, NGHTTP2_NO_ERROR);
        /* The only stream was answered already: nothing keeps the connection. */
        ASSERT_TRUE(h.ms.closed);
        ASSERT_EQ(h.server.n_sessions, 0);
}

TEST(handler_reset) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->status, 200);
        ASSERT_NOT_NULL(T.held);

        /* The upstream broke mid-stream: bytes queued before the break still reach the client (the
         * upstream did send them), then the client sees a reset, never a clean end. */
        ASSERT_OK(request_write(T.held, "sent", 4));
        request_reset(T.held);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_NULL(T.held);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_TRUE(cs->got_rst);
        ASSERT_EQ(cs->close_error, NGHTTP2_INTERNAL_ERROR);
        ASSERT_EQ(buf_len(&cs->body), 5);
        ASSERT_EQ(h.server.active_streams, 0);
        ASSERT_EQ(h.server.active_requests, 0);
        ASSERT_FALSE(h.ms.closed);
}

/* The loop alone (no client reading the output, which stays in h->ms.out) until cond or 2 s. */
#define RUN_UNTIL(h, cond)                                                      \
        do {                                                                    \
                usec_t _end = now_mono() + 2 * USEC_PER_SEC;                    \
                while (!(cond) && now_mono() < _end)                            \
                        (void) sd_event_run((h)->event, 10 * USEC_PER_MSEC);    \
        } while (0)

/* HPACK without the dynamic table: GET, http, :path /hello or /slow, :authority localhost. */
static const uint8_t hpack_get_hello[] = {
        0x82, 0x86, 0x04, 0x06, '/', 'h', 'e', 'l', 'l', 'o', 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
};

static const uint8_t hpack_get_slow[] = {
        0x82, 0x86, 0x04, 0x05, '/', 's', 'l', 'o', 'w', 0x01, 0x09, 'l', 'o', 'c', 'a', 'l', 'h', 'o', 's', 't',
};

/* A raw client that announces a stream window of initial_window and never sends WINDOW_UPDATE. */
static void raw_client_start(Harness *h, uint32_t initial_window) {
        const uint8_t settings[6] = {
                0, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint8_t) (initial_window >> 24),
                (uint8_t) (initial_window >> 16), (uint8_t) (initial_window >> 8), (uint8_t) initial_window,
        };
        Buf b = {};

        (void) buf_append(&b, preface, sizeof preface - 1);
        frame(&b, NGHTTP2_SETTINGS, 0, 0, settings, sizeof settings);
        feed(h, buf_data(&b), buf_len(&b));
        buf_done(&b);
}

static void raw_get(Harness *h, uint32_t sid, const uint8_t *block, size_t len) {
        Buf b = {};

        frame(&b, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, sid, block, len);
        feed(h, buf_data(&b), buf_len(&b));
        buf_done(&b);
}

/* Output held back by a stream's flow-control window (not by the transport) counts as the client not
 * reading, also after other streams on the connection were answered in full. */
TEST(send_timeout_stream_window) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.send_timeout = 30 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        raw_client_start(&h, 16);
        raw_get(&h, 1, hpack_get_hello, sizeof hpack_get_hello);    /* 11 bytes: fits the window */
        raw_get(&h, 3, hpack_get, sizeof hpack_get);                /* a 404 in JSON: does not */
        raw_get(&h, 5, hpack_get_hello, sizeof hpack_get_hello);
        ASSERT_EQ(T.n_dispatch, 3);
        ASSERT_EQ(h.server.active_requests, 1);
        RUN_UNTIL(&h, h.ms.closed);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_FALSE(h.ms.close_flush);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

/* The same with the connection's window (65,535 bytes, only WINDOW_UPDATE raises it) used up. */
TEST(send_timeout_connection_window) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;

        l.send_timeout = 30 * USEC_PER_MSEC;
        ASSERT_OK(harness_init(&h, &l));
        raw_client_start(&h, 1U << 24);
        raw_get(&h, 1, hpack_get_slow, sizeof hpack_get_slow);
        ASSERT_EQ(T.n_dispatch, 1);
        ASSERT_NOT_NULL(T.held);
        RUN_UNTIL(&h, h.ms.closed);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_FALSE(h.ms.close_flush);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
}

/* Answers that fit the windows leave nothing queued: no stall, and the connection stays open past the
 * send timeout. */
TEST(no_stall_when_answered) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        usec_t end;

        l.send_timeout = 20 * USEC_PER_MSEC;
        l.idle_timeout = 0;
        ASSERT_OK(harness_init(&h, &l));
        raw_client_start(&h, 16);
        for (uint32_t sid = 1; sid < 40; sid += 2)
                raw_get(&h, sid, hpack_get_hello, sizeof hpack_get_hello);
        ASSERT_EQ(T.n_dispatch, 20);
        ASSERT_EQ(h.server.active_requests, 0);
        end = now_mono() + 100 * USEC_PER_MSEC;
        while (now_mono() < end)
                (void) sd_event_run(h.event, 10 * USEC_PER_MSEC);
        ASSERT_FALSE(h.ms.closed);
        ASSERT_EQ(h.server.n_sessions, 1);
}

/* A streamed response as frames: one DATA frame per pass with whatever was written since the last one,
 * never an empty one but the last, which carries END_STREAM when the end comes after the last write. */
TEST(stream_frames) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs;
        char expect[256] = "a";

        ASSERT_OK(harness_init(&h, NULL));
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(cs->n_data, 1);
        for (unsigned i = 0; i < 20; i++) {
                char d[8];

                snprintf(d, sizeof d, "<%u>", i);
                strcat(expect, d);
                ASSERT_EQ(request_write(T.held, d, strlen(d)), 0);
                pump(&h);
                ASSERT_EQ(cs->n_data, 2 + i);
                ASSERT_EQ(buf_len(&cs->body), strlen(expect));
        }
        /* Two writes in one loop iteration: one frame. */
        ASSERT_EQ(request_write(T.held, "y", 1), 0);
        ASSERT_EQ(request_write(T.held, "z", 1), 0);
        strcat(expect, "yz");
        pump(&h);
        ASSERT_EQ(cs->n_data, 22);
        ASSERT_FALSE(cs->closed);
        ASSERT_EQ(cs->n_data_empty, 0);
        ASSERT_OK(request_finish(T.held));
        T.held = request_unref(T.held);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(cs->n_data, 23);
        ASSERT_EQ(cs->n_data_empty, 1);
        ASSERT_EQ(buf_len(&cs->body), strlen(expect));
        ASSERT_TRUE(memcmp(buf_data(&cs->body), expect, strlen(expect)) == 0);
        ASSERT_EQ(h.server.active_requests, 0);

        /* A write and the end in one iteration: the last data and END_STREAM share a frame. */
        cs = submit(&h, "GET", "/stream", NULL, 0, NULL, 0);
        ASSERT_NOT_NULL(cs);
        pump(&h);
        ASSERT_EQ(request_write(T.held, "b", 1), 0);
        ASSERT_OK(request_finish(T.held));
        T.held = request_unref(T.held);
        pump(&h);
        ASSERT_TRUE(cs->closed);
        ASSERT_EQ(cs->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(cs->n_data, 2);
        ASSERT_EQ(cs->n_data_empty, 0);
        ASSERT_EQ(buf_len(&cs->body), 2);
        ASSERT_EQ(h.server.active_requests, 0);
}

/* Sending kicked sessions: from the defer source's prepare callback, at the start of the iteration after
 * the dispatch that wrote, so without a dispatch of its own; never from inside the writer's call. */

static int write_each_held(sd_event_source *s, void *userdata) {
        const char *d = userdata;

        /* Like an upstream batch: one dispatch writes to several streams of a connection. */
        for (unsigned i = 0; i < T.n_hold; i++)
                if (T.hold[i] && T.last_write >= 0)
                        T.last_write = request_write(T.hold[i], d, strlen(d));
        return 0;
}

static void open_held(Harness *h, unsigned n, ClientStream **cs) {
        for (unsigned i = 0; i < n; i++) {
                cs[i] = submit(h, "GET", "/hold", NULL, 0, NULL, 0);
                ASSERT_NOT_NULL(cs[i]);
        }
        pump(h);
        ASSERT_EQ(T.n_hold, n);
        for (unsigned i = 0; i < n; i++)
                ASSERT_EQ(cs[i]->status, 200);
}

TEST(flush_after_dispatch) {
        _cleanup_(harness_done) Harness h;
        _cleanup_(sd_event_source_unrefp) sd_event_source *batch = NULL;
        ClientStream *cs[4];
        unsigned writes;

        ASSERT_OK(harness_init(&h, NULL));
        open_held(&h, ELEMENTSOF(cs), cs);
        ASSERT_OK(sd_event_add_defer(h.event, &batch, write_each_held, (void *) "delta"));
        ASSERT_OK(sd_event_source_set_enabled(batch, SD_EVENT_ONESHOT));
        writes = h.ms.n_writes;

        /* The batch is dispatched: nothing is sent from inside it. */
        ASSERT_EQ(sd_event_run(h.event, 0), 1);
        ASSERT_EQ(T.last_write, 0);
        ASSERT_EQ(h.ms.n_writes, writes);
        ASSERT_TRUE(buf_empty(&h.ms.out));

        /* The next iteration sends all four streams' deltas in one write, and dispatches nothing. */
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_EQ(h.ms.n_writes, writes + 1);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_DATA, NULL, NULL), ELEMENTSOF(cs));
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_EQ(h.ms.n_writes, writes + 1);
        pump(&h);
        for (unsigned i = 0; i < ELEMENTSOF(cs); i++) {
                ASSERT_EQ(buf_len(&cs[i]->body), 5);
                ASSERT_FALSE(cs[i]->closed);
        }

        /* A write outside any dispatch goes out in the first iteration, which dispatches nothing. */
        ASSERT_EQ(request_write(T.hold[2], "late", 4), 0);
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_DATA, NULL, NULL), 1);
        pump(&h);
        ASSERT_EQ(buf_len(&cs[2]->body), 9);
}

static int write_once_in_prepare(sd_event_source *s, void *userdata) {
        bool *armed = userdata;

        if (*armed && T.hold[0]) {
                *armed = false;
                T.last_write = request_write(T.hold[0], "2", 1);
        }
        return 0;
}

static int never(sd_event_source *s, uint64_t usec, void *userdata) {
        return 0;
}

/* A write from another source's prepare callback, after the session's ran in this iteration: the defer
 * source, still armed, is dispatched in the same iteration instead of waiting for an unrelated event. */
TEST(flush_kick_after_prepare) {
        _cleanup_(harness_done) Harness h;
        _cleanup_(sd_event_source_unrefp) sd_event_source *late = NULL;
        ClientStream *cs[1];
        bool armed = false;

        ASSERT_OK(harness_init(&h, NULL));
        open_held(&h, ELEMENTSOF(cs), cs);
        /* Enabled so its prepare callback runs each iteration, never due; after ours at equal age. */
        ASSERT_OK(sd_event_add_time(h.event, &late, CLOCK_MONOTONIC, UINT64_MAX, 0, never, &armed));
        ASSERT_OK(sd_event_source_set_priority(late, 10));
        ASSERT_OK(sd_event_source_set_prepare(late, write_once_in_prepare));
        ASSERT_EQ(sd_event_run(h.event, 0), 0);        /* both prepared once: equal age */

        ASSERT_EQ(request_write(T.hold[0], "1", 1), 0);
        armed = true;
        ASSERT_EQ(sd_event_run(h.event, 0), 1);
        ASSERT_FALSE(armed);
        ASSERT_EQ(T.last_write, 0);
        ASSERT_EQ(scan_frames(&h.ms.out, NGHTTP2_DATA, NULL, NULL), 2);
        pump(&h);
        ASSERT_EQ(buf_len(&cs[0]->body), 2);
        ASSERT_TRUE(memcmp(buf_data(&cs[0]->body), "12", 2) == 0);
}

/* The client resets one stream while its delta waits for the flush: the delta is dropped with the
 * stream, the other stream's goes out, the handler hears of the reset once. */
TEST(flush_pending_stream_reset) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs[2];
        const uint8_t *d;
        ssize_t n;

        ASSERT_OK(harness_init(&h, NULL));
        open_held(&h, ELEMENTSOF(cs), cs);
        ASSERT_EQ(request_write(T.hold[0], "x", 1), 0);
        ASSERT_EQ(request_write(T.hold[1], "y", 1), 0);
        ASSERT_TRUE(buf_empty(&h.ms.out));

        ASSERT_EQ(nghttp2_submit_rst_stream(h.client, NGHTTP2_FLAG_NONE, cs[0]->id, NGHTTP2_CANCEL), 0);
        while ((n = nghttp2_session_mem_send(h.client, &d)) > 0)
                feed(&h, d, (size_t) n);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_NULL(T.hold[0]);
        pump(&h);
        ASSERT_EQ(buf_len(&cs[0]->body), 0);
        ASSERT_TRUE(cs[0]->closed);
        ASSERT_EQ(buf_len(&cs[1]->body), 1);
        ASSERT_FALSE(cs[1]->closed);
        ASSERT_EQ(T.n_abort, 1);
        ASSERT_EQ(h.server.active_requests, 1);
        ASSERT_EQ(h.server.n_sessions, 1);
}

/* The connection goes while a flush is pending: the session and its armed source are gone, the loop
 * runs on with nothing to do (under ASan or valgrind: nothing touched after free). */
TEST(flush_pending_connection_lost) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs[3];
        Request *r;

        ASSERT_OK(harness_init(&h, NULL));
        open_held(&h, ELEMENTSOF(cs), cs);
        r = request_ref(T.hold[1]);
        for (unsigned i = 0; i < ELEMENTSOF(cs); i++)
                ASSERT_EQ(request_write(T.hold[i], "x", 1), 0);
        memstream_hangup(&h.ms, -ECONNRESET);
        ASSERT_EQ(T.n_abort, ELEMENTSOF(cs));
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_TRUE(buf_empty(&h.ms.out));
        ASSERT_ERROR(request_write(r, "x", 1), ECONNRESET);
        request_unref(r);
        ASSERT_EQ(h.server.active_requests, 0);
}

/* The flush fails (the transport broke): the session closes from inside its own prepare callback,
 * which frees the session and, once sd-event is done with it, the source. */
TEST(flush_fails) {
        _cleanup_(harness_done) Harness h;
        ClientStream *cs[2];

        ASSERT_OK(harness_init(&h, NULL));
        open_held(&h, ELEMENTSOF(cs), cs);
        ASSERT_EQ(request_write(T.hold[0], "x", 1), 0);
        ASSERT_EQ(request_write(T.hold[1], "y", 1), 0);
        h.ms.write_error = -EPIPE;
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
        ASSERT_TRUE(h.ms.closed);
        ASSERT_FALSE(h.ms.close_flush);
        ASSERT_EQ(T.n_abort, 2);
        ASSERT_EQ(h.server.n_sessions, 0);
        ASSERT_EQ(h.server.active_requests, 0);
        ASSERT_EQ(sd_event_run(h.event, 0), 0);
}

/* A handler that refills on every on_writable keeps a send pass busy: after H2_MAX_PASSES (16) passes the
 * session yields to the loop, and the rest is sent from the defer dispatch, 16 passes per iteration:
 * the prepare callback of a session that yielded must not run another 16 in the same iteration. */
#define GREEDY_WRITES 200

static void greedy_on_writable(Request *r, void *userdata) {
        static const char chunk[300];

        T.n_writable++;
        if (T.written >= GREEDY_WRITES * sizeof chunk)
                return;
        T.last_write = request_write(r, chunk, sizeof chunk);   /* over high water: 1, want_writable */
        T.written += sizeof chunk;
        if (T.written >= GREEDY_WRITES * sizeof chunk)
                (void) request_finish(r);
}

static const RequestHooks greedy_hooks = {
        .on_writable = greedy_on_writable,
        .on_abort = held_on_abort,
};

TEST(flush_yields) {
        _cleanup_(harness_done) Harness h;
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        ClientStream *cs[1];
        unsigned dispatched = 0, iterations = 0;

        l.send_high_water = 200;
        l.send_low_water = 100;
        ASSERT_OK(harness_init(&h, &l));
        open_held(&h, ELEMENTSOF(cs), cs);
        request_set_hooks(T.hold[0], &greedy_hooks, NULL);
        greedy_on_writable(T.hold[0], NULL);
        ASSERT_EQ(T.last_write, 1);

        while (T.written < GREEDY_WRITES * 300 && iterations < 1000) {
                unsigned w0 = T.n_writable;
                int k = sd_event_run(h.event, 0);

                ASSERT_TRUE(k >= 0);
                /* One refill per pass. The first iteration sends from the prepare callback, which
                 * yields after 16 passes to the defer dispatch, 16 more; after that only the
                 * dispatch sends, 16 passes per iteration. */
                ASSERT_TRUE(T.n_writable - w0 <= (iterations == 0 ? 32U : 16U));
                dispatched += k > 0;
                iterations++;
        }
        ASSERT_EQ(T.written, GREEDY_WRITES * 300);
        ASSERT_TRUE(dispatched > 0);
        ASSERT_TRUE(iterations >= GREEDY_WRITES / 16);
        pump(&h);
        ASSERT_TRUE(cs[0]->closed);
        ASSERT_EQ(cs[0]->close_error, NGHTTP2_NO_ERROR);
        ASSERT_EQ(buf_len(&cs[0]->body), GREEDY_WRITES * 300);
}
