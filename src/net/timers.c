/* Timers: many deadlines in a heap of gate's own, served by one sd-event time source. */
#include <stdlib.h>

#include "net/timers.h"
#include "shared/log.h"

struct TimerQueue {
        unsigned n_ref;
        bool shared;
        TimerQueue *next_shared;
        sd_event *event;
        sd_event_source *source;
        usec_t source_at;               /* when the source is armed for; USEC_INFINITY: off */
        usec_t round_now;               /* the loop's time while due timers are served, else 0 */
        Timer **heap;                   /* a min-heap on deadline */
        size_t n, alloc;
};

/* The queues of timer_queue_get_shared(), one per event loop. */
static TimerQueue *shared_queues;

static bool before(const Timer *a, const Timer *b) {
        return a->deadline < b->deadline;
}

static void heap_set(TimerQueue *q, size_t i, Timer *t) {
        q->heap[i] = t;
        t->idx = i + 1;
}

static void sift_up(TimerQueue *q, size_t i) {
        Timer *t = q->heap[i];

        while (i > 0) {
                size_t parent = (i - 1) / 2;
                if (!before(t, q->heap[parent]))
                        break;
                heap_set(q, i, q->heap[parent]);
                i = parent;
        }
        heap_set(q, i, t);
}

static void sift_down(TimerQueue *q, size_t i) {
        Timer *t = q->heap[i];

        for (;;) {
                size_t l = 2 * i + 1, m = i;
                const Timer *least = t;

                if (l < q->n && before(q->heap[l], least))
                        least = q->heap[m = l];
                if (l + 1 < q->n && before(q->heap[l + 1], least))
                        m = l + 1;
                if (m == i)
                        break;
                heap_set(q, i, q->heap[m]);
                i = m;
        }
        heap_set(q, i, t);
}

static void heap_remove(TimerQueue *q, Timer *t) {
        size_t i = t->idx - 1;
        Timer *last = q->heap[--q->n];

        t->idx = 0;
        if (i == q->n)
                return;
        heap_set(q, i, last);
        if (i > 0 && before(last, q->heap[(i - 1) / 2]))
                sift_up(q, i);
        else
                sift_down(q, i);
}

/* The source must fire no later than the earliest deadline; earlier is fine (it re-arms then). */
static void source_update(TimerQueue *q) {
        usec_t first = q->n > 0 ? q->heap[0]->deadline : USEC_INFINITY;

        if (first == USEC_INFINITY) {
                /* Left armed: a spurious wakeup costs less than switching the source off and on. */
                return;
        }
        if (q->source_at != USEC_INFINITY && q->source_at <= first)
                return;
        if (sd_event_source_set_time(q->source, first) < 0 ||
            sd_event_source_set_enabled(q->source, SD_EVENT_ONESHOT) < 0) {
                log_error("Failed to arm a timer source: timeouts may fire late.");
                return;
        }
        q->source_at = first;
}

static int on_source(sd_event_source *s, uint64_t usec, void *userdata) {
        TimerQueue *q = userdata;
        usec_t now;

        /* A callback may drop the last reference (the last session of a shared queue goes): the queue
         * lives until the round is over. */
        q->n_ref++;
        q->source_at = USEC_INFINITY;
        if (sd_event_now(q->event, CLOCK_MONOTONIC, &now) < 0)
                now = usec;
        q->round_now = now;
        /* Each due timer leaves the heap before its callback, which may arm it again (later) or free
         * its owner. */
        while (q->n > 0 && q->heap[0]->deadline <= now) {
                Timer *t = q->heap[0];

                heap_remove(q, t);
                t->on_expire(t);
        }
        q->round_now = 0;
        source_update(q);
        timer_queue_free(q);
        return 0;
}

int timer_queue_new(sd_event *event, const char *description, TimerQueue **ret) {
        TimerQueue *q;
        int r;

        q = new0(TimerQueue, 1);
        if (!q)
                return -ENOMEM;
        q->n_ref = 1;
        q->event = sd_event_ref(event);
        q->source_at = USEC_INFINITY;
        /* Accuracy 1 us: sd-event's default (0 means 250 ms) would let it coalesce wakeups by that much,
         * and paced streams (the mock) or short retry delays need milliseconds. Batching comes from
         * the heap: one wakeup serves every timer that is due. */
        r = sd_event_add_time(event, &q->source, CLOCK_MONOTONIC, USEC_INFINITY, 1, on_source, q);
        if (r < 0) {
                timer_queue_free(q);
                return r;
        }
        (void) sd_event_source_set_enabled(q->source, SD_EVENT_OFF);
        (void) sd_event_source_set_description(q->source, description);
        *ret = q;
        return 0;
}

int timer_queue_get_shared(sd_event *event, TimerQueue **ret) {
        TimerQueue *q;
        int r;

        for (q = shared_queues; q; q = q->next_shared)
                if (q->event == event) {
                        q->n_ref++;
                        *ret = q;
                        return 0;
                }
        r = timer_queue_new(event, "shared-timeouts", &q);
        if (r < 0)
                return r;
        q->shared = true;
        q->next_shared = shared_queues;
        shared_queues = q;
        *ret = q;
        return 0;
}

TimerQueue *timer_queue_free(TimerQueue *q) {
        if (!q || --q->n_ref > 0)
                return NULL;
        if (q->shared)
                for (TimerQueue **l = &shared_queues; *l; l = &(*l)->next_shared)
                        if (*l == q) {
                                *l = q->next_shared;
                                break;
                        }
        for (size_t i = 0; i < q->n; i++)
                q->heap[i]->idx = 0;
        sd_event_source_disable_unref(q->source);
        sd_event_unref(q->event);
        free(q->heap);
        free(q);
        return NULL;
}

int timer_arm(TimerQueue *q, Timer *t, usec_t deadline) {
        /* Armed from a callback for a time already reached: the next round, never this one (a timer
         * that re-arms itself with no delay would otherwise run forever without yielding the loop). */
        if (q->round_now > 0 && deadline <= q->round_now)
                deadline = q->round_now + 1;
        if (timer_armed(t)) {
                usec_t old = t->deadline;

                t->deadline = deadline;
                if (deadline < old)
                        sift_up(q, t->idx - 1);
                else if (deadline > old)
                        sift_down(q, t->idx - 1);
        } else {
                if (q->n >= q->alloc) {
                        size_t m = MAX(q->alloc * 2, (size_t) 64);
                        Timer **h = reallocarray(q->heap, m, sizeof *h);
                        if (!h)
                                return -ENOMEM;
                        q->heap = h;
                        q->alloc = m;
                }
                t->deadline = deadline;
                q->heap[q->n++] = t;
                sift_up(q, q->n - 1);
        }
        source_update(q);
        return 0;
}

int timer_arm_relative(TimerQueue *q, Timer *t, usec_t usec) {
        usec_t now;
        int r;

        r = sd_event_now(q->event, CLOCK_MONOTONIC, &now);
        if (r < 0)
                return r;
        return timer_arm(q, t, usec >= USEC_INFINITY - now ? USEC_INFINITY - 1 : now + usec);
}

void timer_disarm(TimerQueue *q, Timer *t) {
        if (q && timer_armed(t))
                heap_remove(q, t);
}

size_t timer_queue_size(const TimerQueue *q) {
        return q ? q->n : 0;
}
