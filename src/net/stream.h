/* Stream: the one small interface between transport layers (socket, TLS, later a P2P channel). */
#pragma once

#include <sys/socket.h>
#include <systemd/sd-event.h>

#include "shared/macro.h"

/*
 * A Stream is a reliable, ordered, bidirectional byte stream. The layer below implements StreamOps;
 * the layer above (TLS, HTTP/1.1, HTTP/2) attaches StreamUpper callbacks. Nothing here assumes a
 * kernel socket: a TLS session over a Stream is itself a Stream, and later a P2P channel stream is one.
 *
 * Reading: the lower layer calls upper->on_read() with everything it has buffered. The upper returns how
 * many bytes it consumed (or a negative errno to kill the stream). Bytes not consumed stay buffered in
 * the lower layer and are offered again, together with new bytes, on the next call. While the upper has
 * paused reading (stream_set_read_paused), nothing is delivered and the lower stops reading from below,
 * which is how backpressure reaches the peer (TCP window, HTTP/2 flow control, ...).
 *
 * Writing: stream_write() never blocks and always queues (or fails with -ENOMEM/-EPIPE). The upper
 * watches stream_pending() against its high-water mark and stops producing, then calls
 * stream_want_writable(): on_writable() fires once, when the queue has been handed on completely
 * (pending() is 0 again). A layer in the middle (TLS) forwards the wish to the layer below.
 *
 * Closing: stream_close() detaches the upper at once: no callback reaches it afterwards, so the upper
 * may free itself right after. With flush=true queued output is still sent (bounded by a timeout) and
 * the transport is then shut down. When the peer or the transport ends the stream, on_close() is called
 * once, after which the upper must not touch the stream again (it is freed by its owner).
 */

typedef struct Stream Stream;

typedef struct StreamUpper {
        ssize_t (*on_read)(void *userdata, const uint8_t *p, size_t n);
        void (*on_writable)(void *userdata);
        /* error is 0 for an orderly end of input (EOF), else a negative errno. */
        void (*on_close)(void *userdata, int error);
} StreamUpper;

typedef struct StreamOps {
        int (*write)(Stream *s, const void *p, size_t n);
        size_t (*pending)(Stream *s);
        void (*set_read_paused)(Stream *s, bool paused);
        void (*want_writable)(Stream *s);
        void (*close)(Stream *s, bool flush);
} StreamOps;

typedef struct StreamInfo {
        struct sockaddr_storage peer;
        socklen_t peer_len;
        bool secure;            /* TLS (or an authenticated channel) below */
        char alpn[16];          /* negotiated ALPN ("h2", "http/1.1") or "" */
        char sni[256];          /* server name the client asked for, or "" */
        const char *listener;   /* "http", "https", ... (static string of the listener) */
} StreamInfo;

struct Stream {
        const StreamOps *ops;
        const StreamUpper *upper;
        void *upper_data;
        sd_event *event;
        StreamInfo info;
};

static inline void stream_attach(Stream *s, const StreamUpper *upper, void *userdata) {
        s->upper = upper;
        s->upper_data = userdata;
}
static inline int stream_write(Stream *s, const void *p, size_t n) {
        return s->ops->write(s, p, n);
}
static inline size_t stream_pending(Stream *s) {
        return s->ops->pending(s);
}
static inline void stream_set_read_paused(Stream *s, bool paused) {
        s->ops->set_read_paused(s, paused);
}
static inline void stream_want_writable(Stream *s) {
        s->ops->want_writable(s);
}
static inline void stream_close(Stream *s, bool flush) {
        s->ops->close(s, flush);
}
