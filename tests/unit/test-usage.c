/* Unit tests for usage rows: the bounded queue, its writer, failing databases (locked, read-only, full). */
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "shared/util.h"
#include "store/keys.h"
#include "store/usage.h"
#include "tests.h"

typedef struct Fixture {
        char dir[64];
        char *path;
        Store *store;
} Fixture;

static int fixture_init_in(Fixture *f, const char *base) {
        _cleanup_free_ char *error = NULL;

        snprintf(f->dir, sizeof f->dir, "%s/test-usage-XXXXXX", base);
        if (!mkdtemp(f->dir))
                return -errno;
        if (asprintf(&f->path, "%s/gate.db", f->dir) < 0)
                return -ENOMEM;
        return store_open(f->path, &f->store, &error);
}

static int fixture_init(Fixture *f) {
        return fixture_init_in(f, "/tmp");
}

static void fixture_done(Fixture *f) {
        char cmd[128];

        store_close(f->store);
        free(f->path);
        snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
        (void) !system(cmd);
}

static UsageRecord record(uint64_t n) {
        UsageRecord u = {
                .time = 1700000000 * USEC_PER_SEC + n,
                .key_id = 1 + n % 2,
                .status = 200,
                .input_tokens = n,
                .output_tokens = 2 * n,
                .cache_read_tokens = 3,
                .cache_write_tokens = 4,
                .cost = 1000 * n,
                .priced = true,
                .ttfb = USEC_INFINITY,
                .duration = 1234,
                .overhead = 56,
                .stream = true,
                .bytes_in = 100,
                .bytes_out = 200,
        };
        usage_set_client(&u, (const struct sockaddr *) &(struct sockaddr_in) {
                .sin_family = AF_INET, .sin_port = htobe16(5000), .sin_addr.s_addr = htobe32(0x7f000001) });
        USAGE_SET(&u, route, "/v1/chat/completions");
        USAGE_SET(&u, dialect_in, "openai");
        USAGE_SET(&u, dialect_out, "anthropic");
        USAGE_SET(&u, provider, "anthropic");
        USAGE_SET(&u, model_requested, "claude-x");
        USAGE_SET(&u, model_served, "claude-x-2025");
        return u;
}

