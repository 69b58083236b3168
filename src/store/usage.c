/* Usage: one row per request, queued in bounded memory and written by a thread of its own in batches. */
#include <assert.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shared/errors.h"
#include "shared/log.h"
#include "shared/util.h"
#include "store/usage.h"

/* The writer waits this long for a lock held by someone else (a CLI creating a key) before giving up
 * until the next interval. It runs on its own thread, so the wait blocks no request. */
#define USAGE_BUSY_TIMEOUT_MS 1000

/* Retention deletes old rows this many at a time, each batch a transaction of its own, so that the write
 * lock is never held for long: a flush or a CLI waits at most one small batch. */
#define USAGE_PRUNE_BATCH 1000
/* Batches per flush tick: a backlog (a first start with years of rows, a shorter retention) goes at
 * 4000 rows per flush_interval, and the queue's own writes go first. */
#define USAGE_PRUNE_BATCHES 4
/* With no backlog left, rows age by the second: looking once a minute is plenty. */
#define USAGE_PRUNE_IDLE (60 * USEC_PER_SEC)

static const char *const usage_outcome_table[_USAGE_OUTCOME_MAX] = {
        [USAGE_OUTCOME_COMPLETE] = NULL,
        [USAGE_OUTCOME_UPSTREAM_ERROR] = "upstream_error",
        [USAGE_OUTCOME_UPSTREAM_TIMEOUT] = "upstream_timeout",
        [USAGE_OUTCOME_CLIENT_CLOSED] = "client_closed",
        [USAGE_OUTCOME_SHUTDOWN] = "shutdown",
};

const char *usage_outcome_to_string(UsageOutcome o) {
        if (o < 0 || o >= _USAGE_OUTCOME_MAX)
                return NULL;
        return usage_outcome_table[o];
}

UsageOutcome usage_outcome_from_string(const char *s) {
        if (!s)
                return USAGE_OUTCOME_COMPLETE;
        for (UsageOutcome o = 1; o < _USAGE_OUTCOME_MAX; o++)
                if (streq(s, usage_outcome_table[o]))
                        return o;
        return _USAGE_OUTCOME_INVALID;
}

void usage_field_set(char *field, size_t n, const char *s) {
        size_t k;

        if (n == 0)
                return;
        if (!s) {
                field[0] = 0;
                return;
        }
        k = strnlen(s, n);
        if (k >= n) {
                /* Cut, backing off to the start of a UTF-8 character. */
                k = n - 1;
                while (k > 0 && ((unsigned char) s[k] & 0xc0) == 0x80)
                        k--;
        }
        memcpy(field, s, k);
        field[k] = 0;
}

struct UsageQueue {
        /* The ring the pushers fill, guarded by lock. */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        UsageRecord *ring;
        size_t alloc, head, len, max;
        /* While a batch is written it is out of the ring (the writer took the whole ring and left its
         * spare array in its place), but its rows still count against max: live of them are still
         * queued, the others were dropped meanwhile by pushes that found the queue full (the oldest rows
         * are the batch's) and count as dropped only if the write then fails. */
        size_t inflight_live;
        uint64_t dropped_inflight;
        uint64_t drops, written;
        int last_error;
        usec_t interval;
        usec_t retention;               /* 0: rows are kept forever */
        bool stop, kick;
        /* The writer's scheduling class: SCHED_IDLE while it keeps up, SCHED_BATCH under a backlog. */
        pid_t writer_tid;
        bool writer_batch;

        /* The writer's side: one flush at a time, guarded by flush_lock. The ring and the spare swap at
         * each flush, so that taking the queue's rows costs the pushers' lock no copy and no allocation. */
        pthread_mutex_t flush_lock;
        Store *store;
        sqlite3_stmt *insert;           /* one row */
        sqlite3_stmt *insert_many;      /* USAGE_INSERT_ROWS rows */
        sqlite3_stmt *prune;
        uint64_t pruned;                /* rows deleted by retention, guarded by lock */
        UsageRecord *spare;             /* an empty array of spare_alloc rows, guarded by lock */
        size_t spare_alloc;
        size_t batch_alloc;             /* rows in the array of the batch being written (from the swap to
                                         * the end of the write), 0 while none is: guarded by lock */

        pthread_t thread;
        bool thread_started;
};

