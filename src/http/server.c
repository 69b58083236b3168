/* HttpServer: session bookkeeping, draining, and the protocol choice for each new connection. */
#include "http/server.h"
#include "shared/list.h"
#include "shared/log.h"

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

void http_server_init(HttpServer *s, sd_event *event) {
        *s = (HttpServer){
                .event = event,
                .limits = HTTP_LIMITS_DEFAULT,
        };
}

void http_server_add_session(HttpServer *s, HttpSession *session) {
        LIST_PREPEND(s->sessions, session, prev, next);
        s->n_sessions++;
}

void http_server_remove_session(HttpServer *s, HttpSession *session) {
        if (!session->prev && s->sessions != session)
                return; /* not linked */
        LIST_REMOVE(s->sessions, session, prev, next);
        s->n_sessions--;
        if (s->draining && s->n_sessions == 0 && s->on_idle)
                s->on_idle(s->on_idle_userdata);
}

void http_server_drain(HttpServer *s) {
        HttpSession *i, *next;

        s->draining = true;
        /* drain() may remove (and free) the session itself: fetch next first. */
        for (i = s->sessions; i; i = next) {
                next = i->next;
                i->ops->drain(i);
        }
        if (s->n_sessions == 0 && s->on_idle)
                s->on_idle(s->on_idle_userdata);
}

void http_server_abort_all(HttpServer *s) {
        /* Handlers told of an abort from here (usage rows) can tell it from a client that left. */
        s->aborting = true;
        while (s->sessions)
                s->sessions->ops->abort(s->sessions);
        s->aborting = false;
}

void http_server_done(HttpServer *s) {
        /* Closing an HTTP/1.1 session takes it off the flush queue: with no session left, nothing is queued
         * and the source (whose userdata is s) can go. */
        http_server_abort_all(s);
        s->h1_flush_source = sd_event_source_disable_unref(s->h1_flush_source);
}

/* The sniffer is the first upper of every connection: it waits for the first bytes (or the TLS handshake),
 * then hands the stream to HTTP/1.1 or HTTP/2. Until then it also bounds how long a silent client may
 * hold a connection. */
typedef struct Sniffer {
        HttpSession session;
        HttpServer *server;
        Stream *stream;
        sd_event_source *timer;
} Sniffer;

static void sniffer_free(Sniffer *x) {
        http_server_remove_session(x->server, &x->session);
        sd_event_source_disable_unref(x->timer);
        free(x);
}

static ssize_t sniffer_on_read(void *userdata, const uint8_t *p, size_t n) {
        Sniffer *x = userdata;
        HttpServer *server = x->server;
        Stream *stream = x->stream;
        bool h2;
        int r;

        if (stream->info.secure)
                h2 = streq(stream->info.alpn, "h2");
        else {
                size_t m = MIN(n, (sizeof(h2_preface) - 1));
                if (memcmp(p, h2_preface, m) != 0)
                        h2 = false;
                else if (m < (sizeof(h2_preface) - 1))
                        return 0; /* could still be the preface: wait for more */
                else
                        h2 = true;
        }

        /* Hand over: the protocol session attaches itself as the stream's upper. */
        sniffer_free(x);
        r = h2 ? http2_session_new(server, stream) : http1_session_new(server, stream);
        if (r < 0) {
                log_debug_errno(r, "Failed to start %s session: %m", h2 ? "HTTP/2" : "HTTP/1.1");
                stream_close(stream, false);
                return r;
        }
        return stream->upper->on_read(stream->upper_data, p, n);
}

static void sniffer_on_writable(void *userdata) {
}

static void sniffer_on_close(void *userdata, int error) {
        sniffer_free(userdata);
}

static const StreamUpper sniffer_upper = {
        .on_read = sniffer_on_read,
        .on_writable = sniffer_on_writable,
        .on_close = sniffer_on_close,
};

static void sniffer_close(HttpSession *session) {
        Sniffer *x = (Sniffer *) session;
        Stream *stream = x->stream;

        sniffer_free(x);
        stream_close(stream, false);
}

/* A connection accepted just before shutdown may carry a request whose bytes are still in flight: give it
 * a short grace to arrive (it is then answered with "connection: close"), instead of closing it unread. */
#define SNIFFER_DRAIN_GRACE_USEC (1 * USEC_PER_SEC)

static void sniffer_drain(HttpSession *session) {
        Sniffer *x = (Sniffer *) session;
        uint64_t deadline, now;

        if (sd_event_now(x->server->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_source_get_time(x->timer, &deadline) < 0 || deadline > now + SNIFFER_DRAIN_GRACE_USEC)
                (void) sd_event_source_set_time_relative(x->timer, SNIFFER_DRAIN_GRACE_USEC);
}

static const HttpSessionOps sniffer_session_ops = {
        .drain = sniffer_drain,
        .abort = sniffer_close,
};

static int sniffer_on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        sniffer_close(userdata);
        return 0;
}

int http_server_attach(HttpServer *s, Stream *stream) {
        Sniffer *x;
        int r;

        x = new0(Sniffer, 1);
        if (!x)
                return -ENOMEM;
        x->server = s;
        x->stream = stream;
        x->session.ops = &sniffer_session_ops;

        r = sd_event_add_time_relative(s->event, &x->timer, CLOCK_MONOTONIC,
                                       s->draining ? MIN(s->limits.header_timeout, SNIFFER_DRAIN_GRACE_USEC) :
                                                     s->limits.header_timeout, 0, sniffer_on_timeout, x);
        if (r < 0) {
                free(x);
                return r;
        }
        (void) sd_event_source_set_description(x->timer, "http-first-bytes-timeout");
        http_server_add_session(s, &x->session);
        stream_attach(stream, &sniffer_upper, x);
        return 0;
}