static int64_t query_int(Store *s, const char *sql) {
        sqlite3_stmt *st = NULL;
        int64_t v = -1;

        if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
                return -2;
        if (sqlite3_step(st) == SQLITE_ROW)
                v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

TEST(outcome_words) {
        ASSERT_NULL(usage_outcome_to_string(USAGE_OUTCOME_COMPLETE));
        ASSERT_STREQ(usage_outcome_to_string(USAGE_OUTCOME_UPSTREAM_ERROR), "upstream_error");
        ASSERT_STREQ(usage_outcome_to_string(USAGE_OUTCOME_UPSTREAM_TIMEOUT), "upstream_timeout");
        ASSERT_STREQ(usage_outcome_to_string(USAGE_OUTCOME_CLIENT_CLOSED), "client_closed");
        ASSERT_STREQ(usage_outcome_to_string(USAGE_OUTCOME_SHUTDOWN), "shutdown");
        ASSERT_NULL(usage_outcome_to_string(_USAGE_OUTCOME_MAX));
        ASSERT_NULL(usage_outcome_to_string(_USAGE_OUTCOME_INVALID));
        for (UsageOutcome o = 0; o < _USAGE_OUTCOME_MAX; o++)
                ASSERT_EQ(usage_outcome_from_string(usage_outcome_to_string(o)), o);
        ASSERT_EQ(usage_outcome_from_string("aborted"), _USAGE_OUTCOME_INVALID);
}

TEST(field_set_cuts_at_characters) {
        char f[6];

        usage_field_set(f, sizeof f, "abc");
        ASSERT_STREQ(f, "abc");
        usage_field_set(f, sizeof f, "abcdefgh");
        ASSERT_STREQ(f, "abcde");
        usage_field_set(f, sizeof f, "abcd\xc3\xa9");      /* é would need bytes 5 and 6 */
        ASSERT_STREQ(f, "abcd");
        usage_field_set(f, sizeof f, NULL);
        ASSERT_STREQ(f, "");
}

TEST(rows_are_written_whole) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        UsageRecord u = record(7);
        sqlite3_stmt *st = NULL;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 100, &q));
        ASSERT_EQ(usage_queue_flush(q), 0);
        ASSERT_EQ(usage_queue_push(q, &u), 0);
        u.key_id = 0;
        u.ttfb = 99;
        u.outcome = USAGE_OUTCOME_CLIENT_CLOSED;
        USAGE_SET(&u, model_served, "");
        usage_set_client(&u, (const struct sockaddr *) &(struct sockaddr_in6) {
                .sin6_family = AF_INET6, .sin6_port = htobe16(443), .sin6_addr = IN6ADDR_LOOPBACK_INIT });
        ASSERT_EQ(usage_queue_push(q, &u), 0);
        u.client.sa.sa_family = AF_UNIX;
        ASSERT_EQ(usage_queue_push(q, &u), 0);
        usage_set_client(&u, NULL);
        ASSERT_EQ(usage_queue_push(q, &u), 0);
        ASSERT_EQ(usage_queue_depth(q), 4);
        ASSERT_EQ(usage_queue_flush(q), 4);
        ASSERT_EQ(usage_queue_depth(q), 0);
        ASSERT_EQ(usage_queue_written(q), 4);

        ASSERT_EQ(sqlite3_prepare_v2(f.store->db,
                                     "SELECT time, key_id, client, route, dialect_in, dialect_out, provider, "
                                     "model_requested, model_served, status, input_tokens, output_tokens, "
                                     "cache_read_tokens, cache_write_tokens, cost_nanousd, priced, ttfb_us, "
                                     "total_us, overhead_us, stream, bytes_in, bytes_out, outcome "
                                     "FROM usage ORDER BY id",
                                     -1, &st, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_int64(st, 0), 1700000000 * USEC_PER_SEC + 7);
        ASSERT_EQ(sqlite3_column_int64(st, 1), 2);
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 2), "127.0.0.1:5000");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 3), "/v1/chat/completions");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 4), "openai");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 5), "anthropic");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 6), "anthropic");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 7), "claude-x");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 8), "claude-x-2025");
        ASSERT_EQ(sqlite3_column_int(st, 9), 200);
        ASSERT_EQ(sqlite3_column_int64(st, 10), 7);
        ASSERT_EQ(sqlite3_column_int64(st, 11), 14);
        ASSERT_EQ(sqlite3_column_int64(st, 12), 3);
        ASSERT_EQ(sqlite3_column_int64(st, 13), 4);
        ASSERT_EQ(sqlite3_column_int64(st, 14), 7000);
        ASSERT_EQ(sqlite3_column_int(st, 15), 1);
        ASSERT_EQ(sqlite3_column_type(st, 16), SQLITE_NULL);      /* no first byte */
        ASSERT_EQ(sqlite3_column_int64(st, 17), 1234);
        ASSERT_EQ(sqlite3_column_int64(st, 18), 56);
        ASSERT_EQ(sqlite3_column_int(st, 19), 1);
        ASSERT_EQ(sqlite3_column_int64(st, 20), 100);
        ASSERT_EQ(sqlite3_column_int64(st, 21), 200);
        ASSERT_EQ(sqlite3_column_type(st, 22), SQLITE_NULL);      /* ended normally */
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_type(st, 1), SQLITE_NULL);       /* no key */
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 22), "client_closed");
        ASSERT_EQ(sqlite3_column_type(st, 8), SQLITE_NULL);
        ASSERT_EQ(sqlite3_column_int64(st, 16), 99);
        /* The address is formatted by the writer. */
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 2), "[::1]:443");
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 2), "unix");
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_type(st, 2), SQLITE_NULL);       /* no address known */
        ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);
        fixture_done(&f);
}

