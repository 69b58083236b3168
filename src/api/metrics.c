/* Metrics: a small registry of counters, gauges and histograms, rendered as Prometheus text (0.0.4). */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/metrics.h"
#include "shared/util.h"

typedef struct Series {
        char *values;                   /* n_labels NUL-terminated strings back to back */
        size_t values_len;
        uint64_t hash;
        double value;                   /* counters and gauges; a histogram's sum */
        uint64_t count;                 /* histograms */
        uint64_t *buckets;              /* histograms: per bucket, not cumulative */
} Series;

struct Metric {
        Metrics *registry;
        char *name;
        char *help;
        MetricType type;
        char **labels;
        size_t n_labels;
        double *bounds;
        size_t n_bounds;

        Series **series;                /* in order of creation, which is the order rendered */
        size_t n_series;
        uint32_t *index;                /* open addressing: 0 empty, else position in series + 1 */
        size_t index_mask;
        Series *other;
        uint64_t dropped;

        double (*get)(void *userdata);
        void *userdata;
};

struct Metrics {
        Metric **metrics;
        size_t n_metrics;
        uint32_t max_series;
        /* Rendering always uses a '.' for decimals, whatever locale the daemon runs in. */
        locale_t c_locale;
};

int metrics_new(uint32_t max_series, Metrics **ret) {
        Metrics *m;

        m = new0(Metrics, 1);
        if (!m)
                return -ENOMEM;
        m->max_series = MAX(max_series, 1U);
        m->c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t) 0);
        if (m->c_locale == (locale_t) 0) {
                free(m);
                return -ENOMEM;
        }
        *ret = m;
        return 0;
}

static void series_free(Series *s) {
        if (!s)
                return;
        free(s->values);
        free(s->buckets);
        free(s);
}

static void metric_free(Metric *c) {
        if (!c)
                return;
        for (size_t i = 0; i < c->n_series; i++)
                series_free(c->series[i]);
        series_free(c->other);
        free(c->series);
        free(c->index);
        for (size_t i = 0; i < c->n_labels; i++)
                free(c->labels[i]);
        free(c->labels);
        free(c->bounds);
        free(c->name);
        free(c->help);
        free(c);
}

Metrics *metrics_free(Metrics *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_metrics; i++)
                metric_free(m->metrics[i]);
        free(m->metrics);
        if (m->c_locale != (locale_t) 0)
                freelocale(m->c_locale);
        free(m);
        return NULL;
}

void metrics_set_max_series(Metrics *m, uint32_t max_series) {
        if (m)
                m->max_series = MAX(max_series, 1U);
}

static bool name_is_valid(const char *s, bool colon) {
        if (isempty(s) || (*s >= '0' && *s <= '9'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                      *s == '_' || (colon && *s == ':')))
                        return false;
        return true;
}

static int metrics_add(Metrics *m, const char *name, const char *help, MetricType type,
                       const char *const *labels, const double *bounds, size_t n_bounds, Metric **ret) {
        Metric *c, **l;
        size_t n_labels = 0;

        if (!m || !name_is_valid(name, true) || !help)
                return -EINVAL;
        for (const char *const *p = labels; p && *p; p++) {
                if (!name_is_valid(*p, false) || startswith(*p, "__") ||
                    (type == METRIC_HISTOGRAM && streq(*p, "le")))
                        return -EINVAL;
                n_labels++;
        }
        if (n_labels > METRIC_LABELS_MAX)
                return -E2BIG;
        for (size_t i = 1; i < n_bounds; i++)
                if (!(bounds[i] > bounds[i - 1]))
                        return -EINVAL;
        for (size_t i = 0; i < m->n_metrics; i++)
                if (streq(m->metrics[i]->name, name))
                        return -EEXIST;

        c = new0(Metric, 1);
        if (!c)
                return -ENOMEM;
        c->registry = m;
        c->type = type;
        c->name = strdup(name);
        c->help = strdup(help);
        c->labels = new0(char *, n_labels + 1);
        c->index = new0(uint32_t, 16);
        c->index_mask = 15;
        if (!c->name || !c->help || !c->labels || !c->index)
                goto oom;
        for (size_t i = 0; i < n_labels; i++) {
                c->labels[i] = strdup(labels[i]);
                if (!c->labels[i])
                        goto oom;
                c->n_labels++;
        }
        if (type == METRIC_HISTOGRAM) {
                c->bounds = new(double, MAX(n_bounds, (size_t) 1));
                if (!c->bounds)
                        goto oom;
                memcpy(c->bounds, bounds, n_bounds * sizeof *bounds);
                c->n_bounds = n_bounds;
        }

        l = reallocarray(m->metrics, m->n_metrics + 1, sizeof *l);
        if (!l)
                goto oom;
        m->metrics = l;
        m->metrics[m->n_metrics++] = c;
        if (ret)
                *ret = c;
        return 0;
oom:
        metric_free(c);
        return -ENOMEM;
}

