/* H1Client: gate's own HTTP/1.1 client for plain-HTTP upstreams on IP literals (local inference servers). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "net/poller.h"
#include "net/timers.h"
#include "proxy/h1-client.h"
#include "shared/buf.h"
#include "shared/log.h"
#include "shared/util.h"

#define H1C_READ_SIZE (64U * 1024U)
#define H1C_HEAD_MAX (64U * 1024U)              /* one response head, 1xx heads and trailers included */
#define H1C_LINE_MAX (16U * 1024U)              /* one head line or chunk-size line */
#define H1C_KEEP (4U * 1024U)                   /* a connection's buffer above this is freed once empty */
/* Idle connections kept per destination unless told otherwise ([proxy] idle_connections): enough that a
 * burst of a thousand streams finds its connections again at the next one, as nginx's "keepalive 1024"
 * does; an idle connection costs a few KiB in the kernel and the server. */
#define H1C_IDLE_PER_DEST_DEFAULT 1024U
/* Idle connections older than this are closed: nginx's upstream keepalive_timeout default (curl keeps
 * them 118 s). Servers that close sooner (uvicorn after 5 s) cost one resend on a fresh connection. */
#define H1C_IDLE_LIFETIME (60 * USEC_PER_SEC)

typedef struct H1Conn H1Conn;

/* Where connections go: one per distinct address, with its idle connections (most recent last). */
typedef struct H1Dest {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        H1Conn **idle;                  /* grows with use, up to the client's idle_max */
        size_t n_idle, idle_alloc;
        struct H1Dest *next;
} H1Dest;

struct H1Client {
        sd_event *event;
        /* The connections' sockets, served in batches (net/poller.h): thousands of streams do not cost
         * a loop iteration and a system call per ready socket. */
        Poller *poller;
        H1Dest *dests;
        size_t n_conns;
        size_t n_idle;
        size_t idle_max;                /* per destination */
        usec_t idle_lifetime;
        /* Closes idle connections past their lifetime even when no request comes for their destination
         * again (a provider removed by a reload, a burst that is over): servers such as Go's net/http
         * never close them themselves. */
        sd_event_source *sweep;
        TimerQueue *timers;             /* the transfers' connect timeouts */
        /* Reads land here (after the partial line a connection kept from its last read) and are parsed
         * in place; only what a transfer cannot take yet (a partial line, bytes held back by a pause)
         * is copied to the connection: thousands of streaming connections do not each hold a read
         * buffer. */
        uint8_t rbuf[H1C_LINE_MAX + 2 + H1C_READ_SIZE];
};

struct H1Conn {
        H1Client *client;
        H1Dest *dest;
        PollItem item;                  /* item.fd: the socket */
        H1Transfer *transfer;           /* NULL while idle */
        Buf in;                         /* received and not yet parsed */
        usec_t idle_since;
        bool pooled;
        bool connecting;
        int connect_error;              /* a failed connect, seen by the first send (errno) */
        bool reused;                    /* served an answer before this transfer */
};

typedef enum ResponseState {
        RS_STATUS,
        RS_FIELDS,
        RS_LENGTH,                      /* body of a known length */
        RS_CHUNK_SIZE,
        RS_CHUNK_DATA,
        RS_CHUNK_CRLF,
        RS_TRAILERS,
        RS_CLOSE,                       /* body delimited by the connection's close */
        RS_DONE,
} ResponseState;

struct H1Transfer {
        H1Client *client;
        H1Dest *dest;
        H1Conn *conn;
        H1Callbacks cb;
        void *userdata;
        Timer timer;                    /* connect timeout */
        sd_event_source *failed;        /* reports a connect that failed at once, from the loop */
        int failed_error;               /* ... and its errno */
        usec_t connect_timeout;
        char *error;                    /* the caller's H1Request.error, or NULL */
        int send_error;                 /* errno of a failed send */

        Buf head;                       /* the request head */
        const uint8_t *body;
        size_t body_len;
        size_t sent;                    /* of head and body */
        bool send_failed;               /* the server stopped reading: only its answer can still come */
        bool head_request;

        ResponseState rs;
        unsigned status;
        size_t head_bytes;
        uint64_t remaining;
        bool have_length;
        bool chunked;
        bool te_other;                  /* a transfer coding other than chunked last: the close frames it */
        bool http10;
        bool close_after;               /* the connection cannot serve another request */
        bool got_bytes;                 /* any byte of an answer arrived */
        bool retried;

        bool paused;
        bool eof;                       /* the server closed; what is buffered is still to deliver */
        bool in_callback;
        bool cancelled;                 /* by the caller from inside a callback: cleaned up after it */
        bool wrote;                     /* write() was called since the last fed() */
};

/* ---- destinations and connections ---- */

