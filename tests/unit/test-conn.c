/* Unit tests for Conn: a Stream over a real socketpair on sd-event: reads, pause/resume, backpressure, close. */
#include <sys/socket.h>

#include "net/conn.h"
#include "shared/buf.h"
#include "tests.h"

typedef struct Upper {
        Buf got;
        int closed;             /* 0 not yet, 1 closed */
        int close_error;
        int writable;
        size_t consume_limit;   /* consume at most this many per call (0 = all) */
        Stream *stream;
        bool pause_after_first;
} Upper;

static ssize_t up_read(void *u, const uint8_t *p, size_t n) {
        Upper *x = u;
        size_t k = x->consume_limit ? MIN(n, x->consume_limit) : n;
        buf_append(&x->got, p, k);
        if (x->pause_after_first) {
                x->pause_after_first = false;
                stream_set_read_paused(x->stream, true);
        }
        return (ssize_t) k;
}
static void up_writable(void *u) {
        ((Upper *) u)->writable++;
}
static void up_close(void *u, int error) {
        ((Upper *) u)->closed = 1;
        ((Upper *) u)->close_error = error;
}
static const StreamUpper upper_ops = { up_read, up_writable, up_close };

static int freed;
static void on_free(Conn *c, void *ud) {
        freed++;
}

static void run(sd_event *e, int iterations) {
        for (int i = 0; i < iterations; i++)
                sd_event_run(e, 10 * 1000);
}

TEST(read_and_write) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};
        char buf[64];

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        u.stream = conn_stream(c);
        stream_attach(conn_stream(c), &upper_ops, &u);

        ASSERT_EQ(write(sv[1], "hello", 5), 5);
        run(e, 3);
        ASSERT_EQ(buf_len(&u.got), 5);
        ASSERT_OK(stream_write(conn_stream(c), "world", 5));
        ASSERT_EQ(read(sv[1], buf, sizeof buf), 5);

        freed = 0;
        close(sv[1]);
        run(e, 3);
        ASSERT_EQ(u.closed, 1);
        ASSERT_EQ(u.close_error, 0);
        ASSERT_EQ(freed, 1);
        buf_done(&u.got);
        sd_event_unref(e);
}

TEST(partial_consume_and_pause_redelivers) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = { .consume_limit = 2 };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        u.stream = conn_stream(c);
        u.pause_after_first = true;
        stream_attach(conn_stream(c), &upper_ops, &u);

        ASSERT_EQ(write(sv[1], "abcdef", 6), 6);
        run(e, 3);
        /* Paused after the first 2 bytes: the rest waits in the Conn. */
        ASSERT_EQ(buf_len(&u.got), 2);
        stream_set_read_paused(conn_stream(c), false);
        run(e, 3);
        ASSERT_EQ(buf_len(&u.got), 6);
        ASSERT_TRUE(memcmp(buf_data(&u.got), "abcdef", 6) == 0);
        stream_close(conn_stream(c), false);
        close(sv[1]);
        buf_done(&u.got);
        sd_event_unref(e);
}

TEST(backpressure_and_writable) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};
        static char chunk[65536];

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &upper_ops, &u);

        /* Fill the kernel buffer: the rest queues in the Conn. */
        for (int i = 0; i < 64; i++)
                ASSERT_OK(stream_write(conn_stream(c), chunk, sizeof chunk));
        ASSERT_TRUE(stream_pending(conn_stream(c)) > 0);
        stream_want_writable(conn_stream(c));
        run(e, 2);
        ASSERT_EQ(u.writable, 0);

        /* The peer reads everything: once our queue is empty, on_writable fires once. */
        size_t total = 0;
        for (int i = 0; i < 10000 && total < 64 * sizeof chunk; i++) {
                ssize_t k = read(sv[1], chunk, sizeof chunk);
                if (k > 0)
                        total += (size_t) k;
                run(e, 1);
        }
        ASSERT_EQ(total, 64 * sizeof chunk);
        ASSERT_EQ(stream_pending(conn_stream(c)), 0);
        ASSERT_EQ(u.writable, 1);
        stream_close(conn_stream(c), false);
        close(sv[1]);
        sd_event_unref(e);
}

