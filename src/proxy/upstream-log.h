/* UpstreamLog: upstream failures at warning level, at most one line per provider per interval. */
#pragma once

#include "net/timers.h"
#include "shared/macro.h"

/* A provider that is down fails every request sent to it: under load, a line for each would flood the
 * journal (and journald's own rate limit would then drop gate's other messages with them). So per provider
 * one failure per interval is logged at warning level; those in between go out at debug level only and
 * are counted, and the next warning says how many: "... (N similar messages suppressed)". A count that no
 * later failure comes to carry (the provider recovered, or stopped being asked) is logged on its own once
 * the provider has been quiet for another interval, so that no count is lost or told days late. */

/* 5 s: an operator learns of a new failure within 5 s of the last line, and a provider that fails
 * continuously costs at most two lines per 5 s, whatever the request rate. */
#define UPSTREAM_LOG_INTERVAL (5 * USEC_PER_SEC)

typedef struct UpstreamLogEntry {
        char *provider;
        usec_t last;                    /* CLOCK_MONOTONIC of its last warning */
        unsigned suppressed;            /* failures since then, logged at debug level only */
} UpstreamLogEntry;

typedef struct UpstreamLog {
        usec_t interval;
        UpstreamLogEntry *entries;      /* one per provider that ever failed (names outlive reloads) */
        size_t n_entries;
        TimerQueue *timers;             /* NULL: no timer, counts wait for upstream_log_flush() */
        Timer timer;                    /* armed while a count is pending */
} UpstreamLog;

void upstream_log_init(UpstreamLog *l, TimerQueue *timers, usec_t interval);
void upstream_log_done(UpstreamLog *l);

/* Logs "Upstream PROVIDER failed for request ID: REASON" at warning level when PROVIDER's last warning is
 * at least an interval old (now: CLOCK_MONOTONIC), else at debug level, counted. Returns 1 when it went
 * out at warning level, 0 when it was held back, -ENOMEM when a provider's first failure found no memory
 * for its entry (the line then goes out at warning level, unthrottled). */
int upstream_log_failure(UpstreamLog *l, usec_t now, const char *provider, const char *request_id,
                         const char *reason);

/* Logs "Upstream PROVIDER: N similar messages suppressed." for each provider whose count has waited an
 * interval after its own interval ended; returns the number of lines. The timer calls it; tests without a
 * timer call it themselves. */
unsigned upstream_log_flush(UpstreamLog *l, usec_t now);
