/* Store: the SQLite database in the state directory: open in WAL mode, schema migrations by user_version. */
#include <stdio.h>

#include "shared/errors.h"
#include "shared/log.h"
#include "store/store.h"

/* Each entry moves the schema from version i to i+1. Later issues append; never edit a shipped one. */
static const char *const migrations[] = {
        /* 1: metadata about this node and database. */
        "CREATE TABLE meta ("
        "  key TEXT PRIMARY KEY NOT NULL,"
        "  value TEXT NOT NULL"
        ") STRICT;"
        "INSERT INTO meta (key, value) VALUES ('created_at', strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));",

        /* 2: gate's own API keys. Only a keyed hash of a key is kept; times are µs since the epoch. A name
         * is unique among active keys, so that a revoked key's name can be given to its successor. */
        "CREATE TABLE api_keys ("
        "  id INTEGER PRIMARY KEY,"
        "  name TEXT NOT NULL,"
        "  hash BLOB NOT NULL UNIQUE,"
        "  prefix TEXT NOT NULL,"
        "  models TEXT,"
        "  rpm INTEGER NOT NULL DEFAULT 0,"
        "  tpm INTEGER NOT NULL DEFAULT 0,"
        "  budget_nanousd INTEGER NOT NULL DEFAULT 0,"
        "  budget_period TEXT CHECK (budget_period IN ('day', 'month')),"
        "  expires_at INTEGER,"
        "  admin INTEGER NOT NULL DEFAULT 0,"
        "  created_at INTEGER NOT NULL,"
        "  revoked_at INTEGER"
        ") STRICT;"
        "CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;"
        "INSERT INTO meta (key, value) VALUES ('keys_generation', '0');",

        /* 3: one row per request. Token counts are normalised: input excludes cache reads and writes.
         * cost in nano-USD; priced = 0 when the price table did not know the model. */
        "CREATE TABLE usage ("
        "  id INTEGER PRIMARY KEY,"
        "  time INTEGER NOT NULL,"
        "  key_id INTEGER,"
        "  client TEXT,"
        "  route TEXT,"
        "  dialect_in TEXT,"
        "  dialect_out TEXT,"
        "  provider TEXT,"
        "  model_requested TEXT,"
        "  model_served TEXT,"
        "  status INTEGER NOT NULL,"
        "  input_tokens INTEGER NOT NULL DEFAULT 0,"
        "  output_tokens INTEGER NOT NULL DEFAULT 0,"
        "  cache_read_tokens INTEGER NOT NULL DEFAULT 0,"
        "  cache_write_tokens INTEGER NOT NULL DEFAULT 0,"
        "  cost_nanousd INTEGER NOT NULL DEFAULT 0,"
        "  priced INTEGER NOT NULL DEFAULT 0,"
        "  ttfb_us INTEGER,"
        "  total_us INTEGER,"
        "  overhead_us INTEGER,"
        "  stream INTEGER NOT NULL DEFAULT 0,"
        "  bytes_in INTEGER NOT NULL DEFAULT 0,"
        "  bytes_out INTEGER NOT NULL DEFAULT 0"
        ") STRICT;"
        "CREATE INDEX usage_time ON usage (time);"
        "CREATE INDEX usage_key_time ON usage (key_id, time);",

        /* 4: why a request did not end normally (store/usage.h, UsageOutcome): 'upstream_error',
         * 'upstream_timeout', 'client_closed', 'shutdown'; NULL when the answer went out whole. Older rows
         * get NULL, as nothing recorded how they ended. No CHECK on the words: adding one later would need
         * the whole table copied (SQLite cannot alter a constraint), and only gate writes rows. */
        "ALTER TABLE usage ADD COLUMN outcome TEXT;",
};

int store_schema_version_latest(void) {
        return (int) ELEMENTSOF(migrations);
}

static int store_exec(Store *s, const char *sql, char **ret_error) {
        char *msg = NULL;
        int k = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
        if (k != SQLITE_OK) {
                if (ret_error && asprintf(ret_error, "%s: %s", s->path, msg ? msg : sqlite3_errstr(k)) < 0)
                        *ret_error = NULL;
                sqlite3_free(msg);
                return errno_from_sqlite(k);
        }
        return 0;
}

