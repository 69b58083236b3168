/* CurlGlue: libcurl's multi interface driven by sd-event (socket and timer callbacks). */
#include <sys/epoll.h>
#include <unistd.h>

#include "proxy/curl-glue.h"
#include "shared/errors.h"
#include "shared/log.h"
#include "shared/macro.h"

/* Upstream sockets ready in one wakeup that are handed to curl before the loop sees other sources. */
#define CURL_GLUE_BATCH 256

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
};

typedef struct CurlTransfer {
        CurlDoneCallback on_done;
        void *userdata;
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
                        free(t);
                        cb(easy, result, ud);
                }
        }
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
                (void) curl_multi_socket_action(g->multi, ev[i].data.fd, action, &running);
        }
        curl_glue_check_done(g);
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

        (void) curl_multi_socket_action(g->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        curl_glue_check_done(g);
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

int curl_glue_new(sd_event *event, CurlGlue **ret) {
        CurlGlue *g;
        int r;

        g = new0(CurlGlue, 1);
        if (!g)
                return -ENOMEM;
        g->epoll_fd = -EBADF;
        g->event = sd_event_ref(event);
        g->ca_file = pick_ca_file();
        if (g->ca_file)
                log_debug("Upstream TLS trusts the CA bundle %s.", g->ca_file);
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
        free(g);
        return NULL;
}

int curl_glue_add(CurlGlue *g, CURL *easy, CurlDoneCallback on_done, void *userdata) {
        CurlTransfer *t;

        t = new0(CurlTransfer, 1);
        if (!t)
                return -ENOMEM;
        t->on_done = on_done;
        t->userdata = userdata;
        (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
        /* Every transfer's TLS trusts the same store (see pick_ca_file()). */
        if (g->ca_file) {
                (void) curl_easy_setopt(easy, CURLOPT_CAINFO, g->ca_file);
                (void) curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
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