static int parse_url(const char *url, struct sockaddr_storage *addr, socklen_t *addr_len, const char **ret_host,
                     size_t *ret_host_len, const char **ret_path) {
        char host[64];
        const char *h, *e, *p, *port_s = NULL;
        size_t hn;
        uint16_t port = 80;

        if (!url || !startswith(url, "http://"))
                return -EINVAL;
        /* No spaces or controls: they would end up in the request line (curl refuses them too). */
        for (const char *q = url; *q; q++)
                if ((unsigned char) *q <= ' ' || *q == 0x7f)
                        return -EINVAL;
        h = url + 7;
        p = h + strcspn(h, "/?#");
        if (*h == '[') {
                e = memchr(h, ']', (size_t) (p - h));
                if (!e)
                        return -EINVAL;
                hn = (size_t) (e - h - 1);
                if (hn == 0 || hn >= sizeof host)
                        return -EINVAL;
                memcpy(host, h + 1, hn);
                if (e + 1 < p) {
                        if (e[1] != ':')
                                return -EINVAL;
                        port_s = e + 2;
                }
        } else {
                e = memchr(h, ':', (size_t) (p - h));
                hn = (size_t) ((e ?: p) - h);
                if (hn == 0 || hn >= sizeof host)
                        return -EINVAL;
                memcpy(host, h, hn);
                if (e)
                        port_s = e + 1;
        }
        host[hn] = 0;
        if (port_s) {
                unsigned v = 0;

                if (port_s == p)
                        return -EINVAL;
                for (const char *q = port_s; q < p; q++) {
                        if (*q < '0' || *q > '9')
                                return -EINVAL;
                        v = v * 10 + (unsigned) (*q - '0');
                        if (v > 65535)
                                return -EINVAL;
                }
                if (v == 0)
                        return -EINVAL;
                port = (uint16_t) v;
        }
        if (*p == '#')
                return -EINVAL;

        /* IP literals and localhost only: anything else needs a resolver, which curl has. */
        memset(addr, 0, sizeof *addr);
        struct sockaddr_in *in4 = (struct sockaddr_in *) addr;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;
        if (streq(host, "localhost") || inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
                if (streq(host, "localhost"))
                        in4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
                in4->sin_family = AF_INET;
                in4->sin_port = htons(port);
                *addr_len = sizeof *in4;
        } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(port);
                *addr_len = sizeof *in6;
        } else
                return -EINVAL;
        *ret_host = h;
        *ret_host_len = (size_t) (p - h);
        *ret_path = p;
        return 0;
}

bool h1_client_handles(const char *url) {
        struct sockaddr_storage a;
        socklen_t n;
        const char *h, *p;
        size_t hn;

        return parse_url(url, &a, &n, &h, &hn, &p) >= 0;
}

static H1Dest *dest_get(H1Client *c, const struct sockaddr_storage *addr, socklen_t len) {
        H1Dest *d;

        for (d = c->dests; d; d = d->next)
                if (d->addr_len == len && memcmp(&d->addr, addr, len) == 0)
                        return d;
        d = new0(H1Dest, 1);
        if (!d)
                return NULL;
        memcpy(&d->addr, addr, len);
        d->addr_len = len;
        d->next = c->dests;
        c->dests = d;
        return d;
}

static void conn_unidle(H1Conn *k) {
        H1Dest *d = k->dest;

        /* From the newest: a connection leaves the pool for reuse from there. */
        for (size_t i = d->n_idle; i-- > 0;)
                if (d->idle[i] == k) {
                        memmove(d->idle + i, d->idle + i + 1, (d->n_idle - i - 1) * sizeof *d->idle);
                        d->n_idle--;
                        k->client->n_idle--;
                        k->pooled = false;
                        return;
                }
}

static void conn_close(H1Conn *k) {
        if (!k)
                return;
        if (k->pooled)
                conn_unidle(k);
        if (k->transfer)
                k->transfer->conn = NULL;
        k->transfer = NULL;
        /* Closing removes the fd from the epoll set; events of the batch being served that still
         * name the connection are skipped, and it is freed after the batch. */
        k->item.fd = safe_close(k->item.fd);
        poller_forget(&k->item);
        buf_done(&k->in);
        k->client->n_conns--;
        poller_bury(k->client->poller, &k->item);
}

/* Nothing wanted (paused, with the request sent) takes the socket out of the set: EPOLLHUP and EPOLLERR
 * cannot be masked, and a reset while paused would otherwise wake the loop forever. */
static int conn_set_events(H1Conn *k, uint32_t events) {
        return poller_set_events(k->client->poller, &k->item, events);
}

static void conn_on_io(H1Conn *k, uint32_t revents);

static void conn_on_event(PollItem *item, uint32_t revents) {
        conn_on_io(container_of(item, H1Conn, item), revents);
}

static void conn_free_now(PollItem *item) {
        free(container_of(item, H1Conn, item));
}

