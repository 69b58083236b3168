/* Unit tests for metrics: exposition format, escaping, histograms, callbacks, bounded label sets. */
#include <locale.h>
#include <stdio.h>

#include "api/metrics.h"
#include "tests.h"

static char *render(Metrics *m) {
        _cleanup_(buf_done) Buf b = {};

        if (metrics_render(m, &b) < 0)
                return NULL;
        return buf_steal_str(&b, NULL);
}

static double half(void *userdata) {
        return *(double *) userdata / 2;
}

TEST(counter_and_gauge_format) {
        _cleanup_(metrics_freep) Metrics *m = NULL;
        _cleanup_free_ char *out = NULL;
        Metric *c, *g, *plain;
        double v = 7;

        ASSERT_OK(metrics_new(100, &m));
        ASSERT_OK(metrics_add_counter(m, "x_total", "Things.\nWith \\ a second line.",
                                      (const char *const[]) { "route", "model", NULL }, &c));
        ASSERT_OK(metrics_add_gauge(m, "y", "A gauge.", NULL, &g));
        ASSERT_OK(metrics_add_counter(m, "z_total", "Never touched.", NULL, &plain));
        ASSERT_OK(metrics_add_callback(m, "w", "From a callback.", METRIC_GAUGE, half, &v));

        metric_add(c, (const char *const[]) { "/v1/a", "gpt-4o" }, 1);
        metric_add(c, (const char *const[]) { "/v1/a", "gpt-4o" }, 2);
        metric_add(c, (const char *const[]) { "/v1/b", "we\"ird\\\nname" }, 0.25);
        metric_add(c, (const char *const[]) { "/v1/b", "x" }, -1);     /* counters never go down */
        metric_set(g, NULL, -3.5);
        v = 1e20;

        out = render(m);
        ASSERT_NOT_NULL(out);
        ASSERT_STREQ(out,
                     "# HELP x_total Things.\\nWith \\\\ a second line.\n"
                     "# TYPE x_total counter\n"
                     "x_total{route=\"/v1/a\",model=\"gpt-4o\"} 3\n"
                     "x_total{route=\"/v1/b\",model=\"we\\\"ird\\\\\\nname\"} 0.25\n"
                     "# HELP y A gauge.\n"
                     "# TYPE y gauge\n"
                     "y -3.5\n"
                     "# HELP z_total Never touched.\n"
                     "# TYPE z_total counter\n"
                     "z_total 0\n"
                     "# HELP w From a callback.\n"
                     "# TYPE w gauge\n"
                     "w 5e+19\n"
                     "# HELP gate_metrics_series_dropped_total Label sets beyond [metrics] max_series, counted "
                     "under \"other\".\n"
                     "# TYPE gate_metrics_series_dropped_total counter\n"
                     "gate_metrics_series_dropped_total{metric=\"x_total\"} 0\n");
        ASSERT_EQ(metric_get(c, (const char *const[]) { "/v1/a", "gpt-4o" }), 3);
        ASSERT_EQ(metric_get(c, (const char *const[]) { "/v1/a", "nope" }), 0);
        ASSERT_EQ(metric_get(g, NULL), -3.5);
}