TEST(close_with_flush_delivers_everything) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};
        static char chunk[65536];

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &upper_ops, &u);
        memset(chunk, 'x', sizeof chunk);
        for (int i = 0; i < 16; i++)
                ASSERT_OK(stream_write(conn_stream(c), chunk, sizeof chunk));
        freed = 0;
        stream_close(conn_stream(c), true);
        ASSERT_EQ(freed, 0);

        size_t total = 0;
        for (int i = 0; i < 10000; i++) {
                ssize_t k = read(sv[1], chunk, sizeof chunk);
                if (k == 0)
                        break;
                if (k > 0)
                        total += (size_t) k;
                run(e, 1);
        }
        ASSERT_EQ(total, 16 * sizeof chunk);
        /* We saw EOF (shutdown after flush); closing our end ends the linger. */
        close(sv[1]);
        run(e, 3);
        ASSERT_EQ(freed, 1);
        ASSERT_EQ(u.closed, 0); /* closed from above: no callback */
        sd_event_unref(e);
}

TEST(peer_reset_reports_error) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &upper_ops, &u);
        close(sv[1]);
        ASSERT_TRUE(stream_write(conn_stream(c), "x", 1) < 0 || true);
        run(e, 3);
        ASSERT_EQ(u.closed, 1);
        sd_event_unref(e);
}

/* Many connections ready at once are served in one batch; a connection's upper may close another one
 * whose event is later in the same batch (it is freed after the batch, its event skipped). */
#define BATCH_N 300
typedef struct Pair {
        Conn *c;
        int peer;
        Upper u;
        struct Pair *victim;            /* closed from this one's on_read */
} Pair;

static ssize_t pair_read(void *userdata, const uint8_t *p, size_t n) {
        Pair *x = userdata;

        buf_append(&x->u.got, p, n);
        if (x->victim && x->victim->c) {
                stream_close(conn_stream(x->victim->c), false);
                x->victim->c = NULL;
        }
        return (ssize_t) n;
}
static void pair_writable(void *userdata) {
}
static void pair_close(void *userdata, int error) {
        ((Pair *) userdata)->u.closed = 1;
}
static const StreamUpper pair_ops = { pair_read, pair_writable, pair_close };

TEST(batch_of_connections_and_close_during_batch) {
        static Pair pairs[BATCH_N];
        sd_event *e = NULL;
        size_t got = 0;

        ASSERT_OK(sd_event_new(&e));
        freed = 0;
        for (size_t i = 0; i < BATCH_N; i++) {
                int sv[2];
                ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
                pairs[i] = (Pair){ .peer = sv[1] };
                ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &pairs[i].c));
                stream_attach(conn_stream(pairs[i].c), &pair_ops, &pairs[i]);
        }
        /* Every even connection closes the next odd one when it reads. */
        for (size_t i = 0; i + 1 < BATCH_N; i += 2)
                pairs[i].victim = &pairs[i + 1];
        for (size_t i = 0; i < BATCH_N; i++)
                ASSERT_EQ(write(pairs[i].peer, "x", 1), 1);
        run(e, 10);
        for (size_t i = 0; i < BATCH_N; i += 2)
                got += buf_len(&pairs[i].u.got);
        /* All readers got their byte; every victim was freed exactly once, read or not. */
        ASSERT_EQ(got, BATCH_N / 2);
        ASSERT_EQ(freed, BATCH_N / 2);
        for (size_t i = 0; i < BATCH_N; i++) {
                if (pairs[i].c)
                        stream_close(conn_stream(pairs[i].c), false);
                close(pairs[i].peer);
                buf_done(&pairs[i].u.got);
        }
        ASSERT_EQ(freed, BATCH_N);
        run(e, 2);
        sd_event_unref(e);
}

/* Loop iterations that found work in 50 non-blocking runs: 0 when nothing is left armed that nobody
 * consumes (a level-triggered event, EPOLLHUP/ERR of a socket that wants nothing). */
static unsigned spins(sd_event *e) {
        unsigned n = 0;
        for (int i = 0; i < 50; i++)
                if (sd_event_run(e, 0) > 0)
                        n++;
        return n;
}