int metrics_add_counter(Metrics *m, const char *name, const char *help, const char *const *labels,
                        Metric **ret) {
        return metrics_add(m, name, help, METRIC_COUNTER, labels, NULL, 0, ret);
}

int metrics_add_gauge(Metrics *m, const char *name, const char *help, const char *const *labels, Metric **ret) {
        return metrics_add(m, name, help, METRIC_GAUGE, labels, NULL, 0, ret);
}

int metrics_add_histogram(Metrics *m, const char *name, const char *help, const char *const *labels,
                          const double *bounds, size_t n_bounds, Metric **ret) {
        if (!bounds && n_bounds > 0)
                return -EINVAL;
        return metrics_add(m, name, help, METRIC_HISTOGRAM, labels, bounds, n_bounds, ret);
}

int metrics_add_callback(Metrics *m, const char *name, const char *help, MetricType type,
                         double (*get)(void *userdata), void *userdata) {
        Metric *c;
        int r;

        if (!get || (type != METRIC_COUNTER && type != METRIC_GAUGE))
                return -EINVAL;
        r = metrics_add(m, name, help, type, NULL, NULL, 0, &c);
        if (r < 0)
                return r;
        c->get = get;
        c->userdata = userdata;
        return 0;
}

/* Copies a label value into out (room for METRIC_LABEL_VALUE_MAX + 1), cut at a character boundary,
 * invalid UTF-8 replaced by '?': exposition must be UTF-8, and model names come from clients. */
static size_t label_value_copy(char *out, const char *s) {
        const unsigned char *u = (const unsigned char *) (s ?: "");
        size_t n = 0;

        while (*u) {
                /* Label values are nearly always ASCII: copy such runs without the UTF-8 checks. */
                while (*u && *u < 0x80 && n < METRIC_LABEL_VALUE_MAX)
                        out[n++] = (char) *u++;
                if (!*u || n >= METRIC_LABEL_VALUE_MAX)
                        break;

                unsigned len = *u < 0x80 ? 1 : (*u & 0xe0) == 0xc0 && *u >= 0xc2 ? 2 : (*u & 0xf0) == 0xe0 ? 3 :
                                (*u & 0xf8) == 0xf0 && *u <= 0xf4 ? 4 : 0;
                unsigned i;

                for (i = 1; len > 0 && i < len; i++)
                        if ((u[i] & 0xc0) != 0x80)
                                break;
                if (len == 0 || i < len) {
                        if (n + 1 > METRIC_LABEL_VALUE_MAX)
                                break;
                        out[n++] = '?';
                        u++;
                        continue;
                }
                if (n + len > METRIC_LABEL_VALUE_MAX)
                        break;
                memcpy(out + n, u, len);
                n += len;
                u += len;
        }
        out[n] = 0;
        return n + 1;
}

static uint64_t fnv1a(const char *p, size_t n) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);

        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char) p[i];
                h *= UINT64_C(0x100000001b3);
        }
        return h;
}

/* A label value made ready once, for all the series a request touches: cut and sanitized as
 * label_value_copy() does (plain ASCII within the limit, nearly every value, is used in place), and
 * hashed. A series' hash combines its labels' hashes, so each value is hashed once per request. */
typedef struct Label {
        const char *value;              /* NUL-terminated */
        size_t len;                     /* without the NUL */
        uint64_t hash;
        char buf[METRIC_LABEL_VALUE_MAX + 1];   /* the sanitized copy, when one was needed */
} Label;

