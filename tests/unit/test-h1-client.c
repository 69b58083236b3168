/* Unit tests for the HTTP/1.1 upstream client: framing, reuse, stale connections, pause, errors, cancel. */
#include <arpa/inet.h>
#include <dirent.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/h1-client.h"
#include "proxy/header-list.h"
#include "shared/buf.h"
#include "shared/util.h"
#include "tests.h"

/* ---- a scripted upstream, on a thread: each request read gets the next canned answer ---- */

typedef struct Upstream Upstream;

typedef struct Answer {
        const char *bytes;              /* written in pieces of `piece` bytes (0: at once) */
        size_t piece;
        bool close;                     /* close the connection after writing it */
        bool close_before;              /* close without reading or answering (a dead pooled conn) */
        void (*script)(Upstream *u, int fd);    /* or this does it all; the connection is closed after */
} Answer;

struct Upstream {
        int listen_fd;
        uint16_t port;
        const Answer *answers;
        size_t n_answers;
        pthread_t thread;
        unsigned accepted;              /* connections */
        unsigned requests;
        char last_request[4096];
        /* For scripts: */
        size_t body_len;                /* the request body the script expects */
        size_t received;                /* request bytes it read */
        size_t sent;                    /* answer bytes it wrote */
        bool body_ok;
        bool go;                        /* set by the test: the script may go on */
};

/* The upstream never dies of SIGPIPE when the client hangs up: the client under test must not either,
 * and it is not allowed to rely on the signal being ignored. */
static ssize_t send_all(int fd, const void *p, size_t n) {
        size_t done = 0;

        while (done < n) {
                ssize_t k = send(fd, (const char *) p + done, n - done, MSG_NOSIGNAL);
                if (k < 0)
                        return -1;
                done += (size_t) k;
        }
        return (ssize_t) done;
}

static void wait_go(Upstream *u) {
        for (unsigned i = 0; i < 5000 && !__atomic_load_n(&u->go, __ATOMIC_SEQ_CST); i++)
                usleep(1000);
}

static ssize_t read_request(int fd, char *out, size_t size) {
        size_t n = 0;
        char *end;

        while (!(end = memmem(out, n, "\r\n\r\n", 4))) {
                ssize_t k = read(fd, out + n, size - 1 - n);
                if (k <= 0)
                        return -1;
                n += (size_t) k;
        }
        const char *cl = strcasestr(out, "content-length: ");
        size_t body = cl && cl < end ? strtoul(cl + 16, NULL, 10) : 0;
        while (n < (size_t) (end + 4 - out) + body) {
                ssize_t k = read(fd, out + n, size - 1 - n);
                if (k <= 0)
                        return -1;
                n += (size_t) k;
        }
        out[n] = 0;
        return (ssize_t) n;
}

static void *upstream_run(void *userdata) {
        Upstream *u = userdata;
        size_t i = 0;

        while (i < u->n_answers) {
                int fd = accept(u->listen_fd, NULL, NULL);
                if (fd < 0)
                        break;
                __atomic_add_fetch(&u->accepted, 1, __ATOMIC_SEQ_CST);
                /* Nothing a script does may hang the test run. */
                struct timeval tv = { .tv_sec = 5 };
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                (void) setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
                while (i < u->n_answers) {
                        const Answer *a = &u->answers[i];
                        char req[4096];

                        if (a->script) {
                                a->script(u, fd);
                                i++;
                                break;
                        }
                        if (a->close_before) {
                                i++;
                                break;
                        }
                        if (read_request(fd, req, sizeof req) < 0)
                                break;
                        snprintf(u->last_request, sizeof u->last_request, "%s", req);
                        __atomic_add_fetch(&u->requests, 1, __ATOMIC_SEQ_CST);
                        size_t len = strlen(a->bytes), step = a->piece ?: len;
                        for (size_t off = 0; off < len; off += step) {
                                (void) send_all(fd, a->bytes + off, MIN(step, len - off));
                                if (a->piece)
                                        usleep(2000);
                        }
                        i++;
                        if (a->close)
                                break;
                }
                close(fd);
        }
        return NULL;
}

static void upstream_start(Upstream *u, const Answer *answers, size_t n) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;

        *u = (Upstream){ .answers = answers, .n_answers = n };
        u->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        (void) bind(u->listen_fd, (struct sockaddr *) &a, sizeof a);
        (void) listen(u->listen_fd, 16);
        (void) getsockname(u->listen_fd, (struct sockaddr *) &a, &len);
        u->port = ntohs(a.sin_port);
        (void) pthread_create(&u->thread, NULL, upstream_run, u);
}

static void upstream_stop(Upstream *u) {
        shutdown(u->listen_fd, SHUT_RDWR);
        pthread_join(u->thread, NULL);
        close(u->listen_fd);
}

/* ---- the client side ---- */

typedef struct Result {
        Buf head;
        Buf body;
        bool done;
        unsigned n_done;                /* done() calls: exactly one, or none after a cancel */
        bool done_in_callback;          /* done() from inside header()/write(): never allowed */
        bool in_callback;
        CURLcode code;
        unsigned status;                /* h1_transfer_status() when the head ended */
        unsigned pause_next;            /* write() answers PAUSE this many more times */
        bool pause_alternate;           /* or every other time: each pause is followed by a delivery */
        bool flip;
        bool paused;                    /* the last write() paused */
        bool cancel_in_write;
        bool cancel_in_header;
        bool cancel_in_fed;
        unsigned n_fed;                 /* fed() calls */
        unsigned writes_since_fed;      /* write() calls since the last fed() */
        bool fed_without_write;         /* fed() with no write() since the last one: never allowed */
        bool fed_after_done;
        H1Transfer *transfer;
} Result;