/* Rows go in 16 per statement while there are that many, then one by one: every row lands whole,
 * in order, with its own values (37 = 16 + 16 + 5). */
TEST(rows_in_multi_row_statements) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        sqlite3_stmt *st = NULL;
        uint64_t n = 0;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 100, &q));
        for (uint64_t i = 0; i < 37; i++) {
                UsageRecord u = record(i);
                u.key_id = i % 3 == 0 ? 0 : i;
                u.ttfb = i % 2 ? USEC_INFINITY : i;
                usage_set_client(&u, i % 5 == 0 ? NULL : (const struct sockaddr *) &(struct sockaddr_in) {
                        .sin_family = AF_INET, .sin_port = htobe16((uint16_t) (1000 + i)),
                        .sin_addr.s_addr = htobe32(0x7f000001) });
                ASSERT_EQ(usage_queue_push(q, &u), 0);
        }
        ASSERT_EQ(usage_queue_flush(q), 37);
        ASSERT_EQ(sqlite3_prepare_v2(f.store->db, "SELECT time, key_id, client, input_tokens, ttfb_us, cost_nanousd "
                                     "FROM usage ORDER BY id", -1, &st, NULL), SQLITE_OK);
        while (sqlite3_step(st) == SQLITE_ROW) {
                char client[32];

                ASSERT_EQ(sqlite3_column_int64(st, 0), 1700000000 * USEC_PER_SEC + n);
                if (n % 3 == 0)
                        ASSERT_EQ(sqlite3_column_type(st, 1), SQLITE_NULL);
                else
                        ASSERT_EQ(sqlite3_column_int64(st, 1), (int64_t) n);
                if (n % 5 == 0)
                        ASSERT_EQ(sqlite3_column_type(st, 2), SQLITE_NULL);
                else {
                        snprintf(client, sizeof client, "127.0.0.1:%u", (unsigned) (1000 + n));
                        ASSERT_STREQ((const char *) sqlite3_column_text(st, 2), client);
                }
                ASSERT_EQ(sqlite3_column_int64(st, 3), (int64_t) n);
                if (n % 2)
                        ASSERT_EQ(sqlite3_column_type(st, 4), SQLITE_NULL);
                else
                        ASSERT_EQ(sqlite3_column_int64(st, 4), (int64_t) n);
                ASSERT_EQ(sqlite3_column_int64(st, 5), (int64_t) (1000 * n));
                n++;
        }
        ASSERT_EQ(n, 37U);
        sqlite3_finalize(st);
        fixture_done(&f);
}

TEST(locked_database_drops_oldest_and_stays_flat) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        sqlite3 *other = NULL;
        size_t mem;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 1000, &q));
        sqlite3_busy_timeout(usage_queue_store(q)->db, 10);

        /* Another connection holds the database. */
        ASSERT_EQ(sqlite3_open(f.path, &other), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);

        for (uint64_t i = 0; i < 1000; i++)
                ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = i, .status = 200 }), 0);
        ASSERT_ERROR(usage_queue_flush(q), EBUSY);
        ASSERT_EQ(usage_queue_last_error(q), -EBUSY);
        mem = usage_queue_memory(q);
        ASSERT_TRUE(mem > 0);

        /* Ten times the queue more: the oldest go, counted, and memory does not grow. */
        for (uint64_t i = 1000; i < 11000; i++) {
                ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = i, .status = 200 }), 1);
                if (i % 1000 == 0)
                        ASSERT_ERROR(usage_queue_flush(q), EBUSY);
        }
        ASSERT_EQ(usage_queue_depth(q), 1000);
        ASSERT_EQ(usage_queue_drops(q), 10000);
        ASSERT_EQ(usage_queue_memory(q), mem);

        /* Released, the newest thousand are written. */
        ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(other);
        ASSERT_EQ(usage_queue_flush(q), 1000);
        ASSERT_EQ(usage_queue_last_error(q), 0);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 1000);
        ASSERT_EQ(query_int(f.store, "SELECT MIN(time) FROM usage"), 10000);
        ASSERT_EQ(query_int(f.store, "SELECT MAX(time) FROM usage"), 10999);
        /* In their order, though the ring had wrapped and the batch went back in front of it ten times. */
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage a JOIN usage b ON b.id = a.id + 1 "
                                     "WHERE b.time <> a.time + 1"), 0);
        /* Drained, the ring and its spare stay for the next second's rows (never more than two arrays of
         * max rows), until the writer has been quiet for a while and gives them back. */
        ASSERT_TRUE(usage_queue_memory(q) > 0);
        ASSERT_TRUE(usage_queue_memory(q) <= 2 * 1000 * sizeof(UsageRecord));
        usage_queue_release_memory(q);
        ASSERT_EQ(usage_queue_memory(q), 0);
        /* And the queue works on from nothing. */
        ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = 11000, .status = 200 }), 0);
        ASSERT_EQ(usage_queue_flush(q), 1);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 1001);
        fixture_done(&f);
}

