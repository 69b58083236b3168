/* Unit tests for keys: the secret file, creation, the stored hash, verification, revocation, lookup. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>

#include "shared/util.h"
#include "store/keys.h"
#include "tests.h"

typedef struct Fixture {
        char dir[64];
        char *path;
        Store *store;
        uint8_t secret[KEY_SECRET_SIZE];
} Fixture;

static int fixture_init(Fixture *f) {
        _cleanup_free_ char *error = NULL;

        strcpy(f->dir, "/tmp/test-keys-XXXXXX");
        if (!mkdtemp(f->dir))
                return -errno;
        if (asprintf(&f->path, "%s/gate.db", f->dir) < 0)
                return -ENOMEM;
        if (store_open(f->path, &f->store, &error) < 0)
                return -EIO;
        return key_secret_load(f->dir, true, f->secret);
}

static void fixture_done(Fixture *f) {
        char cmd[128];

        store_close(f->store);
        free(f->path);
        snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
        (void) !system(cmd);
}

TEST(secret_file) {
        Fixture f;
        uint8_t again[KEY_SECRET_SIZE], zero[KEY_SECRET_SIZE] = {};
        char path[128];
        struct stat st;
        int fd;

        ASSERT_OK(fixture_init(&f));
        snprintf(path, sizeof path, "%s/key-secret", f.dir);
        ASSERT_OK(stat(path, &st));
        ASSERT_EQ(st.st_mode & 07777, 0600);
        ASSERT_EQ(st.st_size, KEY_SECRET_SIZE);
        ASSERT_TRUE(memcmp(f.secret, zero, sizeof zero) != 0);

        /* Loaded again, it is the same; no temporary files are left. */
        ASSERT_OK(key_secret_load(f.dir, true, again));
        ASSERT_TRUE(memcmp(f.secret, again, sizeof again) == 0);
        snprintf(path, sizeof path, "ls -a %s | grep -q '^\\.key-secret'", f.dir);
        ASSERT_TRUE(system(path) != 0);

        /* Not created when not asked to; a file of another size is refused. */
        ASSERT_ERROR(key_secret_load("/tmp/nonexistent-gate-dir", false, again), ENOENT);
        snprintf(path, sizeof path, "%s/key-secret", f.dir);
        fd = open(path, O_WRONLY | O_APPEND);
        ASSERT_TRUE(write(fd, "x", 1) == 1);
        close(fd);
        ASSERT_ERROR(key_secret_load(f.dir, true, again), EBADMSG);
        fixture_done(&f);
}

