/* Usage: one row per request, queued in bounded memory and written by a thread of its own in batches. */
#pragma once

#include <netinet/in.h>

#include "shared/macro.h"
#include "store/store.h"

#define USAGE_ROUTE_MAX 64
#define USAGE_DIALECT_MAX 16
#define USAGE_PROVIDER_MAX 64
#define USAGE_MODEL_MAX 128

/* How a request ended, when not normally: the usage column "outcome" (NULL for USAGE_OUTCOME_COMPLETE).
 * Complete means the client got the whole answer as the upstream ended it, an error status or an error
 * event the upstream sent itself included (and gate's own refusals: 4xx, 503). */
typedef enum UsageOutcome {
        USAGE_OUTCOME_COMPLETE,
        USAGE_OUTCOME_UPSTREAM_ERROR,   /* the upstream transfer failed: no answer (502) or one cut off */
        USAGE_OUTCOME_UPSTREAM_TIMEOUT, /* no first byte, or a gap between chunks, in time (504 or cut off) */
        USAGE_OUTCOME_CLIENT_CLOSED,    /* the client went away before the end (499 before the head) */
        USAGE_OUTCOME_SHUTDOWN,         /* gate stopped and closed it at the end of its drain timeout */
        _USAGE_OUTCOME_MAX,
        _USAGE_OUTCOME_INVALID = -EINVAL,
} UsageOutcome;

/* The column's word; NULL for USAGE_OUTCOME_COMPLETE (and out of range). */
const char *usage_outcome_to_string(UsageOutcome o);
UsageOutcome usage_outcome_from_string(const char *s);

/* Strings are held inline and cut (at a UTF-8 character boundary) to fit: a queued row owns no heap
 * memory, so the queue's memory is exactly its ring. */
typedef struct UsageRecord {
        usec_t time;                            /* CLOCK_REALTIME µs when the request arrived */
        uint64_t key_id;                        /* 0: no gate key */
        /* The client's address, formatted by the writer thread (AF_UNSPEC: none; AF_UNIX: "unix"). */
        union {
                struct sockaddr sa;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
        } client;
        char route[USAGE_ROUTE_MAX];
        char dialect_in[USAGE_DIALECT_MAX];     /* the client's */
        char dialect_out[USAGE_DIALECT_MAX];    /* the upstream's */
        char provider[USAGE_PROVIDER_MAX];
        char model_requested[USAGE_MODEL_MAX];
        char model_served[USAGE_MODEL_MAX];     /* what the upstream says it served */
        unsigned status;
        /* Normalised: input excludes cache reads and writes, in both dialects. */
        uint64_t input_tokens;
        uint64_t output_tokens;
        uint64_t cache_read_tokens;
        uint64_t cache_write_tokens;
        uint64_t cost;                          /* nano-USD */
        bool priced;                            /* false: the model was not in the price table */
        usec_t ttfb;                            /* USEC_INFINITY: no byte came */
        usec_t duration;
        usec_t overhead;                        /* gate's own share of duration */
        bool stream;
        uint64_t bytes_in;
        uint64_t bytes_out;
        UsageOutcome outcome;
} UsageRecord;

/* Copies a client address (IPv4, IPv6, or AF_UNIX as just the family) into the record. */
void usage_set_client(UsageRecord *r, const struct sockaddr *sa);

/* Copies s into a field of n bytes, cut at a character boundary; NULL gives "". */
void usage_field_set(char *field, size_t n, const char *s);
#define USAGE_SET(record, field, s) usage_field_set((record)->field, sizeof((record)->field), (s))

typedef struct UsageQueue UsageQueue;

/* Opens a connection of the queue's own to the database at path (already created and migrated by
 * store_open(); ":memory:" gets a private database, so that nothing is kept), with room for max rows.
 * The writer thread is not started yet: usage_queue_flush() writes synchronously until then. */
int usage_queue_new(const char *path, uint32_t max, UsageQueue **ret);
/* Stops the writer and makes a last attempt to write what is queued (bounded by the busy timeout of
 * one second when the database is locked), then frees everything. */
UsageQueue *usage_queue_free(UsageQueue *q);
DEFINE_TRIVIAL_CLEANUP_FUNC(UsageQueue *, usage_queue_free);

/* Starts the writer thread: every interval it writes all queued rows in one transaction. A write that
 * fails (database locked, read-only or full) leaves the rows queued for the next attempt. */