static size_t on_header(char *line, size_t size, size_t n, void *userdata) {
        Result *r = userdata;

        if (r->cancel_in_header) {
                r->in_callback = true;
                h1_transfer_cancel(r->transfer);
                r->in_callback = false;
                r->transfer = NULL;
                return 0;
        }
        (void) buf_append(&r->head, line, size * n);
        if (n <= 2)
                r->status = h1_transfer_status(r->transfer);
        return size * n;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        Result *r = userdata;

        if (r->cancel_in_write) {
                r->in_callback = true;
                h1_transfer_cancel(r->transfer);
                r->in_callback = false;
                r->transfer = NULL;
                return 0;
        }
        if (r->pause_next > 0 || (r->pause_alternate && (r->flip = !r->flip))) {
                if (r->pause_next > 0)
                        r->pause_next--;
                r->paused = true;
                return CURL_WRITEFUNC_PAUSE;
        }
        r->paused = false;
        r->writes_since_fed++;
        (void) buf_append(&r->body, data, size * n);
        return size * n;
}

static void on_fed(void *userdata) {
        Result *r = userdata;

        r->n_fed++;
        r->fed_after_done = r->fed_after_done || r->done;
        r->fed_without_write = r->fed_without_write || r->writes_since_fed == 0;
        r->writes_since_fed = 0;
        if (r->cancel_in_fed) {
                r->in_callback = true;
                h1_transfer_cancel(r->transfer);
                r->in_callback = false;
                r->transfer = NULL;
        }
}

static void on_done(CURLcode code, void *userdata) {
        Result *r = userdata;
        r->done = true;
        r->n_done++;
        r->done_in_callback = r->done_in_callback || r->in_callback;
        r->code = code;
        r->transfer = NULL;
}

static const H1Callbacks callbacks = { on_header, on_write, on_done };
static const H1Callbacks callbacks_fed = { on_header, on_write, on_done, on_fed };

static void result_done(Result *r) {
        buf_done(&r->head);
        buf_done(&r->body);
}

static char *str(const Buf *b) {
        static char s[8192];
        size_t n = MIN(buf_len(b), sizeof s - 1);
        memcpy(s, buf_data(b), n);
        s[n] = 0;
        return s;
}

static int start_full(H1Client *c, uint16_t port, const char *method, const void *body, size_t body_len,
                      const char *extra_header, usec_t connect_timeout, Result *r) {
        char url[64];
        Arena arena;
        HeaderList h;
        H1Request req;
        int k;

        arena_init(&arena, NULL, 0);
        header_list_init(&h, &arena);
        k = header_list_add(&h, NULL, "content-type: application/json", NULL);
        if (k >= 0)     /* a removal, as the proxy sends it: must not appear */
                k = header_list_add(&h, NULL, "Expect:", NULL);
        if (k >= 0 && extra_header)
                k = header_list_add(&h, NULL, extra_header, NULL);
        if (k < 0) {
                arena_done(&arena);
                return k;
        }
        snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", port);
        req = (H1Request){ .url = url, .method = method, .headers = h.head, .body = body, .body_len = body_len,
                           .connect_timeout = connect_timeout };
        k = h1_transfer_start(c, &req, &callbacks, r, &r->transfer);
        arena_done(&arena);             /* the head is built at start: the list may go */
        return k;
}

static int start(H1Client *c, uint16_t port, const char *body, Result *r) {
        return start_full(c, port, "POST", body, strlen(body), NULL, 2 * USEC_PER_SEC, r);
}

static void run_until_done(sd_event *e, Result *r) {
        usec_t until = now_mono() + 5 * USEC_PER_SEC;
        while (!r->done && now_mono() < until)
                (void) sd_event_run(e, 50 * USEC_PER_MSEC);
}

/* The callback contract: done() exactly once, never from inside header()/write(). */
#define ASSERT_DONE_ONCE(r)                                                     \
        do {                                                                    \
                ASSERT_EQ((r)->n_done, 1);                                      \
                ASSERT_FALSE((r)->done_in_callback);                            \
        } while (0)

static void run_for(sd_event *e, usec_t usec) {
        for (usec_t until = now_mono() + usec; now_mono() < until;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
}

/* How many times the loop found something to do in about usec: a spinning source makes it thousands. */
static unsigned count_wakeups(sd_event *e, usec_t usec) {
        unsigned n = 0;

        for (usec_t until = now_mono() + usec; now_mono() < until;)
                if (sd_event_run(e, 10 * USEC_PER_MSEC) > 0)
                        n++;
        return n;
}

TEST(handles_only_plain_http_on_literals) {
        ASSERT_TRUE(h1_client_handles("http://127.0.0.1:8080/v1"));
        ASSERT_TRUE(h1_client_handles("http://127.0.0.1"));
        ASSERT_TRUE(h1_client_handles("http://[::1]:11434/api"));
        ASSERT_TRUE(h1_client_handles("http://localhost:8000/v1"));
        ASSERT_FALSE(h1_client_handles("https://127.0.0.1/v1"));
        ASSERT_FALSE(h1_client_handles("http://api.example.com/v1"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1:0/"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1:99999/"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1:80x/"));
        ASSERT_FALSE(h1_client_handles("http://[::1/"));
        ASSERT_FALSE(h1_client_handles("http:///v1"));
        ASSERT_FALSE(h1_client_handles(NULL));
}

TEST(length_chunked_close_and_reuse) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"one\"}" },
                /* chunked, with an extension and a trailer, a byte at a time */
                { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\ndata\r\n3\r\n: b\r\n0\r\nT: 1\r\n\r\n",
                  1 },
                /* an interim answer first, then a body to the close */
                { "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", 0, true },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r1 = {}, r2 = {}, r3 = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));

        ASSERT_OK(start(c, u.port, "{\"model\":\"m\"}", &r1));
        run_until_done(e, &r1);
        ASSERT_TRUE(r1.done);
        ASSERT_EQ(r1.code, CURLE_OK);
        ASSERT_STREQ(str(&r1.head), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n");
        ASSERT_STREQ(str(&r1.body), "{\"a\":\"one\"}");
        ASSERT_CONTAINS(u.last_request, "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:");
        ASSERT_CONTAINS(u.last_request, "content-type: application/json\r\n");
        ASSERT_CONTAINS(u.last_request, "Content-Length: 13\r\n\r\n{\"model\":\"m\"}");
        ASSERT_TRUE(!strstr(u.last_request, "Expect"));
        ASSERT_EQ(h1_client_n_idle(c), 1);

        ASSERT_OK(start(c, u.port, "{}", &r2));
        run_until_done(e, &r2);
        ASSERT_EQ(r2.code, CURLE_OK);
        ASSERT_STREQ(str(&r2.body), "data: b");
        ASSERT_EQ(h1_client_n_idle(c), 1);

        ASSERT_OK(start(c, u.port, "{}", &r3));
        run_until_done(e, &r3);
        ASSERT_EQ(r3.code, CURLE_OK);
        ASSERT_CONTAINS(str(&r3.head), "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n");
        ASSERT_STREQ(str(&r3.body), "until the end");
        /* All three on one connection; the last one closed it. */
        ASSERT_EQ(u.accepted, 1);
        ASSERT_EQ(h1_client_n_connections(c), 0);

        upstream_stop(&u);
        result_done(&r1);
        result_done(&r2);
        result_done(&r3);
}