static int store_user_version(Store *s, int *ret) {
        sqlite3_stmt *st = NULL;
        int k;

        k = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        k = sqlite3_step(st);
        if (k == SQLITE_ROW)
                *ret = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
        return k == SQLITE_ROW ? 0 : errno_from_sqlite(k);
}

static int store_migrate(Store *s, char **ret_error) {
        int version = 0, r;

        r = store_user_version(s, &version);
        if (r < 0) {
                if (ret_error && asprintf(ret_error, "%s: %s", s->path, sqlite3_errmsg(s->db)) < 0)
                        *ret_error = NULL;
                return r;
        }
        if (version > store_schema_version_latest()) {
                if (ret_error && asprintf(ret_error, "%s: schema version %i is newer than this gate knows (%i)",
                                          s->path, version, store_schema_version_latest()) < 0)
                        *ret_error = NULL;
                return -EPROTONOSUPPORT;
        }

        for (int v = version; v < store_schema_version_latest(); v++) {
                char sql[64];

                /* One transaction per step: a crash leaves the database at a whole version. */
                r = store_exec(s, "BEGIN IMMEDIATE", ret_error);
                if (r < 0)
                        return r;
                r = store_exec(s, migrations[v], ret_error);
                if (r >= 0) {
                        snprintf(sql, sizeof sql, "PRAGMA user_version = %i", v + 1);
                        r = store_exec(s, sql, ret_error);
                }
                if (r < 0) {
                        (void) store_exec(s, "ROLLBACK", NULL);
                        return r;
                }
                r = store_exec(s, "COMMIT", ret_error);
                if (r < 0)
                        return r;
                log_debug("Database %s migrated to schema version %i.", s->path, v + 1);
        }
        s->schema_version = store_schema_version_latest();
        return 0;
}

Store *store_close(Store *s) {
        if (!s)
                return NULL;
        if (s->db)
                sqlite3_close_v2(s->db);
        free(s->path);
        free(s);
        return NULL;
}

int store_open(const char *path, Store **ret, char **ret_error) {
        _cleanup_(store_closep) Store *s = NULL;
        int k, r;

        if (ret_error)
                *ret_error = NULL;
        s = new0(Store, 1);
        if (!s)
                return -ENOMEM;
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;

        k = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
        if (k != SQLITE_OK) {
                if (ret_error && asprintf(ret_error, "%s: %s", path,
                                          s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(k)) < 0)
                        *ret_error = NULL;
                return errno_from_sqlite(k);
        }
        (void) sqlite3_extended_result_codes(s->db, 1);
        /* Writers are batched off the request path; a short busy wait covers a CLI writing meanwhile. */
        (void) sqlite3_busy_timeout(s->db, 2000);

        /* journal_mode is the first statement that reads the file: a non-database fails here. */
        r = store_exec(s, "PRAGMA journal_mode = WAL", ret_error);
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", ret_error);
        if (r < 0)
                return r;
        r = store_exec(s, "PRAGMA quick_check", ret_error);
        if (r < 0)
                return r;
        r = store_migrate(s, ret_error);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(s);
        return 0;
}

int store_meta_get(Store *s, const char *key, char **ret) {
        sqlite3_stmt *st = NULL;
        int k, r = -ENOENT;

        k = sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        k = sqlite3_step(st);
        if (k == SQLITE_ROW) {
                char *v = strdup((const char *) sqlite3_column_text(st, 0));
                r = v ? 0 : -ENOMEM;
                if (v)
                        *ret = v;
        } else if (k != SQLITE_DONE)
                r = errno_from_sqlite(k);
        sqlite3_finalize(st);
        return r;
}

int store_meta_set(Store *s, const char *key, const char *value) {
        sqlite3_stmt *st = NULL;
        int k;

        k = sqlite3_prepare_v2(s->db, "INSERT INTO meta (key, value) VALUES (?, ?) "
                                      "ON CONFLICT(key) DO UPDATE SET value = excluded.value", -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        k = sqlite3_step(st);
        sqlite3_finalize(st);
        return k == SQLITE_DONE ? 0 : errno_from_sqlite(k);
}
