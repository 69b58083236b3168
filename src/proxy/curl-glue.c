/* CurlGlue: libcurl's multi interface driven by sd-event (socket and timer callbacks). */
#include "proxy/curl-glue.h"
#include "shared/errors.h"
#include "shared/log.h"
#include "shared/macro.h"

struct CurlGlue {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        unsigned n_active;
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

static int curl_glue_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        CurlGlue *g = userdata;
        int action = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP))
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                action |= CURL_CSELECT_ERR;
        (void) curl_multi_socket_action(g->multi, fd, action, &running);
        curl_glue_check_done(g);
        return 0;
}

static int curl_glue_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        CurlGlue *g = userp;
        sd_event_source *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        /* The fd belongs to curl: do not let sd-event close it. */
                        (void) sd_event_source_set_io_fd_own(s, false);
                        sd_event_source_disable_unref(s);
                        (void) curl_multi_assign(g->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (s) {
                r = sd_event_source_set_io_events(s, events);
                if (r >= 0)
                        r = sd_event_source_set_enabled(s, SD_EVENT_ON);
                return r < 0 ? -1 : 0;
        }
        r = sd_event_add_io(g->event, &s, fd, events, curl_glue_on_io, g);
        if (r < 0) {
                log_debug_errno(r, "Failed to watch curl socket: %m");
                return -1;
        }
        (void) sd_event_source_set_description(s, "curl-io");
        (void) curl_multi_assign(g->multi, fd, s);
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

int curl_glue_new(sd_event *event, CurlGlue **ret) {
        CurlGlue *g;
        int r;

        g = new0(CurlGlue, 1);
        if (!g)
                return -ENOMEM;
        g->event = sd_event_ref(event);
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
