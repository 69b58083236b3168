/* Unit tests for limits: token buckets for requests and tokens per minute, settling, budgets per period. */
#include <time.h>

#include "api/limits.h"
#include "shared/util.h"
#include "store/usage.h"
#include "tests.h"

#define MIN_US (60 * USEC_PER_SEC)
/* 2025-03-14T12:00:00Z */
#define NOON ((usec_t) 1741953600 * USEC_PER_SEC)

static KeyInfo key(uint64_t id, uint32_t rpm, uint32_t tpm, uint64_t budget, BudgetPeriod period) {
        return (KeyInfo) { .n_ref = 1, .id = id, .rpm = rpm, .tpm = tpm, .budget = budget, .period = period };
}

TEST(unlimited_key) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(1, 0, 0, 0, _BUDGET_PERIOD_INVALID);
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        for (int i = 0; i < 1000; i++)
                ASSERT_EQ(limits_charge_at(l, &k, 1000000, 1, NOON, &r), 0);
        ASSERT_EQ(r.over, LIMIT_NONE);
        ASSERT_EQ(r.charged, 0);
}

TEST(requests_per_minute) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(1, 6, 0, 0, _BUDGET_PERIOD_INVALID);
        usec_t t = 1000 * USEC_PER_SEC;
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        /* A full bucket: six at once. */
        for (int i = 0; i < 6; i++)
                ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        /* The seventh waits for one refill: 60 s / 6 = 10 s. */
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 10);
        ASSERT_EQ(r.over, LIMIT_RPM);
        ASSERT_EQ(r.retry_after, 10);
        /* A refusal takes nothing: 9.5 s later it is 1 s away (rounded up). */
        ASSERT_EQ(limits_charge_at(l, &k, 0, t + 9500 * USEC_PER_MSEC, NOON, &r), 1);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t + 10 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t + 10 * USEC_PER_SEC, NOON, &r), 10);
        /* After a long pause the bucket is full again, not more. */
        for (int i = 0; i < 6; i++)
                ASSERT_EQ(limits_charge_at(l, &k, 0, t + 3600 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_TRUE(limits_charge_at(l, &k, 0, t + 3600 * USEC_PER_SEC, NOON, &r) > 0);

        /* Keys are apart. */
        KeyInfo other = key(2, 1, 0, 0, _BUDGET_PERIOD_INVALID);
        ASSERT_EQ(limits_charge_at(l, &other, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &other, 0, t, NOON, &r), 60);
}

TEST(changed_limits_apply_at_once) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(3, 1, 0, 0, _BUDGET_PERIOD_INVALID);
        usec_t t = 1000 * USEC_PER_SEC;
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 60);
        /* Raised to 100 a minute: the 99 more it allows are there now, not after a refill. */
        k.rpm = 100;
        for (int i = 0; i < 99; i++)
                ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 1);
        /* Lowered to 2 when the bucket is full (an hour later): it holds 2 at most now. */
        t += 3600 * USEC_PER_SEC;
        k.rpm = 2;
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 30);
        /* Removed, then given again: a fresh, full bucket. */
        k.rpm = 0;
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        k.rpm = 3;
        for (int i = 0; i < 3; i++)
                ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &r), 20);
        /* The same for tokens, next to a request limit. */
        k.tpm = 100;
        ASSERT_EQ(limits_charge_at(l, &k, 100, t + 60 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 100, t + 60 * USEC_PER_SEC, NOON, &r), 60);
        k.tpm = 1000;
        ASSERT_EQ(limits_charge_at(l, &k, 100, t + 60 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_EQ(r.charged, 100);
}

TEST(tokens_per_minute_precharge_and_settle) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(7, 0, 1000, 0, _BUDGET_PERIOD_INVALID);
        usec_t t = 5000 * USEC_PER_SEC;
        LimitResult a, b, c;

        ASSERT_OK(limits_new(&l));
        /* Pre-charge 600 of 1000. */
        ASSERT_EQ(limits_charge_at(l, &k, 600, t, NOON, &a), 0);
        ASSERT_EQ(a.charged, 600);
        /* 600 more do not fit; 400 do. */
        ASSERT_TRUE(limits_charge_at(l, &k, 600, t, NOON, &b) > 0);
        ASSERT_EQ(b.over, LIMIT_TPM);
        /* 200 missing at 1000/min: 12 s. */
        ASSERT_EQ(b.retry_after, 12);
        ASSERT_EQ(limits_charge_at(l, &k, 400, t, NOON, &b), 0);
        /* The first used only 100: 500 come back, and 500 fit again. */
        limits_settle_at(l, &a, 100, 0, NOON);
        ASSERT_EQ(limits_charge_at(l, &k, 500, t, NOON, &c), 0);
        ASSERT_TRUE(limits_charge_at(l, &k, 1, t, NOON, &a) > 0);

        /* Usage above the pre-charge is debt: the second used 2400 of its 400. */
        limits_settle_at(l, &b, 2400, 0, NOON);
        limits_settle_at(l, &c, 500, 0, NOON);
        /* Level now -2000: even a request for 0 tokens waits until the debt is paid (2 min). */
        ASSERT_EQ(limits_charge_at(l, &k, 0, t, NOON, &a), 120);
        ASSERT_EQ(limits_charge_at(l, &k, 0, t + 120 * USEC_PER_SEC, NOON, &a), 0);
}

