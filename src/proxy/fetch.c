/* Fetch: a small bounded GET to a provider (its model list), on the proxy's libcurl glue. */
#include <stdio.h>

#include "proxy/fetch.h"
#include "proxy/header-list.h"
#include "shared/buf.h"
#include "shared/errors.h"

struct Fetch {
        Proxy *proxy;
        CURL *easy;
        Arena arena;                    /* the header list's nodes and lines */
        HeaderList headers;
        Buf body;
        FetchCallback cb;
        void *userdata;
};

static void fetch_free(Fetch *f) {
        if (f->easy) {
                curl_glue_remove(f->proxy->curl, f->easy);
                curl_easy_cleanup(f->easy);
        }
        arena_done(&f->arena);
        buf_done(&f->body);
        free(f);
}

void fetch_cancel(Fetch *f) {
        if (f)
                fetch_free(f);
}

static size_t fetch_write(char *data, size_t size, size_t nmemb, void *userdata) {
        Fetch *f = userdata;
        size_t n = size * nmemb;

        if (buf_len(&f->body) + n > FETCH_MAX_BYTES || buf_append(&f->body, data, n) < 0)
                return 0; /* aborts the transfer */
        return n;
}

static void fetch_done(CURL *easy, CURLcode result, void *userdata) {
        Fetch *f = userdata;
        long status = 0;

        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_cleanup(f->easy);
        f->easy = NULL;
        if (!buf_reserve(&f->body, 1))
                result = CURLE_OUT_OF_MEMORY;
        else
                f->body.data[f->body.tail] = 0;
        f->cb(result == CURLE_OK ? 0 : errno_from_curl(result), status, (const char *) buf_data(&f->body),
              buf_len(&f->body), f->userdata);
        fetch_free(f);
}

/* name is "Name: " (or "" for a whole line), as the lines are written. */
static int fetch_header(HeaderList *l, const char *name, const char *value) {
        if (strlen(name) + strlen(value) >= 4096)
                return -E2BIG;
        return header_list_add(l, NULL, name, value);
}

int proxy_fetch(Proxy *p, const Provider *provider, const char *path, FetchCallback cb, void *userdata,
                Fetch **ret) {
        _cleanup_free_ char *url = NULL;
        Fetch *f;
        int k = 0;

        if (asprintf(&url, "%s%s", provider->base_url, path) < 0)
                return -ENOMEM;
        f = new0(Fetch, 1);
        if (!f)
                return -ENOMEM;
        f->proxy = p;
        f->cb = cb;
        f->userdata = userdata;
        arena_init(&f->arena, NULL, 0);
        header_list_init(&f->headers, &f->arena);

        if (provider->type == PROVIDER_ANTHROPIC) {
                k = fetch_header(&f->headers, "anthropic-version: ", "2023-06-01");
                if (k >= 0 && provider->api_key)
                        k = fetch_header(&f->headers, "x-api-key: ", provider->api_key);
        } else if (provider->api_key)
                k = fetch_header(&f->headers, "authorization: Bearer ", provider->api_key);
        for (char **h = provider->headers; h && *h && k >= 0; h++)
                k = fetch_header(&f->headers, "", *h);
        if (k < 0)
                goto fail;

        k = proxy_curl_open(p);
        if (k < 0)
                goto fail;
        f->easy = curl_easy_init();
        if (!f->easy) {
                k = -ENOMEM;
                goto fail;
        }
        curl_easy_setopt(f->easy, CURLOPT_URL, url);
        curl_easy_setopt(f->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(f->easy, CURLOPT_HTTPHEADER, f->headers.head);
        curl_easy_setopt(f->easy, CURLOPT_WRITEFUNCTION, fetch_write);
        curl_easy_setopt(f->easy, CURLOPT_WRITEDATA, f);
        curl_easy_setopt(f->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(f->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) (provider->connect_timeout / USEC_PER_MSEC));
        curl_easy_setopt(f->easy, CURLOPT_TIMEOUT_MS, 10000L);
        curl_easy_setopt(f->easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        k = curl_glue_add(p->curl, f->easy, NULL, fetch_done, f);
        if (k < 0) {
                curl_easy_cleanup(f->easy);
                f->easy = NULL;
                goto fail;
        }
        if (ret)
                *ret = f;
        return 0;
fail:
        fetch_free(f);
        return k;
}
