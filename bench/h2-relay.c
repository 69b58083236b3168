/* h2-relay: gate's HTTP/2 server relaying SSE deltas on many streams of one connection, for callgrind.
 *
 * valgrind --tool=callgrind --toggle-collect=relay_round ./build/bench/h2-relay STREAMS DELTAS [BATCH]
 * counts only the server's side of the relay: each round writes one delta (an SSE event of the mock's
 * size) to each of BATCH streams, round robin, and runs the loop until the session sent them; an nghttp2
 * client reads them outside the count. Instructions / (STREAMS x DELTAS) is the cost of one delta from
 * request_write() to the bytes on the transport, without timing in it: bench/sse-load through a whole
 * gate measures the same path with the upstream side and the event loop's wakeups added, but how many
 * deltas share a loop iteration there depends on how fast the process runs (under callgrind too). */
#include <inttypes.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>

#include "http/request.h"
#include "memstream.h"
#include "shared/util.h"

#define MAX_STREAMS 1024

static _noreturn_ void die(const char *what) {
        fprintf(stderr, "h2-relay: %s\n", what);
        exit(1);
}

static const char delta[] =
        "data: {\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,"
        "\"model\":\"bench\",\"service_tier\":\"default\",\"system_fingerprint\":\"fp_mock\",\"choices\":[{"
        "\"index\":0,\"delta\":{\"content\":\" tok1\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n";

static Request *held[MAX_STREAMS];
static unsigned n_held, n_closed;
static size_t received;
/* What the server wrote once the responses' heads (with their date) were out: the same for the same
 * arguments, whatever the build, unless a change altered the frames (FNV-1a). */
static bool relaying;
static size_t wire_bytes;
static uint64_t wire_hash = 0xcbf29ce484222325ULL;

static void wire_add(const uint8_t *p, size_t n) {
        if (!relaying)
                return;
        wire_bytes += n;
        for (size_t i = 0; i < n; i++)
                wire_hash = (wire_hash ^ p[i]) * 0x100000001b3ULL;
}

static int on_dispatch(Request *r, void *userdata) {
        const HttpHeader h[] = { { "Content-Type", "text/event-stream" } };
        int k;

        if (n_held >= MAX_STREAMS)
                return -ENOSPC;
        k = request_start(r, 200, h, ELEMENTSOF(h));
        if (k < 0)
                return k;
        held[n_held++] = request_ref(r);
        return 0;
}

static int c_on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                     void *userdata) {
        received += len;
        return 0;
}

static int c_on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *userdata) {
        if (error_code == NGHTTP2_NO_ERROR)
                n_closed++;
        return 0;
}

/* The client's turn, outside the count: reads what the server wrote, answers (WINDOW_UPDATE, acks). */
static void client_turn(nghttp2_session *client, MemStream *ms) {
        for (unsigned i = 0; i < 1000; i++) {
                const uint8_t *d;
                ssize_t n;
                bool progress = false;

                /* The loop first: a kicked session sends from its prepare callback, in an
                 * sd_event_run() that returns 0 (nothing dispatched) but has written. */
                while (sd_event_run(ms->stream.event, 0) > 0)
                        progress = true;
                if (!buf_empty(&ms->out)) {
                        size_t len = buf_len(&ms->out);
                        uint8_t *copy = malloc(len);

                        if (!copy)
                                die("out of memory");
                        memcpy(copy, buf_data(&ms->out), len);
                        wire_add(copy, len);
                        memstream_drain(ms);
                        if (nghttp2_session_mem_recv(client, copy, len) != (ssize_t) len)
                                die("the client rejected the server's output");
                        free(copy);
                        progress = true;
                }
                while ((n = nghttp2_session_mem_send(client, &d)) > 0) {
                        (void) memstream_feed(ms, d, (size_t) n);
                        progress = true;
                }
                if (!progress)
                        return;
        }
}