TEST(read_only_and_full_database) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        sqlite3 *db;
        char big[USAGE_MODEL_MAX];

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 50, &q));
        db = usage_queue_store(q)->db;

        /* Read-only. */
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA query_only = 1", NULL, NULL, NULL), SQLITE_OK);
        for (uint64_t i = 0; i < 60; i++)
                (void) usage_queue_push(q, &(UsageRecord) { .time = i, .status = 200 });
        ASSERT_ERROR(usage_queue_flush(q), EACCES);
        ASSERT_EQ(usage_queue_drops(q), 10);
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA query_only = 0", NULL, NULL, NULL), SQLITE_OK);
        ASSERT_EQ(usage_queue_flush(q), 50);

        /* Full: the database may not grow beyond its present pages. */
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA max_page_count = 1", NULL, NULL, NULL), SQLITE_OK);
        memset(big, 'm', sizeof big - 1);
        big[sizeof big - 1] = 0;
        for (uint64_t i = 0; i < 200; i++) {
                UsageRecord u = { .time = i, .status = 200 };
                USAGE_SET(&u, model_requested, big);
                USAGE_SET(&u, model_served, big);
                (void) usage_queue_push(q, &u);
        }
        ASSERT_ERROR(usage_queue_flush(q), ENOSPC);
        ASSERT_EQ(usage_queue_depth(q), 50);
        ASSERT_EQ(usage_queue_drops(q), 10 + 150);
        /* The failed transaction left nothing behind. */
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 50);
        ASSERT_EQ(sqlite3_exec(db, "PRAGMA max_page_count = 1000000", NULL, NULL, NULL), SQLITE_OK);
        ASSERT_EQ(usage_queue_flush(q), 50);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 100);
        fixture_done(&f);
}

TEST(writer_thread_accounts_for_every_row) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        sqlite3 *other = NULL;
        uint64_t pushed = 0;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 500, &q));
        sqlite3_busy_timeout(usage_queue_store(q)->db, 30);
        ASSERT_OK(usage_queue_start(q, 5 * USEC_PER_MSEC));
        ASSERT_ERROR(usage_queue_start(q, 5 * USEC_PER_MSEC), EBUSY);

        /* Pushes while the writer runs, part of the time against a locked database. */
        ASSERT_EQ(sqlite3_open(f.path, &other), SQLITE_OK);
        sqlite3_busy_timeout(other, 5000);
        for (int round = 0; round < 40; round++) {
                if (round % 10 == 3)
                        ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
                if (round % 10 == 7)
                        ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
                for (int i = 0; i < 200; i++) {
                        UsageRecord u = record(pushed++);
                        (void) usage_queue_push(q, &u);
                }
                usleep(2000);
        }
        sqlite3_close(other);

        /* Everything pushed is written, dropped, or still queued; after a while nothing is queued. */
        for (int i = 0; i < 500 && usage_queue_depth(q) > 0; i++)
                usleep(10000);
        ASSERT_EQ(usage_queue_depth(q), 0);
        ASSERT_EQ(usage_queue_written(q) + usage_queue_drops(q), pushed);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), (int64_t) usage_queue_written(q));

        /* A clean stop writes what is left. */
        uint64_t written = usage_queue_written(q);
        UsageRecord u = record(1);
        usage_queue_configure(q, 500, 3600 * USEC_PER_SEC);
        ASSERT_OK(usage_queue_push(q, &u));
        q = usage_queue_free(q);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), (int64_t) written + 1);
        fixture_done(&f);
}

