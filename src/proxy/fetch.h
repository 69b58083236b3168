/* Fetch: a small bounded GET to a provider (its model list), on the proxy's libcurl glue. */
#pragma once

#include "proxy/proxy.h"

typedef struct Fetch Fetch;

/* error is 0 when an HTTP answer arrived (any status), else a negative errno. body is NUL-terminated. */
typedef void (*FetchCallback)(int error, long status, const char *body, size_t len, void *userdata);

/* GETs base_url + path with the provider's credentials. The answer is bounded (FETCH_MAX_BYTES) and so
 * is the time (connect_timeout, then 10 s). cb runs once, from the loop, unless the fetch is cancelled. */
int proxy_fetch(Proxy *p, const Provider *provider, const char *path, FetchCallback cb, void *userdata,
                Fetch **ret);
void fetch_cancel(Fetch *f);

#define FETCH_MAX_BYTES (4U << 20)
