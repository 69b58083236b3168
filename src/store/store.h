/* Store: the SQLite database in the state directory: open in WAL mode, schema migrations by user_version. */
#pragma once

#include <sqlite3.h>

#include "shared/macro.h"

typedef struct Store {
        sqlite3 *db;
        char *path;
        int schema_version;
} Store;

/* Opens (creating if needed) the database at path, switches to WAL, applies migrations. A file that
 * is not a database, or is corrupt, gives -EBADMSG and a message in *ret_error. A database written by a
 * newer gate (user_version above ours) gives -EPROTONOSUPPORT. */
int store_open(const char *path, Store **ret, char **ret_error);
Store *store_close(Store *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(Store *, store_close);

/* The schema version this build migrates to. */
int store_schema_version_latest(void);

/* Key/value metadata (node id, created-at, ...). */
int store_meta_get(Store *s, const char *key, char **ret);
int store_meta_set(Store *s, const char *key, const char *value);