/* Not static and not inlined: callgrind's --toggle-collect finds it by name. */
__attribute__((noinline)) void relay_round(sd_event *e, unsigned first, unsigned batch);
__attribute__((noinline)) void relay_round(sd_event *e, unsigned first, unsigned batch) {
        for (unsigned i = 0; i < batch; i++)
                if (request_write(held[(first + i) % n_held], delta, sizeof delta - 1) < 0)
                        die("request_write() failed");
        while (sd_event_run(e, 0) > 0)
                ;
}

static int parse(const char *s, unsigned max, unsigned *ret) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);

        if (*s == 0 || *end != 0 || v < 1 || v > max)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

int main(int argc, char *argv[]) {
        const nghttp2_settings_entry settings[] = {
                { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1U << 30 },
        };
        const nghttp2_nv nva[] = {
                { (uint8_t *) ":method", (uint8_t *) "GET", 7, 3, NGHTTP2_NV_FLAG_NONE },
                { (uint8_t *) ":scheme", (uint8_t *) "http", 7, 4, NGHTTP2_NV_FLAG_NONE },
                { (uint8_t *) ":authority", (uint8_t *) "localhost", 10, 9, NGHTTP2_NV_FLAG_NONE },
                { (uint8_t *) ":path", (uint8_t *) "/", 5, 1, NGHTTP2_NV_FLAG_NONE },
        };
        nghttp2_session_callbacks *cbs;
        nghttp2_session *client;
        unsigned streams, deltas, batch = 1;
        HttpServer server;
        MemStream ms;
        sd_event *e;

        if (argc < 3 || argc > 4 || parse(argv[1], MAX_STREAMS, &streams) < 0 ||
            parse(argv[2], 1000000, &deltas) < 0 || (argc == 4 && parse(argv[3], MAX_STREAMS, &batch) < 0)) {
                fprintf(stderr, "usage: h2-relay STREAMS(1-%u) DELTAS [BATCH(1-%u)]\n", MAX_STREAMS, MAX_STREAMS);
                return 2;
        }
        if (sd_event_new(&e) < 0)
                return 1;
        http_server_init(&server, e);
        server.limits.h2_max_concurrent_streams = streams;
        server.dispatch = on_dispatch;
        memstream_init(&ms, e);
        if (http2_session_new(&server, &ms.stream) < 0)
                return 1;

        if (nghttp2_session_callbacks_new(&cbs) != 0)
                return 1;
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, c_on_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, c_on_close);
        if (nghttp2_session_client_new(&client, cbs, NULL) != 0)
                return 1;
        nghttp2_session_callbacks_del(cbs);
        (void) nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, settings, ELEMENTSOF(settings));
        (void) nghttp2_session_set_local_window_size(client, NGHTTP2_FLAG_NONE, 0, 1 << 30);
        for (unsigned i = 0; i < streams; i++)
                if (nghttp2_submit_request(client, NULL, nva, ELEMENTSOF(nva), NULL, NULL) < 0)
                        return 1;
        client_turn(client, &ms);
        if (n_held != streams) {
                fprintf(stderr, "h2-relay: %u of %u streams dispatched\n", n_held, streams);
                return 1;
        }

        relaying = true;
        for (unsigned done = 0; done < streams * deltas; done += batch) {
                relay_round(e, done % streams, MIN(batch, streams * deltas - done));
                client_turn(client, &ms);
        }

        for (unsigned i = 0; i < n_held; i++) {
                (void) request_finish(held[i]);
                held[i] = request_unref(held[i]);
        }
        client_turn(client, &ms);
        if (n_closed != streams || received != (size_t) streams * deltas * (sizeof delta - 1)) {
                fprintf(stderr, "h2-relay: %u of %u streams ended, %zu bytes received\n", n_closed, streams,
                        received);
                return 1;
        }
        printf("%u streams, %u deltas each, %u per round: %zu bytes relayed, %zu on the wire (fnv1a64 %016" PRIx64 ")\n",
               streams, deltas, batch, received, wire_bytes, wire_hash);

        memstream_hangup(&ms, 0);
        http_server_abort_all(&server);
        nghttp2_session_del(client);
        memstream_done(&ms);
        sd_event_unref(e);
        return 0;
}
