/* Unit tests for the SQLite store: creation, WAL, migrations, metadata, bad files. */
#include <fcntl.h>
#include <stdio.h>

#include "store/store.h"
#include "store/usage.h"
#include "tests.h"

static char *tmpdir(void) {
        char t[] = "/tmp/gate-store-XXXXXX";
        return strdup(mkdtemp(t));
}

TEST(open_creates_and_migrates) {
        _cleanup_free_ char *d = tmpdir(), *path = NULL, *v = NULL;
        Store *s = NULL;
        char *error = NULL;

        ASSERT_TRUE(asprintf(&path, "%s/gate.db", d) > 0);
        ASSERT_OK(store_open(path, &s, &error));
        ASSERT_EQ(s->schema_version, store_schema_version_latest());
        ASSERT_OK(store_meta_get(s, "created_at", &v));
        ASSERT_TRUE(strlen(v) == 20);
        ASSERT_OK(store_meta_set(s, "node", "abc"));
        ASSERT_ERROR(store_meta_get(s, "nope", &v), ENOENT);
        store_close(s);

        /* Reopening is idempotent and keeps data. */
        ASSERT_OK(store_open(path, &s, &error));
        free(v);
        v = NULL;
        ASSERT_OK(store_meta_get(s, "node", &v));
        ASSERT_STREQ(v, "abc");
        store_close(s);
}

TEST(not_a_database) {
        _cleanup_free_ char *d = tmpdir(), *path = NULL, *error = NULL;
        Store *s = NULL;
        FILE *f;

        ASSERT_TRUE(asprintf(&path, "%s/gate.db", d) > 0);
        f = fopen(path, "w");
        for (int i = 0; i < 200; i++)
                fputs("definitely not sqlite ", f);
        fclose(f);
        ASSERT_ERROR(store_open(path, &s, &error), EBADMSG);
        ASSERT_NOT_NULL(error);
        ASSERT_CONTAINS(error, path);
}

