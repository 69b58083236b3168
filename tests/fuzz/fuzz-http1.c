/* fuzz-http1: arbitrary bytes into an HTTP/1.1 session over a MemStream, split where the first byte says. */
#include "http/request.h"
#include "http/server.h"
#include "memstream.h"
#include "shared/log.h"
#include "shared/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static Request *held;

/* Replies at once, streams, or keeps the request to be answered after the input was fed: every way a
 * real handler can interleave with the parser. */
static int fuzz_dispatch(Request *r, void *userdata) {
        if (startswith(r->path, "/hold")) {
                if (held)
                        return request_reply(r, 409, NULL, 0, NULL, NULL, 0);
                held = request_ref(r);
                return 0;
        }
        if (startswith(r->path, "/stream")) {
                int k = request_start(r, 200, NULL, 0);
                if (k >= 0 && !buf_empty(&r->body))
                        k = request_write(r, buf_data(&r->body), buf_len(&r->body));
                if (k >= 0)
                        k = request_write(r, "tail", 4);
                if (k < 0)
                        return k;
                return request_finish(r);
        }
        if (startswith(r->path, "/forget"))
                return 0;
        if (buf_empty(&r->body))
                return request_reply(r, 200, NULL, 0, "text/plain", "", 0);
        return request_reply(r, 200, NULL, 0, "text/plain", buf_data(&r->body), buf_len(&r->body));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static sd_event *event;
        HttpServer server;
        MemStream ms;
        size_t cut, n;

        if (size < 1)
                return 0;
        if (!event) {
                log_set_max_level(LOG_CRIT);
                if (sd_event_new(&event) < 0)
                        return 0;
        }

        http_server_init(&server, event);
        server.limits.max_body_bytes = 4096;
        server.limits.max_header_bytes = 2048;
        server.limits.max_headers = 32;
        server.limits.send_high_water = 256;
        server.dispatch = fuzz_dispatch;
        memstream_init(&ms, event);
        /* First byte: bit 7 makes a client that does not read; the rest picks where input is split. */
        ms.hold_output = data[0] & 0x80;
        if (http1_session_new(&server, &ms.stream) < 0)
                return 0;

        n = size - 1;
        cut = n * (data[0] & 0x7f) / 0x7f;
        (void) memstream_feed(&ms, data + 1, cut);
        (void) memstream_feed(&ms, data + 1 + cut, n - cut);

        for (unsigned i = 0; i < 64 && !ms.closed && !ms.upper_gone; i++) {
                if (held) {
                        (void) request_reply(held, 200, NULL, 0, NULL, "late", 4);
                        held = request_unref(held);
                }
                ms.hold_output = false;
                memstream_drain(&ms);
                (void) memstream_pump(&ms);
                if (!held && buf_empty(&ms.in))
                        break;
        }

        memstream_hangup(&ms, 0);
        held = request_unref(held);
        memstream_done(&ms);
        if (server.n_sessions != 0 || server.active_requests != 0)
                abort();
        http_server_done(&server);
        return 0;
}