static void label_prepare(Label *l, const char *s) {
        const unsigned char *u = (const unsigned char *) (s ?: "");
        size_t n = 0;

        while (n <= METRIC_LABEL_VALUE_MAX && u[n] && u[n] < 0x80)
                n++;
        if (u[n] == 0 && n <= METRIC_LABEL_VALUE_MAX) {
                l->value = (const char *) u;
                l->len = n;
        } else {
                l->len = label_value_copy(l->buf, (const char *) u) - 1;
                l->value = l->buf;
        }
        l->hash = fnv1a(l->value, l->len + 1);
}

static uint64_t labels_hash(const Label *const *l, size_t n, size_t *ret_len) {
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        size_t len = 0;

        for (size_t i = 0; i < n; i++) {
                h = (h ^ l[i]->hash) * UINT64_C(0x9e3779b97f4a7c15);
                h ^= h >> 29;
                len += l[i]->len + 1;
        }
        *ret_len = len;
        return h;
}

/* Whether a series' values are these labels. */
static bool series_is(const Series *s, uint64_t hash, size_t len, const Label *const *l, size_t n) {
        const char *v = s->values;

        if (s->hash != hash || s->values_len != len)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (memcmp(v, l[i]->value, l[i]->len + 1) != 0)
                        return false;
                v += l[i]->len + 1;
        }
        return true;
}

static Series *series_find(const Metric *c, uint64_t hash, size_t len, const Label *const *l) {
        for (size_t j = hash & c->index_mask;; j = (j + 1) & c->index_mask) {
                uint32_t k = c->index[j];

                if (!k)
                        return NULL;
                if (series_is(c->series[k - 1], hash, len, l, c->n_labels))
                        return c->series[k - 1];
        }
}

static Series *series_new(const Metric *c, const char *key, size_t len, uint64_t hash) {
        Series *s = new0(Series, 1);

        if (!s)
                return NULL;
        s->values = malloc(len);
        if (!s->values)
                goto fail;
        memcpy(s->values, key, len);
        s->values_len = len;
        s->hash = hash;
        if (c->type == METRIC_HISTOGRAM) {
                s->buckets = new0(uint64_t, MAX(c->n_bounds, (size_t) 1));
                if (!s->buckets)
                        goto fail;
        }
        return s;
fail:
        series_free(s);
        return NULL;
}

static int index_insert(Metric *c, uint64_t hash, size_t pos) {
        /* Keep the load at most one half. */
        if ((c->n_series + 1) * 2 > c->index_mask + 1) {
                size_t size = (c->index_mask + 1) * 2;
                uint32_t *index = new0(uint32_t, size);

                if (!index)
                        return -ENOMEM;
                for (size_t i = 0; i < c->n_series; i++) {
                        size_t j = c->series[i]->hash & (size - 1);
                        while (index[j])
                                j = (j + 1) & (size - 1);
                        index[j] = (uint32_t) i + 1;
                }
                free(c->index);
                c->index = index;
                c->index_mask = size - 1;
        }
        for (size_t j = hash & c->index_mask;; j = (j + 1) & c->index_mask)
                if (!c->index[j]) {
                        c->index[j] = (uint32_t) pos + 1;
                        return 0;
                }
}

static Series *metric_series_labels(Metric *c, const Label *const *l) {
        char key[METRIC_LABELS_MAX * (METRIC_LABEL_VALUE_MAX + 1)];
        size_t len;
        uint64_t hash;
        Series *s, **a;

        if (!c || c->get)
                return NULL;
        hash = labels_hash(l, c->n_labels, &len);
        s = series_find(c, hash, len, l);
        if (s)
                return s;

        if (c->n_series >= c->registry->max_series) {
                /* Bounded cardinality: what does not fit is counted, together, as "other". */
                c->dropped++;
                if (!c->other) {
                        len = 0;
                        for (size_t i = 0; i < c->n_labels; i++)
                                len += label_value_copy(key + len, METRIC_OTHER);
                        c->other = series_new(c, key, len, 0);
                }
                return c->other;
        }

        len = 0;
        for (size_t i = 0; i < c->n_labels; i++) {
                memcpy(key + len, l[i]->value, l[i]->len + 1);
                len += l[i]->len + 1;
        }
        s = series_new(c, key, len, hash);
        if (!s)
                return NULL;
        a = reallocarray(c->series, c->n_series + 1, sizeof *a);
        if (!a) {
                series_free(s);
                return NULL;
        }
        c->series = a;
        if (index_insert(c, hash, c->n_series) < 0) {
                series_free(s);
                return NULL;
        }
        c->series[c->n_series++] = s;
        return s;
}

