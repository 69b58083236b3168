/* Keys: gate's own API keys, stored as keyed hashes, and their constant-time verification from memory. */
#pragma once

#include "shared/macro.h"
#include "store/store.h"

#define KEY_PREFIX "gk-"
#define KEY_RANDOM_BYTES 32
#define KEY_TEXT_LEN (STRLEN(KEY_PREFIX) + 43)  /* 32 bytes in unpadded base64url */
#define KEY_SHOWN_PREFIX_LEN 8                  /* what lists show of a key, after "gk-" */
#define KEY_SECRET_SIZE 32
#define KEY_HASH_SIZE 32
#define KEY_SECRET_FILE "key-secret"
#define KEY_NAME_MAX 64
#define KEY_PATTERN_MAX 128

typedef enum BudgetPeriod {
        BUDGET_PERIOD_DAY,
        BUDGET_PERIOD_MONTH,
        _BUDGET_PERIOD_MAX,
        _BUDGET_PERIOD_INVALID = -EINVAL,
} BudgetPeriod;

const char *budget_period_to_string(BudgetPeriod p);
BudgetPeriod budget_period_from_string(const char *s);

/* The UTC calendar period (day or month) that contains now (CLOCK_REALTIME µs): [*ret_start, *ret_end). */
int budget_period_bounds(BudgetPeriod p, usec_t now, usec_t *ret_start, usec_t *ret_end);

typedef struct KeyInfo {
        unsigned n_ref;
        uint64_t id;
        char *name;
        char prefix[KEY_SHOWN_PREFIX_LEN + 1];  /* the first characters after "gk-" */
        char **models;                          /* patterns the key may use; NULL: every model */
        uint32_t rpm;                           /* requests per minute, 0: unlimited */
        uint32_t tpm;                           /* tokens per minute, 0: unlimited */
        uint64_t budget;                        /* nano-USD per period, 0: none */
        BudgetPeriod period;                    /* _BUDGET_PERIOD_INVALID without a budget */
        usec_t expires_at;                      /* CLOCK_REALTIME µs, 0: never */
        usec_t created_at;
        usec_t revoked_at;                      /* 0: active */
        bool admin;
        uint8_t hash[KEY_HASH_SIZE];
} KeyInfo;

KeyInfo *key_info_ref(KeyInfo *k);
KeyInfo *key_info_unref(KeyInfo *k);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeyInfo *, key_info_unref);
void key_info_unref_many(KeyInfo **l, size_t n);

/* Whether the key may use model (glob patterns, as providers' models). */
bool key_info_allows_model(const KeyInfo *k, const char *model);

/* The server secret that keys the hashes: STATE_DIR/key-secret, 32 random bytes, mode 0600, created
 * (atomically, so a CLI and the daemon racing agree) when missing and create is set. When running as
 * root, a new file is given to the owner of state_dir, so that the service user can read it. A file
 * of another size gives -EBADMSG. */
int key_secret_load(const char *state_dir, bool create, uint8_t ret[KEY_SECRET_SIZE]);

/* The keyed BLAKE2b-256 of a presented key. */
void key_hash(const uint8_t secret[KEY_SECRET_SIZE], const char *key, size_t len, uint8_t ret[KEY_HASH_SIZE]);

/* What `gate keys create` asks for. */
typedef struct KeySpec {
        const char *name;               /* 1..64 bytes, printable, not all digits (that is an ID) */
        char **models;                  /* NULL or empty: every model */
        uint32_t rpm, tpm;
        uint64_t budget;                /* nano-USD, 0: none; needs period */
        BudgetPeriod period;
        usec_t expires_at;              /* 0: never */
        bool admin;
} KeySpec;

bool key_name_is_valid(const char *name);
bool key_pattern_is_valid(const char *pattern);

/* Creates a key and returns it in *ret_key, the only time the secret exists outside the client. Only
 * its keyed hash is stored. A name already used by an active key gives -EEXIST; an invalid spec
 * -EINVAL. */
int keys_create(Store *s, const uint8_t secret[KEY_SECRET_SIZE], const KeySpec *spec, KeyInfo **ret_info,
                char **ret_key);
/* What `gate keys update` may change: a mask of the fields of a KeySpec to apply. */
typedef enum KeyField {
        KEY_FIELD_NAME = 1 << 0,
        KEY_FIELD_MODELS = 1 << 1,      /* NULL or empty: every model */
        KEY_FIELD_RPM = 1 << 2,         /* 0: no limit */
        KEY_FIELD_TPM = 1 << 3,
        KEY_FIELD_BUDGET = 1 << 4,      /* 0: no budget (the period goes too) */
        KEY_FIELD_PERIOD = 1 << 5,      /* only for a key that has or gets a budget */
        KEY_FIELD_EXPIRES = 1 << 6,     /* 0: never */
        KEY_FIELD_ADMIN = 1 << 7,
} KeyField;

/* Changes the fields of key id named by the mask fields to their values in spec, in one transaction
 * that also bumps the keys generation (so that a running daemon reloads). -ENOENT: no such key;
 * -EKEYREVOKED: the key is revoked (it stays as it was revoked); -EEXIST: another active key has the
 * new name; -EINVAL: invalid values, or a budget without a period (neither given nor the key's). The
 * key as it is now goes to *ret_info when not NULL. */
int keys_update(Store *s, uint64_t id, const KeySpec *spec, unsigned fields, KeyInfo **ret_info);
/* Revokes a key: -ENOENT when there is none with this id, -EALREADY when it is revoked already. */
int keys_revoke(Store *s, uint64_t id);
/* Finds a key by decimal ID, or by name: the active key of that name, else the only revoked one.
 * -ENOENT, or -ENOTUNIQ when only several revoked keys have the name. */
int keys_find(Store *s, const char *id_or_name, KeyInfo **ret);
/* All keys, revoked ones included, by id. */
int keys_list(Store *s, KeyInfo ***ret, size_t *ret_n);

/* The in-memory view the request path verifies against: every key (revoked ones too, to tell them
 * apart), in an open-addressing table indexed by the keyed hash itself. */
typedef struct KeyStore KeyStore;

/* Loads (creating if needed) the secret from state_dir and all keys from the store, which must outlive
 * the KeyStore (it reads keys from it at every reload). */
int keys_new(Store *s, const char *state_dir, KeyStore **ret);
KeyStore *keys_free(KeyStore *ks);
DEFINE_TRIVIAL_CLEANUP_FUNC(KeyStore *, keys_free);

/* Reloads all keys from the database. On failure the previous set stays. KeyInfo pointers handed out
 * earlier stay valid only for holders of a reference (key_info_ref()). */
int keys_reload(KeyStore *ks);
/* Reloads when a key was created or revoked since the last load (one indexed read of the meta
 * table). Returns 1 when it reloaded, 0 when nothing changed. */
int keys_reload_if_changed(KeyStore *ks);

/* Verifies a presented key in constant time with respect to the secret (the hash is compared with
 * sodium_memcmp; the probe sequence depends only on the keyed hash). Returns 0 and a borrowed *ret,
 * valid until the next reload; -ENOKEY for an unknown or malformed key, -EKEYREVOKED, -EKEYEXPIRED. */
int keys_verify(KeyStore *ks, const char *presented, const KeyInfo **ret);
/* The same with an explicit CLOCK_REALTIME time, for tests. */
int keys_verify_at(KeyStore *ks, const char *presented, usec_t now, const KeyInfo **ret);

/* The loaded keys, for limits and metrics: borrowed. */
KeyInfo *const *keys_all(KeyStore *ks, size_t *ret_n);
