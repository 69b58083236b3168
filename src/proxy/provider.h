/* Providers: the upstreams gate forwards to, built from [provider.NAME] groups, and model routing. */
#pragma once

#include "core/config.h"
#include "shared/macro.h"

typedef enum ProviderType {
        PROVIDER_OPENAI,
        PROVIDER_ANTHROPIC,
        PROVIDER_OPENAI_COMPATIBLE,
        _PROVIDER_TYPE_MAX,
        _PROVIDER_TYPE_INVALID = -EINVAL,
} ProviderType;

/* The wire format a client or an upstream speaks. */
typedef enum Dialect {
        DIALECT_OPENAI,
        DIALECT_ANTHROPIC,
        _DIALECT_MAX,
        _DIALECT_INVALID = -EINVAL,
} Dialect;

const char *provider_type_to_string(ProviderType t);
ProviderType provider_type_from_string(const char *s);
const char *dialect_to_string(Dialect d);
Dialect provider_dialect(ProviderType t);

typedef struct Provider {
        char *name;
        ProviderType type;
        /* Where API paths are appended: "https://api.openai.com/v1" (OpenAI style, with the version),
         * "https://api.anthropic.com" (Anthropic style). No trailing slash. */
        char *base_url;
        char *api_key;                  /* NULL: the client's own provider key is passed through */
        char **models;                  /* exact names and glob patterns; NULL: only explicit or prefix */
        char **headers;                 /* extra "Name: value" lines sent upstream */
        int priority;                   /* lower first */
        unsigned weight;                /* among equal priority */
        usec_t connect_timeout;
        usec_t first_byte_timeout;
        usec_t idle_timeout;
        unsigned max_concurrent;        /* 0: no per-provider limit */
        unsigned max_retries;           /* same provider after retry-after */
        bool builtin;

        bool responses_native;          /* forwards /v1/responses as is (else translates it to chat) */
        bool list_models;               /* also list what the provider's own /models reports */
        usec_t models_ttl;              /* ... cached this long */

        /* Runtime state, not configuration. */
        unsigned active;                /* live transfers, counted by the proxy */
        char **listed_models;           /* from the provider's /models, NULL until fetched */
        usec_t listed_at;               /* CLOCK_MONOTONIC of that fetch, 0 never */
} Provider;

typedef struct Providers {
        unsigned n_ref;
        Provider **items;               /* each allocated separately: a Provider outlives a reload */
        size_t n_items;
        unsigned max_attempts;          /* candidates tried per request */
} Providers;

/* Builds the provider set from the configuration. Errors name the provider group and key. With no
 * providers configured, the built-in passthrough providers "openai" and "anthropic" exist. */
int providers_build(const Config *c, Providers **ret, char **ret_error);
Providers *providers_ref(Providers *p);
Providers *providers_unref(Providers *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Providers *, providers_unref);

const Provider *providers_find(const Providers *p, const char *name);

typedef struct Candidate {
        Provider *provider;
        char *model;                    /* the model name to send upstream (a "provider/" prefix removed) */
} Candidate;

#define CANDIDATES_MAX 8

/* Orders the providers that may serve model: an explicit "provider/model" names one; then the providers'
 * models patterns by priority and weighted choice (seed picks the weighted order deterministically in
 * tests); then well-known prefixes. Returns the number of candidates (0: unknown model). */
int providers_route(const Providers *p, const char *model, uint32_t seed, Candidate ret[CANDIDATES_MAX]);
void candidates_done(Candidate *c, size_t n);

/* glob match with '*' and '?', used for models patterns. */
bool model_pattern_match(const char *pattern, const char *model);
