/* libFuzzer target for the HTTP/2 session: arbitrary client bytes into a server session over a MemStream. */
#include <systemd/sd-event.h>

#include "http/request.h"
#include "memstream.h"
#include "shared/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * The first input byte picks how the rest is delivered:
 *   bit 0     the rest starts with the client preface already (else it is prepended)
 *   bits 1-3  chunk size for feeding (all at once, or small pieces that split frames)
 *   bit 4     the client does not read until the end (hold_output)
 *   bit 5     drain the server half way
 *   bit 6     finish held streaming responses half way rather than at the end
 *   bit 7     small limits, so 413/431/backpressure paths are reachable with short inputs;
 *             together with bit 5, timeouts of 1 µs as well, so the timer paths run
 * The last byte's low bit picks how the connection ends: the client hangs up, or the server aborts.
 */

#define MAX_HELD 8

static Request *held[MAX_HELD];

static void held_drop(Request *r) {
        for (unsigned i = 0; i < MAX_HELD; i++)
                if (held[i] == r)
                        held[i] = request_unref(held[i]);
}

static void on_abort(Request *r, void *userdata) {
        held_drop(r);
}

static void on_writable(Request *r, void *userdata) {
        static const uint8_t chunk[8192];

        /* Bounded: stop after a while even if the client keeps reading. */
        for (unsigned i = 0; i < 8 && r->bytes_out < (256U << 10); i++)
                if (request_write(r, chunk, sizeof chunk) != 0)
                        return;
        (void) request_finish(r);
        held_drop(r);
}

static const RequestHooks hooks = {
        .on_writable = on_writable,
        .on_abort = on_abort,
};

static bool hold(Request *r) {
        for (unsigned i = 0; i < MAX_HELD; i++)
                if (!held[i]) {
                        held[i] = request_ref(r);
                        request_set_hooks(r, &hooks, NULL);
                        return true;
                }
        return false;
}

/* buf_data() of an empty Buf is NULL + 0, which UBSan flags. */
static const void *body_of(Request *r) {
        return buf_empty(&r->body) ? "" : (const void *) buf_data(&r->body);
}

static int dispatch(Request *r, void *userdata) {
        static const HttpHeader odd[] = {
                { "X-Mixed-Case", "v" }, { "Connection", "close" }, { "bad name", "v" },
                { "x-crlf", "a\r\nb" }, { "Content-Length", "5" }, { ":status", "200" }, { "Date", "x" },
        };
        char c = r->path && r->path[0] == '/' ? r->path[1] : 0;
        int k;

        switch (c) {
        case 'e':
                return request_reply(r, 200, NULL, 0, "application/octet-stream", body_of(r),
                                     buf_len(&r->body));
        case 'f':
                return -EIO;
        case 'h':
                return request_reply(r, 200, odd, ELEMENTSOF(odd), NULL, "hello", 5);
        case 'z':
                return request_reply(r, 204, NULL, 0, NULL, NULL, 0);
        case 'r':
                k = request_start_length(r, 200, NULL, 0, 100);
                if (k >= 0)
                        k = request_write(r, "partial", 7);
                if (k >= 0)
                        request_reset(r);
                return k;
        case 'n':
                if (!hold(r))
                        return request_reply_error(r, 503, "overloaded_error", NULL, "Busy.");
                return 0;
        case 's':
        case 'b':
                k = request_start(r, 200, odd, 2);
                if (k < 0)
                        return k;
                k = request_write(r, body_of(r), buf_len(&r->body));
                if (k < 0)
                        return k;
                if (c == 'b' && hold(r)) {
                        on_writable(r, NULL);
                        return 0;
                }
                if (c == 's' && hold(r))
                        return 0;
                return request_finish(r);
        default:
                return request_reply(r, 200, NULL, 0, "text/plain", "ok", 2);
        }
}

static void finish_held(void) {
        for (unsigned i = 0; i < MAX_HELD; i++) {
                Request *r = held[i];
                if (!r)
                        continue;
                if (r->head_sent && !r->ended) {
                        (void) request_write(r, "tail", 4);
                        (void) request_finish(r);
                } else if (!r->head_sent)
                        (void) request_reply(r, 200, NULL, 0, NULL, "late", 4);
                held_drop(r);
        }
}

static void run_loop(sd_event *e, MemStream *m) {
        for (unsigned i = 0; i < 64; i++) {
                bool progress = false;
                while (sd_event_run(e, 0) > 0)
                        progress = true;
                if (!m->hold_output && !buf_empty(&m->out)) {
                        memstream_drain(m);
                        progress = true;
                }
                if (!progress)
                        break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        static const size_t chunks[8] = { SIZE_MAX, 1, 7, 64, 512, 4096, 9, 100 };
        static sd_event *event = NULL;
        HttpServer server;
        MemStream m;
        uint8_t mode;
        size_t chunk, off = 0, half;

        if (!event) {
                log_set_max_level(LOG_CRIT);
                if (sd_event_new(&event) < 0)
                        abort();
        }
        if (size < 1 || size > 256 * 1024)
                return 0;
        mode = data[0];
        data++;
        size--;
        chunk = chunks[(mode >> 1) & 7];
        half = size / 2;

        http_server_init(&server, event);
        server.dispatch = dispatch;
        if (mode & 0x80) {
                server.limits.max_body_bytes = 1024;
                server.limits.max_header_bytes = 1024;
                server.limits.max_headers = 16;
                server.limits.h2_max_concurrent_streams = 4;
                server.limits.send_high_water = 16 * 1024;
                server.limits.send_low_water = 4 * 1024;
                if (mode & 0x20) {
                        server.limits.header_timeout = 1;
                        server.limits.body_timeout = 1;
                        server.limits.idle_timeout = 1;
                        server.limits.send_timeout = 1;
                }
        }
        memstream_init(&m, event);
        m.hold_output = mode & 0x10;
        if (http2_session_new(&server, &m.stream) < 0)
                abort();

        if (!(mode & 1))
                (void) memstream_feed(&m, preface, sizeof preface - 1);
        while (off < size && !m.closed && !m.upper_gone) {
                size_t n = MIN(chunk, size - off);
                bool crossed = off < half && off + n >= half;

                (void) memstream_feed(&m, data + off, n);
                off += n;
                run_loop(event, &m);
                if (crossed) {
                        if (mode & 0x20)
                                http_server_drain(&server);
                        if (mode & 0x40)
                                finish_held();
                        run_loop(event, &m);
                }
        }

        /* The client catches up, then the rest of the responses go out. */
        m.hold_output = false;
        memstream_drain(&m);
        run_loop(event, &m);
        finish_held();
        run_loop(event, &m);

        if (size > 0 && (data[size - 1] & 1))
                http_server_abort_all(&server);
        else
                memstream_hangup(&m, 0);
        for (unsigned i = 0; i < MAX_HELD; i++)
                held[i] = request_unref(held[i]);
        http_server_abort_all(&server);
        run_loop(event, &m);

        /* Nothing may outlive the connection. */
        if (server.n_sessions != 0 || server.active_requests != 0)
                abort();
        http_server_done(&server);
        memstream_done(&m);
        return 0;
}
