/* test-http1: the HTTP/1.1 session over a MemStream: framing, limits, timeouts, smuggling defences. */
#include <stdio.h>

#include "http/request.h"
#include "http/server.h"
#include "memstream.h"
#include "shared/util.h"
#include "tests.h"

/* What the test handler saw and holds. */
static struct {
        unsigned dispatched;
        Request *held;
        unsigned aborted;
        unsigned writable;
        int write_result;
        char last_authority[256];
        char last_protocol[16];
} ctx;

typedef struct Fixture {
        sd_event *event;
        HttpServer server;
        MemStream ms;
        bool idle_called;
} Fixture;

static void hold_on_abort(Request *r, void *userdata) {
        ctx.aborted++;
        if (ctx.held == r)
                ctx.held = request_unref(ctx.held);
}

static void hold_on_writable(Request *r, void *userdata) {
        ctx.writable++;
        /* Resumed: finish the stream. */
        (void) request_write(r, "tail", 4);
        (void) request_finish(r);
        if (ctx.held == r)
                ctx.held = request_unref(ctx.held);
}

static const RequestHooks hold_hooks = {
        .on_writable = hold_on_writable,
        .on_abort = hold_on_abort,
};

/* "/hold..." keeps the request to be answered by the test; "/stream" streams in chunks; "/big" streams
 * until the high-water mark; anything else echoes "METHOD TARGET|BODY". */
static int test_dispatch(Request *r, void *userdata) {
        ctx.dispatched++;
        snprintf(ctx.last_authority, sizeof ctx.last_authority, "%s", r->authority ?: "(null)");
        snprintf(ctx.last_protocol, sizeof ctx.last_protocol, "%s", r->protocol ?: "(null)");

        if (startswith(r->path, "/hold")) {
                ctx.held = request_ref(r);
                request_set_hooks(r, &hold_hooks, NULL);
                if (streq(r->path, "/hold-stream")) {
                        if (request_start(r, 200, NULL, 0) < 0 || request_write(r, "first", 5) < 0)
                                return -EIO;
                }
                return 0;
        }
        if (streq(r->path, "/stream")) {
                HttpHeader h[] = { { "content-type", "text/event-stream" } };
                if (request_start(r, 200, h, 1) < 0 || request_write(r, "a", 1) < 0 ||
                    request_write(r, "bc", 2) < 0)
                        return -EIO;
                return request_finish(r);
        }
        if (streq(r->path, "/big")) {
                static char chunk[4096];
                memset(chunk, 'x', sizeof chunk);
                ctx.held = request_ref(r);
                request_set_hooks(r, &hold_hooks, NULL);
                if (request_start(r, 200, NULL, 0) < 0)
                        return -EIO;
                for (unsigned i = 0; i < 64; i++) {
                        ctx.write_result = request_write(r, chunk, sizeof chunk);
                        if (ctx.write_result != 0)
                                break;
                }
                return 0;
        }
        if (streq(r->path, "/bigreply")) {
                static char body[8192];
                memset(body, 'y', sizeof body);
                return request_reply(r, 200, NULL, 0, "text/plain", body, sizeof body);
        }
        if (streq(r->path, "/badheaders")) {
                HttpHeader h[] = {
                        { "x-ok", "fine" },
                        { "x-evil", "a\r\nset-cookie: pwned" },
                        { "bad name", "x" },
                        { "Connection", "keep-alive" },
                        { "Transfer-Encoding", "gzip" },
                        { "content-length", "999" },
                };
                return request_reply(r, 200, h, ELEMENTSOF(h), "text/plain", "ok", 2);
        }
        if (streq(r->path, "/forget"))
                return 0;
        if (streq(r->path, "/forget-stream"))
                return request_start(r, 200, NULL, 0);
        if (streq(r->path, "/nocontent"))
                return request_reply(r, 204, NULL, 0, NULL, "junk", 4);

        _cleanup_(buf_done) Buf b = {};
        if (buf_printf(&b, "%s %s|", r->method, r->target) < 0 ||
            (!buf_empty(&r->body) && buf_append(&b, buf_data(&r->body), buf_len(&r->body)) < 0))
                return -ENOMEM;
        return request_reply(r, 200, NULL, 0, "text/plain", buf_data(&b), buf_len(&b));
}

static void on_idle(void *userdata) {
        ((Fixture *) userdata)->idle_called = true;
}

static void fixture_init(Fixture *f, const HttpLimits *limits) {
        zero(ctx);
        *f = (Fixture){};
        if (sd_event_new(&f->event) < 0)
                abort();
        http_server_init(&f->server, f->event);
        if (limits)
                f->server.limits = *limits;
        f->server.dispatch = test_dispatch;
        f->server.on_idle = on_idle;
        f->server.on_idle_userdata = f;
        memstream_init(&f->ms, f->event);
        if (http1_session_new(&f->server, &f->ms.stream) < 0)
                abort();
}

static void fixture_done(Fixture *f) {
        memstream_hangup(&f->ms, 0);
        ctx.held = request_unref(ctx.held);
        http_server_done(&f->server);
        memstream_done(&f->ms);
        f->event = sd_event_unref(f->event);
}

static int feed(Fixture *f, const char *s) {
        return memstream_feed(&f->ms, s, strlen(s));
}

/* Output so far as a string; the test takes it. */
static char *take_output(Fixture *f) {
        char *s = strndup((const char *) buf_data(&f->ms.out), buf_len(&f->ms.out));
        if (!s)
                abort();
        buf_clear(&f->ms.out);
        return s;
}

static unsigned status_of(const char *s) {
        unsigned st = 0;
        if (sscanf(s, "HTTP/1.1 %u ", &st) != 1)
                return 0;
        return st;
}