int usage_queue_start(UsageQueue *q, usec_t interval);
/* For a reload: a smaller max drops the oldest rows beyond it (counted as drops). */
void usage_queue_configure(UsageQueue *q, uint32_t max, usec_t interval);

/* Rows older than retention (µs; 0 keeps them forever) are deleted by the writer thread after its flush,
 * in batches of 1000 rows, each its own transaction, at most 4 batches per flush tick while a backlog
 * lasts, then once a minute. Takes effect at the next look. */
void usage_queue_set_retention(UsageQueue *q, usec_t retention);
/* Deletes rows with time < now - retention (now: CLOCK_REALTIME µs), at most max_batches batches of 1000,
 * each in its own transaction. Returns the number of rows deleted (max_batches × 1000 means more may be
 * left), or a negative errno when the first batch failed. Called by the writer thread; callable
 * directly while no writer thread runs. */
int usage_queue_prune(UsageQueue *q, usec_t now, unsigned max_batches);

/* Queues a copy of r without blocking on the database (it takes a mutex the writer holds only to swap
 * arrays). When the queue is full the oldest row is dropped and counted. Returns 0, 1 when a row was
 * dropped to make room, -ENOMEM when the ring could not grow (r is dropped and counted). */
int usage_queue_push(UsageQueue *q, const UsageRecord *r);

/* Writes all queued rows now, in one transaction, on the calling thread. Returns the number of rows
 * written, or a negative errno (-EBUSY locked, -ENOSPC full, -EACCES read-only, ...) with the rows
 * still queued. Called by the writer thread; callable directly while no writer thread runs. */
int usage_queue_flush(UsageQueue *q);

/* Gives back what a busy spell left allocated: the queue's arrays beyond a few hundred rows (kept while
 * rows come, so that a flush allocates nothing), SQLite's page cache, the malloc arena's free memory.
 * The writer thread calls it after ten quiet seconds; callable directly while no writer thread runs. */
void usage_queue_release_memory(UsageQueue *q);

size_t usage_queue_depth(UsageQueue *q);
uint64_t usage_queue_drops(UsageQueue *q);
uint64_t usage_queue_written(UsageQueue *q);
/* Rows deleted by retention so far. */
uint64_t usage_queue_pruned(UsageQueue *q);
/* The error of the last failed write, 0 after a successful one. */
int usage_queue_last_error(UsageQueue *q);
/* Whether a batch is being written right now, for tests. */
bool usage_queue_flushing(UsageQueue *q);
/* Bytes of memory held for rows (the ring, the spare and the batch being written), for tests of flatness. */
size_t usage_queue_memory(UsageQueue *q);
/* The queue's own connection, for tests only, and only while no writer thread runs. */
Store *usage_queue_store(UsageQueue *q);

/* ---- reading (the CLI, and budgets at start) ---- */

/* Sum of cost in nano-USD of key_id's rows with time >= since. */
int usage_spend(Store *s, uint64_t key_id, usec_t since, uint64_t *ret);
/* The time of key_id's last row, 0 when it has none. */
int usage_last_used(Store *s, uint64_t key_id, usec_t *ret);

typedef struct UsageSummary {
        uint64_t key_id;                        /* 0: requests without a gate key */
        char *key_name;                         /* NULL for key_id 0 or a key that is gone */
        char *model;                            /* served, else requested */
        uint64_t requests;
        uint64_t errors;                        /* status >= 400 */
        /* Requests by how they ended: [USAGE_OUTCOME_COMPLETE] those that ended normally. */
        uint64_t outcomes[_USAGE_OUTCOME_MAX];
        uint64_t unpriced;                      /* rows whose model had no price */
        uint64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
        uint64_t cost;                          /* nano-USD */
} UsageSummary;

/* Requests that did not end normally (all outcomes but USAGE_OUTCOME_COMPLETE). */
uint64_t usage_summary_incomplete(const UsageSummary *u);

#define USAGE_ANY_KEY UINT64_MAX

/* Rows with time >= since (0: all), per key and model, ordered by key id then cost (highest first).
 * key_id selects one key (0: requests without a key); USAGE_ANY_KEY all. */
int usage_summarize(Store *s, usec_t since, uint64_t key_id, UsageSummary **ret, size_t *ret_n);
void usage_summary_free_many(UsageSummary *l, size_t n);
