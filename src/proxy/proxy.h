/* Proxy: forwards one API request to its upstream provider over libcurl and relays the answer back. */
#pragma once

#include "http/request.h"
#include "proxy/curl-glue.h"
#include "net/timers.h"
#include "proxy/h1-client.h"
#include "api/limits.h"
#include "api/metrics.h"
#include "proxy/provider.h"
#include "proxy/upstream-log.h"
#include "store/keys.h"
#include "store/prices.h"
#include "store/usage.h"

typedef struct ProxyPolicy {
        int passthrough;                /* Passthrough (core/config.h) */
        unsigned max_pending;           /* upstream transfers in flight, all providers */
        bool builtin_client;            /* plain-HTTP upstreams on IP literals: H1Client, not curl */
} ProxyPolicy;

typedef struct Proxy {
        CurlGlue *curl;                 /* NULL until the first transfer that needs libcurl */
        H1Client *h1;
        sd_event *event;
        ProxyPolicy policy;
        unsigned active;
        uint64_t upstream_requests;
        uint64_t retries;
        uint32_t seed;                  /* weighted routing order */
        UsageQueue *usage;              /* where each call's usage row goes (may be NULL) */
        PriceTable *prices;             /* what it cost (may be NULL: unpriced) */
        GateMetrics *metrics;           /* counted per finished call (may be NULL) */
        Limits *limits;                 /* per-key rate limits and budgets (may be NULL) */
        CURL *idle[64];                 /* easy handles kept for reuse: setting one up is not free */
        size_t n_idle;
        TimerQueue *timers;             /* the calls' deadlines (first byte, idle, retry delay) */
        unsigned n_calls;               /* ProxyCalls alive */
        usec_t last_call_end;           /* loop time the last one ended */
        sd_event_source *trim_timer;    /* gives the heap of a finished burst back to the kernel */
        unsigned idle_connections;      /* [proxy] idle_connections, for H1Client and curl alike */
        UpstreamLog upstream_log;       /* failed attempts at warning level, rate-limited per provider */
        struct ProxyCall *corked;       /* calls whose client writes wait for the end of curl's batch */
} Proxy;

/* Loads libcurl (dlopen_curl()) and sets up its multi handle on the loop, on the first call: before the
 * first transfer that needs curl. Fails the same way again if libcurl cannot be loaded. */
int proxy_curl_open(Proxy *p);
/* Idle upstream connections kept per address (gate's HTTP/1.1 client) and in curl's connection cache. */
void proxy_set_idle_connections(Proxy *p, unsigned n);
/* Parses the system's CA bundle again, for new upstream connections (a reload after
 * update-ca-certificates). */
void proxy_reload_trust(Proxy *p);
/* An easy handle with default options: from the pool (reset) or new. NULL on OOM. */
CURL *proxy_easy_get(Proxy *p);
/* Gives a handle (off the multi handle) back to the pool, or frees it when the pool is full. */
void proxy_easy_put(Proxy *p, CURL *easy);

int proxy_init(Proxy *p, sd_event *event);
void proxy_done(Proxy *p);

/* Forwards r (a complete POST with a JSON body) in dialect d to a provider chosen by the body's model.
 * providers is referenced for the whole call, so a reload never pulls a provider from under a live
 * stream. Always answers r: with the upstream's response, or with an error in dialect d. key (may be NULL)
 * is the client's gate key: its model patterns are enforced and the usage row is booked on it. */
int proxy_forward(Proxy *p, Providers *providers, Request *r, Dialect d, KeyInfo *key);
