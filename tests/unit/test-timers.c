/* Unit tests for TimerQueue: timers fire once, in deadline order, through random arms, moves and disarms. */
#include "net/timers.h"
#include "tests.h"

#define N 300

typedef struct Owner {
        Timer timer;
        unsigned fired;
        usec_t fired_at;                /* the deadline it had when it fired */
        struct Owner *disarm_other;     /* disarmed from this one's callback */
        bool rearm;                     /* armed again, 1 ms later, from its own callback (once) */
} Owner;

static TimerQueue *queue;
static usec_t last_deadline;
static bool order_ok = true;

static void on_expire(Timer *t) {
        Owner *o = container_of(t, Owner, timer);
        ASSERT_FALSE(timer_armed(t));
        if (t->deadline < last_deadline)
                order_ok = false;
        last_deadline = t->deadline;
        o->fired++;
        o->fired_at = t->deadline;
        if (o->disarm_other)
                timer_disarm(queue, &o->disarm_other->timer);
        if (o->rearm) {
                o->rearm = false;
                ASSERT_OK(timer_arm(queue, t, t->deadline + 1000));
        }
}

static uint32_t rnd(uint32_t *s) {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        return *s;
}

TEST(deadline_order_through_random_operations) {
        sd_event *e = NULL;
        static Owner o[N];
        bool armed[N] = {}, expect[N] = {};
        uint32_t seed = 12345;
        usec_t now;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_new(e, "test", &queue));
        ASSERT_OK(sd_event_now(e, CLOCK_MONOTONIC, &now));

        /* Random arms and moves (earlier and later) and disarms, all within the next 50 ms. */
        for (unsigned step = 0; step < 5000; step++) {
                unsigned i = rnd(&seed) % N;

                o[i].timer.on_expire = on_expire;
                if (rnd(&seed) % 4 == 0) {
                        timer_disarm(queue, &o[i].timer);
                        armed[i] = false;
                } else {
                        ASSERT_OK(timer_arm(queue, &o[i].timer, now + 1000 + rnd(&seed) % 50000));
                        armed[i] = true;
                }
        }
        size_t n = 0;
        for (unsigned i = 0; i < N; i++) {
                ASSERT_EQ(timer_armed(&o[i].timer), armed[i]);
                n += armed[i];
                expect[i] = armed[i];
        }
        ASSERT_EQ(timer_queue_size(queue), n);

        /* Run until 60 ms have passed: every armed timer fires once, none of the others. */
        for (;;) {
                usec_t t;
                ASSERT_OK(sd_event_now(e, CLOCK_MONOTONIC, &t));
                if (t > now + 60000 && timer_queue_size(queue) == 0)
                        break;
                ASSERT_TRUE(t < now + 2 * USEC_PER_SEC);
                sd_event_run(e, 10 * USEC_PER_MSEC);
        }
        ASSERT_TRUE(order_ok);
        for (unsigned i = 0; i < N; i++)
                ASSERT_EQ(o[i].fired, expect[i] ? 1U : 0U);

        queue = timer_queue_free(queue);
        sd_event_unref(e);
}

TEST(callbacks_rearm_and_disarm_others) {
        sd_event *e = NULL;
        Owner a = { .timer.on_expire = on_expire }, b = { .timer.on_expire = on_expire },
              c = { .timer.on_expire = on_expire };
        usec_t now;

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_new(e, "test", &queue));
        ASSERT_OK(sd_event_now(e, CLOCK_MONOTONIC, &now));
        last_deadline = 0;

        /* a fires first, disarms c (due later) and arms itself again 1 ms on; b fires once. */
        a.disarm_other = &c;
        a.rearm = true;
        ASSERT_OK(timer_arm(queue, &a.timer, now + 2000));
        ASSERT_OK(timer_arm(queue, &b.timer, now + 2500));
        ASSERT_OK(timer_arm(queue, &c.timer, now + 4000));
        /* Moving one later leaves the source armed early: it fires, finds nothing due, and re-arms. */
        ASSERT_OK(timer_arm_relative(queue, &b.timer, 3500));
        for (int i = 0; i < 100 && timer_queue_size(queue) > 0; i++)
                sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_EQ(a.fired, 2U);
        ASSERT_EQ(b.fired, 1U);
        ASSERT_EQ(c.fired, 0U);
        ASSERT_FALSE(timer_armed(&c.timer));
        ASSERT_TRUE(order_ok);

        /* A queue freed with timers armed leaves them disarmed. */
        ASSERT_OK(timer_arm_relative(queue, &c.timer, USEC_PER_SEC));
        queue = timer_queue_free(queue);
        ASSERT_FALSE(timer_armed(&c.timer));
        sd_event_unref(e);
}