static unsigned count(const char *hay, const char *needle) {
        unsigned n = 0;
        for (const char *p = hay; (p = strstr(p, needle)); p++)
                n++;
        return n;
}

/* Runs the loop until cond holds or about two seconds passed. */
#define RUN_UNTIL(f, cond)                                                      \
        do {                                                                    \
                usec_t _end = now_mono() + 2 * USEC_PER_SEC;                    \
                while (!(cond) && now_mono() < _end)                            \
                        (void) sd_event_run((f)->event, 50 * USEC_PER_MSEC);    \
        } while (0)

/* Removes "date: ..." lines: the only part of two runs that may differ. */
/* Drops the header lines that differ between otherwise equal responses: the date, and the per-request
 * id and timing the request layer adds. */
static void strip_date(char *s) {
        static const char *const varying[] = { "date: ", "x-request-id: ", "x-gate-overhead-us: " };
        for (size_t i = 0; i < ELEMENTSOF(varying); i++) {
                char *p;
                while ((p = strstr(s, varying[i]))) {
                        char *e = strstr(p, "\r\n");
                        if (!e)
                                break;
                        memmove(p, e + 2, strlen(e + 2) + 1);
                }
        }
}

TEST(simple_get) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hello?x=1 HTTP/1.1\r\nHost: example.com\r\nX-A: b\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
        ASSERT_CONTAINS(out, "content-type: text/plain\r\n");
        ASSERT_CONTAINS(out, "content-length: 15\r\n");
        ASSERT_CONTAINS(out, "date: ");
        ASSERT_CONTAINS(out, "\r\n\r\nGET /hello?x=1|");
        ASSERT_TRUE(strstr(out, "connection:") == NULL);
        ASSERT_STREQ(ctx.last_authority, "example.com");
        ASSERT_STREQ(ctx.last_protocol, "HTTP/1.1");
        ASSERT_FALSE(f.ms.closed);
        ASSERT_FALSE(f.ms.read_paused);
        ASSERT_EQ(f.server.n_sessions, 1);
        ASSERT_EQ(f.server.active_requests, 0);
        ASSERT_EQ(f.server.requests_total, 1);
}

TEST(keep_alive_two_requests) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /one HTTP/1.1\r\nHost: x\r\n\r\n"));
        a = take_output(&f);
        ASSERT_OK(feed(&f, "GET /two HTTP/1.1\r\nHost: x\r\n\r\n"));
        b = take_output(&f);
        ASSERT_CONTAINS(a, "GET /one|");
        ASSERT_CONTAINS(b, "GET /two|");
        ASSERT_FALSE(f.ms.closed);
        ASSERT_EQ(ctx.dispatched, 2);
}

TEST(pipelined_in_order) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;
        char *p1, *p2, *p3;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                           "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                           "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        p1 = strstr(out, "GET /1|");
        p2 = strstr(out, "POST /2|abc");
        p3 = strstr(out, "GET /3|");
        ASSERT_TRUE(p1 && p2 && p3 && p1 < p2 && p2 < p3);
        ASSERT_EQ(count(out, "HTTP/1.1 200"), 3);
        ASSERT_EQ(buf_len(&f.ms.in), 0);
}

TEST(pipelined_async_pauses) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"));
        /* The second request stays with the stream until the first is answered. */
        ASSERT_TRUE(f.ms.read_paused);
        ASSERT_EQ(buf_len(&f.ms.in), strlen("GET /after HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_EQ(buf_len(&f.ms.out), 0);
        ASSERT_EQ(ctx.dispatched, 1);
        ASSERT_NOT_NULL(ctx.held);

        ASSERT_OK(request_reply(ctx.held, 200, NULL, 0, "text/plain", "held", 4));
        ctx.held = request_unref(ctx.held);
        ASSERT_FALSE(f.ms.read_paused);
        a = take_output(&f);
        ASSERT_CONTAINS(a, "\r\n\r\nheld");
        ASSERT_OK(memstream_pump(&f.ms));
        b = take_output(&f);
        ASSERT_CONTAINS(b, "GET /after|");
        ASSERT_EQ(ctx.dispatched, 2);
}

TEST(post_content_length) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello"));
        ASSERT_EQ(ctx.dispatched, 0);
        ASSERT_OK(feed(&f, " world"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "POST /v1/chat|hello world");
}

TEST(chunked_request_body) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "5\r\nhello\r\n6;name=value\r\n world\r\nA\r\n0123456789\r\n0\r\n"
                           "X-Trailer: t\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
        ASSERT_CONTAINS(out, "POST /c|hello world0123456789");
        ASSERT_FALSE(f.ms.closed);
}

TEST(chunked_streamed_response) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "transfer-encoding: chunked\r\n");
        ASSERT_CONTAINS(out, "content-type: text/event-stream\r\n");
        ASSERT_CONTAINS(out, "\r\n\r\n1\r\na\r\n2\r\nbc\r\n0\r\n\r\n");
        ASSERT_FALSE(f.ms.closed);
        ASSERT_EQ(f.server.active_streams, 0);
}

TEST(head_has_no_body) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;
        size_t n;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "HEAD /x HTTP/1.1\r\nHost: x\r\n\r\n"));
        a = take_output(&f);
        n = strlen(a);
        ASSERT_CONTAINS(a, "content-length: 8\r\n");
        ASSERT_TRUE(n >= 4 && streq(a + n - 4, "\r\n\r\n"));
        ASSERT_OK(feed(&f, "HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n"));
        b = take_output(&f);
        n = strlen(b);
        ASSERT_CONTAINS(b, "transfer-encoding: chunked\r\n");
        ASSERT_TRUE(n >= 4 && streq(b + n - 4, "\r\n\r\n"));
        ASSERT_FALSE(f.ms.closed);
}

