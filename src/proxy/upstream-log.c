/* UpstreamLog: upstream failures at warning level, at most one line per provider per interval. */
#include "proxy/upstream-log.h"
#include "shared/log.h"
#include "shared/util.h"

static usec_t add_saturated(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

static void on_flush_timer(Timer *t) {
        UpstreamLog *l = container_of(t, UpstreamLog, timer);

        (void) upstream_log_flush(l, now_mono());
}

void upstream_log_init(UpstreamLog *l, TimerQueue *timers, usec_t interval) {
        *l = (UpstreamLog) {
                .interval = interval,
                .timers = timers,
                .timer.on_expire = on_flush_timer,
        };
}

void upstream_log_done(UpstreamLog *l) {
        if (l->timers)
                timer_disarm(l->timers, &l->timer);
        for (size_t i = 0; i < l->n_entries; i++)
                free(l->entries[i].provider);
        l->entries = mfree(l->entries);
        l->n_entries = 0;
}

/* A pending count is told on its own when no failure came to carry it for a whole interval after its
 * own ended. */
static usec_t entry_flush_due(const UpstreamLog *l, const UpstreamLogEntry *e) {
        return add_saturated(e->last, 2 * l->interval);
}

static void upstream_log_arm(UpstreamLog *l) {
        usec_t due = USEC_INFINITY;

        if (!l->timers)
                return;
        for (size_t i = 0; i < l->n_entries; i++)
                if (l->entries[i].suppressed > 0)
                        due = MIN(due, entry_flush_due(l, l->entries + i));
        if (due == USEC_INFINITY)
                timer_disarm(l->timers, &l->timer);
        else
                (void) timer_arm(l->timers, &l->timer, due);
}

/* The provider's entry, made on its first failure: a handful of providers, looked up on failures only. */
static UpstreamLogEntry *upstream_log_entry(UpstreamLog *l, const char *provider) {
        UpstreamLogEntry *entries, *e;

        for (size_t i = 0; i < l->n_entries; i++)
                if (streq(l->entries[i].provider, provider))
                        return l->entries + i;
        entries = reallocarray(l->entries, l->n_entries + 1, sizeof *entries);
        if (!entries)
                return NULL;
        l->entries = entries;
        e = entries + l->n_entries;
        *e = (UpstreamLogEntry) { .provider = strdup(provider) };
        if (!e->provider)
                return NULL;
        l->n_entries++;
        return e;
}

int upstream_log_failure(UpstreamLog *l, usec_t now, const char *provider, const char *request_id,
                         const char *reason) {
        UpstreamLogEntry *e = upstream_log_entry(l, provider);
        unsigned told;

        if (!e) {
                log_warning("Upstream %s failed for request %s: %s", provider, request_id, reason);
                return -ENOMEM;
        }
        if (e->last > 0 && now < add_saturated(e->last, l->interval)) {
                log_debug("Upstream %s failed for request %s: %s", provider, request_id, reason);
                if (e->suppressed++ == 0)
                        upstream_log_arm(l);
                return 0;
        }
        told = e->suppressed;
        e->suppressed = 0;
        e->last = MAX(now, (usec_t) 1);
        if (told > 0) {
                log_warning("Upstream %s failed for request %s: %s (%u similar message%s suppressed)", provider,
                            request_id, reason, told, told == 1 ? "" : "s");
                upstream_log_arm(l);
        } else
                log_warning("Upstream %s failed for request %s: %s", provider, request_id, reason);
        return 1;
}

unsigned upstream_log_flush(UpstreamLog *l, usec_t now) {
        unsigned lines = 0;

        for (size_t i = 0; i < l->n_entries; i++) {
                UpstreamLogEntry *e = l->entries + i;

                if (e->suppressed == 0 || now < entry_flush_due(l, e))
                        continue;
                log_warning("Upstream %s: %u similar message%s suppressed.", e->provider, e->suppressed,
                            e->suppressed == 1 ? "" : "s");
                e->suppressed = 0;
                lines++;
        }
        upstream_log_arm(l);
        return lines;
}
