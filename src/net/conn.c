/* Conn: a Stream over a connected kernel socket: nonblocking I/O on sd-event, buffers, lingering close. */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "net/conn.h"
#include "net/poller.h"
#include "shared/buf.h"
#include "shared/log.h"

/* How much unconsumed input we hold before we stop reading from the kernel: the upper consumes as it
 * parses, so only a stalled upper (paused, or waiting for a partial preface) gets near this. */
#define CONN_INPUT_MAX (256U << 10)
#define CONN_READ_CHUNK (16U << 10)
/* After our last byte went out on a closing connection, how long we read and discard what the client
 * still sends, so that the kernel does not answer it with a RST that destroys our response. */
#define CONN_LINGER_USEC (2 * USEC_PER_SEC)
/* A closing connection whose client does not take our last bytes is cut after this. */
#define CONN_FLUSH_USEC (10 * USEC_PER_SEC)

/* The connections of one event loop share a Poller (net/poller.h): one wakeup serves a batch of them
 * instead of one system call and one loop iteration per ready connection. */
typedef struct ConnPoller ConnPoller;
struct ConnPoller {
        sd_event *event;
        Poller *poller;
        unsigned n_conns;
        ConnPoller *next;
};

/* One per event loop in use (gate has one; tests make several). Only the loop's thread touches it. */
static ConnPoller *pollers;

struct Conn {
        Stream stream;
        PollItem item;                  /* item.fd: the socket */
        ConnPoller *poller;
        sd_event_source *defer;         /* re-offers buffered input after an unpause */
        sd_event_source *timer;         /* flush and linger bounds while closing */
        Buf in, out;
        bool read_paused;
        bool rdhup_unknown;             /* peer half-closed behind unread bytes: cannot tell more now */
        bool want_writable;
        bool eof;
        bool closing;                   /* upper detached; flushing or lingering */
        bool lingering;
        bool delivering;
        bool dead;                      /* freed at the end of the current dispatch */
        ConnFreeCallback on_free;
        void *on_free_userdata;
        uint8_t owner_key[16];
        size_t owner_key_len;
};

static void conn_poller_unref(ConnPoller *p) {
        if (--p->n_conns > 0)
                return;
        for (ConnPoller **q = &pollers; *q; q = &(*q)->next)
                if (*q == p) {
                        *q = p->next;
                        break;
                }
        poller_free(p->poller);
        sd_event_unref(p->event);
        free(p);
}

static int conn_poller_ref(sd_event *event, ConnPoller **ret) {
        ConnPoller *p;
        int r;

        for (p = pollers; p; p = p->next)
                if (p->event == event)
                        goto found;
        p = new0(ConnPoller, 1);
        if (!p)
                return -ENOMEM;
        r = poller_new(event, "connections", &p->poller);
        if (r < 0) {
                free(p);
                return r;
        }
        p->event = sd_event_ref(event);
        p->next = pollers;
        pollers = p;
found:
        p->n_conns++;
        *ret = p;
        return 0;
}

static void conn_free_now(PollItem *item) {
        free(container_of(item, Conn, item));
}

static void conn_on_io(Conn *c, uint32_t revents);

static void conn_on_event(PollItem *item, uint32_t revents) {
        conn_on_io(container_of(item, Conn, item), revents);
}

static int conn_set_events(Conn *c, uint32_t ev) {
        return poller_set_events(c->poller->poller, &c->item, ev);
}

static void conn_free(Conn *c) {
        ConnPoller *p = c->poller;

        sd_event_source_disable_unref(c->defer);
        sd_event_source_disable_unref(c->timer);
        /* Closing the fd takes it out of the epoll set. */
        c->item.fd = safe_close(c->item.fd);
        poller_forget(&c->item);
        buf_done(&c->in);
        buf_done(&c->out);
        if (c->on_free)
                c->on_free(c, c->on_free_userdata);
        if (!p) {
                free(c);
                return;
        }
        /* A later event of the batch being served may still name it. */
        poller_bury(p->poller, &c->item);
        conn_poller_unref(p);
}

/* Frees now, or marks for freeing when we are inside one of our own callbacks. */
static void conn_destroy(Conn *c) {
        if (c->delivering)
                c->dead = true;
        else
                conn_free(c);
}

static void conn_update_events(Conn *c) {
        uint32_t ev = 0;

        if (c->closing)
                ev = c->lingering ? EPOLLIN : (buf_empty(&c->out) ? 0 : EPOLLOUT);
        else {
                /* EPOLLRDHUP with EPOLLIN: while a request is handled only EPOLLIN is dropped, which the
                 * poller does lazily (no epoll_ctl per request). */
                if (!c->read_paused && !c->eof && buf_len(&c->in) < CONN_INPUT_MAX)
                        ev |= EPOLLIN | EPOLLRDHUP;
                /* While the upper does not read (a request is being handled), still notice a client
                 * that hangs up, so its upstream work is cancelled at once rather than at the end. */
                else if (c->read_paused && !c->eof && !c->rdhup_unknown)
                        ev |= EPOLLRDHUP;
                if (!buf_empty(&c->out) || c->want_writable)
                        ev |= EPOLLOUT;
        }
        (void) conn_set_events(c, ev);
}

