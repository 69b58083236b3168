/* MemStream: an in-memory Stream for unit tests and fuzzers: feed input bytes, read what was written. */
#pragma once

#include "net/stream.h"
#include "shared/buf.h"

typedef struct MemStream {
        Stream stream;
        Buf in;                 /* fed but not yet consumed by the upper */
        Buf out;                /* everything the upper wrote (and the test did not take yet) */
        bool read_paused;
        bool closed;            /* upper called stream_close() */
        bool close_flush;
        bool hold_output;       /* simulate a client that stops reading: pending() counts out */
        bool want_writable;
        bool upper_gone;        /* on_close delivered */
        unsigned n_writes;      /* write calls by the upper: how its output was batched */
        int write_error;        /* < 0: writes fail with it (a broken transport) */
} MemStream;

void memstream_init(MemStream *m, sd_event *event);
void memstream_done(MemStream *m);
/* Appends input and offers everything buffered to the upper. Returns the upper's error, if any. */
int memstream_feed(MemStream *m, const void *p, size_t n);
/* Re-offers buffered input (after the upper unpaused). */
int memstream_pump(MemStream *m);
/* The client read everything: empties out and, if the upper waits for it, calls on_writable. */
void memstream_drain(MemStream *m);
/* Ends the stream from the peer side: calls on_close(error). */
void memstream_hangup(MemStream *m, int error);
