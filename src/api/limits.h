/* Limits: per-key token buckets (requests and tokens per minute) and spend budgets per UTC day or month. */
#pragma once

#include "shared/macro.h"
#include "store/keys.h"
#include "store/store.h"

typedef enum LimitKind {
        LIMIT_NONE,                     /* admitted */
        LIMIT_RPM,
        LIMIT_TPM,
        LIMIT_BUDGET,
        _LIMIT_KIND_MAX,
        _LIMIT_KIND_INVALID = -EINVAL,
} LimitKind;

/* "rpm", "tpm", "budget" (for metrics labels and error messages); "none" for LIMIT_NONE. */
const char *limit_kind_to_string(LimitKind k);

/* What limits_charge() decided. For an admitted request it is the ticket limits_settle() takes back. */
typedef struct LimitResult {
        LimitKind over;                 /* LIMIT_NONE: admitted */
        unsigned retry_after;           /* seconds, when over */
        uint64_t key_id;
        uint64_t charged;               /* tokens pre-charged to the tpm bucket */
} LimitResult;

typedef struct Limits Limits;

int limits_new(Limits **ret);
Limits *limits_free(Limits *l);
DEFINE_TRIVIAL_CLEANUP_FUNC(Limits *, limits_free);

/* Sets the spend of a key in the period that contains now (realtime µs), as read from the usage rows:
 * at start and for keys that appear at a reload. A key whose spend is known is left alone unless
 * force is set (the running spend includes rows not yet written). */
int limits_set_spend(Limits *l, const KeyInfo *k, usec_t now, uint64_t spent, bool force);
/* The same from the database for every key with a budget whose spend is not known yet: at start
 * (before requests) and after keys_reload(). */
int limits_load_spend(Limits *l, Store *s, KeyInfo *const *keys, size_t n_keys);
/* The running spend of a key in its current period (nano-USD), 0 when unknown. */
uint64_t limits_spend(Limits *l, const KeyInfo *k);

/* Admits a request of key k that may use up to tokens tokens (the request's max tokens plus an
 * estimate of its input): checks the budget, then takes one request from the rpm bucket and tokens
 * from the tpm bucket (at most one bucket's worth, so that a large max_tokens waits for a full bucket
 * rather than being refused forever). Buckets are taken only when all limits admit the request.
 * Returns 0 when admitted, or a positive number of seconds after which to retry; *ret says which. */
int limits_charge(Limits *l, const KeyInfo *k, uint64_t tokens, LimitResult *ret);
/* The same at explicit times (CLOCK_MONOTONIC for buckets, CLOCK_REALTIME for budget periods). */
int limits_charge_at(Limits *l, const KeyInfo *k, uint64_t tokens, usec_t mono, usec_t real, LimitResult *ret);

/* Settles an admitted request with what it really used: the tpm bucket gets back the difference from
 * the pre-charge (or goes into debt, which later requests wait out), and cost (nano-USD) is added to
 * the key's running spend. Call it for every admitted request, failed or cancelled ones with 0. */
void limits_settle(Limits *l, const LimitResult *ticket, uint64_t tokens_used, uint64_t cost);
void limits_settle_at(Limits *l, const LimitResult *ticket, uint64_t tokens_used, uint64_t cost, usec_t real);