/* The writer thread, found by its name. */
static pid_t writer_tid(void) {
        DIR *d = opendir("/proc/self/task");
        struct dirent *de;
        pid_t tid = -ENOENT;

        if (!d)
                return -errno;
        while (tid < 0 && (de = readdir(d))) {
                char path[300], comm[32] = "";
                FILE *f;

                if (de->d_name[0] == '.')
                        continue;
                (void) snprintf(path, sizeof path, "/proc/self/task/%s/comm", de->d_name);
                f = fopen(path, "re");
                if (!f)
                        continue;
                if (fgets(comm, sizeof comm, f) && startswith(comm, "gate-usage"))
                        tid = (pid_t) atoi(de->d_name);
                fclose(f);
        }
        closedir(d);
        return tid;
}

TEST(writer_gives_way_unless_behind) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        sqlite3 *other = NULL;
        pid_t tid = -1;
        uint64_t t = 0;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 100, &q));
        sqlite3_busy_timeout(usage_queue_store(q)->db, 20000);
        ASSERT_OK(usage_queue_start(q, 3600 * USEC_PER_SEC));
        for (int i = 0; i < 5000 && tid < 0; i++) {
                tid = writer_tid();
                if (tid < 0 || sched_getscheduler(tid) != SCHED_IDLE) {
                        tid = -1;
                        usleep(1000);
                }
        }
        /* Idle class while it keeps up: the event loop preempts it at once. */
        ASSERT_TRUE(tid > 0);
        ASSERT_EQ(sched_getscheduler(tid), SCHED_IDLE);

        /* Half a queue kicks a flush before the interval; this one waits on a locked database. */
        ASSERT_EQ(sqlite3_open(f.path, &other), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
        while (t < 50)
                ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = t++ }), 0);
        for (int i = 0; i < 5000 && !usage_queue_flushing(q); i++)
                usleep(1000);
        ASSERT_TRUE(usage_queue_flushing(q));
        ASSERT_EQ(sched_getscheduler(tid), SCHED_IDLE);

        /* Half a queue more during that one flush: the writer is behind, and must not starve. */
        while (t < 99)
                ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = t++ }), 0);
        ASSERT_EQ(sched_getscheduler(tid), SCHED_IDLE);
        ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = t++ }), 0);
        ASSERT_EQ(sched_getscheduler(tid), SCHED_BATCH);

        /* The database free, the first batch is written; half a queue still waits: still behind. */
        ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(other);
        for (int i = 0; i < 20000 && usage_queue_written(q) < 50; i++)
                usleep(1000);
        ASSERT_EQ(usage_queue_written(q), 50);
        for (int i = 0; i < 5000 && usage_queue_flushing(q); i++)
                usleep(1000);
        ASSERT_EQ(sched_getscheduler(tid), SCHED_BATCH);

        /* Caught up: idle again. */
        ASSERT_EQ(usage_queue_flush(q), 50);
        ASSERT_EQ(sched_getscheduler(tid), SCHED_IDLE);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 100);
        fixture_done(&f);
}