TEST(idle_max_lowered_closes_and_stops_pooling) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" },
                { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}" },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r1 = {}, r2 = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));

        ASSERT_OK(start(c, u.port, "{}", &r1));
        run_until_done(e, &r1);
        ASSERT_EQ(r1.code, CURLE_OK);
        ASSERT_EQ(h1_client_n_idle(c), 1);

        /* A reload to none: the pooled connection goes at once, and answers no longer pool theirs. */
        h1_client_set_idle_max(c, 0);
        ASSERT_EQ(h1_client_n_idle(c), 0);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        ASSERT_OK(start(c, u.port, "{}", &r2));
        run_until_done(e, &r2);
        ASSERT_EQ(r2.code, CURLE_OK);
        ASSERT_EQ(h1_client_n_idle(c), 0);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        ASSERT_EQ(u.accepted, 2);

        upstream_stop(&u);
        result_done(&r1);
        result_done(&r2);
}

TEST(stale_pooled_connection_is_retried_once) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" },
                { .close_before = true },       /* the server drops the kept-alive connection */
                { "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain" },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r1 = {}, r2 = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));
        ASSERT_OK(start(c, u.port, "{}", &r1));
        run_until_done(e, &r1);
        ASSERT_EQ(r1.code, CURLE_OK);
        /* Give the drop time to happen, but do not let the loop see it first: the request meets it. */
        while (__atomic_load_n(&u.accepted, __ATOMIC_SEQ_CST) < 1)
                usleep(1000);
        usleep(50000);
        ASSERT_OK(start(c, u.port, "{}", &r2));
        run_until_done(e, &r2);
        ASSERT_EQ(r2.code, CURLE_OK);
        ASSERT_STREQ(str(&r2.body), "again");
        ASSERT_EQ(u.accepted, 2);
        upstream_stop(&u);
        result_done(&r1);
        result_done(&r2);
}

TEST(pause_gives_the_same_bytes_again) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789" },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r = { .pause_next = 1 };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));
        ASSERT_OK(start(c, u.port, "{}", &r));
        for (usec_t until = now_mono() + USEC_PER_SEC; now_mono() < until && buf_empty(&r.head);)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        /* Paused: nothing more arrives, however long the loop runs. */
        for (unsigned i = 0; i < 10; i++)
                (void) sd_event_run(e, 5 * USEC_PER_MSEC);
        ASSERT_FALSE(r.done);
        ASSERT_TRUE(buf_empty(&r.body));
        h1_transfer_resume(r.transfer);
        run_until_done(e, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_STREQ(str(&r.body), "0123456789");
        upstream_stop(&u);
        result_done(&r);
}