TEST(create_and_verify) {
        Fixture f;
        _cleanup_(keys_freep) KeyStore *ks = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *info = NULL;
        _cleanup_free_ char *key = NULL, *db = NULL;
        const KeyInfo *k = NULL;
        size_t n;

        ASSERT_OK(fixture_init(&f));
        char *models[] = { (char *) "gpt-4o*", (char *) "claude-*", NULL };
        KeySpec spec = {
                .name = "ci",
                .models = models,
                .rpm = 60,
                .tpm = 100000,
                .budget = 5000000000,
                .period = BUDGET_PERIOD_MONTH,
                .admin = true,
        };
        ASSERT_OK(keys_create(f.store, f.secret, &spec, &info, &key));

        /* gk- and 32 bytes in unpadded base64url. */
        ASSERT_EQ(strlen(key), KEY_TEXT_LEN);
        ASSERT_TRUE(startswith(key, "gk-"));
        ASSERT_EQ(strspn(key + 3, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
        ASSERT_EQ(info->id, 1);
        ASSERT_STREQ(info->name, "ci");
        ASSERT_TRUE(strneq(info->prefix, key + 3, 8) && strlen(info->prefix) == 8);
        ASSERT_EQ(info->rpm, 60);
        ASSERT_EQ(info->tpm, 100000);
        ASSERT_EQ(info->budget, 5000000000);
        ASSERT_EQ(info->period, BUDGET_PERIOD_MONTH);
        ASSERT_TRUE(info->admin);
        ASSERT_STREQ(info->models[1], "claude-*");
        ASSERT_TRUE(key_info_allows_model(info, "gpt-4o-mini"));
        ASSERT_FALSE(key_info_allows_model(info, "o3"));

        /* Only the hash is stored: the key is nowhere in the database files. */
        sqlite3_exec(f.store->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
        ASSERT_OK(read_full_file(f.path, 64 << 20, &db, &n));
        ASSERT_NULL(memmem(db, n, key + 3, 20));

        ASSERT_OK(keys_new(f.store, f.dir, &ks));
        ASSERT_OK(keys_verify(ks, key, &k));
        ASSERT_EQ(k->id, 1);
        ASSERT_STREQ(k->name, "ci");

        /* One character off, cut, extended, or not a gate key. */
        char saved = key[10];
        key[10] = saved == 'A' ? 'B' : 'A';
        ASSERT_ERROR(keys_verify(ks, key, &k), ENOKEY);
        key[10] = saved;
        ASSERT_OK(keys_verify(ks, key, &k));
        ASSERT_ERROR(keys_verify(ks, "gk-short", &k), ENOKEY);
        ASSERT_ERROR(keys_verify(ks, "", &k), ENOKEY);
        ASSERT_ERROR(keys_verify(ks, NULL, &k), ENOKEY);
        _cleanup_free_ char *longer = NULL;
        asprintf(&longer, "%sx", key);
        ASSERT_ERROR(keys_verify(ks, longer, &k), ENOKEY);
        char other[KEY_TEXT_LEN + 1];
        memcpy(other, key, sizeof other);
        memcpy(other, "sk-", 3);
        ASSERT_ERROR(keys_verify(ks, other, &k), ENOKEY);

        /* A key of another server secret is unknown. */
        uint8_t secret2[KEY_SECRET_SIZE];
        _cleanup_free_ char *key2 = NULL;
        memset(secret2, 7, sizeof secret2);
        spec = (KeySpec) { .name = "elsewhere", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_create(f.store, secret2, &spec, NULL, &key2));
        ASSERT_OK(keys_reload(ks));
        ASSERT_ERROR(keys_verify(ks, key2, &k), ENOKEY);
        fixture_done(&f);
}

TEST(revoke_expire_reload) {
        Fixture f;
        _cleanup_(keys_freep) KeyStore *ks = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *held = NULL;
        const KeyInfo *k = NULL;
        usec_t now = now_usec(CLOCK_REALTIME);

        ASSERT_OK(fixture_init(&f));
        ASSERT_OK(keys_new(f.store, f.dir, &ks));
        ASSERT_EQ(keys_reload_if_changed(ks), 0);

        KeySpec spec = { .name = "a", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &a));
        spec.name = "b";
        spec.expires_at = now + 3600 * USEC_PER_SEC;
        ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &b));

        /* Not seen until reloaded; the reload happens once. */
        ASSERT_ERROR(keys_verify(ks, a, &k), ENOKEY);
        ASSERT_EQ(keys_reload_if_changed(ks), 1);
        ASSERT_EQ(keys_reload_if_changed(ks), 0);
        ASSERT_OK(keys_verify(ks, a, &k));
        held = key_info_ref((KeyInfo *) k);

        /* Expiry is checked at verification time. */
        ASSERT_OK(keys_verify_at(ks, b, now, &k));
        ASSERT_ERROR(keys_verify_at(ks, b, now + 3600 * USEC_PER_SEC, &k), EKEYEXPIRED);

        ASSERT_OK(keys_revoke(f.store, 1));
        ASSERT_ERROR(keys_revoke(f.store, 1), EALREADY);
        ASSERT_ERROR(keys_revoke(f.store, 99), ENOENT);
        ASSERT_OK(keys_verify(ks, a, &k));             /* until the reload */
        ASSERT_EQ(keys_reload_if_changed(ks), 1);
        ASSERT_ERROR(keys_verify(ks, a, &k), EKEYREVOKED);
        /* A reference taken before the reload still holds the old view. */
        ASSERT_STREQ(held->name, "a");
        ASSERT_EQ(held->revoked_at, 0);

        /* The name of a revoked key can be given again; the active one is found by name. */
        spec = (KeySpec) { .name = "a", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &c));
        ASSERT_ERROR(keys_create(f.store, f.secret, &spec, NULL, &c), EEXIST);
        _cleanup_(key_info_unrefp) KeyInfo *found = NULL;
        ASSERT_OK(keys_find(f.store, "a", &found));
        ASSERT_EQ(found->id, 3);
        key_info_unref(found);
        found = NULL;
        ASSERT_OK(keys_find(f.store, "1", &found));
        ASSERT_STREQ(found->name, "a");
        ASSERT_TRUE(found->revoked_at > 0);
        key_info_unref(found);
        found = NULL;
        ASSERT_ERROR(keys_find(f.store, "nope", &found), ENOENT);
        ASSERT_ERROR(keys_find(f.store, "42", &found), ENOENT);

        /* Two revoked keys of one name and no active one: ambiguous. */
        ASSERT_OK(keys_revoke(f.store, 3));
        ASSERT_ERROR(keys_find(f.store, "a", &found), ENOTUNIQ);

        KeyInfo **l = NULL;
        size_t n = 0;
        ASSERT_OK(keys_list(f.store, &l, &n));
        ASSERT_EQ(n, 3);
        ASSERT_EQ(l[2]->id, 3);
        key_info_unref_many(l, n);
        fixture_done(&f);
}

