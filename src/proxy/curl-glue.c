/* CurlGlue: libcurl's multi interface driven by sd-event (socket and timer callbacks). */
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/curl-glue.h"
#include "proxy/trust.h"
#include "shared/errors.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/util.h"

/* Upstream sockets ready in one wakeup that are handed to curl before the loop sees other sources. */
#define CURL_GLUE_BATCH 256

/* A connection whose server passed gate's check: its addresses as curl's pre-request callback gives them
 * (they name one live TCP connection) and its TLS session. An entry goes when a socket with its local port
 * is closed, so a later connection with the same addresses is checked again (the session pointer too must
 * match: memory is reused, but not while the entry lives). */
typedef struct CheckedConnection {
        struct CheckedConnection *next;
        void *session;
        int local_port, primary_port;
        char local_ip[INET6_ADDRSTRLEN], primary_ip[INET6_ADDRSTRLEN];
} CheckedConnection;

#define CHECKED_BUCKETS 1024

/* curl's sockets live in an epoll instance of our own, watched by sd-event as one fd. sd-event dispatches
 * one source per iteration and re-reads every ready fd from epoll each time, so thousands of upstream
 * sockets with data waiting (streams at scale) made each dispatch cost O(ready fds); this way one dispatch
 * serves a batch of them. */
struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        int epoll_fd;
        sd_event_source *epoll_source;
        unsigned n_active;
        const char *ca_file;            /* the system's CA bundle, or NULL: curl's own defaults */
        /* That bundle parsed once, when curl's TLS is GnuTLS: gate checks each server's chain itself
         * instead of curl loading the bundle for every new connection. NULL: curl checks. */
        UpstreamTrust *trust;
        /* The live connections whose server passed that check, by local port (see CheckedConnection). */
        CheckedConnection **checked;
        bool in_action;                 /* inside curl_multi_socket_action() */
        void (*batch_end)(void *userdata);
        void *batch_end_userdata;
};

typedef struct CurlTransfer {
        CurlGlue *glue;
        CURL *easy;
        CurlDoneCallback on_done;
        void *userdata;
        char *error;                    /* the caller's CURLOPT_ERRORBUFFER, or NULL */
        bool refused;                   /* the server's certificate failed gate's check */
        char reason[CURL_ERROR_SIZE];   /* ... and why */
} CurlTransfer;