TEST(registration_errors) {
        _cleanup_(metrics_freep) Metrics *m = NULL;

        ASSERT_OK(metrics_new(10, &m));
        ASSERT_OK(metrics_add_counter(m, "a_total", "A.", NULL, NULL));
        ASSERT_ERROR(metrics_add_counter(m, "a_total", "A.", NULL, NULL), EEXIST);
        ASSERT_ERROR(metrics_add_counter(m, "1a", "A.", NULL, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_counter(m, "a-b", "A.", NULL, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_counter(m, "b", "B.", (const char *const[]) { "a:b", NULL }, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_counter(m, "b", "B.", (const char *const[]) { "__x", NULL }, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_histogram(m, "h", "H.", (const char *const[]) { "le", NULL },
                                           (const double[]) { 1 }, 1, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_histogram(m, "h", "H.", NULL, (const double[]) { 2, 1 }, 2, NULL), EINVAL);
        ASSERT_ERROR(metrics_add_callback(m, "c", "C.", METRIC_HISTOGRAM, half, NULL), EINVAL);
}

TEST(histogram_format) {
        _cleanup_(metrics_freep) Metrics *m = NULL;
        _cleanup_free_ char *out = NULL;
        Metric *h;

        ASSERT_OK(metrics_new(100, &m));
        ASSERT_OK(metrics_add_histogram(m, "lat_seconds", "Latency.", (const char *const[]) { "route", NULL },
                                        (const double[]) { 0.00001, 0.1, 1 }, 3, &h));
        metric_observe(h, (const char *const[]) { "/r" }, 0.05);
        metric_observe(h, (const char *const[]) { "/r" }, 0.1);       /* on a bound: le is inclusive */
        metric_observe(h, (const char *const[]) { "/r" }, 3);
        metric_observe(h, (const char *const[]) { "/r" }, 0.000001);

        out = render(m);
        ASSERT_CONTAINS(out, "# TYPE lat_seconds histogram\n"
                             "lat_seconds_bucket{route=\"/r\",le=\"1e-05\"} 1\n"
                             "lat_seconds_bucket{route=\"/r\",le=\"0.1\"} 3\n"
                             "lat_seconds_bucket{route=\"/r\",le=\"1\"} 3\n"
                             "lat_seconds_bucket{route=\"/r\",le=\"+Inf\"} 4\n"
                             "lat_seconds_sum{route=\"/r\"} 3.150001\n"
                             "lat_seconds_count{route=\"/r\"} 4\n");
        ASSERT_EQ(metric_get(h, (const char *const[]) { "/r" }), 4);
}

TEST(bounded_cardinality) {
        _cleanup_(metrics_freep) Metrics *m = NULL;
        _cleanup_free_ char *out = NULL;
        Metric *c;
        char model[32];

        ASSERT_OK(metrics_new(1000, &m));
        ASSERT_OK(metrics_add_counter(m, "req_total", "R.", (const char *const[]) { "model", "status", NULL }, &c));
        /* Clients choose model names: a hundred thousand of them make 1000 series and "other". */
        for (int i = 0; i < 100000; i++) {
                snprintf(model, sizeof model, "m%d", i);
                metric_add(c, (const char *const[]) { model, "200" }, 1);
        }
        /* Series that exist keep counting. */
        metric_add(c, (const char *const[]) { "m5", "200" }, 1);
        ASSERT_EQ(metric_n_series(c), 1000);
        ASSERT_EQ(metric_dropped(c), 99000);
        ASSERT_EQ(metric_get(c, (const char *const[]) { "m5", "200" }), 2);
        ASSERT_EQ(metric_get(c, (const char *const[]) { "other", "other" }), 99000);

        out = render(m);
        ASSERT_CONTAINS(out, "req_total{model=\"other\",status=\"other\"} 99000\n");
        ASSERT_CONTAINS(out, "gate_metrics_series_dropped_total{metric=\"req_total\"} 99000\n");

        /* Long values are cut, invalid UTF-8 replaced: exposition stays valid. */
        char long_value[300];
        memset(long_value, 'a', sizeof long_value - 1);
        long_value[sizeof long_value - 1] = 0;
        metrics_set_max_series(m, 2000);
        metric_add(c, (const char *const[]) { long_value, "bad\xff\xfe" }, 1);
        free(out);
        out = render(m);
        char want[300];
        snprintf(want, sizeof want, "req_total{model=\"%.*s\",status=\"bad??\"} 1\n", METRIC_LABEL_VALUE_MAX,
                 long_value);
        ASSERT_CONTAINS(out, want);
}

TEST(render_ignores_the_locale) {
        _cleanup_(metrics_freep) Metrics *m = NULL;
        _cleanup_free_ char *out = NULL;
        Metric *g;

        if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8"))
                return;         /* no such locale installed: nothing to show */
        ASSERT_OK(metrics_new(10, &m));
        ASSERT_OK(metrics_add_gauge(m, "g", "G.", NULL, &g));
        metric_set(g, NULL, 0.5);
        out = render(m);
        setlocale(LC_NUMERIC, "C");
        ASSERT_CONTAINS(out, "g 0.5\n");
}

static double twelve(void *userdata) {
        return 12;
}

TEST(gate_metric_set) {
        _cleanup_(gate_metrics_freep) GateMetrics *g = NULL;
        _cleanup_free_ char *out = NULL;

        ASSERT_OK(gate_metrics_new(1000, &g));
        ASSERT_OK(gate_metrics_add_sources(g, &(GateMetricsSources) {
                .active_connections = twelve,
                .active_streams = twelve,
                .usage_queue_depth = twelve,
                .usage_queue_drops = twelve,
        }));
        gate_metrics_request(g, &(MetricsRequest) {
                .route = "/v1/messages",
                .dialect = "anthropic",
                .provider = "anthropic",
                .model = "claude-sonnet-4-5",
                .status = 200,
                .duration = 2 * USEC_PER_SEC,
                .ttfb = 300 * USEC_PER_MSEC,
                .overhead = 40,
                .input_tokens = 10,
                .output_tokens = 20,
                .cache_read_tokens = 30,
                .cost = 1500000,
                .priced = true,
        });
        gate_metrics_request(g, &(MetricsRequest) {
                .route = "/v1/chat/completions",
                .dialect = "openai",
                .model = "mystery",
                .status = 429,
                .duration = 1000,
                .ttfb = USEC_INFINITY,
                .overhead = USEC_INFINITY,
                .output_tokens = 1,
        });
        gate_metrics_upstream_error(g, "anthropic", "status_5xx");
        gate_metrics_upstream_retry(g, "anthropic");
        gate_metrics_rate_limited(g, "tpm");

        out = render(g->registry);
        ASSERT_CONTAINS(out, "gate_requests_total{route=\"/v1/messages\",dialect=\"anthropic\",provider=\"anthropic\","
                             "model=\"claude-sonnet-4-5\",status=\"200\"} 1\n");
        ASSERT_CONTAINS(out, "gate_requests_total{route=\"/v1/chat/completions\",dialect=\"openai\",provider=\"\","
                             "model=\"mystery\",status=\"429\"} 1\n");
        ASSERT_CONTAINS(out, "gate_request_duration_seconds_bucket{route=\"/v1/messages\",dialect=\"anthropic\","
                             "provider=\"anthropic\",model=\"claude-sonnet-4-5\",le=\"2.5\"} 1\n");
        ASSERT_CONTAINS(out, "gate_time_to_first_byte_seconds_sum{route=\"/v1/messages\",dialect=\"anthropic\","
                             "provider=\"anthropic\",model=\"claude-sonnet-4-5\"} 0.3\n");
        ASSERT_CONTAINS(out, "gate_overhead_seconds_bucket{route=\"/v1/messages\",dialect=\"anthropic\","
                             "provider=\"anthropic\",le=\"5e-05\"} 1\n");
        ASSERT_CONTAINS(out, "gate_tokens_total{dialect=\"anthropic\",provider=\"anthropic\",model=\"claude-sonnet-4-5\","
                             "type=\"cache_read\"} 30\n");
        ASSERT_CONTAINS(out, "gate_cost_usd_total{provider=\"anthropic\",model=\"claude-sonnet-4-5\"} 0.0015\n");
        ASSERT_CONTAINS(out, "gate_unpriced_requests_total{provider=\"\",model=\"mystery\"} 1\n");
        ASSERT_CONTAINS(out, "gate_upstream_errors_total{provider=\"anthropic\",kind=\"status_5xx\"} 1\n");
        ASSERT_CONTAINS(out, "gate_upstream_retries_total{provider=\"anthropic\"} 1\n");
        ASSERT_CONTAINS(out, "gate_rate_limited_total{limit=\"tpm\"} 1\n");
        ASSERT_CONTAINS(out, "# TYPE gate_active_connections gauge\ngate_active_connections 12\n");
        ASSERT_CONTAINS(out, "# TYPE gate_usage_queue_dropped_total counter\ngate_usage_queue_dropped_total 12\n");
        /* No ttfb, no overhead: not observed. */
        ASSERT_TRUE(strstr(out, "gate_time_to_first_byte_seconds_count{route=\"/v1/chat/completions\"") == NULL);
}