/* The last reference to a shared queue dropped from a timer's own callback (the last HTTP/1.1 session
 * closed by its timeout): the queue lives until the round is over, then goes. */
typedef struct Holder {
        Timer timer;
        TimerQueue *q;
        unsigned fired;
} Holder;

static void drop_queue(Timer *t) {
        Holder *h = container_of(t, Holder, timer);

        h->fired++;
        h->q = timer_queue_free(h->q);
}

TEST(shared_queue_refs_and_last_drop_in_callback) {
        sd_event *e = NULL;
        TimerQueue *a = NULL, *b = NULL;
        Holder h1 = { .timer.on_expire = drop_queue }, h2 = { .timer.on_expire = drop_queue };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_get_shared(e, &a));
        ASSERT_OK(timer_queue_get_shared(e, &b));
        ASSERT_TRUE(a == b);
        h1.q = a;
        h2.q = b;
        /* Both due in the same round: the second runs after the first dropped its reference, and its
         * own drop is the last. */
        ASSERT_OK(timer_arm_relative(a, &h1.timer, 1000));
        ASSERT_OK(timer_arm_relative(a, &h2.timer, 1000));
        for (int i = 0; i < 50 && (h1.fired == 0 || h2.fired == 0); i++)
                sd_event_run(e, 10 * USEC_PER_MSEC);
        ASSERT_EQ(h1.fired, 1U);
        ASSERT_EQ(h2.fired, 1U);
        ASSERT_NULL(h1.q);
        ASSERT_NULL(h2.q);
        /* Gone: the next caller gets a new one. */
        ASSERT_OK(timer_queue_get_shared(e, &a));
        ASSERT_EQ(timer_queue_size(a), 0U);
        a = timer_queue_free(a);
        sd_event_unref(e);
}

/* A timer that re-arms itself with no delay from its callback runs once per round, not forever within
 * one: the loop gets to its other work in between. */
static unsigned zero_fired;
static TimerQueue *zero_queue;

static void rearm_now(Timer *t) {
        zero_fired++;
        ASSERT_OK(timer_arm_relative(zero_queue, t, 0));
}

TEST(zero_delay_rearm_yields) {
        sd_event *e = NULL;
        Timer t = { .on_expire = rearm_now };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_new(e, "test", &zero_queue));
        ASSERT_OK(timer_arm_relative(zero_queue, &t, 0));
        for (int i = 0; i < 5; i++)
                ASSERT_OK(sd_event_run(e, 10 * USEC_PER_MSEC));
        /* One per loop iteration at most (an iteration may find nothing due yet). */
        ASSERT_TRUE(zero_fired >= 1 && zero_fired <= 5);
        timer_disarm(zero_queue, &t);
        zero_queue = timer_queue_free(zero_queue);
        sd_event_unref(e);
}

/* Milliseconds mean milliseconds: sd-event's default accuracy (250 ms) would let a 5 ms timer fire up
 * to a quarter second late, which paced streams and short retry delays cannot take. */
static unsigned prompt_fired;

static void count_prompt(Timer *t) {
        prompt_fired++;
}

TEST(short_timers_fire_promptly) {
        sd_event *e = NULL;
        TimerQueue *q = NULL;
        Timer t = { .on_expire = count_prompt };

        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_new(e, "test", &q));
        for (unsigned round = 1; round <= 3; round++) {
                usec_t start = now_mono();

                ASSERT_OK(timer_arm_relative(q, &t, 5 * USEC_PER_MSEC));
                while (prompt_fired < round && now_mono() - start < USEC_PER_SEC)
                        ASSERT_TRUE(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
                ASSERT_EQ(prompt_fired, round);
                ASSERT_TRUE(now_mono() - start < 100 * USEC_PER_MSEC);
        }
        q = timer_queue_free(q);
        sd_event_unref(e);
}