/* Takes every finished transfer off the multi handle; curl_multi_info_read is drained until empty. */
static void curl_glue_check_done(CurlGlue *g) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(g->multi, &left))) {
                CurlTransfer *t = NULL;
                CURL *easy;
                CURLcode result;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                easy = msg->easy_handle;
                result = msg->data.result;
                (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
                curl_multi_remove_handle(g->multi, easy);
                g->n_active--;
                (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                if (t) {
                        CurlDoneCallback cb = t->on_done;
                        void *ud = t->userdata;

                        /* curl says only that a callback aborted (and wrote that into the buffer): the
                         * caller gets what curl's own check would have said. */
                        if (t->refused) {
                                result = CURLE_PEER_FAILED_VERIFICATION;
                                if (t->error)
                                        memcpy(t->error, t->reason, sizeof t->reason);
                        }
                        free(t);
                        cb(easy, result, ud);
                }
        }
}

/* After a batch's finished transfers got on_done (which ends their responses, held bytes included): the
 * others' held bytes go out now. */
static void curl_glue_batch_end(CurlGlue *g) {
        if (g->batch_end)
                g->batch_end(g->batch_end_userdata);
}

bool curl_glue_in_action(const CurlGlue *g) {
        return g && g->in_action;
}

void curl_glue_set_batch_end(CurlGlue *g, void (*batch_end)(void *userdata), void *userdata) {
        g->batch_end = batch_end;
        g->batch_end_userdata = userdata;
}

static int curl_glue_on_epoll(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct epoll_event ev[CURL_GLUE_BATCH];
        CurlGlue *g = userdata;
        int n, running;

        n = epoll_wait(g->epoll_fd, ev, ELEMENTSOF(ev), 0);
        if (n < 0)
                return errno == EINTR ? 0 : log_debug_errno(errno, "epoll_wait() on curl sockets failed: %m");
        for (int i = 0; i < n; i++) {
                int action = 0;

                if (ev[i].events & (EPOLLIN | EPOLLHUP))
                        action |= CURL_CSELECT_IN;
                if (ev[i].events & EPOLLOUT)
                        action |= CURL_CSELECT_OUT;
                if (ev[i].events & EPOLLERR)
                        action |= CURL_CSELECT_ERR;
                /* The mask is a hint to curl: it checks the socket itself, so an event for an fd that an
                 * earlier action in this batch closed (or even reopened) does no harm. */
                g->in_action = true;
                (void) curl_multi_socket_action(g->multi, ev[i].data.fd, action, &running);
                g->in_action = false;
        }
        curl_glue_check_done(g);
        curl_glue_batch_end(g);
        return 0;
}

/* socketp is only a marker: non-NULL once the fd is in our epoll set. */
static int curl_glue_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        struct epoll_event ev = { .data.fd = fd };

        if (what == CURL_POLL_REMOVE) {
                if (socketp) {
                        /* curl may have closed the fd already, which removed it: ENOENT/EBADF are fine. */
                        (void) epoll_ctl(g->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
                        (void) curl_multi_assign(g->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                ev.events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                ev.events |= EPOLLOUT;

        if (epoll_ctl(g->epoll_fd, socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) < 0) {
                /* Our marker and the epoll set disagree when curl closed and reopened an fd number
                 * between callbacks: do what the set needs. */
                int again = errno == ENOENT ? EPOLL_CTL_ADD : errno == EEXIST ? EPOLL_CTL_MOD : -1;
                if (again < 0 || epoll_ctl(g->epoll_fd, again, fd, &ev) < 0) {
                        log_debug_errno(errno, "Failed to watch curl socket: %m");
                        return -1;
                }
        }
        if (!socketp)
                (void) curl_multi_assign(g->multi, fd, g);
        return 0;
}

static int curl_glue_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        CurlGlue *g = userdata;
        int running;

        g->in_action = true;
        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        g->in_action = false;
        curl_glue_check_done(g);
        curl_glue_batch_end(g);
        return 0;
}

static int curl_glue_timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        CurlGlue *g = userp;
        int r;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(g->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        /* timeout 0 means "now": still go through the loop, never recurse into curl from here. */
        r = sd_event_source_set_time_relative(g->timer, (uint64_t) timeout_ms * USEC_PER_MSEC);
        if (r >= 0)
                r = sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
        return r < 0 ? -1 : 0;
}

/* Debian's libcurl-gnutls has no CA file built in, only the directory /etc/ssl/certs, and GnuTLS loads a
 * directory by parsing every file in it, for every new connection, on the event loop: each CA about three
 * times over (its own file, its hash link, and inside the bundle), 27 ms a connection here. The bundle
 * file that the distribution keeps beside them holds the same CAs once (8 ms). Where curl has a file of
 * its own, or no directory, its defaults stay. */
static const char *pick_ca_file(void) {
        static const char *const bundles[] = {
                "/etc/ssl/certs/ca-certificates.crt",   /* Debian, Ubuntu, Arch */
                "/etc/pki/tls/certs/ca-bundle.crt",     /* Fedora, RHEL */
                "/etc/ssl/ca-bundle.pem",               /* openSUSE */
                "/etc/ssl/cert.pem",                    /* Alpine */
        };
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

        if (!v || v->age < CURLVERSION_NINTH || v->cainfo || !v->capath)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(bundles); i++)
                if (access(bundles[i], R_OK) >= 0)
                        return bundles[i];
        return NULL;
}

static CheckedConnection **checked_bucket(CurlGlue *g, int local_port) {
        return &g->checked[(unsigned) local_port % CHECKED_BUCKETS];
}

static bool checked_matches(const CheckedConnection *c, void *session, const char *primary_ip, int primary_port,
                            const char *local_ip, int local_port) {
        return c->session == session && c->local_port == local_port && c->primary_port == primary_port &&
                streq(c->primary_ip, primary_ip) && streq(c->local_ip, local_ip);
}

static bool checked_find(CurlGlue *g, void *session, const char *primary_ip, int primary_port,
                         const char *local_ip, int local_port) {
        if (!g->checked)
                return false;
        for (CheckedConnection *c = *checked_bucket(g, local_port); c; c = c->next)
                if (checked_matches(c, session, primary_ip, primary_port, local_ip, local_port))
                        return true;
        return false;
}

static void checked_add(CurlGlue *g, void *session, const char *primary_ip, int primary_port,
                        const char *local_ip, int local_port) {
        CheckedConnection *c, **b;

        if (strlen(primary_ip) >= sizeof c->primary_ip || strlen(local_ip) >= sizeof c->local_ip)
                return;
        if (!g->checked) {
                g->checked = new0(CheckedConnection *, CHECKED_BUCKETS);
                if (!g->checked)
                        return;         /* checked again next time */
        }
        c = new0(CheckedConnection, 1);
        if (!c)
                return;
        c->session = session;
        c->local_port = local_port;
        c->primary_port = primary_port;
        strcpy(c->primary_ip, primary_ip);
        strcpy(c->local_ip, local_ip);
        b = checked_bucket(g, local_port);
        c->next = *b;
        *b = c;
}

/* Forgets every entry with the socket's local port; dropping one too many only costs a check. */
static void checked_drop_port(CurlGlue *g, int local_port) {
        if (!g->checked)
                return;
        for (CheckedConnection **p = checked_bucket(g, local_port); *p;) {
                CheckedConnection *c = *p;

                if (c->local_port == local_port) {
                        *p = c->next;
                        free(c);
                } else
                        p = &c->next;
        }
}

static void checked_free_all(CurlGlue *g) {
        if (!g->checked)
                return;
        for (size_t i = 0; i < CHECKED_BUCKETS; i++)
                while (g->checked[i]) {
                        CheckedConnection *c = g->checked[i];
                        g->checked[i] = c->next;
                        free(c);
                }
        g->checked = mfree(g->checked);
}

/* curl calls this instead of close() for every socket of a connection made by gate's transfers. */
static int curl_glue_close_cb(void *userdata, curl_socket_t fd) {
        CurlGlue *g = userdata;
        struct sockaddr_storage a;
        socklen_t n = sizeof a;

        if (getsockname(fd, (struct sockaddr *) &a, &n) >= 0) {
                if (a.ss_family == AF_INET)
                        checked_drop_port(g, ntohs(((struct sockaddr_in *) &a)->sin_port));
                else if (a.ss_family == AF_INET6)
                        checked_drop_port(g, ntohs(((struct sockaddr_in6 *) &a)->sin6_port));
        }
        return close(fd) < 0 ? -1 : 0;
}

/* The host name curl connected to, as curl itself parsed it from the URL (the name it sent as SNI), without
 * an IPv6 literal's brackets. */
static int curl_glue_host(CURL *easy, char *host, size_t size) {
        const char *url = NULL;
        char *h = NULL;
        CURLU *u;
        int r = -EINVAL;

        if (curl_easy_getinfo(easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK || !url)
                return -EINVAL;
        u = curl_url();
        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK && h) {
                const char *b = h;
                size_t n = strlen(b);

                if (n >= 2 && b[0] == '[' && b[n - 1] == ']') {
                        b++;
                        n -= 2;
                }
                if (n > 0 && n < size) {
                        memcpy(host, b, n);
                        host[n] = 0;
                        r = 0;
                }
        }
        curl_free(h);
        curl_url_cleanup(u);
        return r;
}

/* Runs once the connection is up (TLS handshake done), before the request goes out: the API key is never
 * sent to a server that failed the check. A connection reused for more requests is checked once. */
static int curl_glue_prereq_cb(void *userdata, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                               int conn_local_port) {
        CurlTransfer *t = userdata;
        CurlGlue *g = t->glue;
        struct curl_tlssessioninfo *info = NULL;
        const char *scheme = NULL;
        CURL *easy = t->easy;
        char host[256];

        if (curl_easy_getinfo(easy, CURLINFO_SCHEME, &scheme) != CURLE_OK || !scheme) {
                (void) snprintf(t->reason, sizeof t->reason, "SSL: cannot tell the connection's scheme");
                goto refuse;
        }
        if (strcaseeq(scheme, "http"))
                return CURL_PREREQFUNC_OK;
        if (curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &info) != CURLE_OK || !info ||
            info->backend != CURLSSLBACKEND_GNUTLS || !info->internals) {
                (void) snprintf(t->reason, sizeof t->reason, "SSL: no GnuTLS session to check");
                goto refuse;
        }
        /* Not CURLINFO_ACTIVESOCKET: during a transfer it names the connection the handle used last. */
        if (checked_find(g, info->internals, conn_primary_ip, conn_primary_port, conn_local_ip, conn_local_port))
                return CURL_PREREQFUNC_OK;
        if (curl_glue_host(easy, host, sizeof host) < 0) {
                (void) snprintf(t->reason, sizeof t->reason, "SSL: cannot tell the host name to check");
                goto refuse;
        }
        if (upstream_trust_verify(g->trust, info->internals, host, t->reason, sizeof t->reason) < 0)
                goto refuse;
        checked_add(g, info->internals, conn_primary_ip, conn_primary_port, conn_local_ip, conn_local_port);
        return CURL_PREREQFUNC_OK;
refuse:
        t->refused = true;
        return CURL_PREREQFUNC_ABORT;
}

/* Upstream trust by gate's own check, when curl's TLS is GnuTLS and the bundle parses; else curl keeps
 * checking with the bundle (or its defaults). Again at every reload: a bundle that no longer parses
 * leaves the CAs parsed before in service. */
int curl_glue_load_trust(CurlGlue *g) {
        const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
        UpstreamTrust *t = NULL;
        int r;

        if (!g->ca_file)
                return 0;
        if (!v || !v->ssl_version || !startswith(v->ssl_version, "GnuTLS")) {
                log_debug("Upstream TLS trusts the CA bundle %s.", g->ca_file);
                return 0;
        }
        r = upstream_trust_load(g->ca_file, &t);
        if (r < 0) {
                if (g->trust)
                        return log_warning_errno(r, "Cannot parse the CA bundle %s, upstream TLS keeps the %u CAs "
                                                 "parsed before: %m", g->ca_file, upstream_trust_count(g->trust));
                log_warning_errno(r, "Cannot parse the CA bundle %s, libcurl checks upstream certificates: %m",
                                  g->ca_file);
                return r;
        }
        upstream_trust_free(g->trust);
        g->trust = t;
        /* Connections checked against the old CAs are checked again at their next request. */
        checked_free_all(g);
        log_debug("Upstream TLS trusts the CA bundle %s (%u CAs, parsed once).", g->ca_file,
                  upstream_trust_count(g->trust));
        return 0;
}

int curl_glue_new(sd_event *event, CurlGlue **ret) {
        CurlGlue *g;
        int r;

        g = new0(CurlGlue, 1);
        if (!g)
                return -ENOMEM;
        g->epoll_fd = -EBADF;
        g->event = sd_event_ref(event);
        g->ca_file = pick_ca_file();
        (void) curl_glue_load_trust(g);
        g->multi = curl_multi_init();
        if (!g->multi) {
                curl_glue_free(g);
                return -ENOMEM;
        }
        /* Accuracy 1 µs: sd-event's default (0 = 250 ms) would coalesce curl's "act now" timeouts and
         * add up to a quarter second to every upstream request. */
        r = sd_event_add_time_relative(event, &g->timer, CLOCK_MONOTONIC, 0, 1, curl_glue_on_timer, g);
        if (r < 0) {
                curl_glue_free(g);
                return r;
        }
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_description(g->timer, "curl-timer");

        g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (g->epoll_fd < 0) {
                r = -errno;
                curl_glue_free(g);
                return r;
        }
        r = sd_event_add_io(event, &g->epoll_source, g->epoll_fd, EPOLLIN, curl_glue_on_epoll, g);
        if (r < 0) {
                curl_glue_free(g);
                return r;
        }
        (void) sd_event_source_set_description(g->epoll_source, "curl-sockets");

        if (curl_multi_setopt(g->multi, CURLMOPT_SOCKETFUNCTION, curl_glue_socket_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_SOCKETDATA, g) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERFUNCTION, curl_glue_timer_cb) != CURLM_OK ||
            curl_multi_setopt(g->multi, CURLMOPT_TIMERDATA, g) != CURLM_OK ||
            /* HTTP/2 multiplexing to upstreams that offer it: many streams, one connection. */
            curl_multi_setopt(g->multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX) != CURLM_OK) {
                curl_glue_free(g);
                return -EINVAL;
        }
        *ret = g;
        return 0;
}