/* A paused connection whose client half-closed behind unread bytes. */
TEST(paused_halfclose_with_data_does_not_spin) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        u.stream = conn_stream(c);
        u.pause_after_first = true;
        stream_attach(conn_stream(c), &upper_ops, &u);
        ASSERT_EQ(write(sv[1], "ab", 2), 2);
        run(e, 3);
        ASSERT_EQ(buf_len(&u.got), 2);
        ASSERT_EQ(write(sv[1], "cd", 2), 2);
        ASSERT_OK(shutdown(sv[1], SHUT_WR));
        run(e, 3);
        ASSERT_EQ(u.closed, 0);
        ASSERT_EQ(spins(e), 0);
        stream_set_read_paused(conn_stream(c), false);
        run(e, 5);
        ASSERT_EQ(buf_len(&u.got), 4);
        ASSERT_EQ(u.closed, 1);
        close(sv[1]);
        buf_done(&u.got);
        sd_event_unref(e);
}

/* Lingering after our last byte, while the client still sends. */
TEST(linger_does_not_spin) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};
        char b[64];

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &upper_ops, &u);
        ASSERT_OK(stream_write(conn_stream(c), "resp", 4));
        freed = 0;
        stream_close(conn_stream(c), true);
        ASSERT_EQ(read(sv[1], b, sizeof b), 4);
        ASSERT_EQ(read(sv[1], b, sizeof b), 0);
        ASSERT_EQ(write(sv[1], "late", 4), 4);
        run(e, 2);
        ASSERT_EQ(spins(e), 0);
        ASSERT_EQ(freed, 0);
        ASSERT_EQ(write(sv[1], "more", 4), 4);
        run(e, 2);
        ASSERT_EQ(spins(e), 0);
        close(sv[1]);
        run(e, 2);
        ASSERT_EQ(freed, 1);
        sd_event_unref(e);
}

static ssize_t hold_read(void *u, const uint8_t *p, size_t n) {
        return 0;
}
static const StreamUpper hold_ops = { hold_read, up_writable, up_close };

/* End of input with bytes the upper cannot parse yet. */
TEST(eof_with_unparsed_bytes_does_not_spin) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &hold_ops, &u);
        ASSERT_EQ(write(sv[1], "GET", 3), 3);
        ASSERT_OK(shutdown(sv[1], SHUT_WR));
        run(e, 3);
        ASSERT_EQ(spins(e), 0);
        close(sv[1]);
        run(e, 3);
        ASSERT_EQ(spins(e), 0);
        freed = 0;
        stream_close(conn_stream(c), false);
        ASSERT_EQ(freed, 1);
        sd_event_unref(e);
}

static sd_event *respawn_event;
static Conn *respawned;
static int respawn_peer = -1;
static ssize_t respawn_read(void *u, const uint8_t *p, size_t n) {
        Conn **self = u;
        int sv[2];
        stream_close(conn_stream(*self), false);
        *self = NULL;
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
                abort();
        if (conn_new(respawn_event, sv[0], "http", NULL, 0, on_free, NULL, &respawned) < 0)
                abort();
        respawn_peer = sv[1];
        return (ssize_t) n;
}
static const StreamUpper respawn_ops = { respawn_read, up_writable, up_close };

/* The last connection of a loop is freed inside its batch and a new one is made there: the new one gets a
 * fresh socket set and works. */
TEST(last_connection_freed_and_new_one_in_the_same_batch) {
        sd_event *e = NULL;
        int sv[2];
        Conn *c;
        Upper u = {};

        ASSERT_OK(sd_event_new(&e));
        respawn_event = e;
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv));
        ASSERT_OK(conn_new(e, sv[0], "http", NULL, 0, on_free, NULL, &c));
        stream_attach(conn_stream(c), &respawn_ops, &c);
        ASSERT_EQ(write(sv[1], "x", 1), 1);
        run(e, 3);
        ASSERT_TRUE(respawned != NULL);
        stream_attach(conn_stream(respawned), &upper_ops, &u);
        ASSERT_EQ(write(respawn_peer, "hello", 5), 5);
        run(e, 3);
        ASSERT_EQ(buf_len(&u.got), 5);
        stream_close(conn_stream(respawned), false);
        close(sv[1]);
        close(respawn_peer);
        buf_done(&u.got);
        run(e, 2);
        sd_event_unref(e);
}