/* values: n_labels strings (NULL: all empty). */
static void labels_prepare(const Metric *c, const char *const *values, Label *buf, const Label **ret) {
        for (size_t i = 0; i < c->n_labels; i++) {
                label_prepare(buf + i, values ? values[i] : NULL);
                ret[i] = buf + i;
        }
}

static Series *metric_series(Metric *c, const char *const *values) {
        Label buf[METRIC_LABELS_MAX];
        const Label *l[METRIC_LABELS_MAX];

        if (!c || c->get)
                return NULL;
        labels_prepare(c, values, buf, l);
        return metric_series_labels(c, l);
}

static void series_add(Series *s, double v) {
        if (s)
                s->value += v;
}

static void series_observe(const Metric *c, Series *s, double v) {
        size_t i;

        if (!s)
                return;
        for (i = 0; i < c->n_bounds && v > c->bounds[i]; i++)
                ;
        if (i < c->n_bounds)
                s->buckets[i]++;
        s->count++;
        s->value += v;
}

void metric_add(Metric *c, const char *const *values, double v) {
        if (!c || c->type == METRIC_HISTOGRAM || (c->type == METRIC_COUNTER && !(v >= 0)))
                return;
        series_add(metric_series(c, values), v);
}

void metric_set(Metric *c, const char *const *values, double v) {
        Series *s;

        if (!c || c->type != METRIC_GAUGE)
                return;
        s = metric_series(c, values);
        if (s)
                s->value = v;
}

void metric_observe(Metric *c, const char *const *values, double v) {
        if (!c || c->type != METRIC_HISTOGRAM || isnan(v))
                return;
        series_observe(c, metric_series(c, values), v);
}

double metric_get(Metric *c, const char *const *values) {
        Label buf[METRIC_LABELS_MAX];
        const Label *l[METRIC_LABELS_MAX];
        const Series *s;
        uint64_t hash;
        size_t len;

        if (!c)
                return 0;
        if (c->get)
                return c->get(c->userdata);
        labels_prepare(c, values, buf, l);
        hash = labels_hash(l, c->n_labels, &len);
        s = series_find(c, hash, len, l);
        if (s)
                return c->type == METRIC_HISTOGRAM ? (double) s->count : s->value;
        if (c->other && c->n_labels > 0 && values) {
                bool all_other = true;
                for (size_t i = 0; i < c->n_labels; i++)
                        if (!values[i] || !streq(values[i], METRIC_OTHER))
                                all_other = false;
                if (all_other)
                        return c->type == METRIC_HISTOGRAM ? (double) c->other->count : c->other->value;
        }
        return 0;
}

size_t metric_n_series(Metric *c) {
        return c ? c->n_series : 0;
}

uint64_t metric_dropped(Metric *c) {
        return c ? c->dropped : 0;
}

/* ---- rendering ---- */

/* The shortest of %.15g and %.17g that reads back as v: "0.1", not "0.10000000000000001". */
static void format_double(char *b, size_t n, double v) {
        if (isnan(v))
                snprintf(b, n, "NaN");
        else if (isinf(v))
                snprintf(b, n, v > 0 ? "+Inf" : "-Inf");
        else if (v > -1e15 && v < 1e15 && (double) (long long) v == v)
                snprintf(b, n, "%lld", (long long) v);
        else {
                snprintf(b, n, "%.15g", v);
                if (strtod(b, NULL) != v)
                        snprintf(b, n, "%.17g", v);
        }
}

