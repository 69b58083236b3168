/* Providers: the upstreams gate forwards to, built from [provider.NAME] groups, and model routing. */
#include <ctype.h>
#include <stdio.h>

#include "proxy/provider.h"
#include "shared/log.h"
#include "shared/util.h"

static const char *const provider_type_table[_PROVIDER_TYPE_MAX] = {
        [PROVIDER_OPENAI] = "openai",
        [PROVIDER_ANTHROPIC] = "anthropic",
        [PROVIDER_OPENAI_COMPATIBLE] = "openai-compatible",
};

const char *provider_type_to_string(ProviderType t) {
        return t >= 0 && t < _PROVIDER_TYPE_MAX ? provider_type_table[t] : NULL;
}

ProviderType provider_type_from_string(const char *s) {
        for (int i = 0; i < _PROVIDER_TYPE_MAX; i++)
                if (s && streq(s, provider_type_table[i]))
                        return (ProviderType) i;
        return _PROVIDER_TYPE_INVALID;
}

const char *dialect_to_string(Dialect d) {
        return d == DIALECT_ANTHROPIC ? "anthropic" : d == DIALECT_OPENAI ? "openai" : NULL;
}

Dialect provider_dialect(ProviderType t) {
        return t == PROVIDER_ANTHROPIC ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
}

static Provider *provider_free(Provider *p) {
        if (!p)
                return NULL;
        free(p->name);
        free(p->base_url);
        if (p->api_key)
                explicit_bzero(p->api_key, strlen(p->api_key));
        free(p->api_key);
        strv_free(p->models);
        strv_free(p->headers);
        strv_free(p->listed_models);
        free(p);
        return NULL;
}

Providers *providers_ref(Providers *p) {
        if (p)
                p->n_ref++;
        return p;
}

Providers *providers_unref(Providers *p) {
        if (!p || --p->n_ref > 0)
                return NULL;
        for (size_t i = 0; i < p->n_items; i++)
                provider_free(p->items[i]);
        free(p->items);
        free(p);
        return NULL;
}

const Provider *providers_find(const Providers *p, const char *name) {
        for (size_t i = 0; i < p->n_items; i++)
                if (streq(p->items[i]->name, name))
                        return p->items[i];
        return NULL;
}

static int provider_new(const char *name, ProviderType type, Provider **ret) {
        Provider *p = new0(Provider, 1);
        if (!p)
                return -ENOMEM;
        p->name = strdup(name);
        if (!p->name) {
                free(p);
                return -ENOMEM;
        }
        p->type = type;
        p->weight = 1;
        /* OpenAI serves the Responses API itself; most OpenAI-compatible servers do not. */
        p->responses_native = type == PROVIDER_OPENAI;
        p->connect_timeout = 10 * USEC_PER_SEC;
        p->first_byte_timeout = 120 * USEC_PER_SEC;     /* long prompts on slow models take a while */
        p->idle_timeout = 120 * USEC_PER_SEC;
        p->max_retries = 1;
        p->models_ttl = 600 * USEC_PER_SEC;
        *ret = p;
        return 0;
}

/* "https://api.openai.com/v1/" -> "https://api.openai.com/v1". The version path stays as written: it
 * is part of how each provider's own SDK spells its base URL. */
static int normalize_base_url(const char *s, char **ret) {
        size_t n = strlen(s);

        if (!startswith(s, "http://") && !startswith(s, "https://"))
                return -EINVAL;
        while (n > 0 && s[n - 1] == '/')
                n--;
        if (n <= strlen("https://"))
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] <= ' ' || s[i] == '?' || s[i] == '#')
                        return -EINVAL;
        *ret = strndup(s, n);
        return *ret ? 0 : -ENOMEM;
}

static int fail(char **ret_error, const ConfigProvider *cp, const ConfigProviderEntry *e, const char *why) {
        const char *source = e ? e->source : cp->n_entries > 0 ? cp->entries[0].source : "configuration";
        if (ret_error && asprintf(ret_error, "%s: [provider.%s] %s = %s: %s", source,
                                  cp->name, e ? e->key : "type", e ? e->value : "(missing)", why) < 0)
                *ret_error = NULL;
        return -EINVAL;
}

