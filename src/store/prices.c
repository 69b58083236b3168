/* Prices: what tokens cost per model, from the shipped price table and the configuration's overrides. */
#include <stdarg.h>
#include <stdio.h>

#include "core/config.h"
#include "gate-build.h"
#include "proxy/provider.h"
#include "shared/log.h"
#include "shared/util.h"
#include "store/prices.h"

/* After our headers: glib redefines MIN/MAX. */
#include <glib.h>

/* A price table is a few kilobytes; anything near this is a mistake. */
#define PRICE_FILE_MAX (4U << 20)

static const char *const price_keys[] = { "input", "output", "cache_read", "cache_write" };

_printf_(2, 3) static void set_error(char **ret_error, const char *format, ...) {
        va_list ap;

        if (!ret_error)
                return;
        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
}

int usd_parse(const char *s, unsigned decimals, uint64_t *ret) {
        uint64_t v = 0;
        unsigned frac = 0;
        bool dot = false, digits = false;

        if (!s || decimals > 18)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (*p == '.' && !dot) {
                        dot = true;
                        continue;
                }
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                if (dot && ++frac > decimals)
                        return -EINVAL;
                if (v > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
                digits = true;
        }
        if (!digits)
                return -EINVAL;
        for (; frac < decimals; frac++) {
                if (v > UINT64_MAX / 10)
                        return -ERANGE;
                v *= 10;
        }
        *ret = v;
        return 0;
}

char *usd_format(char *buf, size_t n, uint64_t v, unsigned decimals, unsigned min_frac) {
        char frac[24];
        uint64_t scale = 1;
        unsigned k;

        for (unsigned i = 0; i < decimals && i < 19; i++)
                scale *= 10;
        snprintf(frac, sizeof frac, "%0*llu", (int) decimals, (unsigned long long) (v % scale));
        /* Trailing zeros go, down to min_frac digits. */
        for (k = decimals; k > min_frac && frac[k - 1] == '0'; k--)
                ;
        frac[k] = 0;
        snprintf(buf, n, "%llu%s%s", (unsigned long long) (v / scale), k > 0 ? "." : "", frac);
        return buf;
}

int price_table_new(PriceTable **ret) {
        PriceTable *t = new0(PriceTable, 1);

        if (!t)
                return -ENOMEM;
        t->n_ref = 1;
        *ret = t;
        return 0;
}

PriceTable *price_table_ref(PriceTable *t) {
        if (t)
                t->n_ref++;
        return t;
}

PriceTable *price_table_unref(PriceTable *t) {
        if (!t || --t->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < t->n_items; i++)
                free(t->items[i].pattern);
        free(t->items);
        free(t);
        return NULL;
}

int price_table_set(PriceTable *t, const Price *p) {
        Price *items;
        char *pattern;

        if (!t || !p || isempty(p->pattern))
                return -EINVAL;
        for (size_t i = 0; i < t->n_items; i++)
                if (streq(t->items[i].pattern, p->pattern)) {
                        t->items[i].input = p->input;
                        t->items[i].output = p->output;
                        t->items[i].cache_read = p->cache_read;
                        t->items[i].cache_write = p->cache_write;
                        return 0;
                }

        pattern = strdup(p->pattern);
        if (!pattern)
                return -ENOMEM;
        items = reallocarray(t->items, t->n_items + 1, sizeof *items);
        if (!items) {
                free(pattern);
                return -ENOMEM;
        }
        t->items = items;
        t->items[t->n_items++] = (Price) {
                .pattern = pattern,
                .input = p->input,
                .output = p->output,
                .cache_read = p->cache_read,
                .cache_write = p->cache_write,
        };
        return 0;
}

static void g_key_file_freep(GKeyFile **k) {
        if (*k)
                g_key_file_free(*k);
}

static void g_error_freep(GError **e) {
        if (*e)
                g_error_free(*e);
}

static void g_strfreevp(char ***l) {
        g_strfreev(*l);
}

static void g_freep(void *p) {
        g_free(*(void **) p);
}

int price_table_load_data(PriceTable *t, const char *source, const char *data, size_t size, char **ret_error) {
        _cleanup_(g_key_file_freep) GKeyFile *k = NULL;
        _cleanup_(g_error_freep) GError *error = NULL;
        _cleanup_(g_strfreevp) char **groups = NULL;
        int r;

        if (ret_error)
                *ret_error = NULL;
        source = source ?: "(data)";

        k = g_key_file_new();
        if (!g_key_file_load_from_data(k, data ?: "", data ? size : 0, G_KEY_FILE_NONE, &error)) {
                set_error(ret_error, "%s: %s", source, error->message);
                return -EINVAL;
        }

        groups = g_key_file_get_groups(k, NULL);
        for (char **g = groups; g && *g; g++) {
                _cleanup_(g_strfreevp) char **keys = NULL;
                uint64_t v[ELEMENTSOF(price_keys)] = {};
                bool set[ELEMENTSOF(price_keys)] = {};

                keys = g_key_file_get_keys(k, *g, NULL, NULL);
                for (char **key = keys; key && *key; key++) {
                        _cleanup_(g_freep) char *value = NULL;
                        size_t i;

                        for (i = 0; i < ELEMENTSOF(price_keys); i++)
                                if (streq(*key, price_keys[i]))
                                        break;
                        if (i >= ELEMENTSOF(price_keys)) {
                                set_error(ret_error, "%s: [%s] unknown key \"%s\" (expected input, output, "
                                          "cache_read or cache_write)", source, *g, *key);
                                return -EINVAL;
                        }
                        value = g_key_file_get_value(k, *g, *key, NULL);
                        if (!value)
                                return -ENOMEM;
                        g_strstrip(value);
                        r = usd_parse(value, PRICE_DECIMALS, &v[i]);
                        if (r < 0) {
                                set_error(ret_error, "%s: [%s] %s = \"%s\": invalid price, expected US dollars "
                                          "per million tokens with at most %u decimals",
                                          source, *g, *key, value, PRICE_DECIMALS);
                                return -EINVAL;
                        }
                        set[i] = true;
                }

                r = price_table_set(t, &(Price) {
                        .pattern = *g,
                        .input = v[0],
                        .output = v[1],
                        .cache_read = set[2] ? v[2] : v[0],
                        .cache_write = set[3] ? v[3] : v[0],
                });
                if (r < 0)
                        return r;
        }
        return 0;
}