/* Rows go in USAGE_INSERT_ROWS per statement while a batch has that many: a statement's own cost
 * (step, halt, reset) was a sixth of a row's. */
#define USAGE_INSERT_ROWS 16
#define USAGE_COLUMNS 23
static const char insert_sql[] =
        "INSERT INTO usage (time, key_id, client, route, dialect_in, dialect_out, provider, model_requested, "
        "model_served, status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, "
        "cost_nanousd, priced, ttfb_us, total_us, overhead_us, stream, bytes_in, bytes_out, outcome) VALUES ";
static const char insert_values_sql[] = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

static int prepare_insert(sqlite3 *db, size_t rows, sqlite3_stmt **ret) {
        char sql[sizeof insert_sql + USAGE_INSERT_ROWS * sizeof insert_values_sql];
        char *p = stpcpy(sql, insert_sql);
        int k;

        assert(rows >= 1 && rows <= USAGE_INSERT_ROWS);
        for (size_t i = 0; i < rows; i++)
                p = stpcpy(stpcpy(p, i > 0 ? "," : ""), insert_values_sql);
        k = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, ret, NULL);
        return k == SQLITE_OK ? 0 : errno_from_sqlite(k);
}

/* The oldest rows first, through the time index; one statement is one batch and one transaction. */
static const char prune_sql[] =
        "DELETE FROM usage WHERE id IN (SELECT id FROM usage WHERE time < ?1 ORDER BY time LIMIT ?2)";

static int usage_open(const char *path, Store **ret) {
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_free_ char *error = NULL;
        int k;

        /* An in-memory database is private to its connection: give the queue one with the schema. */
        if (streq(path, ":memory:"))
                return store_open(path, ret, &error);

        /* The file exists and is migrated (store_open() ran first); skip its checks on this connection. */
        s = new0(Store, 1);
        if (!s)
                return -ENOMEM;
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;
        k = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        (void) sqlite3_extended_result_codes(s->db, 1);
        (void) sqlite3_busy_timeout(s->db, USAGE_BUSY_TIMEOUT_MS);
        k = sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        s->schema_version = store_schema_version_latest();
        *ret = TAKE_PTR(s);
        return 0;
}

int usage_queue_new(const char *path, uint32_t max, UsageQueue **ret) {
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        pthread_condattr_t attr;
        int k, r;

        if (!path || max == 0 || !ret)
                return -EINVAL;
        q = new0(UsageQueue, 1);
        if (!q)
                return -ENOMEM;
        q->max = max;
        q->interval = USEC_PER_SEC;
        pthread_mutex_init(&q->lock, NULL);
        pthread_mutex_init(&q->flush_lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&q->wake, &attr);
        pthread_condattr_destroy(&attr);

        r = usage_open(path, &q->store);
        if (r < 0)
                return r;
        r = prepare_insert(q->store->db, 1, &q->insert);
        if (r < 0)
                return r;
        r = prepare_insert(q->store->db, USAGE_INSERT_ROWS, &q->insert_many);
        if (r < 0)
                return r;
        k = sqlite3_prepare_v3(q->store->db, prune_sql, -1, SQLITE_PREPARE_PERSISTENT, &q->prune, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);

        *ret = TAKE_PTR(q);
        return 0;
}

UsageQueue *usage_queue_free(UsageQueue *q) {
        if (!q)
                return NULL;
        if (q->thread_started) {
                pthread_mutex_lock(&q->lock);
                q->stop = true;
                pthread_cond_signal(&q->wake);
                pthread_mutex_unlock(&q->lock);
                pthread_join(q->thread, NULL);
        } else if (q->store)
                /* Without a writer, the caller's thread makes the last attempt. */
                (void) usage_queue_flush(q);
        if (q->insert)
                sqlite3_finalize(q->insert);
        if (q->insert_many)
                sqlite3_finalize(q->insert_many);
        if (q->prune)
                sqlite3_finalize(q->prune);
        store_close(q->store);
        free(q->ring);
        free(q->spare);
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        pthread_mutex_destroy(&q->flush_lock);
        free(q);
        return NULL;
}

static void usage_writer_set_class(UsageQueue *q, bool batch);