static int conn_new(H1Client *c, H1Dest *d, H1Conn **ret) {
        _cleanup_free_ H1Conn *k = NULL;
        int fd, r, one = 1;

        fd = socket(d->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        (void) setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        k = new0(H1Conn, 1);
        if (!k) {
                safe_close(fd);
                return -ENOMEM;
        }
        k->client = c;
        k->dest = d;
        k->item = (PollItem){ .on_event = conn_on_event, .free = conn_free_now, .fd = fd };
        if (connect(fd, (const struct sockaddr *) &d->addr, d->addr_len) < 0) {
                if (errno != EINPROGRESS) {
                        r = -errno;
                        safe_close(fd);
                        return r;
                }
                k->connecting = true;
        }
        r = poller_set_events(c->poller, &k->item, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        if (r < 0) {
                safe_close(fd);
                return r;
        }
        c->n_conns++;
        *ret = TAKE_PTR(k);
        return 0;
}

/* An idle connection that is still fresh, newest first (the likeliest to be alive), or NULL. */
static H1Conn *conn_from_pool(H1Dest *d, usec_t now) {
        while (d->n_idle > 0) {
                H1Conn *k = d->idle[d->n_idle - 1];

                conn_unidle(k);
                if (now - k->idle_since < k->client->idle_lifetime)
                        return k;
                /* Too old: the server may be about to close it; a fresh one is cheaper than a retry. */
                conn_close(k);
        }
        return NULL;
}

/* Closes the destination's idle connections past their lifetime (the oldest are first); returns when
 * the oldest left expires, or USEC_INFINITY. */
static usec_t dest_prune(H1Dest *d, H1Client *c, usec_t now) {
        while (d->n_idle > 0 && now - d->idle[0]->idle_since >= c->idle_lifetime)
                conn_close(d->idle[0]);
        return d->n_idle > 0 ? d->idle[0]->idle_since + c->idle_lifetime : USEC_INFINITY;
}

static int client_on_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        H1Client *c = userdata;
        usec_t now = now_mono(), next = USEC_INFINITY;

        for (H1Dest *d = c->dests; d; d = d->next)
                next = MIN(next, dest_prune(d, c, now));
        if (next != USEC_INFINITY) {
                (void) sd_event_source_set_time(s, next);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        }
        return 0;
}

/* Makes sure the sweep runs by the time a connection pooled now expires. */
static void client_arm_sweep(H1Client *c, usec_t expiry) {
        int enabled = SD_EVENT_OFF, r;

        if (c->sweep)
                (void) sd_event_source_get_enabled(c->sweep, &enabled);
        if (enabled != SD_EVENT_OFF)
                return;         /* armed for an older connection: it re-arms itself for this one */
        if (!c->sweep) {
                r = sd_event_add_time(c->event, &c->sweep, CLOCK_MONOTONIC, expiry, USEC_PER_SEC / 4,
                                      client_on_sweep, c);
                if (r < 0) {
                        log_debug_errno(r, "Failed to add the idle connection sweep, ignoring: %m");
                        return;
                }
                (void) sd_event_source_set_description(c->sweep, "h1-idle-sweep");
                return;
        }
        (void) sd_event_source_set_time(c->sweep, expiry);
        (void) sd_event_source_set_enabled(c->sweep, SD_EVENT_ONESHOT);
}

static void conn_to_pool(H1Conn *k) {
        H1Dest *d = k->dest;
        usec_t now = now_mono();

        k->transfer = NULL;
        k->reused = true;
        buf_shrink(&k->in, 0);
        (void) dest_prune(d, k->client, now);
        if (d->n_idle >= k->client->idle_max) {
                conn_close(k);
                return;
        }
        if (d->n_idle == d->idle_alloc) {
                size_t n = MIN(MAX(d->idle_alloc * 2, (size_t) 16), k->client->idle_max);
                H1Conn **idle = reallocarray(d->idle, n, sizeof *idle);

                if (!idle) {
                        conn_close(k);
                        return;
                }
                d->idle = idle;
                d->idle_alloc = n;
        }
        /* Idle: only a close (or junk) from the server can come, and ends it. */
        if (conn_set_events(k, EPOLLIN | EPOLLRDHUP) < 0) {
                conn_close(k);
                return;
        }
        k->idle_since = now;
        k->pooled = true;
        d->idle[d->n_idle++] = k;
        k->client->n_idle++;
        client_arm_sweep(k->client, now + k->client->idle_lifetime);
}

/* ---- transfers ---- */

static void transfer_free(H1Transfer *t) {
        timer_disarm(t->client->timers, &t->timer);
        sd_event_source_disable_unref(t->failed);
        buf_done(&t->head);
        free(t);
}

/* Whether the connection can serve another request once this answer is complete: not when the server
 * asked to close, sent more than the answer, or answered before it had the whole request (the rest of
 * the body would be read as the next request). */
static bool transfer_conn_reusable(const H1Transfer *t) {
        return t->rs == RS_DONE && !t->close_after && !t->send_failed &&
               t->sent == buf_len(&t->head) + t->body_len && buf_empty(&t->conn->in);
}

/* Lets go of the transfer's connection: back to the pool when the answer ended well and the connection
 * can serve again (ok: the caller saw no error), else closed. */
static void transfer_release_conn(H1Transfer *t, bool ok) {
        H1Conn *k = t->conn;
        bool reuse = ok && transfer_conn_reusable(t);

        t->conn = NULL;
        k->transfer = NULL;
        if (reuse)
                conn_to_pool(k);
        else
                conn_close(k);
}

/* The end: the connection goes back to the pool when it can serve again, done() is called last. */
static void transfer_finish(H1Transfer *t, CURLcode result) {
        H1Conn *k = t->conn;
        H1Callbacks cb = t->cb;
        void *userdata = t->userdata;

        if (k)
                transfer_release_conn(t, result == CURLE_OK);
        transfer_free(t);
        cb.done(result, userdata);
}

static int transfer_connect(H1Transfer *t);

/* A pooled connection the server had closed: send again, once, on a fresh one. */
static bool transfer_retry_stale(H1Transfer *t) {
        H1Conn *k = t->conn;

        if (!k || !k->reused || t->got_bytes || t->retried)
                return false;
        t->retried = true;
        if (t->error)
                t->error[0] = 0;
        t->conn = NULL;
        k->transfer = NULL;
        conn_close(k);
        t->sent = 0;
        t->send_failed = false;
        return transfer_connect(t) >= 0;
}

/* A failure's own account for the caller (what curl writes to CURLOPT_ERRORBUFFER): what happened,
 * with which address, and the system's error text when there is one. */
static void transfer_explain(H1Transfer *t, const char *what, const char *to_or_by, int error) {
        char addr[64] = "";

        if (!t->error)
                return;
        (void) format_socket_address((const struct sockaddr *) &t->dest->addr, t->dest->addr_len, addr,
                                     sizeof addr);
        snprintf(t->error, CURL_ERROR_SIZE, "%s %s %s%s%s", what, to_or_by, addr, error != 0 ? ": " : "",
                 error != 0 ? strerror(abs(error)) : "");
}

static void transfer_fail(H1Transfer *t, CURLcode result) {
        if (result != CURLE_WRITE_ERROR && result != CURLE_OPERATION_TIMEDOUT && transfer_retry_stale(t))
                return;
        transfer_finish(t, result);
}

static void transfer_on_timer(Timer *timer) {
        H1Transfer *t = container_of(timer, H1Transfer, timer);

        log_debug("Upstream connect timed out.");
        transfer_explain(t, "Connection timed out", "to", 0);
        transfer_finish(t, CURLE_OPERATION_TIMEDOUT);
}

static int transfer_send(H1Transfer *t);

/* The server stopped reading: an answer it sent early (a 413, then a close) may still be waiting to be
 * read. Reading decides; sending is over. */
static void transfer_send_failed(H1Transfer *t, int r) {
        log_debug_errno(r, "Sending to upstream failed: %m");
        t->send_failed = true;
        t->send_error = r;
}

static int transfer_bind(H1Transfer *t, H1Conn *k) {
        t->conn = k;
        k->transfer = t;
        t->got_bytes = t->eof = false;
        t->rs = RS_STATUS;
        t->head_bytes = 0;
        /* A pooled connection is connected and nearly always writable: the request goes out at once, and
         * the socket stays watched as it was while idle (no epoll_ctl per request). What does not fit, or
         * a failure, is left to the writable event, which handles it as it always did. */
        if (!k->connecting && transfer_send(t) == 0)
                return conn_set_events(k, EPOLLIN | EPOLLRDHUP);
        if (k->connecting) {
                /* A connect in progress is often done already (loopback, the local network): the request
                 * goes out now instead of a loop iteration later, which under a burst of new streams is
                 * the time to serve a whole batch of other sockets. Not connected yet, the kernel says
                 * EAGAIN and the writable event goes on as before; a failed connect reports its error here
                 * (and no longer to SO_ERROR), so it is kept for that event to report. */
                int r = transfer_send(t);
                if (r < 0 && t->sent == 0)
                        k->connect_error = -r;
                else if (r == 0 || t->sent > 0)
                        k->connecting = false;
                if (r < 0 && t->sent > 0)
                        transfer_send_failed(t, r);     /* connected, then the server stopped reading */
                if (r == 0 || t->send_failed)
                        return conn_set_events(k, EPOLLIN | EPOLLRDHUP);
        }
        /* Writable first (connect, then the request), readable throughout (an early answer). */
        return conn_set_events(k, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
}

static int transfer_connect(H1Transfer *t) {
        H1Conn *k = NULL;
        int r;

        r = conn_new(t->client, t->dest, &k);
        if (r < 0)
                return r;
        r = transfer_bind(t, k);
        if (r < 0) {
                conn_close(k);
                return r;
        }
        if (k->connecting && t->connect_timeout > 0) {
                t->timer.on_expire = transfer_on_timer;
                r = timer_arm_relative(t->client->timers, &t->timer, t->connect_timeout);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Sends what remains of head and body; 0 when all is out, 1 when the socket is full, <0 on error. */
static int transfer_send(H1Transfer *t) {
        H1Conn *k = t->conn;
        size_t hl = buf_len(&t->head);

        while (t->sent < hl + t->body_len) {
                struct iovec iov[2];
                int n = 0;
                ssize_t w;

                if (t->sent < hl)
                        iov[n++] = (struct iovec){ (void *) (buf_data(&t->head) + t->sent), hl - t->sent };
                if (t->body_len > 0) {
                        size_t off = t->sent > hl ? t->sent - hl : 0;
                        iov[n++] = (struct iovec){ (void *) (t->body + off), t->body_len - off };
                }
                /* MSG_NOSIGNAL: a server that closed early must not kill the process with SIGPIPE. */
                w = sendmsg(k->item.fd, &(struct msghdr){ .msg_iov = iov, .msg_iovlen = n },
                            MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return errno == EAGAIN ? 1 : -errno;
                }
                t->sent += (size_t) w;
        }
        return 0;
}

static size_t call_header(H1Transfer *t, const uint8_t *line, size_t n) {
        size_t r;

        t->in_callback = true;
        r = t->cb.header((char *) line, 1, n, t->userdata);
        t->in_callback = false;
        return r;
}

static size_t call_write(H1Transfer *t, const uint8_t *p, size_t n) {
        size_t r;

        t->wrote = true;
        t->in_callback = true;
        r = t->cb.write((char *) p, 1, n, t->userdata);
        t->in_callback = false;
        return r;
}

static bool name_is(const uint8_t *p, size_t n, const char *name) {
        size_t l = strlen(name);
        return n == l && strncasecmp((const char *) p, name, l) == 0;
}

/* One line of the head (without its line end). */
static CURLcode parse_head_line(H1Transfer *t, const uint8_t *p, size_t n) {
        if (t->rs == RS_STATUS) {
                /* HTTP/1.x SP 3DIGIT [SP reason] */
                if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' ||
                    p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9' ||
                    (n > 12 && p[12] != ' '))
                        return CURLE_WEIRD_SERVER_REPLY;
                t->status = (unsigned) ((p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0'));
                t->have_length = t->chunked = t->te_other = false;
                t->remaining = 0;
                /* HTTP/1.0 answers close unless they say otherwise (keep-alive is not asked for). */
                t->http10 = p[7] == '0';
                t->close_after = t->http10;
                t->rs = RS_FIELDS;
                return CURLE_OK;
        }

        const uint8_t *colon = memchr(p, ':', n);
        if (!colon || colon == p || p[0] == ' ' || p[0] == '\t')
                return CURLE_WEIRD_SERVER_REPLY;        /* no name, or obsolete line folding */
        size_t nl = (size_t) (colon - p);
        const uint8_t *v = colon + 1, *e = p + n;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
        size_t vl = (size_t) (e - v);

        if (name_is(p, nl, "content-length")) {
                uint64_t l = 0;

                if (vl == 0 || vl > 18)
                        return CURLE_WEIRD_SERVER_REPLY;
                for (size_t i = 0; i < vl; i++) {
                        if (v[i] < '0' || v[i] > '9')
                                return CURLE_WEIRD_SERVER_REPLY;
                        l = l * 10 + (uint64_t) (v[i] - '0');
                }
                if (t->have_length && l != t->remaining)
                        return CURLE_WEIRD_SERVER_REPLY;
                t->have_length = true;
                t->remaining = l;
        } else if (name_is(p, nl, "transfer-encoding")) {
                /* Only chunked is decoded, and only as the final coding; with any other last coding the
                 * body runs to the close (RFC 9112 6.3), whatever Content-Length says. */
                const uint8_t *last = memrchr(v, ',', vl);
                size_t off = last ? (size_t) (last + 1 - v) : 0;

                t->chunked = http_list_has_token((const char *) v + off, vl - off, "chunked");
                t->te_other = !t->chunked;
        } else if (name_is(p, nl, "connection")) {
                if (http_list_has_token((const char *) v, vl, "close"))
                        t->close_after = true;
                else if (http_list_has_token((const char *) v, vl, "keep-alive"))
                        t->close_after = false;
        }
        return CURLE_OK;
}

/* The head ended: what frames the body. */
static void head_done(H1Transfer *t) {
        if (t->status < 200) {
                t->rs = RS_STATUS;      /* an interim answer: the real one follows */
                return;
        }
        /* Both framings at once smell of response splitting: the coding wins, and the connection is
         * not trusted with another request. */
        if ((t->chunked || t->te_other) && (t->have_length || t->http10))
                t->close_after = true;
        if (t->head_request || t->status == 204 || t->status == 304)
                t->rs = RS_DONE;
        else if (t->chunked) {
                t->have_length = false;
                t->rs = RS_CHUNK_SIZE;
        } else if (t->te_other) {
                t->have_length = false;
                t->close_after = true;
                t->rs = RS_CLOSE;
        } else if (t->have_length)
                t->rs = t->remaining == 0 ? RS_DONE : RS_LENGTH;
        else {
                t->close_after = true;
                t->rs = RS_CLOSE;
        }
}

/* Parses and delivers size bytes of answer; *used is how many were taken. Returns CURLE_OK with
 * t->rs == RS_DONE when the answer is complete, CURLE_OK otherwise when more is needed (or t->paused),
 * an error to end with, or CURLE_AGAIN when the caller cancelled the transfer from a callback. */
static CURLcode transfer_feed(H1Transfer *t, const uint8_t *data, size_t size, size_t *used) {
        *used = 0;
        while (*used < size && t->rs != RS_DONE && !t->paused) {
                const uint8_t *p = data + *used;
                size_t n = size - *used;

                switch (t->rs) {
                case RS_STATUS:
                case RS_FIELDS:
                case RS_CHUNK_SIZE:
                case RS_CHUNK_CRLF:
                case RS_TRAILERS: {
                        const uint8_t *lf = memchr(p, '\n', MIN(n, (size_t) H1C_LINE_MAX + 2));
                        size_t len, content;

                        if (!lf)
                                return n > H1C_LINE_MAX ? CURLE_WEIRD_SERVER_REPLY : CURLE_OK;
                        len = (size_t) (lf - p) + 1;
                        content = len - 1 - (len >= 2 && p[len - 2] == '\r');
                        if (memchr(p, '\r', content))
                                return CURLE_WEIRD_SERVER_REPLY;        /* bare CR inside a line */

                        if (t->rs == RS_STATUS || t->rs == RS_FIELDS) {
                                CURLcode r;

                                t->head_bytes += len;
                                if (t->head_bytes > H1C_HEAD_MAX)
                                        return CURLE_WEIRD_SERVER_REPLY;
                                if (content > 0 || t->rs == RS_STATUS) {
                                        r = parse_head_line(t, p, content);
                                        if (r != CURLE_OK)
                                                return r;
                                } else
                                        head_done(t);
                                if (call_header(t, p, len) != len)
                                        return t->cancelled ? CURLE_AGAIN : CURLE_WRITE_ERROR;
                                if (t->cancelled)
                                        return CURLE_AGAIN;
                                *used += len;
                                break;
                        }
                        if (t->rs == RS_CHUNK_CRLF) {
                                if (content != 0)
                                        return CURLE_WEIRD_SERVER_REPLY;
                                t->rs = RS_CHUNK_SIZE;
                                *used += len;
                                break;
                        }
                        if (t->rs == RS_TRAILERS) {
                                /* Trailers are read and dropped; the blank line ends the answer. They
                                 * count against the head's limit: an endless trailer is refused. */
                                t->head_bytes += len;
                                if (t->head_bytes > H1C_HEAD_MAX)
                                        return CURLE_WEIRD_SERVER_REPLY;
                                if (content == 0)
                                        t->rs = RS_DONE;
                                *used += len;
                                break;
                        }
                        /* chunk-size [; ext] */
                        uint64_t chunk = 0;
                        size_t i = 0;
                        for (; i < content; i++) {
                                int d = unhexchar((char) p[i]);
                                if (d < 0)
                                        break;
                                if (i >= 15)
                                        return CURLE_WEIRD_SERVER_REPLY;
                                chunk = chunk * 16 + (uint64_t) d;
                        }
                        if (i == 0 || (i < content && p[i] != ';' && p[i] != ' ' && p[i] != '\t'))
                                return CURLE_WEIRD_SERVER_REPLY;
                        *used += len;
                        t->remaining = chunk;
                        t->rs = chunk == 0 ? RS_TRAILERS : RS_CHUNK_DATA;
                        break;
                }

                case RS_LENGTH:
                case RS_CHUNK_DATA:
                case RS_CLOSE: {
                        size_t m = t->rs == RS_CLOSE ? n : (size_t) MIN((uint64_t) n, t->remaining);
                        size_t w = call_write(t, p, m);

                        if (t->cancelled)
                                return CURLE_AGAIN;
                        if (w == CURL_WRITEFUNC_PAUSE) {
                                /* The bytes stay in the buffer and are given again on resume. */
                                t->paused = true;
                                break;
                        }
                        if (w != m)
                                return CURLE_WRITE_ERROR;
                        *used += m;
                        if (t->rs != RS_CLOSE) {
                                t->remaining -= m;
                                if (t->remaining == 0)
                                        t->rs = t->rs == RS_LENGTH ? RS_DONE : RS_CHUNK_CRLF;
                        }
                        break;
                }

                case RS_DONE:
                        break;
                }
        }
        return CURLE_OK;
}

/* The same for what waits in the connection's buffer. */
static CURLcode transfer_parse(H1Transfer *t) {
        Buf *in = &t->conn->in;
        size_t used;
        CURLcode r = transfer_feed(t, buf_data(in), buf_len(in), &used);

        if (r != CURLE_AGAIN) {
                buf_consume(in, used);
                /* What a pause left here (up to a read's worth) need not stay allocated. */
                buf_shrink(in, H1C_KEEP);
        }
        return r;
}

static void transfer_eof(H1Transfer *t, int error);

/* A transfer its caller cancelled from inside a callback: let go of it now the callback returned. */
static void transfer_drop(H1Transfer *t) {
        if (t->conn) {
                H1Conn *k = t->conn;
                t->conn = NULL;
                k->transfer = NULL;
                conn_close(k);
        }
        transfer_free(t);
}

static bool transfer_sending(const H1Transfer *t) {
        return !t->send_failed && t->sent < buf_len(&t->head) + t->body_len;
}

/* After parsing: finish, fail, or wait for more (reading stops while the caller holds data back). */
static void transfer_settle(H1Transfer *t, CURLcode r) {
        if (r == CURLE_AGAIN) {
                transfer_drop(t);
                return;
        }
        if (r != CURLE_OK) {
                transfer_finish(t, r);
                return;
        }
        if (t->rs == RS_DONE) {
                transfer_finish(t, CURLE_OK);
                return;
        }
        if (!t->paused && t->eof) {
                transfer_eof(t, 0);
                return;
        }
        /* The transfer goes on: what this read delivered can go out. (Where it ends here, done() comes
         * instead and the caller hands on what it held with the end of the answer, in one write.) */
        if (t->wrote && t->cb.fed) {
                t->wrote = false;
                t->in_callback = true;
                t->cb.fed(t->userdata);
                t->in_callback = false;
                if (t->cancelled) {
                        transfer_drop(t);
                        return;
                }
        }
        if (t->conn) {
                uint32_t ev = (t->paused || t->eof ? 0 : EPOLLIN | EPOLLRDHUP) |
                              (transfer_sending(t) ? EPOLLOUT : 0);
                int k = conn_set_events(t->conn, ev);
                if (k < 0) {
                        /* Not watched, the transfer would wait forever. */
                        log_debug_errno(k, "Failed to watch upstream connection: %m");
                        transfer_finish(t, CURLE_OUT_OF_MEMORY);
                }
        }
}

/* The connection ended (EOF or error) while the transfer was on it. */
static void transfer_eof(H1Transfer *t, int error) {
        if (t->rs == RS_CLOSE && error == 0 && (!t->conn || buf_empty(&t->conn->in))) {
                transfer_finish(t, CURLE_OK);
                return;
        }
        if (!t->got_bytes) {
                if (error == -ECONNREFUSED)
                        transfer_explain(t, "Failed to connect", "to", error);
                else if (t->send_failed)
                        transfer_explain(t, "Send failure", "to", t->send_error);
                else
                        transfer_explain(t, "Connection closed", "by", error);
                transfer_fail(t, error == -ECONNREFUSED ? CURLE_COULDNT_CONNECT :
                                 t->send_failed ? CURLE_SEND_ERROR : CURLE_GOT_NOTHING);
                return;
        }
        if (error != 0)
                transfer_explain(t, "Receive failure", "from", error);
        else
                transfer_explain(t, "Connection closed before the end of the answer", "by", 0);
        transfer_finish(t, t->rs == RS_LENGTH || t->rs >= RS_CHUNK_SIZE ? CURLE_PARTIAL_FILE : CURLE_RECV_ERROR);
}

static void conn_on_io(H1Conn *k, uint32_t revents) {
        H1Transfer *t = k->transfer;
        int fd = k->item.fd, r;

        if (!t) {
                /* Idle: the server closed it, or sent what nobody asked for. */
                conn_close(k);
                return;
        }

        if (k->connecting) {
                int error = 0;
                socklen_t len = sizeof error;

                if (!(revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                        return;
                if (k->connect_error != 0)
                        error = k->connect_error;
                else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0) {
                        log_debug_errno(error, "Upstream connect failed: %m");
                        transfer_explain(t, "Failed to connect", "to", error);
                        transfer_finish(t, CURLE_COULDNT_CONNECT);
                        return;
                }
                k->connecting = false;
                timer_disarm(k->client->timers, &t->timer);
        }

        if ((revents & EPOLLOUT) && transfer_sending(t)) {
                r = transfer_send(t);
                if (r < 0) {
                        transfer_send_failed(t, r);
                        revents |= EPOLLIN;
                }
        }

        if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && !t->paused && !t->eof) {
                H1Client *c = k->client;
                Buf *in = &k->in;
                size_t held = buf_len(in), used;
                ssize_t n;

                /* Reading stops while paused, and a resume parses what was held: all that can wait here
                 * now is a partial line. It goes in front of the new bytes, to be parsed in one go. */
                if (held > H1C_LINE_MAX + 2) {
                        transfer_finish(t, CURLE_WEIRD_SERVER_REPLY);
                        return;
                }
                memcpy(c->rbuf, buf_data(in), held);
                n = read(fd, c->rbuf + held, H1C_READ_SIZE);
                if (n < 0 && errno != EAGAIN && errno != EINTR) {
                        transfer_eof(t, -errno);
                        return;
                }
                if (n == 0)
                        t->eof = true;
                if (n > 0) {
                        CURLcode cr;

                        t->got_bytes = true;
                        cr = transfer_feed(t, c->rbuf, held + (size_t) n, &used);
                        /* What the transfer did not take waits in the connection's buffer. */
                        if (cr == CURLE_OK) {
                                buf_clear(in);
                                if (used < held + (size_t) n &&
                                    buf_append(in, c->rbuf + used, held + (size_t) n - used) < 0)
                                        cr = CURLE_OUT_OF_MEMORY;
                                buf_shrink(in, H1C_KEEP);
                        }
                        transfer_settle(t, cr);
                        return;
                }
        }
        transfer_settle(t, t->conn && !buf_empty(&t->conn->in) ? transfer_parse(t) : CURLE_OK);
}

static int transfer_on_failed(sd_event_source *s, void *userdata) {
        H1Transfer *t = userdata;

        transfer_explain(t, "Failed to connect", "to", t->failed_error);
        transfer_finish(t, CURLE_COULDNT_CONNECT);
        return 0;
}

int h1_transfer_start(H1Client *c, const H1Request *req, const H1Callbacks *cb, void *userdata,
                      H1Transfer **ret) {
        struct sockaddr_storage addr;
        socklen_t addr_len;
        const char *host, *path;
        size_t host_len;
        H1Transfer *t;
        H1Conn *k;
        int r;

        if (parse_url(req->url, &addr, &addr_len, &host, &host_len, &path) < 0)
                return -EPROTONOSUPPORT;
        t = new0(H1Transfer, 1);
        if (!t)
                return -ENOMEM;
        t->client = c;
        t->cb = *cb;
        t->userdata = userdata;
        t->body = req->body;
        t->body_len = req->body_len;
        t->connect_timeout = req->connect_timeout;
        t->error = req->error;
        if (t->error)
                t->error[0] = 0;
        t->head_request = streq(req->method, "HEAD");
        t->dest = dest_get(c, &addr, addr_len);
        if (!t->dest) {
                transfer_free(t);
                return -ENOMEM;
        }

        /* The request head, in one buffer: line, Host (unless the caller has its own, as with curl), the
         * caller's fields, the length. */
        bool own_host = false;
        for (const struct curl_slist *l = req->headers; l && !own_host; l = l->next)
                own_host = strncasecmp(l->data, "host:", 5) == 0;
        r = buf_append_str(&t->head, req->method);
        if (r >= 0)
                r = buf_append_str(&t->head, " ");
        if (r >= 0)
                r = *path == '/' ? buf_append_str(&t->head, path) : buf_append_line(&t->head, "/", path, "", "");
        if (r >= 0)
                r = buf_append_str(&t->head, " HTTP/1.1\r\n");
        if (r >= 0 && !own_host) {
                r = buf_append_str(&t->head, "Host: ");
                if (r >= 0)
                        r = buf_append(&t->head, host, host_len);
                if (r >= 0)
                        r = buf_append_str(&t->head, "\r\n");
        }
        for (const struct curl_slist *l = req->headers; l && r >= 0; l = l->next) {
                const char *colon = strchr(l->data, ':');
                /* "Name:" with nothing after it removes a header in curl's terms: there is none to remove. */
                if (!colon || colon[1 + strspn(colon + 1, " \t")] == 0 || strpbrk(l->data, "\r\n"))
                        continue;
                r = buf_append_line(&t->head, l->data, "", "", "\r\n");
        }
        if (r >= 0 && (req->body_len > 0 || !streq(req->method, "GET"))) {
                r = buf_append_str(&t->head, "Content-Length: ");
                if (r >= 0)
                        r = buf_append_uint(&t->head, req->body_len, 10);
                if (r >= 0)
                        r = buf_append_str(&t->head, "\r\n");
        }
        if (r >= 0)
                r = buf_append_str(&t->head, "\r\n");
        if (r < 0) {
                transfer_free(t);
                return r;
        }

        k = conn_from_pool(t->dest, now_mono());
        if (k) {
                r = transfer_bind(t, k);
                if (r < 0)
                        conn_close(k);
        }
        if (!t->conn) {
                r = transfer_connect(t);
                /* A refused (or otherwise failed) connect is the caller's to hear about as with
                 * curl, through done(), not as a failure to start. */
                if (r < 0 && r != -ENOMEM) {
                        log_debug_errno(r, "Upstream connect failed: %m");
                        t->failed_error = r;
                        if (t->conn)
                                conn_close(t->conn);
                        r = sd_event_add_defer(c->event, &t->failed, transfer_on_failed, t);
                }
        }
        if (r < 0) {
                if (t->conn)
                        conn_close(t->conn);
                transfer_free(t);
                return r;
        }
        *ret = t;
        return 0;
}

void h1_transfer_cancel(H1Transfer *t) {
        if (!t)
                return;
        if (t->in_callback) {
                /* The parse loop sees it when the callback returns and lets go of the transfer. */
                t->cancelled = true;
                return;
        }
        if (t->conn)
                transfer_release_conn(t, true);
        transfer_free(t);
}

void h1_transfer_resume(H1Transfer *t) {
        if (!t || !t->paused)
                return;
        t->paused = false;
        if (!t->conn)
                return;
        /* Delivers what was held (and maybe finishes, calling done() from here, as curl does). */
        transfer_settle(t, transfer_parse(t));
}

unsigned h1_transfer_status(const H1Transfer *t) {
        return t ? t->status : 0;
}

int h1_client_new(sd_event *event, H1Client **ret) {
        H1Client *c = new0(H1Client, 1);

        if (!c)
                return -ENOMEM;
        c->idle_lifetime = H1C_IDLE_LIFETIME;
        c->idle_max = H1C_IDLE_PER_DEST_DEFAULT;
        c->event = sd_event_ref(event);
        int r = poller_new(event, "h1-upstream", &c->poller);
        if (r >= 0)
                r = timer_queue_new(event, "h1-connect-timeouts", &c->timers);
        if (r < 0) {
                h1_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

H1Client *h1_client_free(H1Client *c) {
        if (!c)
                return NULL;
        while (c->dests) {
                H1Dest *d = c->dests;
                c->dests = d->next;
                while (d->n_idle > 0)
                        conn_close(d->idle[d->n_idle - 1]);
                free(d->idle);
                free(d);
        }
        sd_event_source_disable_unref(c->sweep);
        c->timers = timer_queue_free(c->timers);
        c->poller = poller_free(c->poller);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

void h1_client_set_idle_lifetime(H1Client *c, usec_t usec) {
        c->idle_lifetime = usec;
}

void h1_client_set_idle_max(H1Client *c, size_t n) {
        if (!c)
                return;
        c->idle_max = n;
        /* Fewer now: the oldest beyond it go at once. */
        for (H1Dest *d = c->dests; d; d = d->next)
                while (d->n_idle > n)
                        conn_close(d->idle[0]);
}

size_t h1_client_n_connections(const H1Client *c) {
        return c ? c->n_conns : 0;
}

size_t h1_client_n_idle(const H1Client *c) {
        return c ? c->n_idle : 0;
}