static int append_escaped(Buf *out, const char *s, bool quote) {
        for (; *s; s++) {
                const char *e = *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : quote && *s == '"' ? "\\\"" : NULL;
                int r = e ? buf_append_str(out, e) : buf_append(out, s, 1);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* {a="x",b="y"} with an optional extra label (le) at the end; nothing when there are no labels. */
static int append_labels(Buf *out, const Metric *c, const Series *s, const char *extra_name, const char *extra) {
        const char *v = s ? s->values : NULL;
        int r;

        if (c->n_labels == 0 && !extra_name)
                return 0;
        r = buf_append_str(out, "{");
        for (size_t i = 0; r >= 0 && i < c->n_labels; i++) {
                r = buf_printf(out, "%s%s=\"", i > 0 ? "," : "", c->labels[i]);
                if (r >= 0)
                        r = append_escaped(out, v, true);
                if (r >= 0)
                        r = buf_append_str(out, "\"");
                v += strlen(v) + 1;
        }
        if (r >= 0 && extra_name)
                r = buf_printf(out, "%s%s=\"%s\"", c->n_labels > 0 ? "," : "", extra_name, extra);
        if (r >= 0)
                r = buf_append_str(out, "}");
        return r;
}

static int render_series(Buf *out, const Metric *c, const Series *s) {
        char num[64], le[64];
        uint64_t acc = 0;
        int r;

        if (c->type != METRIC_HISTOGRAM) {
                format_double(num, sizeof num, s->value);
                r = buf_append_str(out, c->name);
                if (r >= 0)
                        r = append_labels(out, c, s, NULL, NULL);
                if (r >= 0)
                        r = buf_printf(out, " %s\n", num);
                return r;
        }

        for (size_t i = 0; i <= c->n_bounds; i++) {
                if (i < c->n_bounds) {
                        acc += s->buckets[i];
                        format_double(le, sizeof le, c->bounds[i]);
                } else {
                        acc = s->count;
                        snprintf(le, sizeof le, "+Inf");
                }
                r = buf_printf(out, "%s_bucket", c->name);
                if (r >= 0)
                        r = append_labels(out, c, s, "le", le);
                if (r >= 0)
                        r = buf_printf(out, " %llu\n", (unsigned long long) acc);
                if (r < 0)
                        return r;
        }
        format_double(num, sizeof num, s->value);
        r = buf_printf(out, "%s_sum", c->name);
        if (r >= 0)
                r = append_labels(out, c, s, NULL, NULL);
        if (r >= 0)
                r = buf_printf(out, " %s\n%s_count", num, c->name);
        if (r >= 0)
                r = append_labels(out, c, s, NULL, NULL);
        if (r >= 0)
                r = buf_printf(out, " %llu\n", (unsigned long long) s->count);
        return r;
}

static const char *const type_names[_METRIC_TYPE_MAX] = {
        [METRIC_COUNTER] = "counter",
        [METRIC_GAUGE] = "gauge",
        [METRIC_HISTOGRAM] = "histogram",
};

static int metrics_render_locked(Metrics *m, Buf *out) {
        bool any_labels = false;
        int r;

        for (size_t i = 0; i < m->n_metrics; i++) {
                Metric *c = m->metrics[i];

                r = buf_printf(out, "# HELP %s ", c->name);
                if (r >= 0)
                        r = append_escaped(out, c->help, false);
                if (r >= 0)
                        r = buf_printf(out, "\n# TYPE %s %s\n", c->name, type_names[c->type]);
                if (r < 0)
                        return r;

                if (c->get) {
                        char num[64];
                        format_double(num, sizeof num, c->get(c->userdata));
                        r = buf_printf(out, "%s %s\n", c->name, num);
                        if (r < 0)
                                return r;
                        continue;
                }
                /* A metric without labels has its one series from the start, at 0. */
                if (c->n_labels == 0 && c->n_series == 0 && !metric_series(c, NULL))
                        return -ENOMEM;
                for (size_t j = 0; j < c->n_series; j++) {
                        r = render_series(out, c, c->series[j]);
                        if (r < 0)
                                return r;
                }
                if (c->other) {
                        r = render_series(out, c, c->other);
                        if (r < 0)
                                return r;
                }
                if (c->n_labels > 0)
                        any_labels = true;
        }

        if (!any_labels)
                return 0;
        r = buf_append_str(out, "# HELP gate_metrics_series_dropped_total Label sets beyond [metrics] "
                                "max_series, counted under \"other\".\n"
                                "# TYPE gate_metrics_series_dropped_total counter\n");
        for (size_t i = 0; r >= 0 && i < m->n_metrics; i++)
                if (m->metrics[i]->n_labels > 0)
                        r = buf_printf(out, "gate_metrics_series_dropped_total{metric=\"%s\"} %llu\n",
                                       m->metrics[i]->name, (unsigned long long) m->metrics[i]->dropped);
        return r;
}

int metrics_render(Metrics *m, Buf *out) {
        locale_t saved;
        int r;

        if (!m || !out)
                return -EINVAL;
        saved = uselocale(m->c_locale);
        r = metrics_render_locked(m, out);
        uselocale(saved);
        return r;
}

/* ---- gate's metric set ---- */

static const double latency_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120,
                                          300 };
/* gate's own share of a request is meant to stay in microseconds. */
static const double overhead_buckets[] = { 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                           0.005, 0.01, 0.025, 0.1 };

int gate_metrics_new(uint32_t max_series, GateMetrics **ret) {
        _cleanup_(gate_metrics_freep) GateMetrics *g = NULL;
        static const char *const request_labels[] = { "route", "dialect", "provider", "model", "status", NULL };
        static const char *const latency_labels[] = { "route", "dialect", "provider", "model", NULL };
        static const char *const overhead_labels[] = { "route", "dialect", "provider", NULL };
        static const char *const token_labels[] = { "dialect", "provider", "model", "type", NULL };
        static const char *const model_labels[] = { "provider", "model", NULL };
        static const char *const error_labels[] = { "provider", "kind", NULL };
        static const char *const provider_labels[] = { "provider", NULL };
        static const char *const limit_labels[] = { "limit", NULL };
        int r;

        g = new0(GateMetrics, 1);
        if (!g)
                return -ENOMEM;
        r = metrics_new(max_series, &g->registry);
        if (r < 0)
                return r;

        if ((r = metrics_add_counter(g->registry, "gate_requests_total", "Requests answered.", request_labels,
                                     &g->requests)) < 0 ||
            (r = metrics_add_histogram(g->registry, "gate_request_duration_seconds",
                                       "Time from the request's arrival to the end of its response.",
                                       latency_labels, latency_buckets, ELEMENTSOF(latency_buckets),
                                       &g->duration)) < 0 ||
            (r = metrics_add_histogram(g->registry, "gate_time_to_first_byte_seconds",
                                       "Time from the request's arrival to the first byte of the upstream's "
                                       "body.", latency_labels, latency_buckets, ELEMENTSOF(latency_buckets),
                                       &g->ttfb)) < 0 ||
            (r = metrics_add_histogram(g->registry, "gate_overhead_seconds",
                                       "gate's own share of a request's time (without the upstream's).",
                                       overhead_labels, overhead_buckets, ELEMENTSOF(overhead_buckets),
                                       &g->overhead)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_tokens_total",
                                     "Tokens as the upstreams reported them; type is input (uncached), output, "
                                     "cache_read or cache_write.", token_labels, &g->tokens)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_cost_usd_total",
                                     "Cost of the tokens by the price table.", model_labels, &g->cost)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_unpriced_requests_total",
                                     "Requests with tokens whose model the price table does not know.",
                                     model_labels, &g->unpriced)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_upstream_errors_total", "Failed upstream attempts.",
                                     error_labels, &g->upstream_errors)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_upstream_retries_total",
                                     "Upstream attempts after the first, to the same or another provider.",
                                     provider_labels, &g->upstream_retries)) < 0 ||
            (r = metrics_add_counter(g->registry, "gate_rate_limited_total",
                                     "Requests refused by a key's rpm, tpm or budget.", limit_labels,
                                     &g->rate_limited)) < 0)
                return r;

        *ret = TAKE_PTR(g);
        return 0;
}

