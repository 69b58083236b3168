/* Timers: many deadlines in a heap of gate's own, served by one sd-event time source. */
#pragma once

#include <systemd/sd-event.h>

#include "shared/macro.h"
#include "shared/util.h"

/*
 * Every proxied call and upstream connect has a deadline that is armed, moved and dropped again and
 * again. As sd-event time sources each such operation cost 1.4-1.9k instructions with a few hundred
 * alive (two priority queues per clock, each reshuffled); a binary heap of plain structs costs a tenth
 * of that. A TimerQueue keeps its own heap and one sd-event source armed at (or before) the earliest
 * deadline: moving a deadline later touches nothing in sd-event, and a source that fires early finds
 * nothing due and re-arms itself.
 *
 * A Timer is embedded in its owner; the owner disarms it before it is freed.
 */
typedef struct TimerQueue TimerQueue;
typedef struct Timer Timer;

struct Timer {
        /* Called once the deadline has passed, with the timer already disarmed: it may be armed again,
         * and the owner may be freed (other timers due at the same time are then still served). */
        void (*on_expire)(Timer *t);
        usec_t deadline;                /* CLOCK_MONOTONIC */
        size_t idx;                     /* position in the heap + 1; 0: not armed */
};

int timer_queue_new(sd_event *event, const char *description, TimerQueue **ret);
/* A reference to the one queue all callers on this event loop share (made by the first), for owners
 * that come and go by the thousand (HTTP/1.1 sessions) and have no common parent to hold one. */
int timer_queue_get_shared(sd_event *event, TimerQueue **ret);
/* Drops a reference; the last frees the queue, whose timers must be disarmed (or their owners gone). */
TimerQueue *timer_queue_free(TimerQueue *q);

/* Arms (or moves) t to fire at deadline (CLOCK_MONOTONIC), or usec from the loop's now. Armed from an
 * expiry callback for a time already reached, it fires in the next round, after the loop's other work. */
int timer_arm(TimerQueue *q, Timer *t, usec_t deadline);
int timer_arm_relative(TimerQueue *q, Timer *t, usec_t usec);
void timer_disarm(TimerQueue *q, Timer *t);

static inline bool timer_armed(const Timer *t) {
        return t->idx > 0;
}

/* Timers in the heap (for tests and a glance). */
size_t timer_queue_size(const TimerQueue *q);