TEST(http10) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                ASSERT_OK(feed(&f, "GET /a HTTP/1.0\r\n\r\n"));
                a = take_output(&f);
                ASSERT_EQ(status_of(a), 200);
                ASSERT_CONTAINS(a, "connection: close\r\n");
                ASSERT_STREQ(ctx.last_protocol, "HTTP/1.0");
                ASSERT_STREQ(ctx.last_authority, "(null)");
                ASSERT_TRUE(f.ms.closed && f.ms.close_flush);
                ASSERT_EQ(f.server.n_sessions, 0);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                ASSERT_OK(feed(&f, "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
                b = take_output(&f);
                ASSERT_CONTAINS(b, "connection: keep-alive\r\n");
                ASSERT_FALSE(f.ms.closed);
                /* Unknown length: no chunked for HTTP/1.0, the close ends the body. */
                ASSERT_OK(feed(&f, "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
                c = take_output(&f);
                ASSERT_TRUE(strstr(c, "transfer-encoding") == NULL);
                ASSERT_CONTAINS(c, "connection: close\r\n");
                ASSERT_CONTAINS(c, "\r\n\r\nabc");
                ASSERT_TRUE(f.ms.closed && f.ms.close_flush);
        }
}

TEST(connection_close) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n"
                           "Host: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "connection: close\r\n");
        ASSERT_EQ(count(out, "HTTP/1.1 "), 1);
        ASSERT_EQ(ctx.dispatched, 1);
        ASSERT_TRUE(f.ms.closed && f.ms.close_flush);
        ASSERT_EQ(f.server.n_sessions, 0);
}

TEST(expect_continue) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL;

        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                ASSERT_OK(feed(&f, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                   "Content-Length: 4\r\n\r\n"));
                a = take_output(&f);
                ASSERT_STREQ(a, "HTTP/1.1 100 Continue\r\n\r\n");
                ASSERT_OK(feed(&f, "body"));
                b = take_output(&f);
                ASSERT_EQ(status_of(b), 200);
                ASSERT_CONTAINS(b, "POST /e|body");
                ASSERT_TRUE(strstr(b, "100 Continue") == NULL);
        }
        {
                HttpLimits l = HTTP_LIMITS_DEFAULT;
                _cleanup_(fixture_done) Fixture f;
                l.max_body_bytes = 10;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                                   "Content-Length: 400\r\n\r\n"));
                c = take_output(&f);
                ASSERT_EQ(status_of(c), 413);
                ASSERT_TRUE(strstr(c, "100 Continue") == NULL);
                ASSERT_TRUE(f.ms.closed);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                ASSERT_OK(feed(&f, "POST /e HTTP/1.1\r\nHost: x\r\nExpect: something-else\r\n"
                                   "Content-Length: 4\r\n\r\n"));
                d = take_output(&f);
                ASSERT_EQ(status_of(d), 417);
                ASSERT_TRUE(f.ms.closed);
                ASSERT_EQ(ctx.dispatched, 0);
        }
}

typedef struct BadCase {
        const char *name;
        const char *input;
        unsigned status;
} BadCase;