TEST(configure_shrinks) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 100, &q));
        for (uint64_t i = 0; i < 100; i++)
                ASSERT_EQ(usage_queue_push(q, &(UsageRecord) { .time = i }), 0);
        usage_queue_configure(q, 10, 0);
        ASSERT_EQ(usage_queue_depth(q), 10);
        ASSERT_EQ(usage_queue_drops(q), 90);
        ASSERT_EQ(usage_queue_flush(q), 10);
        ASSERT_EQ(query_int(f.store, "SELECT MIN(time) FROM usage"), 90);
        fixture_done(&f);
}

TEST(memory_database) {
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        UsageRecord u = record(1);

        /* sqlite::memory: keeps nothing, and a private database accepts the rows. */
        ASSERT_OK(usage_queue_new(":memory:", 10, &q));
        ASSERT_OK(usage_queue_push(q, &u));
        ASSERT_EQ(usage_queue_flush(q), 1);
}

TEST(summaries) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        _cleanup_free_ char *key = NULL;
        UsageSummary *l = NULL;
        size_t n = 0;
        uint64_t spent;
        usec_t last;
        uint8_t secret[KEY_SECRET_SIZE] = {};

        ASSERT_OK(fixture_init(&f));
        KeySpec spec = { .name = "team", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_create(f.store, secret, &spec, NULL, &key));
        ASSERT_OK(usage_queue_new(f.path, 100, &q));

        for (uint64_t i = 0; i < 6; i++) {
                UsageRecord u = record(i);
                u.key_id = i < 4 ? 1 : 0;
                if (i == 3) {
                        u.status = 502;
                        u.priced = false;
                        u.outcome = USAGE_OUTCOME_UPSTREAM_ERROR;
                        USAGE_SET(&u, model_served, "");
                }
                /* A stream cut off: its status stays 200, only the outcome tells. */
                if (i == 2)
                        u.outcome = USAGE_OUTCOME_UPSTREAM_TIMEOUT;
                if (i == 4)
                        u.outcome = USAGE_OUTCOME_CLIENT_CLOSED;
                ASSERT_OK(usage_queue_push(q, &u));
        }
        ASSERT_EQ(usage_queue_flush(q), 6);

        ASSERT_OK(usage_spend(f.store, 1, 0, &spent));
        ASSERT_EQ(spent, 0 + 1000 + 2000 + 3000);
        ASSERT_OK(usage_spend(f.store, 1, 1700000000 * USEC_PER_SEC + 2, &spent));
        ASSERT_EQ(spent, 5000);
        ASSERT_OK(usage_last_used(f.store, 1, &last));
        ASSERT_EQ(last, 1700000000 * USEC_PER_SEC + 3);
        ASSERT_OK(usage_last_used(f.store, 2, &last));
        ASSERT_EQ(last, 0);

        ASSERT_OK(usage_summarize(f.store, 0, USAGE_ANY_KEY, &l, &n));
        /* Key 1: claude-x-2025 (3 rows) and claude-x (the failed one, by the requested model); no key. */
        ASSERT_EQ(n, 3);
        ASSERT_EQ(l[0].key_id, 1);
        ASSERT_STREQ(l[0].key_name, "team");
        ASSERT_STREQ(l[0].model, "claude-x");
        ASSERT_EQ(l[0].requests, 1);
        ASSERT_EQ(l[0].errors, 1);
        ASSERT_EQ(l[0].unpriced, 1);
        ASSERT_EQ(l[0].cost, 3000);
        ASSERT_EQ(l[0].outcomes[USAGE_OUTCOME_UPSTREAM_ERROR], 1);
        ASSERT_EQ(l[0].outcomes[USAGE_OUTCOME_COMPLETE], 0);
        ASSERT_EQ(usage_summary_incomplete(&l[0]), 1);
        ASSERT_STREQ(l[1].model, "claude-x-2025");
        ASSERT_EQ(l[1].requests, 3);
        ASSERT_EQ(l[1].input_tokens, 0 + 1 + 2);
        ASSERT_EQ(l[1].output_tokens, 2 * (0 + 1 + 2));
        ASSERT_EQ(l[1].cache_read_tokens, 9);
        ASSERT_EQ(l[1].cache_write_tokens, 12);
        ASSERT_EQ(l[1].errors, 0);
        ASSERT_EQ(l[1].outcomes[USAGE_OUTCOME_UPSTREAM_TIMEOUT], 1);
        ASSERT_EQ(l[1].outcomes[USAGE_OUTCOME_UPSTREAM_ERROR], 0);
        ASSERT_EQ(l[1].outcomes[USAGE_OUTCOME_COMPLETE], 2);
        ASSERT_EQ(usage_summary_incomplete(&l[1]), 1);
        ASSERT_EQ(l[2].key_id, 0);
        ASSERT_NULL(l[2].key_name);
        ASSERT_EQ(l[2].requests, 2);
        ASSERT_EQ(l[2].outcomes[USAGE_OUTCOME_CLIENT_CLOSED], 1);
        ASSERT_EQ(l[2].outcomes[USAGE_OUTCOME_SHUTDOWN], 0);
        ASSERT_EQ(l[2].outcomes[USAGE_OUTCOME_COMPLETE], 1);
        usage_summary_free_many(l, n);

        ASSERT_OK(usage_summarize(f.store, 0, 0, &l, &n));
        ASSERT_EQ(n, 1);
        ASSERT_EQ(l[0].key_id, 0);
        usage_summary_free_many(l, n);
        ASSERT_OK(usage_summarize(f.store, 1700000000 * USEC_PER_SEC + 5, 1, &l, &n));
        ASSERT_EQ(n, 0);
        usage_summary_free_many(l, n);
        fixture_done(&f);
}