/* Caller holds lock. The oldest row goes: one of the batch being written if it has any left. */
static void usage_queue_drop_oldest(UsageQueue *q) {
        if (q->inflight_live > 0) {
                q->inflight_live--;
                q->dropped_inflight++;
                return;
        }
        assert(q->len > 0);
        q->drops++;
        q->head = (q->head + 1) % q->alloc;
        q->len--;
}

/* Rows a drained ring and the spare keep allocated once the writer has been quiet for a while (a row is
 * ~600 bytes; a burst of 10,000 would otherwise pin ~6 MB in each for good, and gate would not go back
 * near its idle size once the load is over). While rows come, both stay: a flush then costs the pushers
 * no allocation, no copy and no page fault. */
#define USAGE_KEEP_ROWS 256U

/* Caller holds lock. Grows the ring geometrically to room for at least need rows (at most max); rows keep
 * their order. */
static int usage_queue_grow(UsageQueue *q, size_t need) {
        size_t n = MAX(q->alloc * 2, (size_t) 64), first;
        UsageRecord *ring;

        while (n < need)
                n *= 2;
        n = MIN(n, MAX(q->max, need));
        if (n <= q->alloc)
                return -ENOBUFS;
        ring = new(UsageRecord, n);
        if (!ring)
                return -ENOMEM;
        first = MIN(q->len, q->alloc - q->head);
        if (q->len > 0) {
                memcpy(ring, q->ring + q->head, first * sizeof *ring);
                memcpy(ring + first, q->ring, (q->len - first) * sizeof *ring);
        }
        free(q->ring);
        q->ring = ring;
        q->alloc = n;
        q->head = 0;
        return 0;
}

