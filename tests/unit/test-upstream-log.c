/* Unit tests for UpstreamLog: one warning per provider per interval, counts told with the next one. */
#include <stdio.h>
#include <unistd.h>

#include "proxy/upstream-log.h"
#include "shared/log.h"
#include "tests.h"

#define S USEC_PER_SEC

/* stderr goes to a file while a test body runs, so that it can read what the log wrote; a failing body's
 * messages (which went there too) are copied to the real stderr after it. */
static FILE *captured;
static long captured_at;

static char *capture_take(void) {
        static char buf[8192];
        size_t n;

        fflush(stderr);
        fseek(captured, captured_at, SEEK_SET);
        n = fread(buf, 1, sizeof buf - 1, captured);
        buf[n] = 0;
        captured_at += (long) n;
        return buf;
}

static void run_captured(void (*body)(void)) {
        unsigned failures = test_failures;
        int saved;

        fflush(stderr);
        captured = tmpfile();
        saved = dup(STDERR_FILENO);
        if (!captured || saved < 0 || dup2(fileno(captured), STDERR_FILENO) < 0)
                TEST_FAIL("cannot capture stderr");
        captured_at = 0;
        body();
        fflush(stderr);
        (void) dup2(saved, STDERR_FILENO);
        close(saved);
        if (test_failures != failures) {
                char buf[4096];
                size_t n;
                rewind(captured);
                while ((n = fread(buf, 1, sizeof buf, captured)) > 0)
                        fwrite(buf, 1, n, stderr);
        }
        fclose(captured);
        captured = NULL;
}

static void one_warning_per_provider_per_interval(void) {
        UpstreamLog l;
        const char *out;

        log_set_max_level(LOG_INFO);   /* gate's default: what is held back goes out at debug level only */
        upstream_log_init(&l, NULL, 5 * S);

        ASSERT_EQ(upstream_log_failure(&l, 100 * S, "down", "r1", "Couldn't connect to server"), 1);
        out = capture_take();
        ASSERT_STREQ(out, "<4>Upstream down failed for request r1: Couldn't connect to server\n");

        /* Within the interval: held back, counted. Another provider has its own interval. */
        ASSERT_EQ(upstream_log_failure(&l, 101 * S, "down", "r2", "Couldn't connect to server"), 0);
        ASSERT_EQ(upstream_log_failure(&l, 104 * S, "down", "r3", "Timeout was reached"), 0);
        ASSERT_EQ(upstream_log_failure(&l, 104 * S, "other", "r4", "Timeout was reached"), 1);
        out = capture_take();
        ASSERT_STREQ(out, "<4>Upstream other failed for request r4: Timeout was reached\n");

        /* Not yet due: a count is told on its own only after another quiet interval. */
        ASSERT_EQ(upstream_log_flush(&l, 109 * S), 0);
        ASSERT_STREQ(capture_take(), "");

        /* The interval is over: the next failure goes out, with the count of those held back. */
        ASSERT_EQ(upstream_log_failure(&l, 105 * S, "down", "r5", "Couldn't connect to server"), 1);
        out = capture_take();
        ASSERT_STREQ(out, "<4>Upstream down failed for request r5: Couldn't connect to server "
                          "(2 similar messages suppressed)\n");

        /* A count no later failure carries is told once the provider has been quiet for an interval. */
        ASSERT_EQ(upstream_log_failure(&l, 106 * S, "down", "r6", "Couldn't connect to server"), 0);
        ASSERT_EQ(upstream_log_flush(&l, 114 * S), 0);
        ASSERT_EQ(upstream_log_flush(&l, 115 * S), 1);
        out = capture_take();
        ASSERT_STREQ(out, "<4>Upstream down: 1 similar message suppressed.\n");
        ASSERT_EQ(upstream_log_flush(&l, 200 * S), 0);

        /* ... and is not told again: the next line has no count. */
        ASSERT_EQ(upstream_log_failure(&l, 116 * S, "down", "r7", "Couldn't connect to server"), 1);
        out = capture_take();
        ASSERT_STREQ(out, "<4>Upstream down failed for request r7: Couldn't connect to server\n");

        /* At debug level the held-back lines are there too, marked as debug. */
        log_set_max_level(LOG_DEBUG);
        ASSERT_EQ(upstream_log_failure(&l, 117 * S, "down", "r8", "Timeout was reached"), 0);
        out = capture_take();
        ASSERT_STREQ(out, "<7>Upstream down failed for request r8: Timeout was reached\n");
        upstream_log_done(&l);
}

static void flush_timer_tells_a_pending_count(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        TimerQueue *q = NULL;
        UpstreamLog l;
        usec_t now;

        log_set_max_level(LOG_INFO);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(timer_queue_new(e, "test", &q));
        /* A short interval: the timer runs on the real clock. */
        upstream_log_init(&l, q, 50 * USEC_PER_MSEC);
        now = now_mono();
        ASSERT_EQ(upstream_log_failure(&l, now, "p", "r1", "x"), 1);
        ASSERT_EQ(upstream_log_failure(&l, now, "p", "r2", "x"), 0);
        ASSERT_EQ(upstream_log_failure(&l, now, "p", "r3", "x"), 0);
        while (now_mono() < now + 300 * USEC_PER_MSEC)
                ASSERT_OK(sd_event_run(e, 50 * USEC_PER_MSEC));
        ASSERT_STREQ(capture_take(), "<4>Upstream p failed for request r1: x\n"
                                     "<4>Upstream p: 2 similar messages suppressed.\n");
        upstream_log_done(&l);
        timer_queue_free(q);
}

TEST(one_warning_per_provider_per_interval) {
        run_captured(one_warning_per_provider_per_interval);
}

TEST(flush_timer_tells_a_pending_count) {
        run_captured(flush_timer_tells_a_pending_count);
}
