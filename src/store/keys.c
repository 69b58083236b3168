/* Keys: gate's own API keys, stored as keyed hashes, and their constant-time verification from memory. */
#include <fcntl.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "proxy/provider.h"
#include "shared/errors.h"
#include "shared/log.h"
#include "shared/util.h"
#include "store/keys.h"

static const char *const budget_period_table[_BUDGET_PERIOD_MAX] = {
        [BUDGET_PERIOD_DAY] = "day",
        [BUDGET_PERIOD_MONTH] = "month",
};

const char *budget_period_to_string(BudgetPeriod p) {
        if (p < 0 || p >= _BUDGET_PERIOD_MAX)
                return NULL;
        return budget_period_table[p];
}

BudgetPeriod budget_period_from_string(const char *s) {
        if (!s)
                return _BUDGET_PERIOD_INVALID;
        for (BudgetPeriod p = 0; p < _BUDGET_PERIOD_MAX; p++)
                if (streq(s, budget_period_table[p]))
                        return p;
        return _BUDGET_PERIOD_INVALID;
}

int budget_period_bounds(BudgetPeriod p, usec_t now, usec_t *ret_start, usec_t *ret_end) {
        time_t t = (time_t) (now / USEC_PER_SEC), start, end;
        struct tm tm;

        if (p < 0 || p >= _BUDGET_PERIOD_MAX)
                return -EINVAL;
        if (!gmtime_r(&t, &tm))
                return -EOVERFLOW;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_isdst = 0;
        if (p == BUDGET_PERIOD_MONTH)
                tm.tm_mday = 1;
        start = timegm(&tm);
        /* timegm() normalises the day or month past its end: the 32nd of a month is the next one's 1st. */
        if (p == BUDGET_PERIOD_MONTH)
                tm.tm_mon++;
        else
                tm.tm_mday++;
        end = timegm(&tm);
        if (start < 0 || end <= start)
                return -EOVERFLOW;
        if (ret_start)
                *ret_start = (usec_t) start * USEC_PER_SEC;
        if (ret_end)
                *ret_end = (usec_t) end * USEC_PER_SEC;
        return 0;
}

/* ---- KeyInfo ---- */

KeyInfo *key_info_ref(KeyInfo *k) {
        if (k)
                k->n_ref++;
        return k;
}

KeyInfo *key_info_unref(KeyInfo *k) {
        if (!k || --k->n_ref > 0)
                return NULL;
        free(k->name);
        strv_free(k->models);
        free(k);
        return NULL;
}

void key_info_unref_many(KeyInfo **l, size_t n) {
        for (size_t i = 0; l && i < n; i++)
                key_info_unref(l[i]);
        free(l);
}

bool key_info_allows_model(const KeyInfo *k, const char *model) {
        if (!k || !k->models || !k->models[0])
                return true;
        if (!model)
                return false;
        for (char **p = k->models; *p; p++)
                if (model_pattern_match(*p, model))
                        return true;
        return false;
}

bool key_name_is_valid(const char *name) {
        size_t n;
        bool digits = true;

        if (isempty(name))
                return false;
        n = strlen(name);
        if (n > KEY_NAME_MAX || name[0] == ' ' || name[n - 1] == ' ')
                return false;
        for (const char *p = name; *p; p++) {
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        return false;
                if (*p < '0' || *p > '9')
                        digits = false;
        }
        /* An all-digit name could not be told from an ID on the command line. */
        return !digits;
}

bool key_pattern_is_valid(const char *pattern) {
        if (isempty(pattern) || strlen(pattern) > KEY_PATTERN_MAX)
                return false;
        for (const char *p = pattern; *p; p++)
                if ((unsigned char) *p <= 0x20 || *p == 0x7f || *p == ',' || *p == ';')
                        return false;
        return true;
}

/* ---- the secret ---- */