int usage_queue_push(UsageQueue *q, const UsageRecord *r) {
        int ret = 0;

        if (!q || !r)
                return -EINVAL;
        pthread_mutex_lock(&q->lock);
        if (q->len + q->inflight_live >= q->max) {
                usage_queue_drop_oldest(q);
                ret = 1;
        }
        if (q->len >= q->alloc && usage_queue_grow(q, q->len + 1) < 0) {
                q->drops++;
                pthread_mutex_unlock(&q->lock);
                return -ENOMEM;
        }
        q->ring[(q->head + q->len) % q->alloc] = *r;
        q->len++;
        if (q->len >= q->max / 2 && q->writer_tid > 0) {
                if (q->batch_alloc == 0) {
                        /* Half full before the interval is over: write now rather than drop later. */
                        if (!q->kick) {
                                q->kick = true;
                                pthread_cond_signal(&q->wake);
                        }
                } else if (!q->writer_batch)
                        /* Half a queue came in during one flush: the writer is starved, not idle. */
                        usage_writer_set_class(q, true);
        }
        pthread_mutex_unlock(&q->lock);
        return ret;
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s) {
        if (isempty(s))
                sqlite3_bind_null(st, i);
        else
                sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void bind_u64(sqlite3_stmt *st, int i, uint64_t v) {
        sqlite3_bind_int64(st, i, (int64_t) MIN(v, (uint64_t) INT64_MAX));
}

static void bind_usec_or_null(sqlite3_stmt *st, int i, usec_t v) {
        if (v == USEC_INFINITY)
                sqlite3_bind_null(st, i);
        else
                bind_u64(st, i, v);
}

void usage_set_client(UsageRecord *r, const struct sockaddr *sa) {
        if (!sa)
                r->client.sa.sa_family = AF_UNSPEC;
        else if (sa->sa_family == AF_INET)
                r->client.in = *(const struct sockaddr_in *) sa;
        else if (sa->sa_family == AF_INET6)
                r->client.in6 = *(const struct sockaddr_in6 *) sa;
        else
                r->client.sa.sa_family = sa->sa_family;
}

/* Binds a row to parameters base+1 .. base+USAGE_COLUMNS; client is the caller's room for its address,
 * which must live until the statement has run. */
static void usage_bind(sqlite3_stmt *st, int base, const UsageRecord *u, char client[static 64]) {
        client[0] = 0;
        /* Formatted here, on the writer thread: inet_ntop and a printf are not worth a request's time. */
        if (u->client.sa.sa_family != AF_UNSPEC)
                (void) format_socket_address(&u->client.sa, sizeof u->client, client, 64);

        bind_u64(st, base + 1, u->time);
        if (u->key_id > 0)
                bind_u64(st, base + 2, u->key_id);
        else
                sqlite3_bind_null(st, base + 2);
        bind_text_or_null(st, base + 3, client);
        bind_text_or_null(st, base + 4, u->route);
        bind_text_or_null(st, base + 5, u->dialect_in);
        bind_text_or_null(st, base + 6, u->dialect_out);
        bind_text_or_null(st, base + 7, u->provider);
        bind_text_or_null(st, base + 8, u->model_requested);
        bind_text_or_null(st, base + 9, u->model_served);
        sqlite3_bind_int(st, base + 10, (int) MIN(u->status, 999U));
        bind_u64(st, base + 11, u->input_tokens);
        bind_u64(st, base + 12, u->output_tokens);
        bind_u64(st, base + 13, u->cache_read_tokens);
        bind_u64(st, base + 14, u->cache_write_tokens);
        bind_u64(st, base + 15, u->cost);
        sqlite3_bind_int(st, base + 16, u->priced);
        bind_usec_or_null(st, base + 17, u->ttfb);
        bind_usec_or_null(st, base + 18, u->duration);
        bind_usec_or_null(st, base + 19, u->overhead);
        sqlite3_bind_int(st, base + 20, u->stream);
        bind_u64(st, base + 21, u->bytes_in);
        bind_u64(st, base + 22, u->bytes_out);
        bind_text_or_null(st, base + 23, usage_outcome_to_string(u->outcome));
}

/* n rows (1 or USAGE_INSERT_ROWS) in one statement. */
static int usage_insert(UsageQueue *q, const UsageRecord *rows, size_t n) {
        sqlite3_stmt *st = n == 1 ? q->insert : q->insert_many;
        char clients[USAGE_INSERT_ROWS][64];
        int k;

        assert(n == 1 || n == USAGE_INSERT_ROWS);
        for (size_t i = 0; i < n; i++)
                usage_bind(st, (int) i * USAGE_COLUMNS, rows + i, clients[i]);
        k = sqlite3_step(st);
        sqlite3_reset(st);
        return k == SQLITE_DONE ? 0 : errno_from_sqlite(k);
}

static int usage_exec(UsageQueue *q, const char *sql) {
        int k = sqlite3_exec(q->store->db, sql, NULL, NULL, NULL);
        return k == SQLITE_OK ? 0 : errno_from_sqlite(k);
}

/* n rows that lie one after the other in memory, USAGE_INSERT_ROWS per statement while that many are
 * left. */
static int usage_insert_run(UsageQueue *q, const UsageRecord *rows, size_t n) {
        for (size_t i = 0; i < n;) {
                size_t m = n - i >= USAGE_INSERT_ROWS ? USAGE_INSERT_ROWS : 1;
                int r = usage_insert(q, rows + i, m);
                if (r < 0)
                        return r;
                i += m;
        }
        return 0;
}

/* The n rows from rows[head] on, wrapping at alloc, in one transaction. */
static int usage_write_batch(UsageQueue *q, const UsageRecord *rows, size_t alloc, size_t head, size_t n) {
        size_t first = MIN(n, alloc - head);
        int r;

        r = usage_exec(q, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = usage_insert_run(q, rows + head, first);
        if (r >= 0)
                r = usage_insert_run(q, rows, n - first);
        if (r >= 0)
                r = usage_exec(q, "COMMIT");
        if (r >= 0)
                return 0;

        /* SQLite may have rolled back by itself (a full disk does that). */
        if (!sqlite3_get_autocommit(q->store->db))
                (void) usage_exec(q, "ROLLBACK");
        return r;
}

/* Caller holds lock. A failed batch's rows that are still queued (its newest keep rows) go back in front
 * of the ring, oldest first, as if they had never left. */
static int usage_queue_put_back(UsageQueue *q, const UsageRecord *rows, size_t alloc, size_t head, size_t n,
                                size_t keep) {
        if (keep == 0)
                return 0;
        if (q->len + keep > q->alloc) {
                int r = usage_queue_grow(q, q->len + keep);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < keep; i++) {
                q->head = (q->head + q->alloc - 1) % q->alloc;
                q->ring[q->head] = rows[(head + n - 1 - i) % alloc];
        }
        q->len += keep;
        return 0;
}

static int usage_queue_flush_locked(UsageQueue *q) {
        _cleanup_free_ UsageRecord *rows = NULL;
        size_t n, alloc, head;
        int r;

        /* The whole ring is the batch; the pushers go on in the spare. */
        pthread_mutex_lock(&q->lock);
        n = q->len;
        if (n == 0) {
                pthread_mutex_unlock(&q->lock);
                return 0;
        }
        rows = TAKE_PTR(q->ring);
        alloc = q->alloc;
        head = q->head;
        q->ring = TAKE_PTR(q->spare);
        q->alloc = q->spare_alloc;
        q->spare_alloc = 0;
        q->head = q->len = 0;
        q->batch_alloc = alloc;
        q->inflight_live = n;
        q->dropped_inflight = 0;
        pthread_mutex_unlock(&q->lock);

        r = usage_write_batch(q, rows, alloc, head, n);

        pthread_mutex_lock(&q->lock);
        if (r >= 0) {
                q->written += n;
                q->last_error = 0;
        } else {
                /* The rows pushes dropped meanwhile are lost now; the others are queued again (only a
                 * failed allocation can lose them too, and counts them). */
                q->drops += q->dropped_inflight;
                q->last_error = r;
                if (usage_queue_put_back(q, rows, alloc, head, n, q->inflight_live) < 0)
                        q->drops += q->inflight_live;
        }
        q->inflight_live = 0;
        q->dropped_inflight = 0;
        q->batch_alloc = 0;
        /* The batch's array is the next spare: the ring and it are all the queue holds. */
        assert(!q->spare);
        q->spare = TAKE_PTR(rows);
        q->spare_alloc = alloc;
        if (r >= 0 && q->writer_batch && q->len < q->max / 8)
                usage_writer_set_class(q, false);
        pthread_mutex_unlock(&q->lock);

        if (r < 0)
                return log_debug_errno(r, "Failed to write %zu usage rows, keeping them queued: %m", n);
        return (int) MIN(n, (size_t) INT32_MAX);
}

int usage_queue_flush(UsageQueue *q) {
        int r;

        if (!q)
                return -EINVAL;
        pthread_mutex_lock(&q->flush_lock);
        r = usage_queue_flush_locked(q);
        pthread_mutex_unlock(&q->flush_lock);
        return r;
}

/* Caller holds flush_lock. One batch, in autocommit: its own short transaction. */
static int usage_prune_batch(UsageQueue *q, usec_t cutoff, uint64_t *ret_deleted) {
        int k;

        sqlite3_reset(q->prune);
        bind_u64(q->prune, 1, cutoff);
        sqlite3_bind_int(q->prune, 2, USAGE_PRUNE_BATCH);
        k = sqlite3_step(q->prune);
        sqlite3_reset(q->prune);
        if (k != SQLITE_DONE)
                return errno_from_sqlite(k) ?: -EIO;
        *ret_deleted = (uint64_t) sqlite3_changes(q->store->db);
        return 0;
}

int usage_queue_prune(UsageQueue *q, usec_t now, unsigned max_batches) {
        uint64_t total = 0;
        usec_t retention;
        int r = 0;

        if (!q)
                return -EINVAL;
        pthread_mutex_lock(&q->lock);
        retention = q->retention;
        pthread_mutex_unlock(&q->lock);
        if (retention == 0 || retention >= now)
                return 0;

        pthread_mutex_lock(&q->flush_lock);
        for (unsigned i = 0; i < max_batches; i++) {
                uint64_t n = 0;

                r = usage_prune_batch(q, now - retention, &n);
                if (r < 0)
                        break;
                total += n;
                if (n < USAGE_PRUNE_BATCH)
                        break;
        }
        pthread_mutex_unlock(&q->flush_lock);

        pthread_mutex_lock(&q->lock);
        q->pruned += total;
        pthread_mutex_unlock(&q->lock);
        if (total > 0)
                log_debug("Deleted %" PRIu64 " usage rows older than the retention.", total);
        if (r < 0 && total == 0)
                return log_debug_errno(r, "Failed to delete old usage rows, retrying later: %m");
        return (int) MIN(total, (uint64_t) INT32_MAX);
}

/* The writer yields to the event loop: a flush of a busy second's rows takes tens of milliseconds of CPU.
 * On a core shared with the loop, at the same priority, it would delay every request being served
 * meanwhile; even at nice +10 and SCHED_BATCH the scheduler lets it finish its time slice before a woken
 * loop runs (measured: p99 at one connection 643 us with a flush per second vs 352 us with none). As
 * SCHED_IDLE it gives way at once, but a loop that keeps its core busy would starve it: when half a
 * queue's worth of rows comes in while one flush is still being written, it becomes SCHED_BATCH (nice
 * +10 relative to the daemon, a few per cent of the core: its work is a few per cent of the loop's)
 * until a flush leaves fewer than an eighth waiting. Failure (a seccomp filter) changes nothing else.
 * Caller holds lock. */
static void usage_writer_set_class(UsageQueue *q, bool batch) {
        q->writer_batch = batch;
        if (q->writer_tid <= 0)
                return;
        if (sched_setscheduler(q->writer_tid, batch ? SCHED_BATCH : SCHED_IDLE, &(struct sched_param) {}) < 0)
                log_debug_errno(errno, "Failed to make the usage writer %s: %m", batch ? "SCHED_BATCH" : "SCHED_IDLE");
}

static void usage_writer_init_class(UsageQueue *q) {
        pid_t tid = gettid();
        int nice;

        /* The nice value matters only while SCHED_BATCH; it is set once, relative to the daemon's. */
        errno = 0;
        nice = getpriority(PRIO_PROCESS, (id_t) tid);
        if (errno == 0 && setpriority(PRIO_PROCESS, (id_t) tid, MIN(nice + 10, 19)) < 0)
                log_debug_errno(errno, "Failed to lower the usage writer's priority: %m");
        pthread_mutex_lock(&q->lock);
        q->writer_tid = tid;
        usage_writer_set_class(q, false);
        pthread_mutex_unlock(&q->lock);
}

void usage_queue_release_memory(UsageQueue *q) {
        if (!q)
                return;
        pthread_mutex_lock(&q->flush_lock);
        (void) sqlite3_db_release_memory(q->store->db);
        pthread_mutex_lock(&q->lock);
        if (q->spare_alloc > USAGE_KEEP_ROWS) {
                q->spare = mfree(q->spare);
                q->spare_alloc = 0;
        }
        if (q->len == 0 && q->alloc > USAGE_KEEP_ROWS) {
                q->ring = mfree(q->ring);
                q->alloc = q->head = 0;
        }
        pthread_mutex_unlock(&q->lock);
        pthread_mutex_unlock(&q->flush_lock);
        (void) malloc_trim(0);
}

/* Quiet this long after the last row, the writer gives its memory back. */
#define USAGE_RELEASE_AFTER (10 * USEC_PER_SEC)

static void *usage_writer(void *userdata) {
        UsageQueue *q = userdata;
        usec_t prune_next = 0, last_rows = 0;
        bool released = true;

        usage_writer_init_class(q);

        pthread_mutex_lock(&q->lock);
        while (!q->stop) {
                struct timespec ts;
                usec_t until = now_mono() + q->interval;

                ts.tv_sec = (time_t) (until / USEC_PER_SEC);
                ts.tv_nsec = (long) (until % USEC_PER_SEC * NSEC_PER_USEC);
                while (!q->stop && !q->kick && pthread_cond_timedwait(&q->wake, &q->lock, &ts) == 0)
                        ;
                q->kick = false;
                if (q->stop)
                        break;
                pthread_mutex_unlock(&q->lock);
                if (usage_queue_flush(q) > 0) {
                        last_rows = now_mono();
                        released = false;
                } else if (!released && now_mono() >= last_rows + USAGE_RELEASE_AFTER) {
                        /* Quiet again after a busy spell: the queue's arrays, SQLite's page cache (up to
                         * 2 MiB) and what this thread's malloc arena kept go back, so an idle gate is small
                         * again. */
                        usage_queue_release_memory(q);
                        released = true;
                }

                /* Retention runs here, after the queue's own rows, never on the request path. A full
                 * round of batches means a backlog: the next tick goes on with it. */
                if (now_mono() >= prune_next) {
                        int n = usage_queue_prune(q, now_usec(CLOCK_REALTIME), USAGE_PRUNE_BATCHES);
                        bool backlog = n >= USAGE_PRUNE_BATCHES * USAGE_PRUNE_BATCH;

                        prune_next = backlog ? 0 : now_mono() + USAGE_PRUNE_IDLE;
                }
                pthread_mutex_lock(&q->lock);
        }
        pthread_mutex_unlock(&q->lock);

        /* One last attempt on the way out, so that a clean stop loses nothing. */
        (void) usage_queue_flush(q);
        return NULL;
}

int usage_queue_start(UsageQueue *q, usec_t interval) {
        sigset_t all, saved;
        int k;

        if (!q || interval == 0)
                return -EINVAL;
        if (q->thread_started)
                return -EBUSY;
        q->interval = interval;

        /* Signals are the event loop's business: the writer is created with all of them blocked. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &saved);
        k = pthread_create(&q->thread, NULL, usage_writer, q);
        pthread_sigmask(SIG_SETMASK, &saved, NULL);
        if (k != 0)
                return -k;
        (void) pthread_setname_np(q->thread, "gate-usage");
        q->thread_started = true;
        return 0;
}

void usage_queue_configure(UsageQueue *q, uint32_t max, usec_t interval) {
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        if (max > 0) {
                q->max = max;
                while (q->len + q->inflight_live > q->max)
                        usage_queue_drop_oldest(q);
        }
        if (interval > 0 && interval != q->interval) {
                q->interval = interval;
                q->kick = true;
                pthread_cond_signal(&q->wake);
        }
        pthread_mutex_unlock(&q->lock);
}

void usage_queue_set_retention(UsageQueue *q, usec_t retention) {
        if (!q)
                return;
        pthread_mutex_lock(&q->lock);
        q->retention = retention;
        pthread_mutex_unlock(&q->lock);
}

#define QUEUE_GETTER(type, name, expr)                  \
        type name(UsageQueue *q) {                      \
                type v;                                 \
                if (!q)                                 \
                        return 0;                       \
                pthread_mutex_lock(&q->lock);           \
                v = (expr);                             \
                pthread_mutex_unlock(&q->lock);         \
                return v;                               \
        }

QUEUE_GETTER(size_t, usage_queue_depth, q->len + q->inflight_live)
QUEUE_GETTER(uint64_t, usage_queue_drops, q->drops)
QUEUE_GETTER(uint64_t, usage_queue_written, q->written)
QUEUE_GETTER(uint64_t, usage_queue_pruned, q->pruned)
QUEUE_GETTER(int, usage_queue_last_error, q->last_error)
QUEUE_GETTER(bool, usage_queue_flushing, q->batch_alloc > 0)
QUEUE_GETTER(size_t, usage_queue_memory, (q->alloc + q->spare_alloc + q->batch_alloc) * sizeof(UsageRecord))

Store *usage_queue_store(UsageQueue *q) {
        return q ? q->store : NULL;
}

/* ---- reading ---- */

static void sqlite3_finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}

int usage_spend(Store *s, uint64_t key_id, usec_t since, uint64_t *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int k;

        if (!s || !ret)
                return -EINVAL;
        k = sqlite3_prepare_v2(s->db,
                               "SELECT COALESCE(SUM(cost_nanousd), 0) FROM usage WHERE key_id = ? AND time >= ?",
                               -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        bind_u64(st, 1, key_id);
        bind_u64(st, 2, since);
        k = sqlite3_step(st);
        if (k != SQLITE_ROW)
                return errno_from_sqlite(k) ?: -EIO;
        *ret = (uint64_t) MAX(sqlite3_column_int64(st, 0), 0);
        return 0;
}

int usage_last_used(Store *s, uint64_t key_id, usec_t *ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int k;

        if (!s || !ret)
                return -EINVAL;
        k = sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(time), 0) FROM usage WHERE key_id = ?", -1, &st,
                               NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        bind_u64(st, 1, key_id);
        k = sqlite3_step(st);
        if (k != SQLITE_ROW)
                return errno_from_sqlite(k) ?: -EIO;
        *ret = (usec_t) MAX(sqlite3_column_int64(st, 0), 0);
        return 0;
}

uint64_t usage_summary_incomplete(const UsageSummary *u) {
        uint64_t n = 0;

        for (UsageOutcome o = 1; o < _USAGE_OUTCOME_MAX; o++)
                n += u->outcomes[o];
        return n;
}

void usage_summary_free_many(UsageSummary *l, size_t n) {
        for (size_t i = 0; l && i < n; i++) {
                free(l[i].key_name);
                free(l[i].model);
        }
        free(l);
}

int usage_summarize(Store *s, usec_t since, uint64_t key_id, UsageSummary **ret, size_t *ret_n) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        UsageSummary *l = NULL;
        size_t n = 0;
        int k, r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        k = sqlite3_prepare_v2(s->db,
                               "SELECT u.key_id, k.name, "
                               "  COALESCE(NULLIF(u.model_served, ''), u.model_requested, '') AS m, "
                               "  COUNT(*), SUM(u.status >= 400), "
                               "  SUM(u.priced = 0 AND u.input_tokens + u.output_tokens + u.cache_read_tokens "
                               "      + u.cache_write_tokens > 0), "
                               "  SUM(u.input_tokens), SUM(u.output_tokens), SUM(u.cache_read_tokens), "
                               "  SUM(u.cache_write_tokens), SUM(u.cost_nanousd), "
                               /* In UsageOutcome's order, from USAGE_OUTCOME_UPSTREAM_ERROR on. */
                               "  SUM(u.outcome = 'upstream_error'), SUM(u.outcome = 'upstream_timeout'), "
                               "  SUM(u.outcome = 'client_closed'), SUM(u.outcome = 'shutdown'), "
                               "  SUM(u.outcome IS NULL) "
                               "FROM usage u LEFT JOIN api_keys k ON k.id = u.key_id "
                               "WHERE u.time >= ?1 AND (?2 = 0 OR u.key_id IS ?3) "
                               "GROUP BY u.key_id, m "
                               "ORDER BY u.key_id IS NULL, u.key_id, SUM(u.cost_nanousd) DESC, m",
                               -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        bind_u64(st, 1, since);
        sqlite3_bind_int(st, 2, key_id != USAGE_ANY_KEY);
        if (key_id != USAGE_ANY_KEY && key_id > 0)
                bind_u64(st, 3, key_id);
        else
                sqlite3_bind_null(st, 3);

        while ((k = sqlite3_step(st)) == SQLITE_ROW) {
                UsageSummary *nl, *u;
                const char *name = (const char *) sqlite3_column_text(st, 1);

                nl = reallocarray(l, n + 1, sizeof *l);
                if (!nl) {
                        r = -ENOMEM;
                        goto fail;
                }
                l = nl;
                u = l + n++;
                *u = (UsageSummary) {
                        .key_id = (uint64_t) MAX(sqlite3_column_int64(st, 0), 0),
                        .key_name = name ? strdup(name) : NULL,
                        .model = strdup((const char *) sqlite3_column_text(st, 2) ?: ""),
                        .requests = (uint64_t) MAX(sqlite3_column_int64(st, 3), 0),
                        .errors = (uint64_t) MAX(sqlite3_column_int64(st, 4), 0),
                        .unpriced = (uint64_t) MAX(sqlite3_column_int64(st, 5), 0),
                        .input_tokens = (uint64_t) MAX(sqlite3_column_int64(st, 6), 0),
                        .output_tokens = (uint64_t) MAX(sqlite3_column_int64(st, 7), 0),
                        .cache_read_tokens = (uint64_t) MAX(sqlite3_column_int64(st, 8), 0),
                        .cache_write_tokens = (uint64_t) MAX(sqlite3_column_int64(st, 9), 0),
                        .cost = (uint64_t) MAX(sqlite3_column_int64(st, 10), 0),
                };
                static_assert(_USAGE_OUTCOME_MAX == 5, "the query sums each outcome");
                for (UsageOutcome o = 1; o < _USAGE_OUTCOME_MAX; o++)
                        u->outcomes[o] = (uint64_t) MAX(sqlite3_column_int64(st, 10 + o), 0);
                u->outcomes[USAGE_OUTCOME_COMPLETE] = (uint64_t) MAX(sqlite3_column_int64(st, 15), 0);
                if ((name && !u->key_name) || !u->model) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        if (k != SQLITE_DONE) {
                r = errno_from_sqlite(k) ?: -EIO;
                goto fail;
        }
        *ret = l;
        *ret_n = n;
        return 0;
fail:
        usage_summary_free_many(l, n);
        return r;
}
