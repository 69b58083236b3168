/* Unit tests for the SQLite store: creation, WAL, migrations, metadata, bad files. */
#include <fcntl.h>
#include <stdio.h>

#include "store/store.h"
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