static bool header_name_valid(const char *s) {
        if (isempty(s))
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("!#$%&'*+-.^_`|~", *s))
                        return false;
        return true;
}

static int provider_from_config(const ConfigProvider *cp, Provider **ret, char **ret_error) {
        _cleanup_free_ char *type_s = NULL;
        const ConfigProviderEntry *e;
        Provider *p = NULL;
        ProviderType type;
        int r;

        e = config_provider_find(cp, "type");
        if (!e)
                return fail(ret_error, cp, NULL, "every provider needs type = openai | anthropic | openai-compatible");
        if (config_value_unquote(e->value, &type_s) < 0 || (type = provider_type_from_string(type_s)) < 0)
                return fail(ret_error, cp, e, "expected openai, anthropic or openai-compatible");
        r = provider_new(cp->name, type, &p);
        if (r < 0)
                return r;

        for (size_t i = 0; i < cp->n_entries; i++) {
                const ConfigProviderEntry *x = &cp->entries[i];
                _cleanup_free_ char *v = NULL;
                const char *k = x->key;
                uint32_t u;
                usec_t t;

                if (streq(k, "type"))
                        continue;
                if (streq(k, "models")) {
                        strv_free(p->models);
                        p->models = NULL;
                        r = config_value_split(x->value, &p->models);
                        if (r < 0)
                                goto bad_list;
                        continue;
                }
                r = config_value_unquote(x->value, &v);
                if (r < 0) {
                        provider_free(p);
                        return fail(ret_error, cp, x, "bad quoting");
                }
                if (streq(k, "base_url")) {
                        free(p->base_url);
                        p->base_url = NULL;
                        if (normalize_base_url(v, &p->base_url) < 0) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "expected an http:// or https:// URL");
                        }
                } else if (streq(k, "api_key")) {
                        free(p->api_key);
                        p->api_key = isempty(v) ? NULL : TAKE_PTR(v);
                } else if (streq(k, "api_key_env")) {
                        const char *env = getenv(v);
                        if (isempty(env)) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "that environment variable is not set");
                        }
                        free(p->api_key);
                        p->api_key = strdup(env);
                        if (!p->api_key)
                                goto oom;
                } else if (streq(k, "priority") || streq(k, "weight") || streq(k, "max_concurrent") ||
                           streq(k, "max_retries")) {
                        if (parse_uint32(v, &u) < 0 || u > 1000000 || (streq(k, "weight") && u == 0)) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "expected a whole number (weight at least 1)");
                        }
                        if (streq(k, "priority"))
                                p->priority = (int) u;
                        else if (streq(k, "weight"))
                                p->weight = u;
                        else if (streq(k, "max_concurrent"))
                                p->max_concurrent = u;
                        else
                                p->max_retries = MIN(u, 10U);
                } else if (streq(k, "responses_api")) {
                        if (!streq(v, "native") && !streq(v, "translate")) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "expected native or translate");
                        }
                        if (type == PROVIDER_ANTHROPIC && streq(v, "native")) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "Anthropic has no Responses API: only translate");
                        }
                        p->responses_native = streq(v, "native");
                } else if (streq(k, "list_models")) {
                        int b = parse_bool(v);
                        if (b < 0) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "expected true or false");
                        }
                        p->list_models = b;
                } else if (streq(k, "connect_timeout") || streq(k, "first_byte_timeout") ||
                           streq(k, "idle_timeout") || streq(k, "models_ttl")) {
                        if (parse_timespan(v, &t) < 0 || t == 0) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "expected a duration such as 30s or 500ms");
                        }
                        if (streq(k, "connect_timeout"))
                                p->connect_timeout = t;
                        else if (streq(k, "models_ttl"))
                                p->models_ttl = t;
                        else if (streq(k, "first_byte_timeout"))
                                p->first_byte_timeout = t;
                        else
                                p->idle_timeout = t;
                } else if (startswith(k, "header.")) {
                        _cleanup_free_ char *line = NULL;
                        size_t n = strv_length(p->headers);
                        if (!header_name_valid(k + 7) || strpbrk(v, "\r\n")) {
                                provider_free(p);
                                return fail(ret_error, cp, x, "not a valid HTTP header");
                        }
                        if (asprintf(&line, "%s: %s", k + 7, v) < 0 || strv_extend(&p->headers, &n, line) < 0)
                                goto oom;
                } else
                        log_warning("%s: [provider.%s]: unknown key '%s', ignoring.", x->source, cp->name, k);
        }

        if (!p->base_url) {
                const char *def = type == PROVIDER_OPENAI ? "https://api.openai.com/v1" :
                                  type == PROVIDER_ANTHROPIC ? "https://api.anthropic.com" : NULL;
                if (!def) {
                        provider_free(p);
                        return fail(ret_error, cp, NULL, "an openai-compatible provider needs base_url");
                }
                p->base_url = strdup(def);
                if (!p->base_url)
                        goto oom;
        }
        *ret = p;
        return 0;
