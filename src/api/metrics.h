/* Metrics: a small registry of counters, gauges and histograms, rendered as Prometheus text (0.0.4). */
#pragma once

#include "shared/buf.h"
#include "shared/macro.h"

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
        _METRIC_TYPE_MAX,
        _METRIC_TYPE_INVALID = -EINVAL,
} MetricType;

#define METRIC_LABELS_MAX 8
#define METRIC_LABEL_VALUE_MAX 128      /* longer values are cut */
#define METRIC_OTHER "other"

typedef struct Metrics Metrics;
typedef struct Metric Metric;

/* max_series bounds the label sets of each metric: label sets beyond it are all counted in one series
 * whose labels are all "other", and gate_metrics_series_dropped_total{metric} counts those events. */
int metrics_new(uint32_t max_series, Metrics **ret);
Metrics *metrics_free(Metrics *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Metrics *, metrics_free);
/* For a reload: series already created stay; only new ones are checked against the new bound. */
void metrics_set_max_series(Metrics *m, uint32_t max_series);

/* Registers a metric. name and label names must be valid Prometheus names; labels is NULL-terminated
 * (NULL for none). The metric belongs to the registry. -EEXIST for a name already registered. */
int metrics_add_counter(Metrics *m, const char *name, const char *help, const char *const *labels, Metric **ret);
int metrics_add_gauge(Metrics *m, const char *name, const char *help, const char *const *labels, Metric **ret);
/* bounds: the upper bounds of the buckets, increasing; +Inf is implied. */
int metrics_add_histogram(Metrics *m, const char *name, const char *help, const char *const *labels,
                          const double *bounds, size_t n_bounds, Metric **ret);
/* A metric without labels whose value is read from get() at each rendering (active connections, queue
 * depth...). type is METRIC_COUNTER or METRIC_GAUGE. */
int metrics_add_callback(Metrics *m, const char *name, const char *help, MetricType type,
                         double (*get)(void *userdata), void *userdata);

/* values: one per label, in the order registered (NULL counts as ""). Invalid UTF-8 is replaced, and
 * values are cut to METRIC_LABEL_VALUE_MAX bytes. Failures (OOM) are silently ignored: metrics never
 * fail a request. */
void metric_add(Metric *c, const char *const *values, double v);       /* counters and gauges */
void metric_set(Metric *g, const char *const *values, double v);       /* gauges */
void metric_observe(Metric *h, const char *const *values, double v);   /* histograms */

/* The value of one series (counters and gauges), or the count of a histogram's; 0 when absent. */
double metric_get(Metric *m, const char *const *values);
size_t metric_n_series(Metric *m);
uint64_t metric_dropped(Metric *m);

/* Appends the Prometheus text exposition (Content-Type: text/plain; version=0.0.4) of all metrics. */
int metrics_render(Metrics *m, Buf *out);
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* ---- gate's metric set ---- */

typedef struct GateMetrics {
        Metrics *registry;
        Metric *requests;               /* counter {route, dialect, provider, model, status} */
        Metric *duration;               /* histogram {route, dialect, provider, model}, seconds */
        Metric *ttfb;                   /* histogram {route, dialect, provider, model}, seconds */
        Metric *overhead;               /* histogram {route, dialect, provider}, seconds */
        Metric *tokens;                 /* counter {dialect, provider, model, type} */
        Metric *cost;                   /* counter {provider, model}, USD */
        Metric *unpriced;               /* counter {provider, model} */
        Metric *upstream_errors;        /* counter {provider, kind} */
        Metric *upstream_retries;       /* counter {provider} */
        Metric *rate_limited;           /* counter {limit} */
} GateMetrics;

typedef struct MetricsRequest {
        const char *route;
        const char *dialect;            /* the client's */
        const char *provider;           /* NULL: none was reached */
        const char *model;              /* served, else requested */
        unsigned status;
        usec_t duration;
        usec_t ttfb;                    /* USEC_INFINITY: no byte came */
        usec_t overhead;
        uint64_t input_tokens, output_tokens, cache_read_tokens, cache_write_tokens;
        uint64_t cost;                  /* nano-USD */
        bool priced;
} MetricsRequest;

int gate_metrics_new(uint32_t max_series, GateMetrics **ret);
GateMetrics *gate_metrics_free(GateMetrics *g);
DEFINE_TRIVIAL_CLEANUP_FUNC(GateMetrics *, gate_metrics_free);

/* One finished request: its count, latencies, tokens and cost. */
void gate_metrics_request(GateMetrics *g, const MetricsRequest *r);
/* kind: "connect", "timeout", "status_5xx", ... as the caller classifies it. */
void gate_metrics_upstream_error(GateMetrics *g, const char *provider, const char *kind);
void gate_metrics_upstream_retry(GateMetrics *g, const char *provider);
/* limit: limit_kind_to_string() of the limit that refused a request. */
void gate_metrics_rate_limited(GateMetrics *g, const char *limit);

/* What gate reads from its subsystems at each scrape; NULL functions are left out. */
typedef struct GateMetricsSources {
        double (*active_connections)(void *userdata);   /* gate_active_connections, gauge */
        double (*active_streams)(void *userdata);       /* gate_active_streams, gauge */
        double (*usage_queue_depth)(void *userdata);    /* gate_usage_queue_depth, gauge */
        double (*usage_queue_drops)(void *userdata);    /* gate_usage_queue_dropped_total, counter */
        void *userdata;
} GateMetricsSources;

int gate_metrics_add_sources(GateMetrics *g, const GateMetricsSources *s);