int price_table_load_file(PriceTable *t, const char *path, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        if (ret_error)
                *ret_error = NULL;
        r = read_full_file(path, PRICE_FILE_MAX, &data, &size);
        if (r < 0) {
                set_error(ret_error, "%s: %s", path, r == -EFBIG ? "File too large" : strerror(-r));
                return r;
        }
        return price_table_load_data(t, path, data, size, ret_error);
}

int price_table_from_config(const Config *c, PriceTable **ret, char **ret_error) {
        _cleanup_(price_table_unrefp) PriceTable *t = NULL;
        const char *path;
        int r;

        if (ret_error)
                *ret_error = NULL;
        r = price_table_new(&t);
        if (r < 0)
                return r;

        path = c->usage_price_file ?: GATE_DATADIR "/prices.conf";
        r = price_table_load_file(t, path, ret_error);
        if (r == -ENOENT && !c->usage_price_file) {
                /* An uninstalled build has no shipped table: everything is unpriced but counted. */
                log_debug("No price table at %s, only [price.MODEL] groups apply.", path);
                if (ret_error) {
                        free(*ret_error);
                        *ret_error = NULL;
                }
        } else if (r < 0)
                return r;

        for (size_t i = 0; i < c->n_prices; i++) {
                const ConfigPrice *p = c->prices + i;

                r = price_table_set(t, &(Price) {
                        .pattern = p->pattern,
                        .input = p->value[CONFIG_PRICE_INPUT],
                        .output = p->value[CONFIG_PRICE_OUTPUT],
                        .cache_read = p->set & (1U << CONFIG_PRICE_CACHE_READ) ?
                                p->value[CONFIG_PRICE_CACHE_READ] : p->value[CONFIG_PRICE_INPUT],
                        .cache_write = p->set & (1U << CONFIG_PRICE_CACHE_WRITE) ?
                                p->value[CONFIG_PRICE_CACHE_WRITE] : p->value[CONFIG_PRICE_INPUT],
                });
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(t);
        return 0;
}

/* How well pattern matches name: -1 not at all; more is more specific. */
static int match_score(const char *pattern, const char *name) {
        int literal = 0;
        bool glob = false;

        if (!model_pattern_match(pattern, name))
                return -1;
        for (const char *p = pattern; *p; p++) {
                if (*p == '*' || *p == '?')
                        glob = true;
                else
                        literal++;
        }
        return (glob ? 0 : 1 << 16) + MIN(literal, 0xffff);
}

const Price *price_table_lookup(const PriceTable *t, const char *provider, const char *model) {
        _cleanup_free_ char *heap = NULL;
        char buf[256];
        const char *qualified = NULL;
        const Price *best = NULL;
        int best_score = -1;

        if (!t || isempty(model))
                return NULL;
        /* "PROVIDER/MODEL", on the stack when it fits: this runs for every request. */
        if (!isempty(provider)) {
                size_t a = strlen(provider), b = strlen(model);

                if (a + 1 + b < sizeof buf) {
                        memcpy(buf, provider, a);
                        buf[a] = '/';
                        memcpy(buf + a + 1, model, b + 1);
                        qualified = buf;
                } else if (asprintf(&heap, "%s/%s", provider, model) >= 0)
                        qualified = heap;
        }

        for (size_t i = 0; i < t->n_items; i++) {
                const Price *p = t->items + i;
                int s;

                /* A pattern with a '/' names a provider: it is matched against "PROVIDER/MODEL" only. A
                 * model name with a '/' of its own (e.g. "meta-llama/Llama-3") still matches plainly. */
                if (qualified && strchr(p->pattern, '/') && (s = match_score(p->pattern, qualified)) >= 0)
                        s += 1 << 17;
                else
                        s = match_score(p->pattern, model);
                if (s > best_score) {
                        best = p;
                        best_score = s;
                }
        }
        return best;
}

uint64_t price_cost(const Price *p, uint64_t input, uint64_t output, uint64_t cache_read, uint64_t cache_write) {
        unsigned __int128 pico;

        if (!p)
                return 0;
        /* tokens × micro-USD per million tokens = pico-USD. */
        pico = (unsigned __int128) input * p->input +
                (unsigned __int128) output * p->output +
                (unsigned __int128) cache_read * p->cache_read +
                (unsigned __int128) cache_write * p->cache_write;
        pico = (pico + 500) / 1000;
        return pico > UINT64_MAX ? UINT64_MAX : (uint64_t) pico;
}