static int key_secret_create(const char *state_dir, const char *path) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
        uint8_t secret[KEY_SECRET_SIZE];
        struct stat st;
        ssize_t n;
        int r = 0;

        if (asprintf(&tmp, "%s/." KEY_SECRET_FILE ".XXXXXX", state_dir) < 0)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fchmod(fd, 0600) < 0)
                r = -errno;

        randombytes_buf(secret, sizeof secret);
        if (r >= 0) {
                n = write(fd, secret, sizeof secret);
                if (n != (ssize_t) sizeof secret)
                        r = n < 0 ? -errno : -EIO;
        }
        sodium_memzero(secret, sizeof secret);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;

        /* `gate keys create` run as root must not leave a secret the service user cannot read. */
        if (r >= 0 && geteuid() == 0 && stat(state_dir, &st) >= 0 && st.st_uid != 0 &&
            fchown(fd, st.st_uid, st.st_gid) < 0)
                r = -errno;

        /* link() fails if another process created the file meanwhile: then both use theirs. */
        if (r >= 0 && link(tmp, path) < 0)
                r = -errno;
        (void) unlink(tmp);
        if (r < 0)
                return r;

        dfd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0)
                (void) fsync(dfd);
        log_debug("Created the key secret %s.", path);
        return 0;
}

int key_secret_load(const char *state_dir, bool create, uint8_t ret[KEY_SECRET_SIZE]) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint8_t buf[KEY_SECRET_SIZE + 1];
        struct stat st;
        size_t got = 0;
        int r;

        if (isempty(state_dir))
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        if (asprintf(&path, "%s/" KEY_SECRET_FILE, state_dir) < 0)
                return -ENOMEM;

        for (unsigned attempt = 0;; attempt++) {
                fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
                if (fd >= 0)
                        break;
                if (errno != ENOENT || !create || attempt > 0)
                        return -errno;
                r = key_secret_create(state_dir, path);
                if (r < 0 && r != -EEXIST)
                        return r;
        }

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) || st.st_size != KEY_SECRET_SIZE)
                return -EBADMSG;
        while (got < sizeof buf) {
                ssize_t n = read(fd, buf + got, sizeof buf - got);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        sodium_memzero(buf, sizeof buf);
                        return r;
                }
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        if (got != KEY_SECRET_SIZE) {
                sodium_memzero(buf, sizeof buf);
                return -EBADMSG;
        }
        memcpy(ret, buf, KEY_SECRET_SIZE);
        sodium_memzero(buf, sizeof buf);
        return 0;
}

void key_hash(const uint8_t secret[KEY_SECRET_SIZE], const char *key, size_t len, uint8_t ret[KEY_HASH_SIZE]) {
        crypto_generichash(ret, KEY_HASH_SIZE, (const unsigned char *) key, len, secret, KEY_SECRET_SIZE);
}

/* ---- the database ---- */

#define KEY_COLUMNS                                                                     \
        "id, name, hash, prefix, models, rpm, tpm, budget_nanousd, budget_period, "     \
        "expires_at, admin, created_at, revoked_at"

static void sqlite3_finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}

static int exec_sql(Store *s, const char *sql) {
        int k = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return k == SQLITE_OK ? 0 : errno_from_sqlite(k);
}