bad_list:
        provider_free(p);
        return r == -ENOMEM ? -ENOMEM : fail(ret_error, cp, config_provider_find(cp, "models"), "bad list");
oom:
        provider_free(p);
        return -ENOMEM;
}

static int providers_add(Providers *ps, Provider *p) {
        Provider **n = reallocarray(ps->items, ps->n_items + 1, sizeof *n);
        if (!n) {
                provider_free(p);
                return -ENOMEM;
        }
        ps->items = n;
        ps->items[ps->n_items++] = p;
        return 0;
}

int providers_build(const Config *c, Providers **ret, char **ret_error) {
        Providers *ps;
        int r;

        ps = new0(Providers, 1);
        if (!ps)
                return -ENOMEM;
        ps->n_ref = 1;
        ps->max_attempts = c->proxy_max_attempts ? c->proxy_max_attempts : 3;

        for (size_t i = 0; i < c->n_providers; i++) {
                Provider *p = NULL;
                r = provider_from_config(&c->providers[i], &p, ret_error);
                if (r >= 0)
                        r = providers_add(ps, p);
                if (r < 0) {
                        providers_unref(ps);
                        return r;
                }
        }

        /* Out of the box: a transparent local proxy to the two big providers, with the client's key. */
        if (ps->n_items == 0) {
                Provider *p = NULL;
                r = provider_new("openai", PROVIDER_OPENAI, &p);
                if (r >= 0) {
                        p->builtin = true;
                        p->base_url = strdup("https://api.openai.com/v1");
                        r = p->base_url ? providers_add(ps, p) : (provider_free(p), -ENOMEM);
                }
                if (r >= 0)
                        r = provider_new("anthropic", PROVIDER_ANTHROPIC, &p);
                if (r >= 0) {
                        p->builtin = true;
                        p->base_url = strdup("https://api.anthropic.com");
                        r = p->base_url ? providers_add(ps, p) : (provider_free(p), -ENOMEM);
                }
                if (r < 0) {
                        providers_unref(ps);
                        return r;
                }
        }
        *ret = ps;
        return 0;
}

bool model_pattern_match(const char *pattern, const char *model) {
        const char *star = NULL, *resume = NULL;

        while (*model) {
                if (*pattern == '*') {
                        star = pattern++;
                        resume = model;
                } else if (*pattern == '?' || *pattern == *model) {
                        pattern++;
                        model++;
                } else if (star) {
                        pattern = star + 1;
                        model = ++resume;
                } else
                        return false;
        }
        while (*pattern == '*')
                pattern++;
        return *pattern == 0;
}

static bool provider_serves(const Provider *p, const char *model) {
        for (char **m = p->models; m && *m; m++)
                if (model_pattern_match(*m, model))
                        return true;
        return false;
}