/* Ends the connection from below: tells the upper once, then frees. */
static void conn_fail(Conn *c, int error) {
        const StreamUpper *u = c->stream.upper;
        void *ud = c->stream.upper_data;

        c->stream.upper = NULL;
        c->stream.upper_data = NULL;
        if (u && !c->closing)
                u->on_close(ud, error);
        conn_free(c);
}

static int conn_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        conn_free(userdata);
        return 0;
}

static int conn_arm_timer(Conn *c, usec_t usec) {
        int r;

        if (c->timer)
                return sd_event_source_set_time_relative(c->timer, usec) < 0 ? -EIO :
                       sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        r = sd_event_add_time_relative(c->stream.event, &c->timer, CLOCK_MONOTONIC, usec, 0, conn_on_timer, c);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(c->timer, "conn-close-timer");
        return 0;
}

/* All output is out: stop sending, read and discard what remains so a late request does not provoke a
 * RST that would destroy our response in the client's receive buffer. */
static void conn_start_linger(Conn *c) {
        if (shutdown(c->item.fd, SHUT_WR) < 0 || conn_arm_timer(c, CONN_LINGER_USEC) < 0) {
                conn_destroy(c);
                return;
        }
        c->lingering = true;
        conn_update_events(c);
}

static int conn_flush(Conn *c) {
        while (!buf_empty(&c->out)) {
                ssize_t k = send(c->item.fd, buf_data(&c->out), buf_len(&c->out), MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                buf_consume(&c->out, (size_t) k);
        }
        /* Idle connections should not keep large buffers around. */
        buf_shrink(&c->out, 64U << 10);
        return 0;
}

static void conn_deliver(Conn *c) {
        if (c->delivering)
                return;
        c->delivering = true;
        while (!c->closing && !c->read_paused && !buf_empty(&c->in) && c->stream.upper) {
                ssize_t k = c->stream.upper->on_read(c->stream.upper_data, buf_data(&c->in), buf_len(&c->in));
                if (c->dead)
                        break;
                if (k < 0) {
                        c->delivering = false;
                        if (!c->closing)
                                conn_fail(c, (int) k);
                        else
                                c->dead = true;
                        return;
                }
                if (k == 0)
                        break;
                buf_consume(&c->in, (size_t) k);
        }
        c->delivering = false;
        if (c->dead) {
                conn_free(c);
                return;
        }
        /* Nothing left to parse: give the read buffer back. A streaming response holds its connection
         * for minutes with nothing to read, and 10,000 of them would otherwise pin 16 KiB each. */
        buf_shrink(&c->in, 0);
        if (c->eof && !c->closing && buf_empty(&c->in)) {
                conn_fail(c, 0);
                return;
        }
        if (!c->closing)
                conn_update_events(c);
}

static void conn_on_io(Conn *c, uint32_t revents) {
        int fd = c->item.fd, r;

        if (c->lingering) {
                uint8_t junk[4096];
                ssize_t k = recv(fd, junk, sizeof junk, MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
                        conn_free(c);
                return;
        }

        if (revents & EPOLLOUT) {
                r = conn_flush(c);
                if (r < 0) {
                        if (c->closing)
                                conn_free(c);
                        else
                                conn_fail(c, r);
                        return;
                }
                if (c->closing) {
                        if (buf_empty(&c->out))
                                conn_start_linger(c);
                        return;
                }
                if (buf_empty(&c->out) && c->want_writable && c->stream.upper) {
                        c->want_writable = false;
                        c->delivering = true;
                        c->stream.upper->on_writable(c->stream.upper_data);
                        c->delivering = false;
                        if (c->dead) {
                                conn_free(c);
                                return;
                        }
                        if (c->closing)
                                return;
                }
        }

        if ((revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && c->read_paused && !c->eof) {
                uint8_t b;
                ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR)) {
                        /* Like nginx for proxied requests: a client that closed its side is gone. */
                        conn_fail(c, k == 0 ? 0 : -errno);
                        return;
                }
                if (k > 0)
                        c->rdhup_unknown = true;
                conn_update_events(c);
                return;
        }

        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !c->read_paused && !c->eof) {
                uint8_t *p = buf_reserve(&c->in, CONN_READ_CHUNK);
                if (!p) {
                        conn_fail(c, -ENOMEM);
                        return;
                }
                ssize_t k = recv(fd, p, buf_space(&c->in), MSG_DONTWAIT);
                if (k < 0) {
                        if (errno != EAGAIN && errno != EINTR) {
                                conn_fail(c, -errno);
                                return;
                        }
                } else if (k == 0)
                        c->eof = true;
                else
                        buf_commit(&c->in, (size_t) k);
                conn_deliver(c);
                return;
        }

        conn_update_events(c);
}

