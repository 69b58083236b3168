/* MemStream: an in-memory Stream for unit tests and fuzzers: feed input bytes, read what was written. */
#include <netinet/in.h>

#include "memstream.h"

static int ms_write(Stream *s, const void *p, size_t n) {
        MemStream *m = (MemStream *) s;
        if (m->closed)
                return -EPIPE;
        m->n_writes++;
        if (m->write_error < 0)
                return m->write_error;
        return buf_append(&m->out, p, n);
}

static size_t ms_pending(Stream *s) {
        MemStream *m = (MemStream *) s;
        return m->hold_output ? buf_len(&m->out) : 0;
}

static void ms_set_read_paused(Stream *s, bool paused) {
        ((MemStream *) s)->read_paused = paused;
}

static void ms_want_writable(Stream *s) {
        ((MemStream *) s)->want_writable = true;
}

static void ms_close(Stream *s, bool flush) {
        MemStream *m = (MemStream *) s;
        m->closed = true;
        m->close_flush = flush;
        s->upper = NULL;
        s->upper_data = NULL;
}

static const StreamOps memstream_ops = {
        .write = ms_write,
        .pending = ms_pending,
        .set_read_paused = ms_set_read_paused,
        .want_writable = ms_want_writable,
        .close = ms_close,
};

void memstream_init(MemStream *m, sd_event *event) {
        *m = (MemStream){};
        m->stream.ops = &memstream_ops;
        m->stream.event = event;
        m->stream.info.listener = "http";
        m->stream.info.peer.ss_family = AF_INET;
        m->stream.info.peer_len = sizeof(struct sockaddr_in);
        /* 127.0.0.1 */
        ((uint8_t *) &m->stream.info.peer)[4] = 127;
        ((uint8_t *) &m->stream.info.peer)[7] = 1;
}

void memstream_done(MemStream *m) {
        buf_done(&m->in);
        buf_done(&m->out);
}

int memstream_pump(MemStream *m) {
        while (!m->closed && !m->upper_gone && !m->read_paused && !buf_empty(&m->in) && m->stream.upper) {
                ssize_t k = m->stream.upper->on_read(m->stream.upper_data, buf_data(&m->in), buf_len(&m->in));
                if (k < 0)
                        return (int) k;
                if (k == 0)
                        break;
                buf_consume(&m->in, (size_t) k);
        }
        return 0;
}

int memstream_feed(MemStream *m, const void *p, size_t n) {
        int r = buf_append(&m->in, p, n);
        if (r < 0)
                return r;
        return memstream_pump(m);
}

void memstream_drain(MemStream *m) {
        buf_clear(&m->out);
        if (m->want_writable && !m->closed && m->stream.upper && m->stream.upper->on_writable) {
                m->want_writable = false;
                m->stream.upper->on_writable(m->stream.upper_data);
        }
}

void memstream_hangup(MemStream *m, int error) {
        if (m->closed || m->upper_gone || !m->stream.upper)
                return;
        m->upper_gone = true;
        m->stream.upper->on_close(m->stream.upper_data, error);
}
