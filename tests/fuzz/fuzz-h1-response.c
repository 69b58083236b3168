/* Fuzz target: the upstream HTTP/1.1 client's response parser, fed an answer in pieces, pausing at times. */
#include <stdint.h>
#include <stdlib.h>

/* The parser is static in h1-client.c: the target includes the file to reach it with a transfer and a
 * connection of its own, without sockets. */
#include "../../src/proxy/h1-client.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct FuzzState {
        size_t header_bytes, body_bytes;
        unsigned pauses;                /* write() pauses this many more times */
} FuzzState;

static size_t fz_header(char *line, size_t size, size_t n, void *userdata) {
        FuzzState *f = userdata;

        /* Lines come whole: the last byte is the line feed. */
        if (n == 0 || line[n - 1] != '\n')
                abort();
        f->header_bytes += n;
        return n;
}

static size_t fz_write(char *data, size_t size, size_t n, void *userdata) {
        FuzzState *f = userdata;

        if (f->pauses > 0) {
                f->pauses--;
                return CURL_WRITEFUNC_PAUSE;
        }
        f->body_bytes += n;
        return n;
}

static void fz_done(CURLcode result, void *userdata) {
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        H1Client client = {};
        H1Conn conn = { .client = &client, .item.fd = -EBADF };
        H1Transfer t = {
                .client = &client,
                .conn = &conn,
                .cb = { fz_header, fz_write, fz_done },
                .rs = RS_STATUS,
        };
        FuzzState f = {};
        size_t off = 0;

        t.userdata = &f;
        conn.transfer = &t;
        if (size < 2)
                return 0;
        /* The first bytes choose the piece size and how often write() pauses. */
        size_t piece = 1 + data[0] % 64;
        f.pauses = data[1] % 4;
        data += 2;
        size -= 2;

        while (off < size) {
                size_t n = MIN(piece, size - off);
                CURLcode r;

                if (buf_append(&conn.in, data + off, n) < 0)
                        abort();
                off += n;
                r = transfer_parse(&t);
                while (r == CURLE_OK && t.paused) {
                        t.paused = false;       /* what h1_transfer_resume() does, minus the socket */
                        r = transfer_parse(&t);
                }
                if (r != CURLE_OK || t.rs == RS_DONE)
                        break;
        }
        /* Never more body than was sent, never a head beyond its limit. */
        if (f.body_bytes > size || t.head_bytes > H1C_HEAD_MAX + H1C_LINE_MAX + 2)
                abort();
        buf_done(&conn.in);
        return 0;
}