static int conn_on_defer(sd_event_source *s, void *userdata) {
        Conn *c = userdata;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (!c->closing)
                conn_deliver(c);
        return 0;
}

static int conn_write(Stream *s, const void *p, size_t n) {
        Conn *c = (Conn *) s;
        int r;

        if (c->closing)
                return -EPIPE;
        /* Fast path: nothing queued, hand it to the kernel right away. */
        if (buf_empty(&c->out)) {
                ssize_t k = send(c->item.fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (k < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                return -errno;
                        k = 0;
                }
                p = (const uint8_t *) p + k;
                n -= (size_t) k;
                if (n == 0)
                        return 0;
        }
        r = buf_append(&c->out, p, n);
        if (r < 0)
                return r;
        conn_update_events(c);
        return 0;
}

static size_t conn_pending(Stream *s) {
        return buf_len(&((Conn *) s)->out);
}

static void conn_set_read_paused(Stream *s, bool paused) {
        Conn *c = (Conn *) s;

        if (c->read_paused == paused)
                return;
        c->read_paused = paused;
        c->rdhup_unknown = false;
        /* Input may be buffered already: offer it from the loop, not from inside the caller. */
        if (!paused && (!buf_empty(&c->in) || c->eof))
                (void) sd_event_source_set_enabled(c->defer, SD_EVENT_ONESHOT);
        if (!c->closing)
                conn_update_events(c);
}

static void conn_want_writable(Stream *s) {
        Conn *c = (Conn *) s;

        c->want_writable = true;
        conn_update_events(c);
}

static void conn_close(Stream *s, bool flush) {
        Conn *c = (Conn *) s;

        if (c->closing)
                return;
        c->closing = true;
        c->stream.upper = NULL;
        c->stream.upper_data = NULL;
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);

        if (!flush) {
                conn_destroy(c);
                return;
        }
        if (conn_flush(c) < 0) {
                conn_destroy(c);
                return;
        }
        if (buf_empty(&c->out)) {
                conn_start_linger(c);
                return;
        }
        if (conn_arm_timer(c, CONN_FLUSH_USEC) < 0) {
                conn_destroy(c);
                return;
        }
        conn_update_events(c);
}

static const StreamOps conn_ops = {
        .write = conn_write,
        .pending = conn_pending,
        .set_read_paused = conn_set_read_paused,
        .want_writable = conn_want_writable,
        .close = conn_close,
};

int conn_new(sd_event *event, int fd, const char *listener, const struct sockaddr *peer, socklen_t peer_len,
             ConnFreeCallback on_free, void *userdata, Conn **ret) {
        Conn *c;
        int r, one = 1;

        c = new0(Conn, 1);
        if (!c) {
                safe_close(fd);
                return -ENOMEM;
        }
        c->item = (PollItem){ .on_event = conn_on_event, .free = conn_free_now, .fd = fd };
        c->stream.ops = &conn_ops;
        c->stream.event = event;
        c->stream.info.listener = listener;
        if (peer && peer_len > 0 && peer_len <= sizeof c->stream.info.peer) {
                /* accept4() said who it is: no getpeername() per connection. */
                memcpy(&c->stream.info.peer, peer, peer_len);
                c->stream.info.peer_len = peer_len;
        } else {
                c->stream.info.peer_len = sizeof c->stream.info.peer;
                (void) getpeername(fd, (struct sockaddr *) &c->stream.info.peer, &c->stream.info.peer_len);
        }
        if (c->stream.info.peer.ss_family != AF_UNIX)
                (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        r = conn_poller_ref(event, &c->poller);
        if (r < 0)
                goto fail;
        r = conn_set_events(c, EPOLLIN | EPOLLRDHUP);
        if (r < 0)
                goto fail;
        r = sd_event_add_defer(event, &c->defer, conn_on_defer, c);
        if (r < 0)
                goto fail;
        (void) sd_event_source_set_enabled(c->defer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(c->defer, "conn-resume-read");

        c->on_free = on_free;
        c->on_free_userdata = userdata;
        *ret = c;
        return 0;
fail:
        conn_free(c);
        return r;
}

Stream *conn_stream(Conn *c) {
        return &c->stream;
}

void conn_read_now(Conn *c) {
        conn_on_io(c, EPOLLIN);
}

void conn_set_owner_key(Conn *c, const void *key, size_t len) {
        c->owner_key_len = MIN(len, sizeof c->owner_key);
        memcpy(c->owner_key, key, c->owner_key_len);
}

const void *conn_owner_key(Conn *c, size_t *ret_len) {
        *ret_len = c->owner_key_len;
        return c->owner_key;
}