GateMetrics *gate_metrics_free(GateMetrics *g) {
        if (!g)
                return NULL;
        metrics_free(g->registry);
        free(g);
        return NULL;
}

static double seconds(usec_t t) {
        return (double) t / (double) USEC_PER_SEC;
}

/* A histogram series takes the observation when the time is known. */
static void observe_usec(Metric *c, const Label *const *l, usec_t t) {
        if (c && c->type == METRIC_HISTOGRAM && t != USEC_INFINITY)
                series_observe(c, metric_series_labels(c, l), seconds(t));
}

static void add_count(Metric *c, const Label *const *l, double v) {
        if (c && c->type != METRIC_HISTOGRAM && v >= 0)
                series_add(metric_series_labels(c, l), v);
}

void gate_metrics_request(GateMetrics *g, const MetricsRequest *r) {
        static const char *const types[] = { "input", "output", "cache_read", "cache_write" };
        Label route, dialect, provider, model, status, type;
        char code[21];
        bool any = false;

        if (!g || !r)
                return;
        /* Each value is cut, checked and hashed once for the ten series a request may touch. */
        format_uint64(r->status, code);
        label_prepare(&route, r->route);
        label_prepare(&dialect, r->dialect);
        label_prepare(&provider, r->provider);
        label_prepare(&model, r->model);
        label_prepare(&status, code);

        add_count(g->requests, (const Label *const[]) { &route, &dialect, &provider, &model, &status }, 1);
        observe_usec(g->duration, (const Label *const[]) { &route, &dialect, &provider, &model }, r->duration);
        observe_usec(g->ttfb, (const Label *const[]) { &route, &dialect, &provider, &model }, r->ttfb);
        observe_usec(g->overhead, (const Label *const[]) { &route, &dialect, &provider }, r->overhead);

        const uint64_t counts[] = { r->input_tokens, r->output_tokens, r->cache_read_tokens,
                                    r->cache_write_tokens };
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (counts[i] > 0) {
                        label_prepare(&type, types[i]);
                        add_count(g->tokens, (const Label *const[]) { &dialect, &provider, &model, &type },
                                  (double) counts[i]);
                        any = true;
                }
        if (r->cost > 0)
                add_count(g->cost, (const Label *const[]) { &provider, &model }, (double) r->cost / 1e9);
        if (any && !r->priced)
                add_count(g->unpriced, (const Label *const[]) { &provider, &model }, 1);
}