static const BadCase bad_cases[] = {
        { "cl+te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                   "\r\n0\r\n\r\n", 400 },
        { "te+cl", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n"
                   "\r\n0\r\n\r\n", 400 },
        { "dup-cl-same", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                         "Content-Length: 1\r\n\r\nx", 400 },
        { "dup-cl-diff", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
                         "Content-Length: 2\r\n\r\nxx", 400 },
        { "cl-list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 1\r\n\r\nx", 400 },
        { "cl-plus", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\nx", 400 },
        { "cl-neg", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400 },
        { "cl-alpha", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n", 400 },
        { "cl-empty", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: \r\n\r\n", 400 },
        { "cl-huge", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400 },
        { "te-gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
        { "te-gzip-chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                             "0\r\n\r\n", 501 },
        { "te-chunked-gzip", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400 },
        { "te-chunked-twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
                              "0\r\n\r\n", 400 },
        { "te-two-headers", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                            "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "te-empty-item", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n\r\n"
                           "0\r\n\r\n", 400 },
        { "te-empty", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n", 400 },
        { "te-garbage", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", 400 },
        { "te-http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
        { "obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400 },
        { "obs-fold-tab", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n\tb\r\n\r\n", 400 },
        { "ws-before-first-header", "GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400 },
        { "ws-before-colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400 },
        { "space-in-name", "GET / HTTP/1.1\r\nHo st: x\r\n\r\n", 400 },
        { "chunk-size-bad", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400 },
        { "chunk-size-bare-cr", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\rxhello\r\n0\r\n\r\n", 400 },
        { "chunk-size-bare-lf", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\nhello\r\n0\r\n\r\n", 400 },
        { "chunk-size-overflow", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "ffffffffffffffffff\r\n", 400 },
        { "chunk-size-neg", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n", 400 },
        { "chunk-data-long", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n"
                             "abc\r\n0\r\n\r\n", 400 },
        { "chunk-trailer-fold", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
                                "X: y\r\n z\r\n\r\n", 400 },
        { "nul-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 400 },
        { "cr-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400 },
        { "bare-lf-lines", "GET / HTTP/1.1\nHost: x\n\n", 400 },
        { "ctl-in-value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01" "b\r\n\r\n", 400 },
        { "no-host", "GET / HTTP/1.1\r\n\r\n", 400 },
        { "two-hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
        { "bad-host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400 },
        { "double-space", "GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "trailing-space", "GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400 },
        { "tab-in-target", "GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", 400 },
        { "http09", "GET /\r\n\r\n", 400 },
        { "version-2", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505 },
        { "version-junk", "GET / HTTP/1.x\r\nHost: x\r\n\r\n", 400 },
        { "unknown-method", "BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 501 },
};

static void check_bad(const BadCase *c, size_t len, bool bytewise) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        if (bytewise)
                for (size_t i = 0; i < len && !f.ms.closed; i++)
                        (void) memstream_feed(&f.ms, c->input + i, 1);
        else
                (void) memstream_feed(&f.ms, c->input, len);
        out = take_output(&f);
        if (status_of(out) != c->status || !f.ms.closed || !strstr(out, "connection: close\r\n") ||
            !strstr(out, "content-type: application/json\r\n") || ctx.dispatched != 0)
                TEST_FAIL("%s%s: got \"%s\" (closed=%d dispatched=%u), expected %u", c->name,
                          bytewise ? " (bytewise)" : "", out, f.ms.closed, ctx.dispatched, c->status);
        ASSERT_EQ(f.server.n_sessions, 0);
        ASSERT_EQ(f.server.active_requests, 0);
}

TEST(smuggling_defences) {
        for (size_t i = 0; i < ELEMENTSOF(bad_cases); i++) {
                /* Cases with a NUL inside are sized by hand. */
                size_t len = streq(bad_cases[i].name, "nul-in-value") ?
                        STRLEN("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n") :
                        strlen(bad_cases[i].input);
                check_bad(bad_cases + i, len, false);
                check_bad(bad_cases + i, len, true);
        }
}

TEST(error_body_is_json) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "\r\n\r\n{\"error\":{\"message\":\"Missing Host header.\","
                             "\"type\":\"invalid_request_error\",\"code\":\"bad_request\"}}\n");
}

TEST(upgrade_ignored) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        /* A body after an Upgrade request is still this request's body, not another protocol. */
        ASSERT_OK(feed(&f, "POST /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                           "Upgrade: h2c\r\n"
                           "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 4\r\n\r\nbody"
                           "GET /next HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
        ASSERT_TRUE(strstr(out, "HTTP/1.1 101") == NULL);
        ASSERT_CONTAINS(out, "POST /u|body");
        ASSERT_CONTAINS(out, "GET /next|");
        ASSERT_FALSE(f.ms.closed);
}

TEST(higher_minor_version) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /v HTTP/1.2\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
        ASSERT_STREQ(ctx.last_protocol, "HTTP/1.1");
        ASSERT_FALSE(f.ms.closed);
}

TEST(absolute_form_target) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET http://example.com/v1/models?x HTTP/1.1\r\nHost: example.com\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "GET http://example.com/v1/models?x|");
}

TEST(leading_empty_lines) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz\r\n"
                           "GET /b HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(count(out, "HTTP/1.1 200"), 2);
        ASSERT_CONTAINS(out, "GET /b|");
}

TEST(body_too_large) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

        l.max_body_bytes = 16;
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                /* Refused from the header alone, before any of the body arrived. */
                ASSERT_OK(feed(&f, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n"));
                a = take_output(&f);
                ASSERT_EQ(status_of(a), 413);
                ASSERT_CONTAINS(a, "\"code\":\"request_too_large\"");
                ASSERT_TRUE(f.ms.closed);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                   "8\r\n12345678\r\n8\r\n12345678\r\n"));
                ASSERT_EQ(buf_len(&f.ms.out), 0);
                ASSERT_OK(feed(&f, "1\r\n"));
                b = take_output(&f);
                ASSERT_EQ(status_of(b), 413);
                ASSERT_TRUE(f.ms.closed);
                ASSERT_EQ(ctx.dispatched, 0);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n"
                                   "1234567890123456"));
                c = take_output(&f);
                ASSERT_EQ(status_of(c), 200);
        }
}

TEST(header_too_large) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_free_ char *a = NULL, *b = NULL, *big = NULL, *c = NULL;

        l.max_header_bytes = 256;
        l.max_headers = 4;
        big = malloc(400);
        ASSERT_NOT_NULL(big);
        memset(big, 'a', 399);
        big[399] = 0;
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: "));
                ASSERT_OK(feed(&f, big));
                a = take_output(&f);
                ASSERT_EQ(status_of(a), 431);
                ASSERT_CONTAINS(a, "\"code\":\"header_too_large\"");
                ASSERT_TRUE(f.ms.closed);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"));
                b = take_output(&f);
                ASSERT_EQ(status_of(b), 431);
                ASSERT_TRUE(f.ms.closed);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, &l);
                ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"));
                c = take_output(&f);
                ASSERT_EQ(status_of(c), 200);
        }
}

TEST(header_timeout) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        l.header_timeout = 30 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\n"));
        /* Trickling bytes do not extend the deadline. */
        for (unsigned i = 0; i < 20 && !f.ms.closed; i++) {
                (void) sd_event_run(f.event, 20 * USEC_PER_MSEC);
                ASSERT_OK(feed(&f, "X"));
        }
        RUN_UNTIL(&f, f.ms.closed);
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 408);
        ASSERT_CONTAINS(out, "\"code\":\"timeout\"");
        ASSERT_TRUE(f.ms.closed);
        ASSERT_EQ(f.server.n_sessions, 0);
}

TEST(header_timeout_from_start) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        l.header_timeout = 30 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        RUN_UNTIL(&f, f.ms.closed);
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 408);
        ASSERT_TRUE(f.ms.closed);
}

TEST(body_timeout) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        l.body_timeout = 30 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12"));
        RUN_UNTIL(&f, f.ms.closed);
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 408);
        ASSERT_TRUE(f.ms.closed);
        ASSERT_EQ(ctx.dispatched, 0);
}

TEST(idle_timeout_closes_silently) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;

        l.idle_timeout = 30 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        a = take_output(&f);
        ASSERT_EQ(status_of(a), 200);
        RUN_UNTIL(&f, f.ms.closed);
        b = take_output(&f);
        ASSERT_TRUE(f.ms.closed);
        ASSERT_STREQ(b, "");
        ASSERT_EQ(f.server.n_sessions, 0);
}

/* Timers are lazy (armed for the earliest phase, re-armed when they fire early): each request must
 * still restart the idle timeout, and a held request must not meet the header timeout of its head. */
TEST(lazy_timers_follow_the_phase) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *held = NULL, *b = NULL;

        l.idle_timeout = 60 * USEC_PER_MSEC;
        l.header_timeout = 40 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        /* 8 requests 25 ms apart: 200 ms in all, far beyond one idle timeout, never idle for long. */
        for (unsigned i = 0; i < 8; i++) {
                _cleanup_free_ char *a = NULL;
                usec_t until = now_mono() + 25 * USEC_PER_MSEC;

                ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
                a = take_output(&f);
                ASSERT_EQ(status_of(a), 200);
                while (now_mono() < until && !f.ms.closed)
                        (void) sd_event_run(f.event, 5 * USEC_PER_MSEC);
                ASSERT_FALSE(f.ms.closed);
        }
        /* Held for 3 header timeouts: the handler's time is its own. */
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        for (usec_t until = now_mono() + 120 * USEC_PER_MSEC; now_mono() < until;)
                (void) sd_event_run(f.event, 5 * USEC_PER_MSEC);
        ASSERT_FALSE(f.ms.closed);
        ASSERT_OK(request_reply(ctx.held, 200, NULL, 0, "text/plain", "late", 4));
        ctx.held = request_unref(ctx.held);
        held = take_output(&f);
        ASSERT_EQ(status_of(held), 200);
        ASSERT_CONTAINS(held, "late");
        /* And then the idle timeout closes it. */
        RUN_UNTIL(&f, f.ms.closed);
        b = take_output(&f);
        ASSERT_STREQ(b, "");
}

TEST(bytewise_equals_whole) {
        static const char input[] =
                "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                "POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\n"
                "de\r\n0\r\n\r\n"
                "POST /3 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nfghij"
                "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
                "HEAD /5 HTTP/1.1\r\nHost: x\r\n\r\n"
                "GET /6 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        _cleanup_free_ char *whole = NULL, *bytewise = NULL;

        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                ASSERT_OK(memstream_feed(&f.ms, input, sizeof input - 1));
                whole = take_output(&f);
                ASSERT_TRUE(f.ms.closed);
        }
        {
                _cleanup_(fixture_done) Fixture f;
                fixture_init(&f, NULL);
                for (size_t i = 0; i < sizeof input - 1; i++)
                        ASSERT_OK(memstream_feed(&f.ms, input + i, 1));
                bytewise = take_output(&f);
                ASSERT_TRUE(f.ms.closed);
        }
        strip_date(whole);
        strip_date(bytewise);
        ASSERT_STREQ(whole, bytewise);
        ASSERT_EQ(count(whole, "HTTP/1.1 200"), 6);
        ASSERT_CONTAINS(whole, "POST /2|abcde");
        ASSERT_CONTAINS(whole, "POST /3|fghij");
}