TEST(newer_schema_refused) {
        _cleanup_free_ char *d = tmpdir(), *path = NULL, *error = NULL;
        Store *s = NULL;
        char cmd[512];

        ASSERT_TRUE(asprintf(&path, "%s/gate.db", d) > 0);
        ASSERT_OK(store_open(path, &s, &error));
        ASSERT_OK(sqlite3_exec(s->db, "PRAGMA user_version = 999", NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO);
        store_close(s);
        ASSERT_ERROR(store_open(path, &s, &error), EPROTONOSUPPORT);
        ASSERT_CONTAINS(error, "999");
        snprintf(cmd, sizeof cmd, "rm -rf %s", d);
        (void) !system(cmd);
}

TEST(unwritable_directory) {
        Store *s = NULL;
        _cleanup_free_ char *error = NULL;
        ASSERT_TRUE(store_open("/nonexistent-dir/gate.db", &s, &error) < 0);
        ASSERT_NOT_NULL(error);
}

/* A database as gate made it at schema version 3 (the statements of migrations 1-3 as shipped), with
 * a key and two usage rows. */
static const char v3_database[] =
        "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;"
        "INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));"
        "CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL, hash BLOB NOT NULL UNIQUE,"
        "  prefix TEXT NOT NULL, models TEXT, rpm INTEGER NOT NULL DEFAULT 0, tpm INTEGER NOT NULL DEFAULT 0,"
        "  budget_nanousd INTEGER NOT NULL DEFAULT 0,"
        "  budget_period TEXT CHECK (budget_period IN ('day', 'month')), expires_at INTEGER,"
        "  admin INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, revoked_at INTEGER) STRICT;"
        "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;"
        "INSERT INTO meta (key, value) VALUES ('keys_generation', '0');"
        "CREATE TABLE usage (id INTEGER PRIMARY KEY, time INTEGER NOT NULL, key_id INTEGER, client TEXT,"
        "  route TEXT, dialect_in TEXT, dialect_out TEXT, provider TEXT, model_requested TEXT,"
        "  model_served TEXT, status INTEGER NOT NULL, input_tokens INTEGER NOT NULL DEFAULT 0,"
        "  output_tokens INTEGER NOT NULL DEFAULT 0, cache_read_tokens INTEGER NOT NULL DEFAULT 0,"
        "  cache_write_tokens INTEGER NOT NULL DEFAULT 0, cost_nanousd INTEGER NOT NULL DEFAULT 0,"
        "  priced INTEGER NOT NULL DEFAULT 0, ttfb_us INTEGER, total_us INTEGER, overhead_us INTEGER,"
        "  stream INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,"
        "  bytes_out INTEGER NOT NULL DEFAULT 0) STRICT;"
        "CREATE INDEX usage_time ON usage (time);"
        "CREATE INDEX usage_key_time ON usage (key_id, time);"
        "INSERT INTO api_keys (name, hash, prefix, created_at) VALUES ('old', x'0102', 'gk-old', 1);"
        "INSERT INTO usage (time, key_id, provider, model_requested, model_served, status, input_tokens,"
        "  output_tokens, cost_nanousd, priced, stream, bytes_out) VALUES"
        "  (1700000000000000, 1, 'mock', 'gpt-x', 'gpt-x-1', 200, 11, 22, 3300, 1, 1, 640),"
        "  (1700000001000000, NULL, 'mock', 'gpt-x', NULL, 502, 0, 0, 0, 0, 0, 0);"
        "PRAGMA user_version = 3;";

TEST(version_3_database_is_migrated_with_rows_intact) {
        _cleanup_free_ char *d = tmpdir(), *path = NULL, *error = NULL;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        UsageSummary *l = NULL;
        sqlite3_stmt *st = NULL;
        sqlite3 *db = NULL;
        Store *s = NULL;
        size_t n = 0;
        char cmd[512];

        ASSERT_TRUE(asprintf(&path, "%s/gate.db", d) > 0);
        ASSERT_EQ(sqlite3_open(path, &db), SQLITE_OK);
        ASSERT_EQ(sqlite3_exec(db, v3_database, NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);

        ASSERT_OK(store_open(path, &s, &error));
        ASSERT_EQ(s->schema_version, 4);
        ASSERT_EQ(sqlite3_prepare_v2(s->db, "SELECT time, key_id, provider, model_served, status, input_tokens, "
                                            "output_tokens, cost_nanousd, bytes_out, outcome FROM usage ORDER BY id",
                                     -1, &st, NULL), SQLITE_OK);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_int64(st, 0), 1700000000000000);
        ASSERT_EQ(sqlite3_column_int64(st, 1), 1);
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 2), "mock");
        ASSERT_STREQ((const char *) sqlite3_column_text(st, 3), "gpt-x-1");
        ASSERT_EQ(sqlite3_column_int(st, 4), 200);
        ASSERT_EQ(sqlite3_column_int64(st, 5), 11);
        ASSERT_EQ(sqlite3_column_int64(st, 6), 22);
        ASSERT_EQ(sqlite3_column_int64(st, 7), 3300);
        ASSERT_EQ(sqlite3_column_int64(st, 8), 640);
        /* Nothing recorded how old rows ended: NULL, as for a complete answer. */
        ASSERT_EQ(sqlite3_column_type(st, 9), SQLITE_NULL);
        ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
        ASSERT_EQ(sqlite3_column_int(st, 4), 502);
        ASSERT_EQ(sqlite3_column_type(st, 9), SQLITE_NULL);
        ASSERT_EQ(sqlite3_step(st), SQLITE_DONE);
        sqlite3_finalize(st);

        /* New rows with an outcome go in beside them, and the summary counts both kinds. */
        ASSERT_OK(usage_queue_new(path, 10, &q));
        UsageRecord u = { .time = 1700000002000000, .status = 200, .stream = true,
                          .outcome = USAGE_OUTCOME_UPSTREAM_ERROR, .ttfb = USEC_INFINITY };
        USAGE_SET(&u, provider, "mock");
        USAGE_SET(&u, model_requested, "gpt-x");
        USAGE_SET(&u, model_served, "gpt-x-1");
        ASSERT_OK(usage_queue_push(q, &u));
        ASSERT_EQ(usage_queue_flush(q), 1);
        ASSERT_OK(usage_summarize(s, 0, USAGE_ANY_KEY, &l, &n));
        ASSERT_EQ(n, 3);                /* key 1 gpt-x-1; no key: gpt-x (the 502) and gpt-x-1 (the new row) */
        ASSERT_EQ(l[0].key_id, 1);
        ASSERT_STREQ(l[0].key_name, "old");
        ASSERT_EQ(l[0].requests, 1);
        ASSERT_EQ(l[0].outcomes[USAGE_OUTCOME_COMPLETE], 1);
        ASSERT_EQ(usage_summary_incomplete(&l[0]), 0);
        ASSERT_EQ(l[0].input_tokens, 11);
        uint64_t incomplete = 0, errors = 0;
        for (size_t i = 1; i < n; i++) {
                incomplete += l[i].outcomes[USAGE_OUTCOME_UPSTREAM_ERROR];
                errors += l[i].errors;
        }
        ASSERT_EQ(incomplete, 1);
        ASSERT_EQ(errors, 1);
        usage_summary_free_many(l, n);
        q = usage_queue_free(q);
        store_close(s);

        /* Opening again finds it at the latest version: nothing to do. */
        ASSERT_OK(store_open(path, &s, &error));
        ASSERT_EQ(s->schema_version, store_schema_version_latest());
        store_close(s);
        snprintf(cmd, sizeof cmd, "rm -rf %s", d);
        (void) !system(cmd);
}