#define DAY_USEC (24 * 3600 * USEC_PER_SEC)

static void push_at(UsageQueue *q, usec_t time, size_t n) {
        for (size_t i = 0; i < n; i++) {
                UsageRecord u = record(i);
                u.time = time + i;
                (void) usage_queue_push(q, &u);
        }
}

TEST(retention_deletes_old_rows_in_batches) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        usec_t now = 1750000000 * USEC_PER_SEC;
        sqlite3 *other = NULL;

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 5000, &q));
        push_at(q, now - 100 * DAY_USEC, 2500);
        push_at(q, now - 90 * DAY_USEC + USEC_PER_SEC, 7);     /* just inside 90 days */
        push_at(q, now - DAY_USEC, 3);
        ASSERT_EQ(usage_queue_flush(q), 2510);

        /* Without a retention nothing goes. */
        ASSERT_EQ(usage_queue_prune(q, now, 4), 0);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 2510);

        /* Batches of 1000, as many as asked for, the oldest first. */
        usage_queue_set_retention(q, 90 * DAY_USEC);
        ASSERT_EQ(usage_queue_prune(q, now, 1), 1000);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 1510);
        ASSERT_EQ(query_int(f.store, "SELECT MIN(time) FROM usage"),
                  (int64_t) (now - 100 * DAY_USEC) + 1000);
        ASSERT_EQ(usage_queue_prune(q, now, 4), 1500);
        ASSERT_EQ(usage_queue_prune(q, now, 4), 0);
        ASSERT_EQ(usage_queue_pruned(q), 2500);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 10);
        ASSERT_EQ(query_int(f.store, "SELECT MIN(time) FROM usage"),
                  (int64_t) (now - 90 * DAY_USEC + USEC_PER_SEC));

        /* A locked database: nothing deleted, an error, and the rows go at the next attempt. */
        push_at(q, now - 200 * DAY_USEC, 5);
        ASSERT_EQ(usage_queue_flush(q), 5);
        sqlite3_busy_timeout(usage_queue_store(q)->db, 10);
        ASSERT_EQ(sqlite3_open(f.path, &other), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", NULL, NULL, NULL), SQLITE_OK);
        ASSERT_ERROR(usage_queue_prune(q, now, 4), EBUSY);
        ASSERT_EQ(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(other);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 15);
        ASSERT_EQ(usage_queue_prune(q, now, 4), 5);

        /* Forever again. */
        push_at(q, now - 1000 * DAY_USEC, 5);
        ASSERT_EQ(usage_queue_flush(q), 5);
        usage_queue_set_retention(q, 0);
        ASSERT_EQ(usage_queue_prune(q, now, 4), 0);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 15);
        fixture_done(&f);
}