static int64_t keys_generation(Store *s) {
        _cleanup_free_ char *v = NULL;
        uint64_t n;

        if (store_meta_get(s, "keys_generation", &v) < 0 || parse_uint64(v, &n) < 0)
                return -1;
        return (int64_t) n;
}

TEST(update) {
        Fixture f;
        _cleanup_(keys_freep) KeyStore *ks = NULL;
        _cleanup_free_ char *a = NULL, *b = NULL;
        KeyInfo *info = NULL;
        const KeyInfo *k = NULL;
        char *models[] = { (char *) "gpt-4o*", (char *) "claude-*", NULL };
        int64_t gen;

        ASSERT_OK(fixture_init(&f));
        KeySpec spec = { .name = "a", .rpm = 5, .budget = 2000, .period = BUDGET_PERIOD_DAY };
        ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &a));
        spec = (KeySpec) { .name = "b", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &b));
        ASSERT_OK(keys_new(f.store, f.dir, &ks));
        gen = keys_generation(f.store);
        ASSERT_TRUE(gen >= 2);

        /* Only the named fields change; the generation moves so that a daemon reloads. */
        spec = (KeySpec) { .name = "a2", .models = models, .tpm = 1000, .rpm = 99, .period = BUDGET_PERIOD_MONTH,
                           .admin = true };
        ASSERT_OK(keys_update(f.store, 1, &spec, KEY_FIELD_NAME | KEY_FIELD_MODELS | KEY_FIELD_TPM |
                              KEY_FIELD_PERIOD | KEY_FIELD_ADMIN, &info));
        ASSERT_EQ(keys_generation(f.store), gen + 1);
        ASSERT_STREQ(info->name, "a2");
        ASSERT_STREQ(info->models[1], "claude-*");
        ASSERT_EQ(info->rpm, 5);                /* not in the mask */
        ASSERT_EQ(info->tpm, 1000);
        ASSERT_EQ(info->budget, 2000);
        ASSERT_EQ(info->period, BUDGET_PERIOD_MONTH);
        ASSERT_TRUE(info->admin);
        info = key_info_unref(info);
        ASSERT_EQ(keys_reload_if_changed(ks), 1);
        ASSERT_OK(keys_verify(ks, a, &k));
        ASSERT_STREQ(k->name, "a2");
        ASSERT_EQ(k->tpm, 1000);
        ASSERT_TRUE(key_info_allows_model(k, "claude-x") && !key_info_allows_model(k, "llama"));

        /* Clearing: no budget (the period goes with it), every model, no expiry, no admin. */
        spec = (KeySpec) { .period = _BUDGET_PERIOD_INVALID };
        ASSERT_OK(keys_update(f.store, 1, &spec, KEY_FIELD_BUDGET | KEY_FIELD_MODELS | KEY_FIELD_RPM |
                              KEY_FIELD_EXPIRES | KEY_FIELD_ADMIN, &info));
        ASSERT_EQ(info->budget, 0);
        ASSERT_EQ(info->period, _BUDGET_PERIOD_INVALID);
        ASSERT_NULL(info->models);
        ASSERT_EQ(info->rpm, 0);
        ASSERT_FALSE(info->admin);
        info = key_info_unref(info);

        /* A budget needs a period, given or the key's own. */
        spec = (KeySpec) { .budget = 5, .period = _BUDGET_PERIOD_INVALID };
        ASSERT_ERROR(keys_update(f.store, 1, &spec, KEY_FIELD_BUDGET, NULL), EINVAL);
        spec.period = BUDGET_PERIOD_DAY;
        ASSERT_OK(keys_update(f.store, 1, &spec, KEY_FIELD_BUDGET | KEY_FIELD_PERIOD, NULL));
        spec.budget = 7;
        ASSERT_OK(keys_update(f.store, 1, &spec, KEY_FIELD_BUDGET, &info));
        ASSERT_EQ(info->budget, 7);
        ASSERT_EQ(info->period, BUDGET_PERIOD_DAY);
        info = key_info_unref(info);

        /* Errors leave the key and the generation alone. */
        gen = keys_generation(f.store);
        spec = (KeySpec) { .name = "b", .period = _BUDGET_PERIOD_INVALID };
        ASSERT_ERROR(keys_update(f.store, 1, &spec, KEY_FIELD_NAME, NULL), EEXIST);
        spec.name = "123";
        ASSERT_ERROR(keys_update(f.store, 1, &spec, KEY_FIELD_NAME, NULL), EINVAL);
        ASSERT_ERROR(keys_update(f.store, 42, &spec, KEY_FIELD_RPM, NULL), ENOENT);
        ASSERT_OK(keys_revoke(f.store, 2));
        gen++;
        ASSERT_ERROR(keys_update(f.store, 2, &spec, KEY_FIELD_RPM, NULL), EKEYREVOKED);
        ASSERT_EQ(keys_generation(f.store), gen);
        ASSERT_OK(keys_find(f.store, "1", &info));
        ASSERT_STREQ(info->name, "a2");
        info = key_info_unref(info);
        /* The name of a revoked key is free. */
        spec.name = "b";
        ASSERT_OK(keys_update(f.store, 1, &spec, KEY_FIELD_NAME, NULL));
        fixture_done(&f);
}

