/* Unit tests for the HTTP/1.1 upstream client: framing, reuse, stale connections, pause, errors, cancel. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/h1-client.h"
#include "shared/buf.h"
#include "shared/util.h"
#include "tests.h"

/* ---- a scripted upstream, on a thread: each request read gets the next canned answer ---- */

typedef struct Answer {
        const char *bytes;              /* written in pieces of `piece` bytes (0: at once) */
        size_t piece;
        bool close;                     /* close the connection after writing it */
        bool close_before;              /* close without reading or answering (a dead pooled conn) */
} Answer;

typedef struct Upstream {
        int listen_fd;
        uint16_t port;
        const Answer *answers;
        size_t n_answers;
        pthread_t thread;
        unsigned accepted;              /* connections */
        unsigned requests;
        char last_request[4096];
} Upstream;

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
                while (i < u->n_answers) {
                        const Answer *a = &u->answers[i];
                        char req[4096];

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
                                (void) !write(fd, a->bytes + off, MIN(step, len - off));
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
        CURLcode code;
        unsigned pause_next;            /* write() answers PAUSE this many more times */
        bool cancel_in_write;
        H1Transfer *transfer;
} Result;

static size_t on_header(char *line, size_t size, size_t n, void *userdata) {
        Result *r = userdata;
        (void) buf_append(&r->head, line, size * n);
        return size * n;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        Result *r = userdata;

        if (r->cancel_in_write) {
                h1_transfer_cancel(r->transfer);
                r->transfer = NULL;
                return 0;
        }
        if (r->pause_next > 0) {
                r->pause_next--;
                return CURL_WRITEFUNC_PAUSE;
        }
        (void) buf_append(&r->body, data, size * n);
        return size * n;
}

static void on_done(CURLcode code, void *userdata) {
        Result *r = userdata;
        r->done = true;
        r->code = code;
        r->transfer = NULL;
}

static const H1Callbacks callbacks = { on_header, on_write, on_done };

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

static int start(H1Client *c, uint16_t port, const char *body, Result *r) {
        char url[64];
        struct curl_slist *h = curl_slist_append(NULL, "content-type: application/json");
        H1Request req;
        int k;

        h = curl_slist_append(h, "Expect:");    /* a removal, as the proxy sends it: must not appear */
        snprintf(url, sizeof url, "http://127.0.0.1:%u/v1/chat/completions", port);
        req = (H1Request){ .url = url, .method = "POST", .headers = h, .body = body, .body_len = strlen(body),
                           .connect_timeout = 2 * USEC_PER_SEC };
        k = h1_transfer_start(c, &req, &callbacks, r, &r->transfer);
        curl_slist_free_all(h);         /* the head is built at start: the list may go */
        return k;
}

static void run_until_done(sd_event *e, Result *r) {
        usec_t until = now_mono() + 5 * USEC_PER_SEC;
        while (!r->done && now_mono() < until)
                (void) sd_event_run(e, 50 * USEC_PER_MSEC);
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