TEST(writer_thread_applies_retention_over_several_ticks) {
        Fixture f;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        usec_t now = now_usec(CLOCK_REALTIME);

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(usage_queue_new(f.path, 10000, &q));
        /* More than one tick's worth (4 batches of 1000): the backlog goes on at the next ticks. */
        push_at(q, now - 400 * DAY_USEC, 9500);
        push_at(q, now - 10 * DAY_USEC, 20);
        ASSERT_EQ(usage_queue_flush(q), 9520);
        usage_queue_set_retention(q, 31 * DAY_USEC);
        ASSERT_OK(usage_queue_start(q, 20 * USEC_PER_MSEC));
        for (int i = 0; i < 500 && usage_queue_pruned(q) < 9500; i++)
                usleep(10000);
        ASSERT_EQ(usage_queue_pruned(q), 9500);
        q = usage_queue_free(q);
        ASSERT_EQ(query_int(f.store, "SELECT COUNT(*) FROM usage"), 20);
        fixture_done(&f);
}

/* The real thing: a database on a 512 KiB tmpfs, mounted in a private mount namespace, that fills up.
 * Runs in a child; exits 77 when namespaces are not available. */
static int full_tmpfs_child(void) {
        Fixture f;
        UsageQueue *q = NULL;
        uint64_t pushed = 0;
        char mnt[] = "/tmp/test-usage-tmpfs-XXXXXX";
        int r;

        if (!mkdtemp(mnt))
                return 77;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("tmpfs", mnt, "tmpfs", 0, "size=512k") < 0) {
                rmdir(mnt);
                return 77;
        }
        if (fixture_init_in(&f, mnt) < 0)
                return 10;
        if (usage_queue_new(f.path, 2000, &q) < 0)
                return 11;

        /* Fill the disk until a write fails for want of space. */
        for (int round = 0;; round++) {
                for (int i = 0; i < 500; i++) {
                        UsageRecord u = record(pushed++);
                        memset(u.model_requested, 'x', sizeof u.model_requested - 1);
                        (void) usage_queue_push(q, &u);
                }
                r = usage_queue_flush(q);
                if (r == -ENOSPC)
                        break;
                if (r < 0 || round > 100)
                        return 12;
        }
        /* The disk stays full: pushes drop the oldest, memory is flat once the queue is full, nothing
         * crashes. */
        size_t mem = 0;
        for (int i = 0; i < 10000; i++) {
                UsageRecord u = record(pushed++);
                (void) usage_queue_push(q, &u);
                if (i % 1000 == 999 && usage_queue_flush(q) != -ENOSPC)
                        return 13;
                if (i == 3000)
                        mem = usage_queue_memory(q);
        }
        if (usage_queue_depth(q) != 2000 || usage_queue_memory(q) != mem)
                return 14;
        if (usage_queue_written(q) + usage_queue_drops(q) + usage_queue_depth(q) != pushed)
                return 15;
        /* The database is still readable and consistent. */
        if (query_int(f.store, "SELECT COUNT(*) FROM usage") != (int64_t) usage_queue_written(q))
                return 16;
        usage_queue_free(q);
        store_close(f.store);
        umount2(mnt, MNT_DETACH);
        rmdir(mnt);
        return 0;
}

TEST(full_tmpfs) {
        pid_t pid;
        int status;

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                _exit(full_tmpfs_child());
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        if (WEXITSTATUS(status) == 77) {
                printf("skip full_tmpfs: no mount namespace\n");
                return;
        }
        ASSERT_EQ(WEXITSTATUS(status), 0);
}