TEST(invalid_specs) {
        Fixture f;
        _cleanup_free_ char *key = NULL;

        ASSERT_OK(fixture_init(&f));
        static const char *const bad_names[] = { "", "123", " x", "x ", "a\nb", "a\tb",
                "abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde" };
        for (size_t i = 0; i < ELEMENTSOF(bad_names); i++) {
                KeySpec spec = { .name = bad_names[i], .period = _BUDGET_PERIOD_INVALID };
                ASSERT_ERROR(keys_create(f.store, f.secret, &spec, NULL, &key), EINVAL);
        }
        ASSERT_TRUE(key_name_is_valid("team-a 2"));
        ASSERT_TRUE(key_name_is_valid("1a"));

        /* A budget needs a period, a period needs a budget; patterns have no blanks or commas. */
        KeySpec spec = { .name = "x", .budget = 1, .period = _BUDGET_PERIOD_INVALID };
        ASSERT_ERROR(keys_create(f.store, f.secret, &spec, NULL, &key), EINVAL);
        spec = (KeySpec) { .name = "x", .period = BUDGET_PERIOD_DAY };
        ASSERT_ERROR(keys_create(f.store, f.secret, &spec, NULL, &key), EINVAL);
        char *models[] = { (char *) "a b", NULL };
        spec = (KeySpec) { .name = "x", .models = models, .period = _BUDGET_PERIOD_INVALID };
        ASSERT_ERROR(keys_create(f.store, f.secret, &spec, NULL, &key), EINVAL);
        ASSERT_NULL(key);
        fixture_done(&f);
}

TEST(many_keys) {
        Fixture f;
        _cleanup_(keys_freep) KeyStore *ks = NULL;
        char *keys[300] = {};
        const KeyInfo *k;

        ASSERT_OK(fixture_init(&f));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                char name[32];
                snprintf(name, sizeof name, "k%zu", i);
                KeySpec spec = { .name = name, .period = _BUDGET_PERIOD_INVALID };
                ASSERT_OK(keys_create(f.store, f.secret, &spec, NULL, &keys[i]));
        }
        ASSERT_OK(keys_new(f.store, f.dir, &ks));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                ASSERT_OK(keys_verify(ks, keys[i], &k));
                ASSERT_EQ(k->id, i + 1);
                free(keys[i]);
        }
        size_t n;
        ASSERT_NOT_NULL(keys_all(ks, &n));
        ASSERT_EQ(n, ELEMENTSOF(keys));
        fixture_done(&f);
}