CurlGlue *curl_glue_free(CurlGlue *g) {
        if (!g)
                return NULL;
        if (g->multi)
                curl_multi_cleanup(g->multi);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->epoll_source);
        safe_close(g->epoll_fd);
        sd_event_unref(g->event);
        upstream_trust_free(g->trust);
        checked_free_all(g);
        free(g);
        return NULL;
}

int curl_glue_add(CurlGlue *g, CURL *easy, char *error, CurlDoneCallback on_done, void *userdata) {
        CurlTransfer *t;

        t = new0(CurlTransfer, 1);
        if (!t)
                return -ENOMEM;
        t->glue = g;
        t->easy = easy;
        t->on_done = on_done;
        t->userdata = userdata;
        t->error = error;
        (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
        (void) curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, error);
        if (g->trust) {
                /* libcurl-gnutls 7.88 parses the bundle again for every new connection (8 ms of the loop for
                 * Debian's; there is no CA cache for GnuTLS before curl 8): curl checks nothing and gate
                 * checks each new connection's chain against the bundle parsed once, in the pre-request
                 * callback, before any byte of the request is sent. */
                (void) curl_easy_setopt(easy, CURLOPT_CAINFO, NULL);
                (void) curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
                (void) curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
                (void) curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
                /* A resumed session may carry no certificate to check: every connection does a full
                 * handshake (connections are kept for reuse, so this is once per connection). */
                (void) curl_easy_setopt(easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
                (void) curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, curl_glue_close_cb);
                (void) curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, g);
                (void) curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, curl_glue_prereq_cb);
                (void) curl_easy_setopt(easy, CURLOPT_PREREQDATA, t);
        } else {
                /* curl checks the server's chain and name. */
                (void) curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
                (void) curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
                if (g->ca_file) {
                        /* Every transfer's TLS trusts the same store (see pick_ca_file()). */
                        (void) curl_easy_setopt(easy, CURLOPT_CAINFO, g->ca_file);
                        (void) curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
                }
        }
        if (curl_multi_add_handle(g->multi, easy) != CURLM_OK) {
                (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
                free(t);
                return -EIO;
        }
        g->n_active++;
        return 0;
}

void curl_glue_remove(CurlGlue *g, CURL *easy) {
        CurlTransfer *t = NULL;

        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
        if (!t)
                return; /* not ours, or finished already */
        curl_multi_remove_handle(g->multi, easy);
        (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        free(t);
        g->n_active--;
}

int curl_glue_unpause(CurlGlue *g, CURL *easy) {
        CURLcode c = curl_easy_pause(easy, CURLPAUSE_CONT);
        /* Unpausing may deliver buffered data and even finish the transfer right here. */
        curl_glue_check_done(g);
        return errno_from_curl(c);
}

unsigned curl_glue_active(const CurlGlue *g) {
        return g->n_active;
}

void curl_glue_set_max_idle(CurlGlue *g, unsigned n) {
        /* curl's default keeps four per transfer running: after a burst it closes all but a few, and every
         * new TLS connection pays the trust store and a handshake again. 0 is curl's own default. */
        (void) curl_multi_setopt(g->multi, CURLMOPT_MAXCONNECTS, (long) n);
}
