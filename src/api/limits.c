/* Limits: per-key token buckets (requests and tokens per minute) and spend budgets per UTC day or month. */
#include <time.h>

#include "api/limits.h"
#include "shared/log.h"
#include "shared/util.h"
#include "store/usage.h"

#define USEC_PER_MINUTE (60 * USEC_PER_SEC)
/* Usage reported beyond this is nonsense; it must not overflow a bucket. */
#define TOKENS_MAX (UINT64_C(1) << 40)

/* Bucket levels are in tokens × µs-per-minute, so that refilling at rate tokens per minute adds exactly
 * rate per elapsed µs and no fractions are lost. */
typedef struct Bucket {
        int64_t level;                  /* may go below 0: debt from usage above the pre-charge */
        usec_t last;
        uint32_t rate;                  /* per minute, as last seen */
        bool init;
} Bucket;

typedef struct LimitState {
        uint64_t key_id;
        Bucket rpm, tpm;
        BudgetPeriod period;
        usec_t period_start, period_end;
        uint64_t spent;                 /* nano-USD in [period_start, period_end) */
        bool spend_known;
} LimitState;

struct Limits {
        LimitState *states;             /* sorted by key_id; only keys that have limits */
        size_t n_states;
};

static const char *const limit_kind_table[_LIMIT_KIND_MAX] = {
        [LIMIT_NONE] = "none",
        [LIMIT_RPM] = "rpm",
        [LIMIT_TPM] = "tpm",
        [LIMIT_BUDGET] = "budget",
};

const char *limit_kind_to_string(LimitKind k) {
        if (k < 0 || k >= _LIMIT_KIND_MAX)
                return NULL;
        return limit_kind_table[k];
}

int limits_new(Limits **ret) {
        Limits *l = new0(Limits, 1);

        if (!l)
                return -ENOMEM;
        *ret = l;
        return 0;
}

Limits *limits_free(Limits *l) {
        if (!l)
                return NULL;
        free(l->states);
        free(l);
        return NULL;
}

static LimitState *state_find(Limits *l, uint64_t key_id, size_t *ret_pos) {
        size_t lo = 0, hi = l->n_states;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (l->states[mid].key_id < key_id)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        if (ret_pos)
                *ret_pos = lo;
        return lo < l->n_states && l->states[lo].key_id == key_id ? l->states + lo : NULL;
}

static LimitState *state_get(Limits *l, uint64_t key_id) {
        LimitState *s, *n;
        size_t pos;

        s = state_find(l, key_id, &pos);
        if (s)
                return s;
        /* Keys are created by administrators, so this grows with the key table, not with traffic. */
        n = reallocarray(l->states, l->n_states + 1, sizeof *n);
        if (!n)
                return NULL;
        l->states = n;
        memmove(l->states + pos + 1, l->states + pos, (l->n_states - pos) * sizeof *n);
        l->n_states++;
        l->states[pos] = (LimitState) { .key_id = key_id, .period = _BUDGET_PERIOD_INVALID };
        return l->states + pos;
}

static void bucket_refill(Bucket *b, uint32_t rate, usec_t now) {
        __int128 level, cap = (__int128) rate * USEC_PER_MINUTE;

        if (!b->init) {
                /* A new bucket starts full: a fresh key may burst its whole minute. */
                b->level = (int64_t) cap;
                b->last = now;
                b->rate = rate;
                b->init = true;
                return;
        }
        level = b->level;
        /* A changed limit (gate keys update) applies at once: a raised one adds the room it gives at
         * once, a lowered one caps the level below. */
        if (rate > b->rate)
                level += (__int128) (rate - b->rate) * USEC_PER_MINUTE;
        if (now > b->last)
                level += (__int128) (now - b->last) * rate;
        if (level > cap)
                level = cap;
        b->level = (int64_t) level;
        b->last = MAX(b->last, now);
        b->rate = rate;
}

/* Seconds until the bucket holds need tokens, at least 1. */
static unsigned bucket_wait(const Bucket *b, uint64_t need) {
        __int128 missing = (__int128) need * USEC_PER_MINUTE - b->level;
        __int128 usec, sec;

        if (b->rate == 0 || missing <= 0)
                return 1;
        usec = (missing + b->rate - 1) / b->rate;
        sec = (usec + USEC_PER_SEC - 1) / USEC_PER_SEC;
        return (unsigned) MAX(MIN(sec, (__int128) UINT32_MAX), (__int128) 1);
}

/* Moves the budget state to the period containing real; a new period starts with nothing spent. */
static void budget_roll(LimitState *s, BudgetPeriod period, usec_t real) {
        usec_t start, end;

        if (s->period == period && real >= s->period_start && real < s->period_end)
                return;
        if (budget_period_bounds(period, real, &start, &end) < 0)
                return;
        if (s->period != period || start != s->period_start)
                s->spent = 0;
        s->period = period;
        s->period_start = start;
        s->period_end = end;
        s->spend_known = true;
}

int limits_set_spend(Limits *l, const KeyInfo *k, usec_t now, uint64_t spent, bool force) {
        LimitState *s;

        if (!l || !k || k->budget == 0)
                return -EINVAL;
        s = state_get(l, k->id);
        if (!s)
                return -ENOMEM;
        if (s->spend_known && !force)
                return 0;
        s->spend_known = false;
        s->period = _BUDGET_PERIOD_INVALID;
        budget_roll(s, k->period, now);
        s->spent = spent;
        return 0;
}