/* Well-known model families, for providers configured without models (and the built-ins). */
static ProviderType type_by_prefix(const char *model) {
        static const char *const openai[] = { "gpt-", "o1", "o3", "o4", "text-embedding-", "chatgpt-",
                                              "davinci", "babbage", "omni-moderation", "codex-" };
        if (startswith(model, "claude-"))
                return PROVIDER_ANTHROPIC;
        for (size_t i = 0; i < ELEMENTSOF(openai); i++)
                if (startswith(model, openai[i]))
                        return PROVIDER_OPENAI;
        return _PROVIDER_TYPE_INVALID;
}

void candidates_done(Candidate *c, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(c[i].model);
                c[i] = (Candidate){};
        }
}

static int candidate_add(Candidate *c, size_t *n, Provider *p, const char *model) {
        for (size_t i = 0; i < *n; i++)
                if (c[i].provider == p)
                        return 0;
        if (*n >= CANDIDATES_MAX)
                return 0;
        c[*n].model = strdup(model);
        if (!c[*n].model)
                return -ENOMEM;
        c[*n].provider = p;
        (*n)++;
        return 0;
}

/* A small deterministic PRNG step: weighted order must not depend on global state (tests pass a seed). */
static uint32_t xorshift(uint32_t *s) {
        uint32_t x = *s ? *s : 0x9e3779b9u;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        return *s = x;
}

int providers_route(const Providers *ps, const char *model, uint32_t seed, Candidate ret[CANDIDATES_MAX]) {
        Provider *matched[CANDIDATES_MAX * 4];
        size_t n = 0, n_matched = 0;
        const char *slash;
        int r;

        if (isempty(model))
                return 0;

        /* 1. "provider/model" names the provider, and the upstream sees only "model". Model ids with a
         * slash of their own ("meta-llama/Llama-3") go on to the patterns when no provider is so named. */
        slash = strchr(model, '/');
        if (slash && slash != model && slash[1]) {
                for (size_t i = 0; i < ps->n_items; i++)
                        if (strlen(ps->items[i]->name) == (size_t) (slash - model) &&
                            strneq(ps->items[i]->name, model, (size_t) (slash - model))) {
                                r = candidate_add(ret, &n, ps->items[i], slash + 1);
                                return r < 0 ? r : (int) n;
                        }
        }

        /* 2. models patterns, by priority, weighted random order within a priority. */
        for (size_t i = 0; i < ps->n_items && n_matched < ELEMENTSOF(matched); i++)
                if (provider_serves(ps->items[i], model))
                        matched[n_matched++] = ps->items[i];
        while (n_matched > 0) {
                int best = INT32_MAX;
                unsigned total = 0;
                for (size_t i = 0; i < n_matched; i++)
                        best = MIN(best, matched[i]->priority);
                for (size_t i = 0; i < n_matched; i++)
                        if (matched[i]->priority == best)
                                total += matched[i]->weight;
                unsigned pick = xorshift(&seed) % total;
                for (size_t i = 0; i < n_matched; i++) {
                        if (matched[i]->priority != best)
                                continue;
                        if (pick < matched[i]->weight) {
                                r = candidate_add(ret, &n, matched[i], model);
                                if (r < 0) {
                                        candidates_done(ret, n);
                                        return r;
                                }
                                matched[i] = matched[--n_matched];
                                break;
                        }
                        pick -= matched[i]->weight;
                }
        }
        if (n > 0)
                return (int) n;

        /* 3. Well-known prefixes, for providers that list no models. */
        ProviderType t = type_by_prefix(model);
        if (t >= 0)
                for (size_t i = 0; i < ps->n_items; i++) {
                        Provider *p = ps->items[i];
                        if (p->models || provider_dialect(p->type) != provider_dialect(t))
                                continue;
                        /* openai-compatible servers do not host OpenAI's models unless they say so. */
                        if (p->type == PROVIDER_OPENAI_COMPATIBLE)
                                continue;
                        r = candidate_add(ret, &n, p, model);
                        if (r < 0) {
                                candidates_done(ret, n);
                                return r;
                        }
                }
        return (int) n;
}