void gate_metrics_upstream_error(GateMetrics *g, const char *provider, const char *kind) {
        if (g)
                metric_add(g->upstream_errors, (const char *const[]) { provider, kind }, 1);
}

void gate_metrics_upstream_retry(GateMetrics *g, const char *provider) {
        if (g)
                metric_add(g->upstream_retries, (const char *const[]) { provider }, 1);
}

void gate_metrics_rate_limited(GateMetrics *g, const char *limit) {
        if (g)
                metric_add(g->rate_limited, (const char *const[]) { limit }, 1);
}

int gate_metrics_add_sources(GateMetrics *g, const GateMetricsSources *s) {
        int r;

        if (!g || !s)
                return -EINVAL;
        if (s->active_connections &&
            (r = metrics_add_callback(g->registry, "gate_active_connections", "Client connections open.",
                                      METRIC_GAUGE, s->active_connections, s->userdata)) < 0)
                return r;
        if (s->active_streams &&
            (r = metrics_add_callback(g->registry, "gate_active_streams", "Streamed responses in progress.",
                                      METRIC_GAUGE, s->active_streams, s->userdata)) < 0)
                return r;
        if (s->usage_queue_depth &&
            (r = metrics_add_callback(g->registry, "gate_usage_queue_depth",
                                      "Usage rows waiting to be written to the database.", METRIC_GAUGE,
                                      s->usage_queue_depth, s->userdata)) < 0)
                return r;
        if (s->usage_queue_drops &&
            (r = metrics_add_callback(g->registry, "gate_usage_queue_dropped_total",
                                      "Usage rows dropped because the queue was full (the database was "
                                      "unavailable or slow).", METRIC_COUNTER, s->usage_queue_drops,
                                      s->userdata)) < 0)
                return r;
        return 0;
}