TEST(slow_reader_backpressure) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        l.send_high_water = 16U << 10;
        fixture_init(&f, &l);
        f.ms.hold_output = true;
        ASSERT_OK(feed(&f, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_EQ(ctx.write_result, 1);
        ASSERT_TRUE(f.ms.want_writable);
        ASSERT_EQ(ctx.writable, 0);
        ASSERT_NOT_NULL(ctx.held);

        /* The client reads: the handler is told to go on, and finishes. */
        f.ms.hold_output = false;
        memstream_drain(&f.ms);
        ASSERT_EQ(ctx.writable, 1);
        ASSERT_NULL(ctx.held);
        out = take_output(&f);
        ASSERT_CONTAINS(out, "4\r\ntail\r\n0\r\n\r\n");
        ASSERT_FALSE(f.ms.closed);
        ASSERT_FALSE(f.ms.read_paused);
}

TEST(send_timeout) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;

        l.send_high_water = 16U << 10;
        l.send_timeout = 30 * USEC_PER_MSEC;
        fixture_init(&f, &l);
        f.ms.hold_output = true;
        ASSERT_OK(feed(&f, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_EQ(ctx.write_result, 1);
        RUN_UNTIL(&f, f.ms.closed);
        ASSERT_TRUE(f.ms.closed);
        ASSERT_FALSE(f.ms.close_flush);
        ASSERT_EQ(ctx.aborted, 1);
        ASSERT_EQ(f.server.n_sessions, 0);
}

TEST(pipelined_backlog_waits_for_reader) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        l.send_high_water = 4096;
        fixture_init(&f, &l);
        f.ms.hold_output = true;
        ASSERT_OK(feed(&f, "GET /bigreply HTTP/1.1\r\nHost: x\r\n\r\nGET /bigreply HTTP/1.1\r\n"
                           "Host: x\r\n\r\n"));
        /* The first response is queued; the second request waits until the client reads. */
        ASSERT_EQ(ctx.dispatched, 1);
        ASSERT_TRUE(f.ms.read_paused);
        ASSERT_TRUE(f.ms.want_writable);
        f.ms.hold_output = false;
        memstream_drain(&f.ms);
        ASSERT_FALSE(f.ms.read_paused);
        ASSERT_OK(memstream_pump(&f.ms));
        ASSERT_EQ(ctx.dispatched, 2);
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
}

TEST(hangup_during_stream_aborts) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold-stream HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "5\r\nfirst\r\n");
        ASSERT_EQ(f.server.active_streams, 1);
        ASSERT_NOT_NULL(ctx.held);
        memstream_hangup(&f.ms, -ECONNRESET);
        ASSERT_EQ(ctx.aborted, 1);
        ASSERT_NULL(ctx.held);
        ASSERT_EQ(f.server.n_sessions, 0);
        ASSERT_EQ(f.server.active_streams, 0);
        ASSERT_EQ(f.server.active_requests, 0);
}