static int split_models(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        int r;

        if (isempty(s)) {
                *ret = NULL;
                return 0;
        }
        while (*s) {
                size_t k = strcspn(s, " ");
                if (k > 0) {
                        _cleanup_free_ char *p = strndup(s, k);
                        if (!p)
                                return -ENOMEM;
                        r = strv_extend(&l, &n, p);
                        if (r < 0)
                                return r;
                }
                s += k;
                s += strspn(s, " ");
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int key_info_from_row(sqlite3_stmt *st, KeyInfo **ret) {
        _cleanup_(key_info_unrefp) KeyInfo *k = NULL;
        const void *hash;
        const char *s;
        int r;

        k = new0(KeyInfo, 1);
        if (!k)
                return -ENOMEM;
        k->n_ref = 1;
        k->id = (uint64_t) sqlite3_column_int64(st, 0);
        k->name = strdup((const char *) sqlite3_column_text(st, 1) ?: "");
        if (!k->name)
                return -ENOMEM;
        hash = sqlite3_column_blob(st, 2);
        if (!hash || sqlite3_column_bytes(st, 2) != KEY_HASH_SIZE)
                return -EBADMSG;
        memcpy(k->hash, hash, KEY_HASH_SIZE);
        s = (const char *) sqlite3_column_text(st, 3);
        snprintf(k->prefix, sizeof k->prefix, "%s", s ?: "");
        r = split_models((const char *) sqlite3_column_text(st, 4), &k->models);
        if (r < 0)
                return r;
        k->rpm = (uint32_t) MIN(MAX(sqlite3_column_int64(st, 5), 0), (int64_t) UINT32_MAX);
        k->tpm = (uint32_t) MIN(MAX(sqlite3_column_int64(st, 6), 0), (int64_t) UINT32_MAX);
        k->budget = (uint64_t) MAX(sqlite3_column_int64(st, 7), 0);
        k->period = budget_period_from_string((const char *) sqlite3_column_text(st, 8));
        if (k->period < 0)
                k->budget = 0;
        k->expires_at = (usec_t) MAX(sqlite3_column_int64(st, 9), 0);
        k->admin = sqlite3_column_int(st, 10) != 0;
        k->created_at = (usec_t) MAX(sqlite3_column_int64(st, 11), 0);
        k->revoked_at = (usec_t) MAX(sqlite3_column_int64(st, 12), 0);
        *ret = TAKE_PTR(k);
        return 0;
}

/* Commits a transaction that changed api_keys. The keys generation goes up inside it, so that a running
 * daemon sees a new generation exactly when the keys it holds changed. On failure the caller rolls back. */
static int keys_commit(Store *s) {
        int r;

        r = exec_sql(s, "INSERT INTO meta (key, value) VALUES ('keys_generation', '1') "
                        "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)");
        if (r < 0)
                return r;
        return exec_sql(s, "COMMIT");
}

static char *strv_join_space(char **l) {
        size_t n = 0;
        char *s, *p;

        for (char **i = l; i && *i; i++)
                n += strlen(*i) + 1;
        s = malloc(n + 1);
        if (!s)
                return NULL;
        p = s;
        *p = 0;
        for (char **i = l; i && *i; i++)
                p = stpcpy(stpcpy(p, i == l ? "" : " "), *i);
        return s;
}

/* Binds a key's limit columns, which INSERT and UPDATE write alike: models, rpm, tpm, budget_nanousd,
 * budget_period, expires_at and admin, in this order from parameter first. models is the joined list or
 * NULL (every model); it is bound without a copy, so it must outlive the statement's step. Without a
 * budget the period is NULL, and so is expires_at for a key that never expires. */
static void bind_key_limits(sqlite3_stmt *st, int first, const char *models, uint32_t rpm, uint32_t tpm,
                            uint64_t budget, BudgetPeriod period, usec_t expires_at, bool admin) {
        if (models)
                sqlite3_bind_text(st, first, models, -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, first);
        sqlite3_bind_int64(st, first + 1, rpm);
        sqlite3_bind_int64(st, first + 2, tpm);
        sqlite3_bind_int64(st, first + 3, (int64_t) budget);
        if (budget > 0)
                sqlite3_bind_text(st, first + 4, budget_period_to_string(period), -1, SQLITE_STATIC);
        else
                sqlite3_bind_null(st, first + 4);
        if (expires_at > 0)
                sqlite3_bind_int64(st, first + 5, (int64_t) expires_at);
        else
                sqlite3_bind_null(st, first + 5);
        sqlite3_bind_int(st, first + 6, admin);
}

int keys_create(Store *s, const uint8_t secret[KEY_SECRET_SIZE], const KeySpec *spec, KeyInfo **ret_info,
                char **ret_key) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_free_ char *models = NULL, *key = NULL;
        uint8_t random[KEY_RANDOM_BYTES], hash[KEY_HASH_SIZE];
        char prefix[KEY_SHOWN_PREFIX_LEN + 1];
        int64_t id;
        int k, r;

        if (!s || !secret || !spec || !ret_key)
                return -EINVAL;
        if (!key_name_is_valid(spec->name))
                return -EINVAL;
        for (char **p = spec->models; p && *p; p++)
                if (!key_pattern_is_valid(*p))
                        return -EINVAL;
        if ((spec->budget > 0) != (spec->period >= 0 && spec->period < _BUDGET_PERIOD_MAX))
                return -EINVAL;
        if (spec->budget > INT64_MAX || spec->expires_at > INT64_MAX)
                return -ERANGE;
        if (sodium_init() < 0)
                return -EIO;

        if (spec->models && spec->models[0]) {
                models = strv_join_space(spec->models);
                if (!models)
                        return -ENOMEM;
        }

        key = malloc(KEY_TEXT_LEN + 1);
        if (!key)
                return -ENOMEM;
        randombytes_buf(random, sizeof random);
        memcpy(key, KEY_PREFIX, STRLEN(KEY_PREFIX));
        sodium_bin2base64(key + STRLEN(KEY_PREFIX), KEY_TEXT_LEN + 1 - STRLEN(KEY_PREFIX), random, sizeof random,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(random, sizeof random);
        key_hash(secret, key, KEY_TEXT_LEN, hash);
        memcpy(prefix, key + STRLEN(KEY_PREFIX), KEY_SHOWN_PREFIX_LEN);
        prefix[KEY_SHOWN_PREFIX_LEN] = 0;

        r = exec_sql(s, "BEGIN IMMEDIATE");
        if (r < 0)
                goto fail;
        k = sqlite3_prepare_v2(s->db,
                               "INSERT INTO api_keys (name, hash, prefix, models, rpm, tpm, budget_nanousd, "
                               "budget_period, expires_at, admin, created_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", -1, &st, NULL);
        if (k != SQLITE_OK) {
                r = errno_from_sqlite(k);
                goto rollback;
        }
        sqlite3_bind_text(st, 1, spec->name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, hash, sizeof hash, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
        bind_key_limits(st, 4, models, spec->rpm, spec->tpm, spec->budget, spec->period, spec->expires_at,
                        spec->admin);
        sqlite3_bind_int64(st, 11, (int64_t) now_usec(CLOCK_REALTIME));
        k = sqlite3_step(st);
        if (k != SQLITE_DONE) {
                r = errno_from_sqlite(k);       /* the active-name index: -EEXIST */
                goto rollback;
        }
        id = sqlite3_last_insert_rowid(s->db);
        r = keys_commit(s);
        if (r < 0)
                goto rollback;

        log_debug("Created key %" PRIi64 " \"%s\" (gk-%s...).", id, spec->name, prefix);
        if (ret_info) {
                char idbuf[32];

                snprintf(idbuf, sizeof idbuf, "%" PRIi64, id);
                r = keys_find(s, idbuf, ret_info);
                if (r < 0)
                        goto fail;
        }
        *ret_key = TAKE_PTR(key);
        return 0;

rollback:
        (void) exec_sql(s, "ROLLBACK");
fail:
        if (key)
                sodium_memzero(key, KEY_TEXT_LEN);
        return r;
}

static int keys_find_by_id(Store *s, uint64_t id, KeyInfo **ret) {
        char buf[32];

        snprintf(buf, sizeof buf, "%" PRIu64, id);
        return keys_find(s, buf, ret);
}

int keys_update(Store *s, uint64_t id, const KeySpec *spec, unsigned fields, KeyInfo **ret_info) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *k = NULL;
        _cleanup_free_ char *models = NULL;
        int r;

        if (!s || !spec || id == 0 || id > INT64_MAX)
                return -EINVAL;
        if ((fields & KEY_FIELD_NAME) && !key_name_is_valid(spec->name))
                return -EINVAL;
        if (fields & KEY_FIELD_MODELS)
                for (char **p = spec->models; p && *p; p++)
                        if (!key_pattern_is_valid(*p))
                                return -EINVAL;
        if ((fields & KEY_FIELD_PERIOD) && (spec->period < 0 || spec->period >= _BUDGET_PERIOD_MAX))
                return -EINVAL;
        if (spec->budget > INT64_MAX || spec->expires_at > INT64_MAX)
                return -ERANGE;

        /* Read, merge and write in one transaction: a concurrent update cannot slip in between. */
        r = exec_sql(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = keys_find_by_id(s, id, &k);
        if (r < 0)
                goto rollback;
        if (k->revoked_at > 0) {
                r = -EKEYREVOKED;
                goto rollback;
        }

        if (fields & KEY_FIELD_NAME) {
                char *n = strdup(spec->name);
                if (!n) {
                        r = -ENOMEM;
                        goto rollback;
                }
                free(k->name);
                k->name = n;
        }
        if (fields & KEY_FIELD_MODELS) {
                size_t n = 0;

                strv_free(k->models);
                k->models = NULL;
                for (char **p = spec->models; p && *p; p++) {
                        r = strv_extend(&k->models, &n, *p);
                        if (r < 0)
                                goto rollback;
                }
        }
        if (fields & KEY_FIELD_RPM)
                k->rpm = spec->rpm;
        if (fields & KEY_FIELD_TPM)
                k->tpm = spec->tpm;
        if (fields & KEY_FIELD_BUDGET)
                k->budget = spec->budget;
        if (fields & KEY_FIELD_PERIOD)
                k->period = spec->period;
        if (k->budget == 0)
                k->period = _BUDGET_PERIOD_INVALID;
        else if (k->period < 0 || k->period >= _BUDGET_PERIOD_MAX) {
                r = -EINVAL;
                goto rollback;
        }
        if (fields & KEY_FIELD_EXPIRES)
                k->expires_at = spec->expires_at;
        if (fields & KEY_FIELD_ADMIN)
                k->admin = spec->admin;

        if (k->models && k->models[0]) {
                models = strv_join_space(k->models);
                if (!models) {
                        r = -ENOMEM;
                        goto rollback;
                }
        }
        r = sqlite3_prepare_v2(s->db,
                               "UPDATE api_keys SET name = ?, models = ?, rpm = ?, tpm = ?, budget_nanousd = ?, "
                               "budget_period = ?, expires_at = ?, admin = ? WHERE id = ?", -1, &st, NULL);
        if (r != SQLITE_OK) {
                r = errno_from_sqlite(r);
                goto rollback;
        }
        sqlite3_bind_text(st, 1, k->name, -1, SQLITE_STATIC);
        bind_key_limits(st, 2, models, k->rpm, k->tpm, k->budget, k->period, k->expires_at, k->admin);
        sqlite3_bind_int64(st, 9, (int64_t) id);
        r = sqlite3_step(st);
        if (r != SQLITE_DONE) {
                r = errno_from_sqlite(r);       /* the active-name index: -EEXIST */
                goto rollback;
        }
        r = keys_commit(s);
        if (r < 0)
                goto rollback;

        log_debug("Updated key %" PRIu64 " \"%s\".", id, k->name);
        if (ret_info)
                *ret_info = TAKE_PTR(k);
        return 0;

rollback:
        (void) exec_sql(s, "ROLLBACK");
        return r;
}

int keys_revoke(Store *s, uint64_t id) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL, *q = NULL;
        int k, r;

        if (!s || id == 0 || id > INT64_MAX)
                return -ENOENT;
        r = exec_sql(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        k = sqlite3_prepare_v2(s->db, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               -1, &st, NULL);
        if (k != SQLITE_OK) {
                r = errno_from_sqlite(k);
                goto rollback;
        }
        sqlite3_bind_int64(st, 1, (int64_t) now_usec(CLOCK_REALTIME));
        sqlite3_bind_int64(st, 2, (int64_t) id);
        k = sqlite3_step(st);
        if (k != SQLITE_DONE) {
                r = errno_from_sqlite(k);
                goto rollback;
        }
        if (sqlite3_changes(s->db) == 0) {
                k = sqlite3_prepare_v2(s->db, "SELECT 1 FROM api_keys WHERE id = ?", -1, &q, NULL);
                if (k != SQLITE_OK) {
                        r = errno_from_sqlite(k);
                        goto rollback;
                }
                sqlite3_bind_int64(q, 1, (int64_t) id);
                k = sqlite3_step(q);
                r = k == SQLITE_ROW ? -EALREADY : k == SQLITE_DONE ? -ENOENT : errno_from_sqlite(k);
                goto rollback;
        }
        r = keys_commit(s);
        if (r < 0)
                goto rollback;
        log_debug("Revoked key %" PRIu64 ".", id);
        return 0;

rollback:
        (void) exec_sql(s, "ROLLBACK");
        return r;
}

static bool is_id(const char *s) {
        if (isempty(s) || strlen(s) > 19)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

int keys_find(Store *s, const char *id_or_name, KeyInfo **ret) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *found = NULL;
        bool by_id = is_id(id_or_name);
        unsigned n = 0;
        int k, r;

        if (!s || isempty(id_or_name))
                return -EINVAL;
        /* By name: the active key first, so that its revoked predecessors do not make it ambiguous. */
        k = sqlite3_prepare_v2(s->db,
                               by_id ? "SELECT " KEY_COLUMNS " FROM api_keys WHERE id = ?" :
                                       "SELECT " KEY_COLUMNS " FROM api_keys WHERE name = ? "
                                       "ORDER BY revoked_at IS NOT NULL, id",
                               -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        if (by_id)
                sqlite3_bind_int64(st, 1, (int64_t) strtoull(id_or_name, NULL, 10));
        else
                sqlite3_bind_text(st, 1, id_or_name, -1, SQLITE_STATIC);

        while ((k = sqlite3_step(st)) == SQLITE_ROW) {
                if (n == 0) {
                        r = key_info_from_row(st, &found);
                        if (r < 0)
                                return r;
                        if (found->revoked_at == 0)
                                break;
                }
                n++;
                if (n > 1)
                        return -ENOTUNIQ;
        }
        if (k != SQLITE_ROW && k != SQLITE_DONE)
                return errno_from_sqlite(k);
        if (!found)
                return -ENOENT;
        *ret = TAKE_PTR(found);
        return 0;
}

int keys_list(Store *s, KeyInfo ***ret, size_t *ret_n) {
        _cleanup_(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        KeyInfo **l = NULL;
        size_t n = 0;
        int k, r;

        if (!s || !ret || !ret_n)
                return -EINVAL;
        k = sqlite3_prepare_v2(s->db, "SELECT " KEY_COLUMNS " FROM api_keys ORDER BY id", -1, &st, NULL);
        if (k != SQLITE_OK)
                return errno_from_sqlite(k);
        while ((k = sqlite3_step(st)) == SQLITE_ROW) {
                KeyInfo **nl;

                nl = reallocarray(l, n + 1, sizeof *l);
                if (!nl) {
                        r = -ENOMEM;
                        goto fail;
                }
                l = nl;
                r = key_info_from_row(st, l + n);
                if (r < 0)
                        goto fail;
                n++;
        }
        if (k != SQLITE_DONE) {
                r = errno_from_sqlite(k);
                goto fail;
        }
        *ret = l;
        *ret_n = n;
        return 0;
fail:
        key_info_unref_many(l, n);
        return r;
}

/* ---- the in-memory store ---- */

struct KeyStore {
        Store *store;
        uint8_t secret[KEY_SECRET_SIZE];
        KeyInfo **keys;
        size_t n_keys;
        KeyInfo **table;                /* open addressing, indexed by the first 8 bytes of the hash */
        size_t table_mask;
        char *generation;               /* meta keys_generation at the last load */
};

static uint64_t hash_index(const uint8_t hash[KEY_HASH_SIZE]) {
        uint64_t v;

        memcpy(&v, hash, sizeof v);
        return v;
}

static int keys_read_generation(Store *s, char **ret) {
        int r = store_meta_get(s, "keys_generation", ret);
        if (r == -ENOENT) {
                *ret = strdup("0");
                return *ret ? 0 : -ENOMEM;
        }
        return r;
}

int keys_reload(KeyStore *ks) {
        _cleanup_free_ char *generation = NULL;
        KeyInfo **l = NULL, **table;
        size_t n = 0, size = 16;
        int r;

        if (!ks)
                return -EINVAL;
        /* The generation first: a change that lands between the two reads triggers one more reload. */
        r = keys_read_generation(ks->store, &generation);
        if (r < 0)
                return r;
        r = keys_list(ks->store, &l, &n);
        if (r < 0)
                return r;

        while (size < n * 2)
                size *= 2;
        table = new0(KeyInfo *, size);
        if (!table) {
                key_info_unref_many(l, n);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                size_t j = hash_index(l[i]->hash) & (size - 1);
                while (table[j])
                        j = (j + 1) & (size - 1);
                table[j] = l[i];
        }

        key_info_unref_many(ks->keys, ks->n_keys);
        free(ks->table);
        free(ks->generation);
        ks->keys = l;
        ks->n_keys = n;
        ks->table = table;
        ks->table_mask = size - 1;
        ks->generation = TAKE_PTR(generation);
        log_debug("Loaded %zu keys.", n);
        return 0;
}

int keys_reload_if_changed(KeyStore *ks) {
        _cleanup_free_ char *generation = NULL;
        int r;

        if (!ks)
                return -EINVAL;
        r = keys_read_generation(ks->store, &generation);
        if (r < 0)
                return r;
        if (ks->generation && streq(generation, ks->generation))
                return 0;
        r = keys_reload(ks);
        return r < 0 ? r : 1;
}

int keys_new(Store *s, const char *state_dir, KeyStore **ret) {
        _cleanup_(keys_freep) KeyStore *ks = NULL;
        int r;

        if (!s || !ret)
                return -EINVAL;
        ks = new0(KeyStore, 1);
        if (!ks)
                return -ENOMEM;
        ks->store = s;
        r = key_secret_load(state_dir, true, ks->secret);
        if (r < 0)
                return r;
        r = keys_reload(ks);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ks);
        return 0;
}

KeyStore *keys_free(KeyStore *ks) {
        if (!ks)
                return NULL;
        key_info_unref_many(ks->keys, ks->n_keys);
        free(ks->table);
        free(ks->generation);
        sodium_memzero(ks->secret, sizeof ks->secret);
        free(ks);
        return NULL;
}

int keys_verify_at(KeyStore *ks, const char *presented, usec_t now, const KeyInfo **ret) {
        uint8_t hash[KEY_HASH_SIZE];
        const KeyInfo *found = NULL;

        if (!ks || !presented)
                return -ENOKEY;
        /* The length and the prefix are public: a key of another shape is refused without hashing. */
        if (strnlen(presented, KEY_TEXT_LEN + 1) != KEY_TEXT_LEN || !startswith(presented, KEY_PREFIX))
                return -ENOKEY;
        key_hash(ks->secret, presented, KEY_TEXT_LEN, hash);

        if (ks->table)
                for (size_t j = hash_index(hash) & ks->table_mask;; j = (j + 1) & ks->table_mask) {
                        const KeyInfo *k = ks->table[j];
                        if (!k)
                                break;
                        if (sodium_memcmp(k->hash, hash, KEY_HASH_SIZE) == 0) {
                                found = k;
                                break;
                        }
                }
        if (!found)
                return -ENOKEY;
        if (found->revoked_at > 0)
                return -EKEYREVOKED;
        if (found->expires_at > 0 && now >= found->expires_at)
                return -EKEYEXPIRED;
        if (ret)
                *ret = found;
        return 0;
}

int keys_verify(KeyStore *ks, const char *presented, const KeyInfo **ret) {
        return keys_verify_at(ks, presented, now_usec(CLOCK_REALTIME), ret);
}

KeyInfo *const *keys_all(KeyStore *ks, size_t *ret_n) {
        if (ret_n)
                *ret_n = ks ? ks->n_keys : 0;
        return ks ? ks->keys : NULL;
}