int limits_load_spend(Limits *l, Store *store, KeyInfo *const *keys, size_t n_keys) {
        usec_t now = now_usec(CLOCK_REALTIME);
        int r;

        if (!l || !store)
                return -EINVAL;
        for (size_t i = 0; i < n_keys; i++) {
                const KeyInfo *k = keys[i];
                const LimitState *s;
                usec_t start;
                uint64_t spent;

                if (k->budget == 0 || k->revoked_at > 0)
                        continue;
                s = state_find(l, k->id, NULL);
                if (s && s->spend_known && s->period == k->period)
                        continue;
                r = budget_period_bounds(k->period, now, &start, NULL);
                if (r < 0)
                        return r;
                r = usage_spend(store, k->id, start, &spent);
                if (r < 0)
                        return r;
                r = limits_set_spend(l, k, now, spent, true);
                if (r < 0)
                        return r;
        }
        return 0;
}

uint64_t limits_spend(Limits *l, const KeyInfo *k) {
        const LimitState *s;
        usec_t now;

        if (!l || !k || k->budget == 0)
                return 0;
        s = state_find(l, k->id, NULL);
        if (!s || !s->spend_known || s->period != k->period)
                return 0;
        now = now_usec(CLOCK_REALTIME);
        /* Another period has nothing spent yet; the state moves there at the next charge. */
        return now >= s->period_start && now < s->period_end ? s->spent : 0;
}

int limits_charge_at(Limits *l, const KeyInfo *k, uint64_t tokens, usec_t mono, usec_t real, LimitResult *ret) {
        LimitResult res = { .over = LIMIT_NONE, .key_id = k ? k->id : 0 };
        uint64_t charge = 0;
        LimitState *s;

        if (!l || !k || !ret)
                return -EINVAL;
        if (k->rpm == 0 && k->tpm == 0 && k->budget == 0) {
                /* A limit removed and given again later starts with a full bucket. */
                s = state_find(l, k->id, NULL);
                if (s)
                        s->rpm.init = s->tpm.init = false;
                *ret = res;
                return 0;
        }
        s = state_get(l, k->id);
        if (!s)
                return -ENOMEM;
        if (k->rpm == 0)
                s->rpm.init = false;
        if (k->tpm == 0)
                s->tpm.init = false;

        if (k->budget > 0) {
                budget_roll(s, k->period, real);
                if (s->spent >= k->budget) {
                        usec_t left = s->period_end > real ? s->period_end - real : 0;
                        res.over = LIMIT_BUDGET;
                        res.retry_after = (unsigned) MAX(MIN((left + USEC_PER_SEC - 1) / USEC_PER_SEC,
                                                             (usec_t) UINT32_MAX), (usec_t) 1);
                        *ret = res;
                        return (int) MIN(res.retry_after, (unsigned) INT32_MAX);
                }
        }
        if (k->rpm > 0) {
                bucket_refill(&s->rpm, k->rpm, mono);
                if (s->rpm.level < (int64_t) USEC_PER_MINUTE) {
                        res.over = LIMIT_RPM;
                        res.retry_after = bucket_wait(&s->rpm, 1);
                }
        }
        if (res.over == LIMIT_NONE && k->tpm > 0) {
                bucket_refill(&s->tpm, k->tpm, mono);
                charge = MIN(tokens, (uint64_t) k->tpm);
                if (s->tpm.level < 0 || s->tpm.level < (int64_t) (charge * USEC_PER_MINUTE)) {
                        res.over = LIMIT_TPM;
                        res.retry_after = bucket_wait(&s->tpm, charge);
                }
        }
        if (res.over != LIMIT_NONE) {
                *ret = res;
                return (int) MIN(res.retry_after, (unsigned) INT32_MAX);
        }

        if (k->rpm > 0)
                s->rpm.level -= (int64_t) USEC_PER_MINUTE;
        if (k->tpm > 0) {
                s->tpm.level -= (int64_t) (charge * USEC_PER_MINUTE);
                res.charged = charge;
        }
        *ret = res;
        return 0;
}

int limits_charge(Limits *l, const KeyInfo *k, uint64_t tokens, LimitResult *ret) {
        return limits_charge_at(l, k, tokens, now_mono(), now_usec(CLOCK_REALTIME), ret);
}

void limits_settle_at(Limits *l, const LimitResult *t, uint64_t tokens_used, uint64_t cost, usec_t real) {
        LimitState *s;

        if (!l || !t || t->over != LIMIT_NONE)
                return;
        s = state_find(l, t->key_id, NULL);
        if (!s)
                return;

        if (s->tpm.init) {
                __int128 level = (__int128) s->tpm.level +
                        ((__int128) t->charged - (__int128) MIN(tokens_used, TOKENS_MAX)) * USEC_PER_MINUTE;
                __int128 cap = (__int128) s->tpm.rate * USEC_PER_MINUTE;

                /* Debt is bounded too: a runaway usage report must not lock a key out for days. */
                level = MIN(level, cap);
                level = MAX(level, -cap * 60);
                s->tpm.level = (int64_t) level;
        }

        if (s->period >= 0) {
                budget_roll(s, s->period, real);
                s->spent = cost > UINT64_MAX - s->spent ? UINT64_MAX : s->spent + cost;
        }
}

void limits_settle(Limits *l, const LimitResult *t, uint64_t tokens_used, uint64_t cost) {
        limits_settle_at(l, t, tokens_used, cost, now_usec(CLOCK_REALTIME));
}