TEST(hangup_while_reading_request) {
        _cleanup_(fixture_done) Fixture f;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
        memstream_hangup(&f.ms, 0);
        ASSERT_EQ(ctx.dispatched, 0);
        ASSERT_EQ(ctx.aborted, 0);
        ASSERT_EQ(f.server.n_sessions, 0);
        ASSERT_EQ(f.server.active_requests, 0);
}

TEST(drain_idle_closes) {
        _cleanup_(fixture_done) Fixture f;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        http_server_drain(&f.server);
        ASSERT_TRUE(f.ms.closed && f.ms.close_flush);
        ASSERT_EQ(f.server.n_sessions, 0);
        ASSERT_TRUE(f.idle_called);
}

TEST(drain_in_flight_answers_with_close) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        http_server_drain(&f.server);
        ASSERT_FALSE(f.ms.closed);
        ASSERT_FALSE(f.idle_called);
        ASSERT_OK(request_reply(ctx.held, 200, NULL, 0, "text/plain", "bye", 3));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "connection: close\r\n");
        ASSERT_CONTAINS(out, "\r\n\r\nbye");
        ASSERT_TRUE(f.ms.closed && f.ms.close_flush);
        ASSERT_TRUE(f.idle_called);
        /* Once answered, the request no longer reaches the connection. */
        ASSERT_ERROR(request_write(ctx.held, "x", 1), ECONNRESET);
        ASSERT_NULL(ctx.held->info);
}

TEST(drain_while_reading_request) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab"));
        http_server_drain(&f.server);
        ASSERT_FALSE(f.ms.closed);
        ASSERT_OK(feed(&f, "cd"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "POST /p|abcd");
        ASSERT_CONTAINS(out, "connection: close\r\n");
        ASSERT_TRUE(f.ms.closed);
}

TEST(abort_all) {
        _cleanup_(fixture_done) Fixture f;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold-stream HTTP/1.1\r\nHost: x\r\n\r\n"));
        http_server_abort_all(&f.server);
        ASSERT_TRUE(f.ms.closed);
        ASSERT_FALSE(f.ms.close_flush);
        ASSERT_EQ(ctx.aborted, 1);
        ASSERT_EQ(f.server.n_sessions, 0);
}

TEST(response_header_hygiene) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL, *c = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /badheaders HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "x-ok: fine\r\n");
        ASSERT_TRUE(strstr(out, "pwned") == NULL);
        ASSERT_TRUE(strstr(out, "bad name") == NULL);
        ASSERT_TRUE(strstr(out, "Connection") == NULL);
        ASSERT_TRUE(strstr(out, "Transfer-Encoding") == NULL);
        ASSERT_TRUE(strstr(out, "999") == NULL);
        ASSERT_CONTAINS(out, "content-length: 2\r\n\r\nok");

        ASSERT_OK(feed(&f, "GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"));
        c = take_output(&f);
        ASSERT_EQ(status_of(c), 204);
        ASSERT_TRUE(strstr(c, "content-length") == NULL);
        ASSERT_TRUE(strstr(c, "junk") == NULL);
        ASSERT_FALSE(f.ms.closed);
}

TEST(handler_forgets_request) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /forget HTTP/1.1\r\nHost: x\r\n\r\n"));
        a = take_output(&f);
        ASSERT_EQ(status_of(a), 500);
        ASSERT_FALSE(f.ms.closed);
        ASSERT_OK(feed(&f, "GET /forget-stream HTTP/1.1\r\nHost: x\r\n\r\n"));
        b = take_output(&f);
        ASSERT_TRUE(f.ms.closed);
        ASSERT_FALSE(f.ms.close_flush);
        ASSERT_EQ(f.server.n_sessions, 0);
        ASSERT_EQ(f.server.active_requests, 0);
}

TEST(pause_inside_read_still_resumes) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *out = NULL;

        /* The client reads everything at once, but the handler's writes pile up in the session's own
         * buffer during on_read: it is paused, and must still be woken. */
        l.send_high_water = 16U << 10;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_EQ(ctx.write_result, 1);
        ASSERT_TRUE(f.ms.want_writable);
        memstream_drain(&f.ms);
        ASSERT_EQ(ctx.writable, 1);
        ASSERT_NULL(ctx.held);
        ASSERT_OK(feed(&f, "GET /after HTTP/1.1\r\nHost: x\r\n\r\n"));
        out = take_output(&f);
        ASSERT_CONTAINS(out, "GET /after|");
}

TEST(header_limit_above_parser_default) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *big = NULL, *out = NULL;
        size_t n = 100U << 10;

        /* Beyond the 80 KiB that libhttp-parser (used before) allowed: the configured limit is the one. */
        l.max_header_bytes = 200U << 10;
        fixture_init(&f, &l);
        big = malloc(n + 1);
        ASSERT_NOT_NULL(big);
        memset(big, 'v', n);
        big[n] = 0;
        ASSERT_OK(feed(&f, "GET /big-header HTTP/1.1\r\nHost: x\r\nX-Big: "));
        ASSERT_OK(feed(&f, big));
        ASSERT_OK(feed(&f, "\r\n\r\n"));
        out = take_output(&f);
        ASSERT_EQ(status_of(out), 200);
}

/* Edge cases of the request parser (RFC 9112), each whole and byte by byte: method and version length,
 * target forms, chunk extensions and trailers, keep-alive rules, pipelining after bodies, empty lines. */