TEST(large_max_tokens_waits_for_a_full_bucket) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(3, 0, 1000, 0, _BUDGET_PERIOD_INVALID);
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        /* 32000 max tokens against a 1000 tpm key: charged as a full bucket, not refused forever. */
        ASSERT_EQ(limits_charge_at(l, &k, 32000, 1, NOON, &r), 0);
        ASSERT_EQ(r.charged, 1000);
        ASSERT_EQ(limits_charge_at(l, &k, 32000, 1 + 30 * USEC_PER_SEC, NOON, &r), 30);
        ASSERT_EQ(limits_charge_at(l, &k, 32000, 1 + 60 * USEC_PER_SEC, NOON, &r), 0);
}

TEST(rpm_and_tpm_together) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(4, 2, 100, 0, _BUDGET_PERIOD_INVALID);
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        /* Refused by tpm: the rpm bucket is not taken either. */
        ASSERT_EQ(limits_charge_at(l, &k, 100, 1, NOON, &r), 0);
        ASSERT_TRUE(limits_charge_at(l, &k, 50, 1, NOON, &r) > 0);
        ASSERT_EQ(r.over, LIMIT_TPM);
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1 + 60 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1 + 60 * USEC_PER_SEC, NOON, &r), 0);
        ASSERT_TRUE(limits_charge_at(l, &k, 0, 1 + 60 * USEC_PER_SEC, NOON, &r) > 0);
        ASSERT_EQ(r.over, LIMIT_RPM);
        ASSERT_STREQ(limit_kind_to_string(r.over), "rpm");
}

TEST(budget_per_day) {
        _cleanup_(limits_freep) Limits *l = NULL;
        /* $1.00 per day. */
        KeyInfo k = key(9, 0, 0, 1000000000, BUDGET_PERIOD_DAY);
        LimitResult r;

        ASSERT_OK(limits_new(&l));
        ASSERT_OK(limits_set_spend(l, &k, NOON, 900000000, false));
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON, &r), 0);
        /* Settled cost puts it over; the next request waits for midnight UTC (12 h). */
        limits_settle_at(l, &r, 0, 200000000, NOON);
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON, &r), 12 * 3600);
        ASSERT_EQ(r.over, LIMIT_BUDGET);
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON + 12 * 3600 * USEC_PER_SEC - USEC_PER_SEC, &r), 1);
        /* A new day starts with nothing spent. */
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON + 12 * 3600 * USEC_PER_SEC, &r), 0);

        /* A known spend is kept unless forced (the running spend includes unwritten rows). */
        ASSERT_OK(limits_set_spend(l, &k, NOON + 12 * 3600 * USEC_PER_SEC, 5000000000, false));
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON + 12 * 3600 * USEC_PER_SEC, &r), 0);
        ASSERT_OK(limits_set_spend(l, &k, NOON + 12 * 3600 * USEC_PER_SEC, 5000000000, true));
        ASSERT_TRUE(limits_charge_at(l, &k, 0, 1, NOON + 12 * 3600 * USEC_PER_SEC, &r) > 0);
}