TEST(broken_answers_are_errors) {
        static const struct {
                Answer answer;
                CURLcode code;
        } cases[] = {
                { { "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 0, true }, CURLE_PARTIAL_FILE },
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 0, true }, CURLE_PARTIAL_FILE },
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0, true },
                  CURLE_WEIRD_SERVER_REPLY },
                { { "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0, true },
                  CURLE_WEIRD_SERVER_REPLY },
                { { "HTTP/1.1 200 OK\r\nX: 1\r\n folded\r\n\r\n", 0, true }, CURLE_WEIRD_SERVER_REPLY },
                { { "HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 0, true }, CURLE_WEIRD_SERVER_REPLY },
                { { "HTTP/2 200\r\n\r\n", 0, true }, CURLE_WEIRD_SERVER_REPLY },
                { { "SSH-2.0-OpenSSH\r\n", 0, true }, CURLE_WEIRD_SERVER_REPLY },
                { { "", 0, true }, CURLE_GOT_NOTHING },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(sd_event_unrefp) sd_event *e = NULL;
                _cleanup_(h1_client_freep) H1Client *c = NULL;
                Upstream u;
                Result r = {};

                ASSERT_OK(sd_event_new(&e));
                ASSERT_OK(h1_client_new(e, &c));
                upstream_start(&u, &cases[i].answer, 1);
                ASSERT_OK(start(c, u.port, "{}", &r));
                run_until_done(e, &r);
                if (!r.done || r.code != cases[i].code)
                        TEST_FAIL("case %zu: done=%d code=%d, expected %d", i, r.done, r.code, cases[i].code);
                ASSERT_EQ(h1_client_n_connections(c), 0);
                upstream_stop(&u);
                result_done(&r);
        }
}

TEST(connect_refused_and_cancel) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        Result r = {}, r2 = { .cancel_in_write = true };
        int fd;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        /* A port nobody listens on: bound and closed. */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        ASSERT_OK(bind(fd, (struct sockaddr *) &a, sizeof a));
        ASSERT_OK(getsockname(fd, (struct sockaddr *) &a, &len));
        close(fd);
        /* Refused at once on loopback, but reported through done(), from the loop, as curl does. */
        ASSERT_OK(start(c, ntohs(a.sin_port), "{}", &r));
        ASSERT_FALSE(r.done);
        run_until_done(e, &r);
        ASSERT_TRUE(r.done);
        ASSERT_EQ(r.code, CURLE_COULDNT_CONNECT);

        /* Cancelled from inside write(): no done(), the connection is gone. */
        static const Answer answers[] = { { "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" } };
        Upstream u;
        upstream_start(&u, answers, 1);
        ASSERT_OK(start(c, u.port, "{}", &r2));
        for (usec_t until = now_mono() + 300 * USEC_PER_MSEC; now_mono() < until;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_FALSE(r2.done);
        ASSERT_NULL(r2.transfer);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        result_done(&r);
        result_done(&r2);
}

/* ---- scripts: upstreams that misbehave in ways a canned answer cannot ---- */

/* Reads up to the end of a request head; *ret_n is what was read (the head and any body bytes after it). */
static ssize_t read_head(int fd, char *buf, size_t size, size_t *ret_n) {
        size_t n = 0;
        char *end;

        while (!(end = memmem(buf, n, "\r\n\r\n", 4))) {
                ssize_t k = read(fd, buf + n, size - 1 - n);
                if (k <= 0)
                        return -1;
                n += (size_t) k;
        }
        buf[n] = 0;
        *ret_n = n;
        return end + 4 - buf;
}

static uint8_t pattern(size_t i) {
        return (uint8_t) (i % 251);
}

/* Reads the whole (large) body, checks every byte, answers, and keeps the connection until told. */
static void script_large_body(Upstream *u, int fd) {
        static char buf[65536];
        size_t n, got = 0;
        ssize_t hl = read_head(fd, buf, sizeof buf, &n);
        bool ok = hl > 0;

        for (size_t i = (size_t) MAX(hl, 0); ok && i < n; i++)
                ok = (uint8_t) buf[i] == pattern(got++);
        while (ok && got < u->body_len) {
                ssize_t k = read(fd, buf, sizeof buf);
                if (k <= 0)
                        break;
                for (ssize_t i = 0; i < k; i++)
                        ok = ok && (uint8_t) buf[i] == pattern(got++);
        }
        u->received = got;
        u->body_ok = ok && got == u->body_len;
        (void) send_all(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 40);
        wait_go(u);
}

/* Answers (keep-alive) right after the head, before the body it has not read, then drains it. */
static void script_early_answer(Upstream *u, int fd) {
        static char buf[65536];
        static const char answer[] = "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 4\r\n\r\nbig!";
        size_t n;

        if (read_head(fd, buf, sizeof buf, &n) < 0)
                return;
        (void) send_all(fd, answer, strlen(answer));
        /* The client has the answer long before its body could have gone out. */
        usleep(200 * 1000);
        for (ssize_t k; (k = read(fd, buf, sizeof buf)) > 0;)
                u->received += (size_t) k;
}

/* Answers after the head and closes with the body unread: the kernel resets the connection. */
static void script_early_answer_reset(Upstream *u, int fd) {
        static char buf[65536];
        static const char answer[] =
                "HTTP/1.1 413 Payload Too Large\r\nConnection: close\r\nContent-Length: 4\r\n\r\nbig!";
        size_t n;

        if (read_head(fd, buf, sizeof buf, &n) < 0)
                return;
        (void) send_all(fd, answer, strlen(answer));
}

/* Starts a chunked stream, then resets the connection when told. */
static void script_reset_when_told(Upstream *u, int fd) {
        static const char answer[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        struct linger lg = { .l_onoff = 1, .l_linger = 0 };
        char req[4096];

        if (read_request(fd, req, sizeof req) < 0)
                return;
        (void) send_all(fd, answer, strlen(answer));
        wait_go(u);
        /* The close that follows sends RST instead of FIN. */
        (void) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Writes `first`, then `line` over and over until the client hangs up (or 4 MiB, a safety net). */
static void endless(Upstream *u, int fd, const char *first, const char *line) {
        char req[4096];

        if (read_request(fd, req, sizeof req) < 0 || send_all(fd, first, strlen(first)) < 0)
                return;
        for (size_t sent = strlen(first); sent < 4U << 20; sent += strlen(line)) {
                if (send_all(fd, line, strlen(line)) < 0)
                        break;
                __atomic_store_n(&u->sent, sent, __ATOMIC_SEQ_CST);
        }
}

#define PAD "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static void script_endless_head(Upstream *u, int fd) {
        endless(u, fd, "HTTP/1.1 200 OK\r\n", "X-Pad: " PAD "\r\n");
}

static void script_endless_line(Upstream *u, int fd) {
        endless(u, fd, "HTTP/1.1 200 OK\r\nX-Long: ", PAD);
}

static void script_endless_interim(Upstream *u, int fd) {
        endless(u, fd, "", "HTTP/1.1 100 Continue\r\n\r\n");
}

static void script_endless_trailers(Upstream *u, int fd) {
        endless(u, fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n",
                "X-Trailer: " PAD "\r\n");
}

static void script_endless_chunks(Upstream *u, int fd) {
        static char chunk[6 + 1024 + 2 + 1];

        memcpy(chunk, "400\r\n", 5);
        memset(chunk + 5, 'x', 1024);
        memcpy(chunk + 5 + 1024, "\r\n", 3);
        endless(u, fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk);
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        unsigned n = 0;

        if (!d)
                return 0;
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

/* ---- the cases ---- */

TEST(large_body_partial_writes) {
        static const Answer answers[] = { { .script = script_large_body } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_free_ uint8_t *body = NULL;
        size_t len = 16U << 20;         /* far more than the socket buffers hold: many partial writes */
        Upstream u;
        Result r = {};

        body = malloc(len);
        ASSERT_NOT_NULL(body);
        for (size_t i = 0; i < len; i++)
                body[i] = pattern(i);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        u.body_len = len;
        ASSERT_OK(start_full(c, u.port, "POST", body, len, NULL, 0, &r));
        run_until_done(e, &r);
        ASSERT_DONE_ONCE(&r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_STREQ(str(&r.body), "ok");
        ASSERT_TRUE(u.body_ok);
        ASSERT_EQ(u.received, len);
        ASSERT_EQ(h1_client_n_idle(c), 1);
        __atomic_store_n(&u.go, true, __ATOMIC_SEQ_CST);
        upstream_stop(&u);
        result_done(&r);
}

TEST(early_answer_before_the_body_went_out_is_not_reused) {
        static const Answer answers[] = { { .script = script_early_answer } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_free_ uint8_t *body = NULL;
        size_t len = 32U << 20;
        Upstream u;
        Result r = {};

        body = calloc(1, len);
        ASSERT_NOT_NULL(body);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        ASSERT_OK(start_full(c, u.port, "POST", body, len, NULL, 0, &r));
        run_until_done(e, &r);
        ASSERT_DONE_ONCE(&r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_EQ(r.status, 413);
        ASSERT_STREQ(str(&r.body), "big!");
        /* The rest of the body would be read as the next request: the connection must go. */
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        ASSERT_TRUE(u.received < len);
        result_done(&r);
}

TEST(early_answer_then_reset_is_delivered) {
        static const Answer answers[] = { { .script = script_early_answer_reset } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_free_ uint8_t *body = NULL;
        size_t len = 32U << 20;
        Upstream u;
        Result r = {};

        body = calloc(1, len);
        ASSERT_NOT_NULL(body);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        /* Sending then fails (EPIPE or ECONNRESET, and no SIGPIPE), but the answer came first. */
        ASSERT_OK(start_full(c, u.port, "POST", body, len, NULL, 0, &r));
        run_until_done(e, &r);
        ASSERT_DONE_ONCE(&r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_EQ(r.status, 413);
        ASSERT_STREQ(str(&r.body), "big!");
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        result_done(&r);
}

TEST(reset_while_paused_does_not_spin) {
        static const Answer answers[] = { { .script = script_reset_when_told } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r = { .pause_next = 1 };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        ASSERT_OK(start(c, u.port, "{}", &r));
        for (usec_t until = now_mono() + 2 * USEC_PER_SEC; now_mono() < until && r.pause_next > 0;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_EQ(r.pause_next, 0);     /* paused on "hello" */
        __atomic_store_n(&u.go, true, __ATOMIC_SEQ_CST);
        upstream_stop(&u);              /* the reset is sent */
        usleep(20 * 1000);
        /* EPOLLHUP and EPOLLERR cannot be masked: a paused connection must be out of the epoll set, or
         * every loop iteration wakes up for it. */
        ASSERT_TRUE(count_wakeups(e, 200 * USEC_PER_MSEC) <= 2);
        ASSERT_FALSE(r.done);
        h1_transfer_resume(r.transfer);
        run_until_done(e, &r);
        ASSERT_DONE_ONCE(&r);
        ASSERT_EQ(r.code, CURLE_PARTIAL_FILE);
        ASSERT_STREQ(str(&r.body), "hello");
        ASSERT_EQ(h1_client_n_connections(c), 0);
        result_done(&r);
}

TEST(endless_answers_are_refused) {
        static const Answer heads[] = { { .script = script_endless_head } },
                            lines[] = { { .script = script_endless_line } },
                            interims[] = { { .script = script_endless_interim } },
                            trailers[] = { { .script = script_endless_trailers } };
        const Answer *cases[] = { heads, lines, interims, trailers };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(sd_event_unrefp) sd_event *e = NULL;
                _cleanup_(h1_client_freep) H1Client *c = NULL;
                Upstream u;
                Result r = {};

                ASSERT_OK(sd_event_new(&e));
                ASSERT_OK(h1_client_new(e, &c));
                upstream_start(&u, cases[i], 1);
                ASSERT_OK(start(c, u.port, "{}", &r));
                run_until_done(e, &r);
                ASSERT_DONE_ONCE(&r);
                if (r.code != CURLE_WEIRD_SERVER_REPLY)
                        TEST_FAIL("case %zu: code %d", i, r.code);
                ASSERT_EQ(h1_client_n_connections(c), 0);
                upstream_stop(&u);
                /* Refused after its limit (64 KiB of head), not after the upstream gave up. */
                ASSERT_TRUE(u.sent < 1U << 20);
                result_done(&r);
        }
}

TEST(endless_body_while_paused_is_not_read) {
        static const Answer answers[] = { { .script = script_endless_chunks } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r = { .pause_next = UINT_MAX };
        size_t a, b;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        ASSERT_OK(start(c, u.port, "{}", &r));
        run_for(e, 300 * USEC_PER_MSEC);
        a = __atomic_load_n(&u.sent, __ATOMIC_SEQ_CST);
        /* Paused: nothing is read, TCP stops the upstream, and the loop sleeps. */
        ASSERT_TRUE(count_wakeups(e, 200 * USEC_PER_MSEC) <= 2);
        b = __atomic_load_n(&u.sent, __ATOMIC_SEQ_CST);
        ASSERT_EQ(a, b);
        ASSERT_TRUE(b < 4U << 20);
        ASSERT_TRUE(buf_empty(&r.body));
        ASSERT_FALSE(r.done);
        h1_transfer_cancel(r.transfer);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        ASSERT_EQ(r.n_done, 0);
        result_done(&r);
}

TEST(answers_without_a_body) {
        static const Answer answers[] = {
                { "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" },
                { "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n" },
                { "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi" },
                { "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" },                   /* to a HEAD */
                { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc" },
                { "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nxyz" },                  /* closes */
        };
        static const struct {
                const char *method;
                unsigned status;
                const char *body;
        } expect[] = {
                { "POST", 204, "" }, { "POST", 304, "" }, { "POST", 200, "hi" }, { "HEAD", 200, "" },
                { "POST", 200, "abc" }, { "POST", 200, "xyz" },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));
        for (size_t i = 0; i < ELEMENTSOF(expect); i++) {
                Result r = {};

                bool head = streq(expect[i].method, "HEAD");

                ASSERT_OK(start_full(c, u.port, expect[i].method, "{}", head ? 0 : 2, NULL, 0, &r));
                run_until_done(e, &r);
                ASSERT_DONE_ONCE(&r);
                if (r.code != CURLE_OK || r.status != expect[i].status || !streq(str(&r.body), expect[i].body))
                        TEST_FAIL("case %zu: code %d status %u body \"%s\"", i, r.code, r.status,
                                  str(&r.body));
                result_done(&r);
        }
        /* One connection for all (the 304 framed by its status, not its coding), closed after HTTP/1.0. */
        ASSERT_EQ(u.accepted, 1);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        ASSERT_CONTAINS(u.last_request, "POST /v1/chat/completions HTTP/1.1\r\n");
        upstream_stop(&u);
}

TEST(transfer_codings_and_framing) {
        static const struct {
                Answer answer;
                const char *body;
                bool reused;
        } cases[] = {
                /* Bytes after a complete answer: delivered as it was, the connection is not trusted. */
                { { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK" }, "ok", false },
                /* Another coding than chunked last: the close frames it, Content-Length or not. */
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabcdef", 0,
                    true }, "abcdef", false },
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n", 0, true },
                  "3\r\nabc\r\n", false },
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n" }, "abc", true },
                /* Both framings: chunked wins, and the connection is closed after. */
                { { "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n" }, "abc", false },
                { { "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\n" }, "abc", false },
                /* Chunk extensions, upper-case hex, trailers. */
                { { "HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\nA ; name=\"v\"\r\n0123456789\r\n"
                    "0;x\r\nTrailer-A: 1\r\nTrailer-B: 2\r\n\r\n" }, "0123456789", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(sd_event_unrefp) sd_event *e = NULL;
                _cleanup_(h1_client_freep) H1Client *c = NULL;
                Upstream u;
                Result r = {};

                ASSERT_OK(sd_event_new(&e));
                ASSERT_OK(h1_client_new(e, &c));
                upstream_start(&u, &cases[i].answer, 1);
                ASSERT_OK(start(c, u.port, "{}", &r));
                run_until_done(e, &r);
                ASSERT_DONE_ONCE(&r);
                if (r.code != CURLE_OK || !streq(str(&r.body), cases[i].body) ||
                    h1_client_n_idle(c) != cases[i].reused)
                        TEST_FAIL("case %zu: code %d body \"%s\" idle %zu", i, r.code, str(&r.body),
                                  h1_client_n_idle(c));
                upstream_stop(&u);
                result_done(&r);
        }
}

TEST(many_pauses_over_split_lines) {
        /* A long chunked stream written in odd pieces: chunk-size lines and CRLFs split across reads,
         * and write() pausing every other time, resumed from the loop as the proxy does. */
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_(buf_done) Buf answer = {}, expect = {};
        Upstream u;
        Result r = { .pause_alternate = true };
        unsigned resumes = 0;

        ASSERT_OK(buf_append_str(&answer, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
        for (unsigned i = 0; i < 2000; i++) {
                char ev[64];
                int n = snprintf(ev, sizeof ev, "data: {\"n\":%u}\n\n", i);
                ASSERT_OK(buf_append_uint(&answer, (uint64_t) n, 16));
                ASSERT_OK(buf_append_str(&answer, "\r\n"));
                ASSERT_OK(buf_append(&answer, ev, (size_t) n));
                ASSERT_OK(buf_append_str(&answer, "\r\n"));
                ASSERT_OK(buf_append(&expect, ev, (size_t) n));
        }
        ASSERT_OK(buf_append_str(&answer, "0\r\n\r\n"));
        ASSERT_OK(buf_append(&answer, "", 1));
        Answer answers[] = { { (const char *) buf_data(&answer), 997 } };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        ASSERT_OK(start(c, u.port, "{}", &r));
        for (usec_t until = now_mono() + 10 * USEC_PER_SEC; !r.done && now_mono() < until;) {
                (void) sd_event_run(e, USEC_PER_MSEC);
                /* A few resumes per wakeup: reads and resumes interleave. */
                for (unsigned i = 0; i < 8 && !r.done && r.paused; i++) {
                        resumes++;
                        h1_transfer_resume(r.transfer);
                }
        }
        ASSERT_DONE_ONCE(&r);
        ASSERT_TRUE(resumes > 10);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_EQ(buf_len(&r.body), buf_len(&expect));
        ASSERT_TRUE(memcmp(buf_data(&r.body), buf_data(&expect), buf_len(&expect)) == 0);
        ASSERT_EQ(h1_client_n_idle(c), 1);
        upstream_stop(&u);
        result_done(&r);
}

TEST(stale_retry_happens_once) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" },
                { .close_before = true },       /* the pooled connection dies */
                { .close_before = true },       /* and so does the fresh one: no third try */
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r1 = {}, r2 = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));
        ASSERT_OK(start(c, u.port, "{}", &r1));
        run_until_done(e, &r1);
        ASSERT_EQ(r1.code, CURLE_OK);
        usleep(50000);
        ASSERT_OK(start(c, u.port, "{}", &r2));
        run_until_done(e, &r2);
        ASSERT_DONE_ONCE(&r2);
        ASSERT_EQ(r2.code, CURLE_GOT_NOTHING);
        ASSERT_EQ(u.accepted, 2);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        result_done(&r1);
        result_done(&r2);
}

TEST(cancel_everywhere) {
        static const Answer answers[] = {
                { "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" },
                { "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" },
                { "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" },
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r1 = { .cancel_in_header = true }, r2 = { .pause_next = 1 }, r3 = { .pause_next = 1 };
        Result r4 = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, ELEMENTSOF(answers));

        /* From inside header(). */
        ASSERT_OK(start(c, u.port, "{}", &r1));
        run_for(e, 200 * USEC_PER_MSEC);
        ASSERT_EQ(r1.n_done, 0);
        ASSERT_NULL(r1.transfer);
        ASSERT_EQ(h1_client_n_connections(c), 0);

        /* From inside write(), called again by a resume. */
        ASSERT_OK(start(c, u.port, "{}", &r2));
        for (usec_t until = now_mono() + USEC_PER_SEC; now_mono() < until && r2.pause_next > 0;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        r2.cancel_in_write = true;
        h1_transfer_resume(r2.transfer);
        ASSERT_EQ(r2.n_done, 0);
        ASSERT_NULL(r2.transfer);
        ASSERT_EQ(h1_client_n_connections(c), 0);

        /* From outside, while paused. */
        ASSERT_OK(start(c, u.port, "{}", &r3));
        for (usec_t until = now_mono() + USEC_PER_SEC; now_mono() < until && r3.pause_next > 0;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        h1_transfer_cancel(r3.transfer);
        run_for(e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(r3.n_done, 0);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        upstream_stop(&u);
        ASSERT_EQ(u.accepted, 3);

        /* Right after the start, before anything happened (a connection that will be refused). */
        ASSERT_OK(start(c, u.port, "{}", &r4));
        h1_transfer_cancel(r4.transfer);
        run_for(e, 50 * USEC_PER_MSEC);
        ASSERT_EQ(r4.n_done, 0);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        result_done(&r1);
        result_done(&r2);
        result_done(&r3);
        result_done(&r4);
}

TEST(connect_timeout_on_a_full_backlog) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_close_ int l = -EBADF, f1 = -EBADF, f2 = -EBADF;
        Result r = {}, r2 = {};
        usec_t t0, took;

        /* A listener that never accepts, its queue filled: further SYNs are dropped, a blackhole. */
        l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_OK(bind(l, (struct sockaddr *) &a, sizeof a));
        ASSERT_OK(listen(l, 0));
        ASSERT_OK(getsockname(l, (struct sockaddr *) &a, &alen));
        f1 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        f2 = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        (void) connect(f1, (struct sockaddr *) &a, sizeof a);
        (void) connect(f2, (struct sockaddr *) &a, sizeof a);
        usleep(50 * 1000);

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        t0 = now_mono();
        ASSERT_OK(start_full(c, ntohs(a.sin_port), "POST", "{}", 2, NULL, 300 * USEC_PER_MSEC, &r));
        run_until_done(e, &r);
        took = now_mono() - t0;
        ASSERT_DONE_ONCE(&r);
        ASSERT_EQ(r.code, CURLE_OPERATION_TIMEDOUT);
        ASSERT_TRUE(took >= 250 * USEC_PER_MSEC && took < 3 * USEC_PER_SEC);
        ASSERT_EQ(h1_client_n_connections(c), 0);

        /* Cancelled while connecting: the timer goes with the transfer. */
        ASSERT_OK(start_full(c, ntohs(a.sin_port), "POST", "{}", 2, NULL, 100 * USEC_PER_MSEC, &r2));
        run_for(e, 20 * USEC_PER_MSEC);
        h1_transfer_cancel(r2.transfer);
        run_for(e, 200 * USEC_PER_MSEC);
        ASSERT_EQ(r2.n_done, 0);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        result_done(&r);
        result_done(&r2);
}

TEST(host_override_and_unsafe_urls) {
        static const Answer answers[] = { { "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" } };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Upstream u;
        Result r = {};

        ASSERT_FALSE(h1_client_handles("http://127.0.0.1/a b"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1/a\r\nX-Injected: 1"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1/a\tb"));
        ASSERT_FALSE(h1_client_handles("http://127.0.0.1:80#frag"));
        ASSERT_ERROR(h1_transfer_start(NULL, &(H1Request){ .url = "http://127.0.0.1/ x", .method = "POST" },
                                       &callbacks, &r, &r.transfer), EPROTONOSUPPORT);

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        upstream_start(&u, answers, 1);
        ASSERT_OK(start_full(c, u.port, "POST", "{}", 2, "Host: models.internal", 0, &r));
        run_until_done(e, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_CONTAINS(u.last_request, "\r\nHost: models.internal\r\n");
        ASSERT_TRUE(!strstr(u.last_request, "Host: 127.0.0.1"));
        upstream_stop(&u);
        result_done(&r);
}

/* ---- a keep-alive upstream for many connections at once (poll, one thread) ---- */

typedef struct Pool {
        int listen_fd;
        uint16_t port;
        pthread_t thread;
        bool stop;                      /* set by the test: close every connection */
        unsigned accepted;
} Pool;

static void *pool_run(void *userdata) {
        static struct pollfd fds[1024];
        static char bufs[1024][512];
        static size_t lens[1024];
        static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        Pool *p = userdata;
        nfds_t n = 1;

        fds[0] = (struct pollfd){ .fd = p->listen_fd, .events = POLLIN };
        while (!__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST)) {
                if (poll(fds, n, 10) <= 0)
                        continue;
                if ((fds[0].revents & POLLIN) && n < ELEMENTSOF(fds)) {
                        int fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                        if (fd >= 0) {
                                __atomic_add_fetch(&p->accepted, 1, __ATOMIC_SEQ_CST);
                                lens[n] = 0;
                                fds[n++] = (struct pollfd){ .fd = fd, .events = POLLIN };
                        }
                }
                for (nfds_t i = 1; i < n; i++) {
                        char *end;
                        ssize_t k;

                        if (!fds[i].revents)
                                continue;
                        k = read(fds[i].fd, bufs[i] + lens[i], sizeof bufs[i] - 1 - lens[i]);
                        if (k <= 0) {
                                close(fds[i].fd);
                                fds[i] = fds[--n];
                                memcpy(bufs[i], bufs[n], lens[n]);
                                lens[i] = lens[n];
                                i--;
                                continue;
                        }
                        lens[i] += (size_t) k;
                        bufs[i][lens[i]] = 0;
                        /* The requests here carry "{}" as their body. */
                        while ((end = memmem(bufs[i], lens[i], "\r\n\r\n", 4)) &&
                               (size_t) (end + 6 - bufs[i]) <= lens[i]) {
                                size_t used = (size_t) (end + 6 - bufs[i]);
                                (void) send_all(fds[i].fd, answer, strlen(answer));
                                memmove(bufs[i], bufs[i] + used, lens[i] - used);
                                lens[i] -= used;
                        }
                }
        }
        for (nfds_t i = 1; i < n; i++)
                close(fds[i].fd);
        return NULL;
}

static int pool_start(Pool *p) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t alen = sizeof a;

        *p = (Pool){};
        p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *) &a, sizeof a) < 0 ||
            listen(p->listen_fd, 512) < 0 || getsockname(p->listen_fd, (struct sockaddr *) &a, &alen) < 0)
                return -errno;
        p->port = ntohs(a.sin_port);
        return -pthread_create(&p->thread, NULL, pool_run, p);
}

static void pool_stop(Pool *p) {
        __atomic_store_n(&p->stop, true, __ATOMIC_SEQ_CST);
        pthread_join(p->thread, NULL);
        close(p->listen_fd);
}

static bool run_until_all_done(sd_event *e, Result *rs, unsigned n) {
        for (usec_t until = now_mono() + 10 * USEC_PER_SEC; now_mono() < until;) {
                unsigned done = 0;
                for (unsigned i = 0; i < n; i++)
                        done += rs[i].done;
                if (done == n)
                        return true;
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        }
        return false;
}

TEST(idle_pool_is_bounded_and_follows_the_server) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *warm = NULL;
        _cleanup_free_ Result *rs = NULL;
        unsigned fds_before, n = 300;
        Pool p;

        rs = new0(Result, n);
        ASSERT_NOT_NULL(rs);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        h1_client_set_idle_max(c, 256);
        /* sd-event opens its timerfd with the first timer (a connect timeout): not a leak of ours. */
        ASSERT_OK(sd_event_add_time_relative(e, &warm, CLOCK_MONOTONIC, USEC_PER_SEC, 0, NULL, NULL));
        ASSERT_OK(sd_event_source_set_enabled(warm, SD_EVENT_OFF));
        fds_before = count_fds();
        ASSERT_OK(pool_start(&p));

        /* All at once: one connection each; afterwards only 256 of them are kept. */
        for (unsigned i = 0; i < n; i++)
                ASSERT_OK(start(c, p.port, "{}", &rs[i]));
        ASSERT_TRUE(run_until_all_done(e, rs, n));
        for (unsigned i = 0; i < n; i++)
                if (rs[i].code != CURLE_OK || rs[i].n_done != 1 || !streq(str(&rs[i].body), "ok"))
                        TEST_FAIL("transfer %u: code %d", i, rs[i].code);
        ASSERT_EQ(p.accepted, n);
        ASSERT_EQ(h1_client_n_idle(c), 256);
        ASSERT_EQ(h1_client_n_connections(c), 256);

        /* The server closes its idle connections: the pool notices without being asked. */
        pool_stop(&p);
        for (usec_t until = now_mono() + 2 * USEC_PER_SEC;
             now_mono() < until && h1_client_n_connections(c) > 0;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        ASSERT_EQ(h1_client_n_idle(c), 0);
        ASSERT_EQ(count_fds(), fds_before);
        for (unsigned i = 0; i < n; i++)
                result_done(&rs[i]);
}

TEST(idle_connections_expire_without_new_requests) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        Result rs[3] = {}, r = {};
        usec_t t0;
        Pool p;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        h1_client_set_idle_lifetime(c, 300 * USEC_PER_MSEC);
        ASSERT_OK(pool_start(&p));
        for (unsigned i = 0; i < ELEMENTSOF(rs); i++)
                ASSERT_OK(start(c, p.port, "{}", &rs[i]));
        ASSERT_TRUE(run_until_all_done(e, rs, ELEMENTSOF(rs)));
        ASSERT_EQ(h1_client_n_idle(c), 3);
        t0 = now_mono();

        /* The server keeps them forever (as Go's net/http does); the client lets them go, unasked. */
        for (usec_t until = t0 + 3 * USEC_PER_SEC; now_mono() < until && h1_client_n_connections(c) > 0;)
                (void) sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_EQ(h1_client_n_connections(c), 0);
        ASSERT_TRUE(now_mono() - t0 >= 250 * USEC_PER_MSEC);
        ASSERT_OK(start(c, p.port, "{}", &r));
        run_until_done(e, &r);
        ASSERT_EQ(r.code, CURLE_OK);
        ASSERT_EQ(p.accepted, 4);
        pool_stop(&p);
        for (unsigned i = 0; i < ELEMENTSOF(rs); i++)
                result_done(&rs[i]);
        result_done(&r);
}

/* fed(): after each read that delivered body bytes while the transfer goes on, never for the read that ends
 * it (done() comes instead), never after done(); a cancel from inside it is safe. */
TEST(fed_after_each_read_that_goes_on) {
        static const char chunked[] =
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                "6\r\ndata 1\r\n6\r\ndata 2\r\n6\r\ndata 3\r\n6\r\ndata 4\r\n0\r\n\r\n";
        const Answer answers[] = {
                { chunked },            /* in one read: all chunks, then done(), no fed() */
                { chunked, 24 },        /* in pieces: fed() after each read with data that does not end it */
                { chunked, 24 },        /* the same, cancelled from inside the first fed() */
        };
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(h1_client_freep) H1Client *c = NULL;
        char url[64];
        Upstream u;
        Result r[3] = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(h1_client_new(e, &c));
        r[2].cancel_in_fed = true;

        /* An upstream of its own for each: a cancelled answer closes its connection. */
        for (size_t i = 0; i < ELEMENTSOF(r); i++) {
                upstream_start(&u, &answers[i], 1);
                snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", u.port);
                H1Request req = { .url = url, .method = "POST", .body = "{}", .body_len = 2,
                                  .connect_timeout = 2 * USEC_PER_SEC };

                ASSERT_OK(h1_transfer_start(c, &req, &callbacks_fed, &r[i], &r[i].transfer));
                if (i < 2) {
                        run_until_done(e, &r[i]);
                        ASSERT_DONE_ONCE(&r[i]);
                        ASSERT_EQ(r[i].code, CURLE_OK);
                        ASSERT_STREQ(str(&r[i].body), "data 1data 2data 3data 4");
                } else {
                        run_for(e, 200 * USEC_PER_MSEC);
                        ASSERT_EQ(r[i].n_done, 0U);
                        ASSERT_EQ(r[i].n_fed, 1U);
                        ASSERT_NULL(r[i].transfer);
                }
                ASSERT_FALSE(r[i].fed_after_done);
                ASSERT_FALSE(r[i].fed_without_write);
                upstream_stop(&u);
        }
        ASSERT_EQ(r[0].n_fed, 0U);
        ASSERT_TRUE(r[1].n_fed >= 1);

        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                result_done(&r[i]);
}