static unsigned edge_run(const char *in, bool bytewise, bool *closed, char **ret_out) {
        _cleanup_(fixture_done) Fixture f;
        fixture_init(&f, NULL);
        size_t n = strlen(in);
        if (bytewise)
                for (size_t i = 0; i < n && !f.ms.closed; i++)
                        (void) memstream_feed(&f.ms, in + i, 1);
        else
                (void) memstream_feed(&f.ms, in, n);
        *ret_out = take_output(&f);
        *closed = f.ms.closed;
        return ctx.dispatched;
}

TEST(parser_edges) {
        static const struct { const char *in; unsigned st; unsigned n200; bool closed; } cases[] = {
                { "GETGETGETGETGETG / HTTP/1.1\r\nHost: x\r\n\r\n", 501, 0, true },
                { "GETGETGETGETGET / HTTP/1.1\r\nHost: x\r\n\r\n", 501, 0, true },
                { "GET / HTTP/1.11\r\nHost: x\r\n\r\n", 400, 0, true },
                { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, 1, false },
                { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;a=\"x;y\"\r\nZ\r\n0\r\n"
                  "X-T: v\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 200, 2, false },
                { "GET / HTTP/1.0\r\n\r\n", 200, 1, true },
                { "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 200, 1, false },
                { "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 200, 1, true },
                { "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 200, 2, false },
                { "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n", 200, 2, false },
                { "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 200, 1, false },
                { "GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0, true },
                { "GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n", 200, 1, false },
                { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", 200, 1, false },
                { "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nBad Name: v\r\n\r\n", 400, 0, true },
                { "GET / HTTP/1.1\r\nHost: x\r\nX:\r\n\r\n", 200, 1, false },
                { "GET / HTTP/1.1\r\nHost: x\r\n:v\r\n\r\n", 400, 0, true },
                { "GET / HTTP/1.1\r\nHost: x\r\nX: \x80\xff\r\n\r\n", 200, 1, false },
                { "GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0, true },
                { "\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 200, 1, false },
                { "\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, 0, true },
                /* A bare LF where the next request line would start: strict, a 400 after the answer. */
                { "GET / HTTP/1.1\r\nHost: x\r\n\r\n\n", 200, 1, true },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                for (int b = 0; b < 2; b++) {
                        _cleanup_free_ char *out = NULL;
                        bool closed;
                        unsigned d = edge_run(cases[i].in, b, &closed, &out);
                        if (status_of(out) != cases[i].st || count(out, "HTTP/1.1 200") != cases[i].n200 ||
                            closed != cases[i].closed)
                                TEST_FAIL("case %zu%s: \"%s\" closed=%d dispatched=%u", i, b ? " bytewise" : "",
                                          out, closed, d);
                }
}

/* A handler answering later (a relayed upstream stream): its streamed head waits for the end of the dispatch,
 * or for the first body bytes, to leave with them in one write. */
TEST(later_head_leaves_with_the_first_event) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;
        unsigned writes;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        writes = f.ms.n_writes;

        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        /* Nothing yet: the head waits for the end of this dispatch or the first event. */
        ASSERT_EQ(f.ms.n_writes, writes);
        ASSERT_EQ(buf_len(&f.ms.out), 0U);
        ASSERT_OK(request_write(ctx.held, "first", 5));
        ASSERT_EQ(f.ms.n_writes, writes + 1);
        a = take_output(&f);
        ASSERT_EQ(status_of(a), 200);
        ASSERT_CONTAINS(a, "transfer-encoding: chunked\r\n");
        ASSERT_CONTAINS(a, "\r\n\r\n5\r\nfirst\r\n");
        /* The queue is empty again: the next iteration writes nothing. */
        ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_EQ(f.ms.n_writes, writes + 1);

        /* Later events go out as they come, and the end after them. */
        ASSERT_OK(request_write(ctx.held, "last", 4));
        ASSERT_EQ(f.ms.n_writes, writes + 2);
        ASSERT_OK(request_finish(ctx.held));
        ctx.held = request_unref(ctx.held);
        b = take_output(&f);
        ASSERT_STREQ(b, "4\r\nlast\r\n0\r\n\r\n");
        ASSERT_FALSE(f.ms.closed);
}

TEST(later_head_alone_leaves_when_the_dispatch_returns) {
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL;
        unsigned writes;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        writes = f.ms.n_writes;
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_EQ(f.ms.n_writes, writes);
        /* The next loop iteration, before it waits: the client sees the head before a late first event. */
        ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_EQ(f.ms.n_writes, writes + 1);
        a = take_output(&f);
        ASSERT_EQ(status_of(a), 200);
        ASSERT_TRUE(endswith(a, "\r\n\r\n"));
        ASSERT_NULL(f.server.h1_flush_list);
}

TEST(later_output_past_the_high_water_mark_goes_at_once) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        char chunk[512];

        l.send_high_water = 256;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        memset(chunk, 'z', sizeof chunk);
        /* Past the mark: written now, and the handler is told to wait, as without the queue. */
        f.ms.hold_output = true;
        ASSERT_EQ(request_write(ctx.held, chunk, sizeof chunk), 1);
        ASSERT_TRUE(buf_len(&f.ms.out) > sizeof chunk);
        ASSERT_TRUE(f.ms.want_writable);
}

TEST(later_output_queued_when_the_client_goes) {
        _cleanup_(fixture_done) Fixture f;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_NOT_NULL(f.server.h1_flush_list);
        /* The connection breaks with the output queued: the session goes, the queue forgets it (valgrind
         * and ASan builds would see a use after free at the next iteration otherwise). */
        memstream_hangup(&f.ms, -ECONNRESET);
        ASSERT_EQ(ctx.aborted, 1);
        ASSERT_EQ(f.server.n_sessions, 0U);
        ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_NULL(f.server.h1_flush_list);
}

/* An HttpServer may end before its event loop does (fuzz-http1 keeps one loop for every input, with a new
 * server on the stack each time): once the server is gone, the loop must not call into its storage, even
 * when a later answer used the flush queue and the queue emptied without the source running. */
TEST(server_gone_before_its_loop) {
        union {
                HttpServer server;
                uint8_t bytes[sizeof(HttpServer)];
        } u;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        MemStream ms;

        zero(ctx);
        ASSERT_OK(sd_event_new(&event));
        http_server_init(&u.server, event);
        u.server.dispatch = test_dispatch;
        memstream_init(&ms, event);
        ASSERT_OK(http1_session_new(&u.server, &ms.stream));
        ASSERT_OK(memstream_feed(&ms, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n", 31));
        ASSERT_NOT_NULL(ctx.held);
        /* Answered later: the head waits in the queue, the end sends it at once and empties the queue. */
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_NOT_NULL(u.server.h1_flush_list);
        ASSERT_OK(request_finish(ctx.held));
        ctx.held = request_unref(ctx.held);
        ASSERT_NULL(u.server.h1_flush_list);
        memstream_hangup(&ms, 0);
        memstream_done(&ms);
        ASSERT_EQ(u.server.n_sessions, 0U);
        http_server_done(&u.server);
        ASSERT_NULL(u.server.h1_flush_source);

        /* The server is done; its storage is reused (the next fuzz input's stack frame). */
        memset(u.bytes, 0xa5, sizeof u.bytes);
        ASSERT_OK(sd_event_run(event, 0));
}

/* The queued flush fails (a broken transport): the session is torn down from the loop, its request told. */
TEST(later_output_write_fails_in_the_flush) {
        _cleanup_(fixture_done) Fixture f;

        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_NOT_NULL(f.server.h1_flush_list);
        f.ms.write_error = -EPIPE;
        ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_NULL(f.server.h1_flush_list);
        for (unsigned i = 0; i < 4 && !f.ms.closed; i++)
                ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_TRUE(f.ms.closed);
        ASSERT_FALSE(f.ms.close_flush);
        ASSERT_EQ(ctx.aborted, 1);
        ASSERT_EQ(f.server.n_sessions, 0U);
}

/* Where the flush source cannot be made or armed (here: the loop has ended), later output goes out at once. */
TEST(later_output_after_the_loop_ended_goes_at_once) {
        _cleanup_(fixture_done) Fixture f;
        unsigned writes;

        /* No source yet: sd_event_add_defer() fails. */
        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        ASSERT_OK(sd_event_exit(f.event, 0));
        ASSERT_OK(sd_event_loop(f.event));
        ASSERT_EQ(sd_event_get_state(f.event), SD_EVENT_FINISHED);
        writes = f.ms.n_writes;
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_EQ(f.ms.n_writes, writes + 1);
        ASSERT_OK(request_write(ctx.held, "first", 5));
        ASSERT_EQ(f.ms.n_writes, writes + 2);
        ASSERT_NULL(f.server.h1_flush_list);
        ASSERT_NULL(f.server.h1_flush_source);
        fixture_done(&f);

        /* A source made while the loop ran: enabling it fails. */
        fixture_init(&f, NULL);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_NOT_NULL(f.server.h1_flush_source);
        ASSERT_OK(sd_event_run(f.event, 0));
        ASSERT_NULL(f.server.h1_flush_list);
        ASSERT_OK(sd_event_exit(f.event, 0));
        ASSERT_OK(sd_event_loop(f.event));
        /* The next request on the connection, started after the loop ended: its head goes at once. */
        ASSERT_OK(request_finish(ctx.held));
        ctx.held = request_unref(ctx.held);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        writes = f.ms.n_writes;
        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        ASSERT_EQ(f.ms.n_writes, writes + 1);
        ASSERT_NULL(f.server.h1_flush_list);
}

/* request_cork(): a handler relaying several upstream chunks of one read makes one write at the uncork; past
 * the high-water mark it writes at once; the end sends what is held with itself. */
TEST(corked_writes_leave_together) {
        HttpLimits l = HTTP_LIMITS_DEFAULT;
        _cleanup_(fixture_done) Fixture f;
        _cleanup_free_ char *a = NULL, *b = NULL;
        char big[600];
        unsigned writes;

        l.send_high_water = 512;
        fixture_init(&f, &l);
        ASSERT_OK(feed(&f, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"));
        ASSERT_NOT_NULL(ctx.held);
        writes = f.ms.n_writes;

        ASSERT_OK(request_start(ctx.held, 200, NULL, 0));
        request_cork(ctx.held);
        ASSERT_OK(request_write(ctx.held, "one", 3));
        ASSERT_OK(request_write(ctx.held, "two", 3));
        ASSERT_EQ(f.ms.n_writes, writes);
        request_uncork(ctx.held);
        ASSERT_EQ(f.ms.n_writes, writes + 1);
        a = take_output(&f);
        ASSERT_CONTAINS(a, "\r\n\r\n3\r\none\r\n3\r\ntwo\r\n");

        /* Past the mark: at once. */
        request_cork(ctx.held);
        memset(big, 'b', sizeof big);
        ASSERT_OK(request_write(ctx.held, big, sizeof big));
        ASSERT_EQ(f.ms.n_writes, writes + 2);
        request_uncork(ctx.held);
        ASSERT_EQ(f.ms.n_writes, writes + 2);
        free(take_output(&f));

        /* The end, corked: what was held and the end in one write. */
        request_cork(ctx.held);
        ASSERT_OK(request_write(ctx.held, "last", 4));
        ASSERT_EQ(f.ms.n_writes, writes + 2);
        ASSERT_OK(request_finish(ctx.held));
        ctx.held = request_unref(ctx.held);
        ASSERT_EQ(f.ms.n_writes, writes + 3);
        b = take_output(&f);
        ASSERT_STREQ(b, "4\r\nlast\r\n0\r\n\r\n");
        ASSERT_FALSE(f.ms.closed);
}