TEST(budget_per_month) {
        _cleanup_(limits_freep) Limits *l = NULL;
        KeyInfo k = key(10, 0, 0, 1000, BUDGET_PERIOD_MONTH);
        usec_t start, end;
        LimitResult r;

        ASSERT_OK(budget_period_bounds(BUDGET_PERIOD_MONTH, NOON, &start, &end));
        ASSERT_EQ(start, (usec_t) 1740787200 * USEC_PER_SEC);   /* 2025-03-01 */
        ASSERT_EQ(end, (usec_t) 1743465600 * USEC_PER_SEC);     /* 2025-04-01 */
        ASSERT_OK(budget_period_bounds(BUDGET_PERIOD_DAY, NOON, &start, &end));
        ASSERT_EQ(start, (usec_t) 1741910400 * USEC_PER_SEC);
        ASSERT_EQ(end - start, 24 * 3600 * USEC_PER_SEC);
        /* December rolls into the next year. */
        ASSERT_OK(budget_period_bounds(BUDGET_PERIOD_MONTH, (usec_t) 1767139200 * USEC_PER_SEC, &start, &end));
        ASSERT_EQ(end, (usec_t) 1767225600 * USEC_PER_SEC);     /* 2026-01-01 */

        ASSERT_OK(limits_new(&l));
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, NOON, &r), 0);
        limits_settle_at(l, &r, 0, 1000, NOON);
        ASSERT_EQ(limits_spend(l, &k), 0);      /* limits_spend() reads today's clock: another month */
        ASSERT_TRUE(limits_charge_at(l, &k, 0, 1, NOON, &r) > 0);
        ASSERT_EQ(r.retry_after, (1743465600 - 1741953600));
        ASSERT_EQ(limits_charge_at(l, &k, 0, 1, (usec_t) 1743465600 * USEC_PER_SEC, &r), 0);
}

TEST(spend_from_the_database) {
        _cleanup_free_ char *path = NULL;
        char tmpl[] = "/tmp/test-limits-XXXXXX";
        _cleanup_(limits_freep) Limits *l = NULL;
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_(usage_queue_freep) UsageQueue *q = NULL;
        _cleanup_free_ char *error = NULL;
        usec_t now = now_usec(CLOCK_REALTIME), start;
        KeyInfo k = key(5, 0, 0, 1000000, BUDGET_PERIOD_DAY);
        KeyInfo *keys[] = { &k };
        UsageRecord u = { .key_id = 5, .status = 200, .cost = 300000 };
        LimitResult r;

        asprintf(&path, "%s/gate.db", mkdtemp(tmpl));
        ASSERT_OK(store_open(path, &s, &error));
        ASSERT_OK(usage_queue_new(path, 100, &q));
        ASSERT_OK(budget_period_bounds(BUDGET_PERIOD_DAY, now, &start, NULL));
        /* Two rows today, one yesterday, one of another key. */
        u.time = now;
        ASSERT_OK(usage_queue_push(q, &u));
        u.time = start;
        ASSERT_OK(usage_queue_push(q, &u));
        u.time = start - 1;
        ASSERT_OK(usage_queue_push(q, &u));
        u.time = now;
        u.key_id = 6;
        ASSERT_OK(usage_queue_push(q, &u));
        ASSERT_EQ(usage_queue_flush(q), 4);

        ASSERT_OK(limits_new(&l));
        ASSERT_OK(limits_load_spend(l, s, keys, 1));
        ASSERT_EQ(limits_spend(l, &k), 600000);
        ASSERT_EQ(limits_charge(l, &k, 0, &r), 0);
        limits_settle(l, &r, 0, 400000);
        ASSERT_EQ(limits_spend(l, &k), 1000000);
        ASSERT_TRUE(limits_charge(l, &k, 0, &r) > 0);
        ASSERT_EQ(r.over, LIMIT_BUDGET);
        /* A reload does not forget the running spend. */
        ASSERT_OK(limits_load_spend(l, s, keys, 1));
        ASSERT_EQ(limits_spend(l, &k), 1000000);
}
