/* Proxy: forwards one API request to its upstream provider over libcurl and relays the answer back. */
#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <time.h>

#include "api/errors.h"
#include "api/usage-scan.h"
#include "core/config.h"
#include "proxy/header-list.h"
#include "proxy/jscan.h"
#include "proxy/proxy.h"
#include "shared/arena.h"
#include "shared/errors.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/util.h"
#include "translate/translate.h"

/* A retryable error body is held back (so a retry stays invisible to the client) up to this size. */
#define HOLD_MAX (256U << 10)
/* Waiting for an upstream's retry-after longer than this is not worth it: hand its answer over. */
#define RETRY_AFTER_MAX_USEC (5 * USEC_PER_SEC)
/* An upstream answer's headers beyond this many are not relayed. */
#define UPSTREAM_HEADERS_MAX 128
/* A non-streaming answer to translate is collected whole, up to this size. */
#define TRANSLATE_BODY_MAX (32U << 20)

typedef struct ProxyCall {
        Proxy *proxy;
        Request *request;
        Providers *providers;
        Dialect dialect;

        Candidate cands[CANDIDATES_MAX];
        size_t n_cands;
        size_t idx;                     /* current candidate */
        unsigned attempts;
        unsigned same_retries;          /* retries of the current candidate after retry-after */
        Provider *counted;              /* provider whose active count we hold */

        JsonSpan model_span;
        bool stream;
        Buf body;                       /* the body sent upstream when the model name was rewritten */
        char *client_model;             /* the model the client asked for (answers name it) */
        KeyInfo *key;                   /* the client's gate key, or NULL */
        LimitResult ticket;             /* what limits_charge() admitted, settled when the call ends */
        bool charged;
        UsageScanner scan;              /* usage from the upstream's own bytes (before translation) */
        bool scanning;
        usec_t first_byte;              /* CLOCK_MONOTONIC when the client got the head, 0 never */

        /* Translation, when the current candidate speaks another dialect (kind >= 0). */
        TranslateKind kind;
        TranslatedRequest treq;         /* the upstream body for the current attempt */
        StreamTranslator *translator;   /* a streamed 2xx answer being translated */
        Buf tout;                       /* translated bytes on their way to the client */
        bool buffering;                 /* whole upstream body collected for translation (not streamed) */

        CURL *easy;                     /* the transfer, on curl */
        H1Transfer *h1;                 /* or on gate's own client (plain HTTP on an IP literal) */
        /* In proxy->corked: writes relayed inside curl's batch of actions, held until its end. */
        bool in_corked;
        struct ProxyCall *corked_prev, *corked_next;
        struct curl_slist *upstream_headers; /* in attempt_arena, not curl's own list */
        char *url;                      /* in attempt_arena */
        Arena attempt_arena;            /* what one attempt sends: freed when the transfer stops */
        const char *failure;            /* why the last attempt could not start (static), for the client */

        /* The upstream's answer. */
        long status;
        HttpHeader *headers;            /* in head_arena */
        uint8_t header_kinds[UPSTREAM_HEADERS_MAX]; /* HeaderKind of each */
        size_t n_headers, headers_alloc;
        Arena head_arena;               /* the answer's header strings: made again after a 1xx or a retry */
        int64_t content_length;
        usec_t retry_after;
        bool head_done;                 /* all upstream headers seen */
        bool holding;                   /* body held back: this answer may still be retried */
        Buf hold;

        bool started;                   /* head sent to the client: no retry from here on */
        bool paused;                    /* curl paused for client backpressure */
        bool in_curl;                   /* inside a curl callback: never free the easy handle here */
        bool client_gone;
        bool timed_out;
        bool write_failed;              /* the client could not be written to: our callback ended the transfer */
        const char *stop_reason;        /* why our callback ended the transfer otherwise (static), for the log */
        UsageOutcome outcome;           /* how the call ended, for its usage row */
        /* curl's own account of a failure (which check, which name); gate's client and timers write theirs */
        char curl_error[CURL_ERROR_SIZE];

        usec_t t_attempt;
        usec_t upstream_wait;           /* time spent waiting for upstreams (and their retry-after) */
        usec_t overhead;                /* gate's own share up to the answer's head, set with first_byte */
        Timer timer;                    /* first byte, then idle between chunks; or retry delay */
        bool timer_is_retry;
        usec_t last_data;               /* loop time of the last relayed upstream bytes (idle timeout) */

        /* Last, and not zeroed when a call is made (see call_new()): the arenas' first blocks, where an
         * upstream request's head and its answer's head fit without an allocation. */
        uint8_t head_first[2048];
        uint8_t attempt_first[2048];
} ProxyCall;

static void call_try_next(ProxyCall *c);
static void call_free(ProxyCall *c);

static void call_free_headers(ProxyCall *c) {
        arena_reset(&c->head_arena);
        c->headers = NULL;
        c->n_headers = c->headers_alloc = 0;
}

static void call_release_provider(ProxyCall *c) {
        if (c->counted) {
                c->counted->active--;
                c->counted = NULL;
        }
}

/* Starts the idle timeout between upstream chunks from now. */
static void call_arm_idle(ProxyCall *c) {
        (void) sd_event_now(c->proxy->event, CLOCK_MONOTONIC, &c->last_data);
        (void) timer_arm_relative(c->proxy->timers, &c->timer, c->cands[c->idx].provider->idle_timeout);
}

/* Ends the current upstream transfer, whatever its state. */
static void call_stop_transfer(ProxyCall *c) {
        if (c->easy) {
                curl_glue_remove(c->proxy->curl, c->easy);
                proxy_easy_put(c->proxy, c->easy);
                c->easy = NULL;
                c->proxy->active--;
        }
        if (c->h1) {
                h1_transfer_cancel(c->h1);
                c->h1 = NULL;
                c->proxy->active--;
        }
        c->upstream_headers = NULL;
        c->url = NULL;
        arena_reset(&c->attempt_arena);
        call_release_provider(c);
        timer_disarm(c->proxy->timers, &c->timer);
}

/* One usage row per forwarded request, written off the loop by the usage queue. */
static void call_record_usage(ProxyCall *c) {
        Request *r = c->request;
        const Provider *p = c->n_cands > 0 && c->attempts > 0 ? c->cands[c->idx].provider : NULL;
        UsageRecord u = {};
        Usage tokens = {};
        usec_t now = now_mono();

        if ((!c->proxy->usage && !c->proxy->metrics) || !r)
                return;
        if (c->scanning)
                usage_scanner_result(&c->scan, &tokens);
        u.time = now_usec(CLOCK_REALTIME) - (now - r->start_usec);
        u.key_id = c->key ? c->key->id : 0;
        usage_set_client(&u, (const struct sockaddr *) &r->peer);
        USAGE_SET(&u, route, r->path);
        USAGE_SET(&u, dialect_in, dialect_to_string(c->dialect));
        USAGE_SET(&u, dialect_out, p ? dialect_to_string(provider_dialect(p->type)) : "");
        USAGE_SET(&u, provider, p ? p->name : "");
        USAGE_SET(&u, model_requested, c->client_model);
        USAGE_SET(&u, model_served, tokens.found && tokens.model[0] ? tokens.model :
                                    p ? c->cands[c->idx].model : "");
        u.status = r->status ? r->status : 499;   /* 499: the client left before an answer */
        if (tokens.found) {
                u.input_tokens = tokens.input_tokens;
                u.output_tokens = tokens.output_tokens;
                u.cache_read_tokens = tokens.cache_read_tokens;
                u.cache_write_tokens = tokens.cache_write_tokens;
        }
        const Price *price = p && c->proxy->prices ?
                price_table_lookup(c->proxy->prices, p->name, u.model_served[0] ? u.model_served : c->client_model) :
                NULL;
        u.priced = price != NULL;
        u.cost = price ? price_cost(price, u.input_tokens, u.output_tokens, u.cache_read_tokens,
                                    u.cache_write_tokens) : 0;
        u.ttfb = c->first_byte ? c->first_byte - r->start_usec : USEC_INFINITY;
        u.duration = now - r->start_usec;
        /* gate's own share, as x-gate-overhead-us reports it: up to the answer's head. After the head a
         * stream's time is the upstream's pacing and the client's reading, not gate's work. */
        if (c->first_byte)
                u.overhead = c->overhead;
        else
                u.overhead = u.duration > c->upstream_wait ? u.duration - c->upstream_wait : 0;
        u.stream = c->stream;
        u.bytes_in = buf_len(&r->body);
        u.bytes_out = r->bytes_out;
        u.outcome = c->outcome;
        if (c->charged && c->proxy->limits) {
                limits_settle(c->proxy->limits, &c->ticket, u.input_tokens + u.cache_read_tokens +
                              u.cache_write_tokens + u.output_tokens, u.cost);
                c->charged = false;
        }
        if (c->proxy->usage)
                (void) usage_queue_push(c->proxy->usage, &u);
        if (c->proxy->metrics)
                gate_metrics_request(c->proxy->metrics, &(MetricsRequest){
                        .route = u.route, .dialect = u.dialect_in, .provider = p ? p->name : NULL,
                        .model = u.model_served[0] ? u.model_served : u.model_requested, .status = u.status,
                        .duration = u.duration, .ttfb = u.ttfb, .overhead = u.overhead,
                        .input_tokens = u.input_tokens, .output_tokens = u.output_tokens,
                        .cache_read_tokens = u.cache_read_tokens, .cache_write_tokens = u.cache_write_tokens,
                        .cost = u.cost, .priced = u.priced,
                });
}

/* After a burst (10,000 streams) glibc keeps the freed heap: 135 MB of RSS for an idle gate. Once no
 * call has been alive for a while, the free pages go back to the kernel. */
#define TRIM_AFTER_USEC (10 * USEC_PER_SEC)

static int on_trim_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Proxy *p = userdata;
        usec_t now;

        if (p->n_calls > 0)
                return 0; /* the last call to end arms it again */
        if (sd_event_now(p->event, CLOCK_MONOTONIC, &now) >= 0 && now < p->last_call_end + TRIM_AFTER_USEC) {
                (void) sd_event_source_set_time(s, p->last_call_end + TRIM_AFTER_USEC);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        (void) malloc_trim(0);
        return 0;
}

/* Called when a call ends: notes the time, and arms the trim timer unless it is armed already (so a
 * steady stream of requests costs no timer calls). */
static void proxy_call_ended(Proxy *p) {
        int enabled = SD_EVENT_OFF;
        usec_t now;

        if (--p->n_calls > 0 || sd_event_now(p->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        p->last_call_end = now;
        if (!p->trim_timer) {
                if (sd_event_add_time(p->event, &p->trim_timer, CLOCK_MONOTONIC, now + TRIM_AFTER_USEC, USEC_PER_SEC,
                                      on_trim_timer, p) >= 0)
                        (void) sd_event_source_set_description(p->trim_timer, "proxy-heap-trim");
                return;
        }
        if (sd_event_source_get_enabled(p->trim_timer, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return;
        (void) sd_event_source_set_time(p->trim_timer, now + TRIM_AFTER_USEC);
        (void) sd_event_source_set_enabled(p->trim_timer, SD_EVENT_ONESHOT);
}

static void call_corked_unlink(ProxyCall *c) {
        if (!c->in_corked)
                return;
        LIST_REMOVE(c->proxy->corked, c, corked_prev, corked_next);
        c->in_corked = false;
}

/* Holds this call's client writes until the end of the current batch: of gate's own client's read
 * (on_h1_fed()), or of curl's actions (proxy_curl_batch_end()). */
static void call_cork(ProxyCall *c) {
        if (c->h1) {
                request_cork(c->request);
                return;
        }
        if (!curl_glue_in_action(c->proxy->curl))
                return;         /* an unpause delivers outside curl's actions: no batch end to wait for */
        request_cork(c->request);
        if (c->in_corked)
                return;
        LIST_PREPEND(c->proxy->corked, c, corked_prev, corked_next);
        c->in_corked = true;
}

/* curl's batch of actions is over, and the transfers it finished got on_done() (their responses ended,
 * held bytes with the end): the others' held bytes go out now, a write per call. */
static void proxy_curl_batch_end(void *userdata) {
        Proxy *p = userdata;

        while (p->corked) {
                ProxyCall *c = p->corked;

                call_corked_unlink(c);
                if (c->request)
                        request_uncork(c->request);
        }
}

static void call_free(ProxyCall *c) {
        if (!c)
                return;
        call_corked_unlink(c);
        /* A call that ends without its response's end (which sends what the cork held) lets it go now. */
        if (c->request)
                request_uncork(c->request);
        call_record_usage(c);
        call_stop_transfer(c);
        timer_disarm(c->proxy->timers, &c->timer);
        call_free_headers(c);
        candidates_done(c->cands, c->n_cands);
        buf_done(&c->body);
        buf_done(&c->hold);
        buf_done(&c->tout);
        translated_request_done(&c->treq);
        stream_translator_free(c->translator);
        free(c->client_model);
        key_info_unref(c->key);
        if (c->request) {
                request_set_hooks(c->request, NULL, NULL);
                request_unref(c->request);
        }
        providers_unref(c->providers);
        proxy_call_ended(c->proxy);
        free(c);
}

/* What an upstream answer's header is to us, found once per header (names are lowercase). */
typedef enum HeaderKind {
        HEADER_RELAYED,                 /* passed on to the client */
        HEADER_HOP,                     /* hop-by-hop or framing: belongs to each connection, not the message */
        HEADER_OWN,                     /* one gate sets itself (x-request-id, x-gate-overhead-us) */
        HEADER_CONTENT_TYPE,            /* relayed, and read */
        HEADER_CONTENT_LENGTH,          /* framing, read */
        HEADER_TRANSFER_ENCODING,       /* framing, read */
        HEADER_RETRY_AFTER,             /* relayed, and read */
        HEADER_RETRY_AFTER_MS,          /* relayed, and read */
} HeaderKind;

static HeaderKind header_kind(const char *name, size_t len) {
#define NAMED(s) (len == sizeof(s) - 1 && memcmp(name, s, sizeof(s) - 1) == 0)
        /* The first letter rules out most names upstreams send (openai-*, x-ratelimit-*, anthropic-*,
         * request-id ...) before any comparison: this runs for every header of every answer. */
        switch (name[0]) {
        case 'a':
                return NAMED("alt-svc") ? HEADER_HOP : HEADER_RELAYED;
        case 'c':
                return NAMED("content-type") ? HEADER_CONTENT_TYPE :
                       NAMED("content-length") ? HEADER_CONTENT_LENGTH :
                       NAMED("connection") ? HEADER_HOP : HEADER_RELAYED;
        case 'd':
                return NAMED("date") ? HEADER_HOP : HEADER_RELAYED;
        case 'k':
                return NAMED("keep-alive") ? HEADER_HOP : HEADER_RELAYED;
        case 'p':
                return NAMED("proxy-connection") || NAMED("proxy-authenticate") || NAMED("proxy-authorization") ?
                       HEADER_HOP : HEADER_RELAYED;
        case 'r':
                return NAMED("retry-after") ? HEADER_RETRY_AFTER :
                       NAMED("retry-after-ms") ? HEADER_RETRY_AFTER_MS : HEADER_RELAYED;
        case 's':
                return NAMED("server") ? HEADER_HOP : HEADER_RELAYED;
        case 't':
                return NAMED("transfer-encoding") ? HEADER_TRANSFER_ENCODING :
                       NAMED("te") || NAMED("trailer") ? HEADER_HOP : HEADER_RELAYED;
        case 'u':
                return NAMED("upgrade") ? HEADER_HOP : HEADER_RELAYED;
        case 'x':
                return NAMED("x-request-id") || NAMED("x-gate-overhead-us") ? HEADER_OWN : HEADER_RELAYED;
        default:
                return HEADER_RELAYED;
        }
#undef NAMED
}

static bool header_kind_relayed(HeaderKind k) {
        return k == HEADER_RELAYED || k == HEADER_CONTENT_TYPE || k == HEADER_RETRY_AFTER || k == HEADER_RETRY_AFTER_MS;
}

/* The value of the first upstream header of that kind, or NULL. */
static const char *call_header(const ProxyCall *c, HeaderKind k) {
        for (size_t i = 0; i < c->n_headers; i++)
                if (c->header_kinds[i] == k)
                        return c->headers[i].value;
        return NULL;
}

/* The answer's head goes to the client now: notes when, and gate's own time up to here (all of it that
 * was not spent waiting on upstreams). */
static void call_mark_started(ProxyCall *c) {
        usec_t t;

        c->started = true;
        c->first_byte = now_mono();
        t = c->first_byte - c->request->start_usec;
        c->overhead = t > c->upstream_wait ? t - c->upstream_wait : 0;
}

static int call_start_response(ProxyCall *c, bool with_length) {
        HttpHeader h[c->n_headers + 1];
        size_t n = 0;
        int r;

        /* x-request-id and x-gate-overhead-us (gate's own share: all the time so far that was not spent
         * waiting on upstreams) are added by the request layer. */
        for (size_t i = 0; i < c->n_headers; i++)
                if (header_kind_relayed(c->header_kinds[i]))
                        h[n++] = c->headers[i];
        c->request->upstream_wait = c->upstream_wait;
        h[n++] = (HttpHeader){ "x-gate-provider", c->cands[c->idx].provider->name };

        call_mark_started(c);
        if (with_length)
                r = request_reply(c->request, (unsigned) c->status, h, n, NULL, buf_data(&c->hold), buf_len(&c->hold));
        else
                r = request_start_length(c->request, (unsigned) c->status, h, n, c->content_length);
        return r;
}

/* Errors that are worth another try, before the client saw anything. */
static bool status_retryable(long s) {
        return s == 429 || s == 500 || s == 502 || s == 503 || s == 529;
}

static bool call_can_retry(ProxyCall *c) {
        if (c->attempts >= c->providers->max_attempts)
                return false;
        if (c->idx + 1 < c->n_cands)
                return true;
        /* The last candidate: again only when it told us when (retry-after), soon enough. */
        return c->retry_after > 0 && c->retry_after <= RETRY_AFTER_MAX_USEC &&
               c->same_retries < c->cands[c->idx].provider->max_retries;
}

/* The headers of a translated answer: the upstream's own describe another dialect's body. */
static size_t translated_headers(ProxyCall *c, HttpHeader h[static 4]) {
        size_t n = 0;
        const char *ra = call_header(c, HEADER_RETRY_AFTER);

        h[n++] = (HttpHeader){ "x-gate-provider", c->cands[c->idx].provider->name };
        if (c->treq.dropped)
                h[n++] = (HttpHeader){ "x-gate-translation-dropped", c->treq.dropped };
        if (ra)
                h[n++] = (HttpHeader){ "retry-after", ra };
        return n;
}

static int call_start_translated_stream(ProxyCall *c) {
        HttpHeader h[6];
        size_t n;
        int r;

        r = stream_translator_new(c->kind, c->client_model, c->treq.include_usage, &c->translator);
        if (r < 0)
                return r;
        stream_translator_set_input_tokens(c->translator, c->treq.input_tokens_estimate);
        n = translated_headers(c, h);
        h[n++] = (HttpHeader){ "content-type", "text/event-stream; charset=utf-8" };
        h[n++] = (HttpHeader){ "cache-control", "no-cache" };
        c->request->upstream_wait = c->upstream_wait;
        call_mark_started(c);
        return request_start(c->request, (unsigned) c->status, h, n);
}

/* Sends what the translator produced. */
static int call_flush_translated(ProxyCall *c) {
        int r = 0;

        if (!buf_empty(&c->tout))
                r = request_write(c->request, buf_data(&c->tout), buf_len(&c->tout));
        buf_clear(&c->tout);
        return r;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata) {
        ProxyCall *c = userdata;
        size_t len = size * nitems;
        const char *colon;

        if (len >= 5 && memcmp(buffer, "HTTP/", 5) == 0) {
                /* A new response (after 1xx): forget what came before. The status is read here, from
                 * the line either client hands over ("HTTP/1.1 200 OK", curl's "HTTP/2 200"). */
                const char *sp = memchr(buffer, ' ', len);
                call_free_headers(c);
                c->content_length = -1;
                c->retry_after = 0;
                c->status = 0;
                if (sp && (size_t) (sp - buffer) + 4 <= len && sp[1] >= '1' && sp[1] <= '9' &&
                    sp[2] >= '0' && sp[2] <= '9' && sp[3] >= '0' && sp[3] <= '9')
                        c->status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
                return len;
        }
        if (len <= 2) {
                /* End of the head. */
                long s = c->status;
                if (s < 200)
                        return len;
                c->status = s;
                c->head_done = true;
                /* Usage comes from the upstream's own bytes, in its own dialect. */
                const char *ct = call_header(c, HEADER_CONTENT_TYPE);
                usage_scanner_init(&c->scan, provider_dialect(c->cands[c->idx].provider->type),
                                   ct && startswith(ct, "text/event-stream"));
                c->scanning = s >= 200 && s < 300;
                c->upstream_wait += now_mono() - c->t_attempt;
                c->holding = status_retryable(s) && call_can_retry(c);
                /* The first byte arrived: from now on the idle timeout guards the gaps. */
                call_arm_idle(c);
                if (!c->holding && !c->client_gone) {
                        int r;
                        c->in_curl = true;
                        if (c->kind < 0)
                                r = call_start_response(c, false);
                        else if (s >= 200 && s < 300 && c->treq.stream)
                                r = call_start_translated_stream(c);
                        else {
                                /* A whole JSON answer (or an error) is translated once it is complete. */
                                c->buffering = true;
                                r = 0;
                        }
                        c->in_curl = false;
                        if (r < 0)
                                c->write_failed = true;
                        if (r < 0 || c->client_gone)
                                return 0; /* aborts the transfer */
                }
                return len;
        }

        colon = memchr(buffer, ':', len);
        if (!colon || colon == buffer)
                return len;
        size_t nl = (size_t) (colon - buffer);
        const char *v = colon + 1;
        const char *e = buffer + len;
        while (v < e && (*v == ' ' || *v == '\t'))
                v++;
        while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
                e--;

        if (c->n_headers >= UPSTREAM_HEADERS_MAX)
                return len; /* an upstream that sends more is not worth relaying in full */
        if (c->n_headers >= c->headers_alloc) {
                /* Doubling in the arena: the old arrays stay there (16+32+64 entries at most). */
                size_t m = c->headers_alloc ? 2 * c->headers_alloc : 16;
                HttpHeader *nh = arena_alloc(&c->head_arena, m * sizeof *nh);
                if (!nh)
                        return 0;
                if (c->n_headers > 0)
                        memcpy(nh, c->headers, c->n_headers * sizeof *nh);
                c->headers = nh;
                c->headers_alloc = m;
        }
        /* Name and value in one piece: "name\0value\0". */
        size_t vl = (size_t) (e - v);
        char *name = arena_alloc(&c->head_arena, nl + 1 + vl + 1);
        if (!name)
                return 0;
        for (size_t i = 0; i < nl; i++)
                name[i] = (char) tolower((unsigned char) buffer[i]);
        name[nl] = 0;
        char *value = name + nl + 1;
        memcpy(value, v, vl);
        value[vl] = 0;
        HeaderKind kind = header_kind(name, nl);
        c->header_kinds[c->n_headers] = (uint8_t) kind;
        c->headers[c->n_headers++] = (HttpHeader){ name, value };

        if (kind == HEADER_CONTENT_LENGTH) {
                uint64_t l;
                /* With a transfer coding the body is framed by it, not by this (RFC 9112 6.3): the
                 * client gets the decoded body, whose length is unknown. */
                if (!call_header(c, HEADER_TRANSFER_ENCODING) && parse_uint64(value, &l) >= 0 && l <= INT64_MAX)
                        c->content_length = (int64_t) l;
        } else if (kind == HEADER_TRANSFER_ENCODING) {
                c->content_length = -1;
        } else if (kind == HEADER_RETRY_AFTER) {
                uint64_t secs;
                if (parse_uint64(value, &secs) >= 0)
                        c->retry_after = MAX(secs * USEC_PER_SEC, (usec_t) 1);
        } else if (kind == HEADER_RETRY_AFTER_MS) {
                uint64_t ms;
                if (parse_uint64(value, &ms) >= 0)
                        c->retry_after = MAX(ms * USEC_PER_MSEC, (usec_t) 1);
        }
        return len;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata) {
        ProxyCall *c = userdata;
        size_t len = size * nmemb;
        int r;

        if (c->client_gone)
                return 0;
        /* Exactly once per byte: data left with curl by a pause below comes again later. (Held-back
         * answers are never 2xx, so they are not scanned.) */
        if (c->scanning && !c->holding && (c->buffering || !c->request->want_writable))
                usage_scanner_feed(&c->scan, data, len);

        if (c->holding || c->buffering) {
                if (buf_len(&c->hold) + len <= (c->kind >= 0 ? TRANSLATE_BODY_MAX : HOLD_MAX))
                        return buf_append(&c->hold, data, len) < 0 ? 0 : len;
                /* A body to translate must be whole: one this large is refused (502). */
                if (c->kind >= 0) {
                        c->stop_reason = "answer too large to translate";
                        return 0;
                }
                /* Too big to hold back: give up the retry and relay what we have. */
                c->holding = false;
                c->in_curl = true;
                r = call_start_response(c, false);
                if (r >= 0 && !buf_empty(&c->hold))
                        r = request_write(c->request, buf_data(&c->hold), buf_len(&c->hold));
                c->in_curl = false;
                buf_done(&c->hold);
                if (r < 0)
                        c->write_failed = true;
                if (r < 0 || c->client_gone)
                        return 0;
        }

        /* The client is behind: leave the data with curl (it keeps it) until the client drained. */
        if (c->request->want_writable) {
                c->paused = true;
                timer_disarm(c->proxy->timers, &c->timer);
                return CURL_WRITEFUNC_PAUSE;
        }

        /* An answer comes chunk by chunk (gate's own client) or callback by callback (curl), and one read
         * may hold many (a burst of events): they leave in one write to the client when the read, or
         * curl's batch of actions, is done. */
        call_cork(c);
        c->in_curl = true;
        if (c->translator) {
                int t = stream_translator_feed(c->translator, data, len, &c->tout);
                r = call_flush_translated(c);
                if (r < 0)
                        c->write_failed = true;
                /* A malformed upstream stream: the client got its error event; end the transfer. */
                if (t < 0) {
                        c->stop_reason = t == -E2BIG ? "stream event too large to translate" :
                                                       "malformed stream";
                        r = t;
                }
        } else if ((r = request_write(c->request, data, len)) < 0)
                c->write_failed = true;
        c->in_curl = false;
        if (r < 0 || c->client_gone)
                return 0;
        /* Another gap between chunks starts now. Only noted: moving the timer for every chunk would be a
         * heap operation per chunk; on_timer looks at this when it fires. */
        (void) sd_event_now(c->proxy->event, CLOCK_MONOTONIC, &c->last_data);
        return len;
}

/* Before the last word to the client: whatever happens to the client during it, it is not our event. */
static void call_detach(ProxyCall *c) {
        request_set_hooks(c->request, NULL, NULL);
        c->request->upstream_wait = c->upstream_wait;
}

static void call_fail(ProxyCall *c, unsigned status, const char *code, const char *provider) {
        if (c->outcome == USAGE_OUTCOME_COMPLETE)
                c->outcome = status == 504 ? USAGE_OUTCOME_UPSTREAM_TIMEOUT : USAGE_OUTCOME_UPSTREAM_ERROR;
        call_detach(c);
        if (c->started && c->translator) {
                /* The client's dialect has an error event: send it before breaking the stream. */
                (void) stream_translator_finish(c->translator, false, &c->tout);
                (void) call_flush_translated(c);
        }
        if (c->started) {
                /* Bytes went out already: the client must see a broken response, not a short one. */
                request_reset(c->request);
        } else if (!c->client_gone && c->failure)
                (void) api_reply_error(c->request, c->dialect, status, code, NULL, 0,
                                       "Upstream provider %s cannot be reached: %s.", provider, c->failure);
        else if (!c->client_gone)
                (void) api_reply_error(c->request, c->dialect, status, code, NULL, 0,
                                       "Upstream provider %s did not answer properly%s.", provider,
                                       status == 504 ? " in time" : "");
        call_free(c);
}

/* One failed attempt, in the log: at warning level, at most one line per provider per few seconds
 * (UpstreamLog). The reason is curl's error code's text with curl's (or gate's client's) own account, or
 * why gate itself stopped the transfer; the client only ever gets a generic message. Runs on failures
 * only: the formatting costs the success path nothing. */
static void call_log_failure(ProxyCall *c, CURLcode result) {
        char reason[CURL_ERROR_SIZE + 256];

        if (c->stop_reason)
                snprintf(reason, sizeof reason, "%s", c->stop_reason);
        else
                snprintf(reason, sizeof reason, "%s%s%s%s%s%s", curl_error_string(result),
                         c->curl_error[0] ? " (" : "", c->curl_error, c->curl_error[0] ? ")" : "",
                         c->failure ? ": " : "", c->failure ? c->failure : "");
        (void) upstream_log_failure(&c->proxy->upstream_log, now_mono(), c->cands[c->idx].provider->name,
                                    request_id(c->request), reason);
}

/* A complete upstream answer (success or error) in the client's dialect. */
static void call_reply_translated(ProxyCall *c) {
        _cleanup_free_ char *out = NULL;
        HttpHeader h[4];
        size_t n, len = 0;
        int r;

        if (c->status >= 200 && c->status < 300)
                r = translate_response(c->kind, (const char *) buf_data(&c->hold), buf_len(&c->hold),
                                       c->client_model, &out, &len);
        else
                r = translate_error(c->kind, (unsigned) c->status, (const char *) buf_data(&c->hold),
                                    buf_len(&c->hold), &out, &len);
        if (r < 0) {
                c->stop_reason = r == -ENOMEM ? "out of memory translating the answer" : "untranslatable answer";
                call_log_failure(c, CURLE_OK);
                call_fail(c, 502, "upstream_error", c->cands[c->idx].provider->name);
                return;
        }
        n = translated_headers(c, h);
        call_detach(c);
        call_mark_started(c);
        (void) request_reply(c->request, (unsigned) c->status, h, n, "application/json", out, len);
        call_free(c);
}

static void on_done(ProxyCall *c, CURLcode result) {
        const Provider *p = c->cands[c->idx].provider;
        int r;

        if (c->client_gone) {
                call_free(c);
                return;
        }

        if (result != CURLE_OK) {
                int e = c->timed_out ? -ETIMEDOUT : errno_from_curl(result);
                if (!c->head_done)
                        c->upstream_wait += now_mono() - c->t_attempt;
                if (c->write_failed) {
                        /* Our callback ended the transfer because the client could not take the answer:
                         * not the upstream's failure, and no other provider would do better. */
                        c->outcome = USAGE_OUTCOME_CLIENT_CLOSED;
                        call_fail(c, 502, "upstream_error", p->name);
                        return;
                }
                /* The error code's text is generic ("SSL peer certificate or SSH remote key was not
                 * OK"); curl's buffer says which check failed and for which name. */
                call_log_failure(c, result);
                if (c->proxy->metrics)
                        gate_metrics_upstream_error(c->proxy->metrics, p->name,
                                                    e == -ETIMEDOUT ? "timeout" :
                                                    e == -ECONNREFUSED ? "connect" : "transfer");
                if (!c->started && !c->head_done && c->idx + 1 < c->n_cands &&
                    c->attempts < c->providers->max_attempts) {
                        c->idx++;
                        c->same_retries = 0;
                        call_try_next(c);
                        return;
                }
                if (!c->started && c->head_done && c->holding) {
                        /* A retryable status whose body broke off: retry if we can, else report it. */
                        if (call_can_retry(c)) {
                                call_try_next(c);
                                return;
                        }
                }
                call_fail(c, e == -ETIMEDOUT ? 504 : 502, e == -ETIMEDOUT ? "upstream_timeout" : "upstream_error",
                          p->name);
                return;
        }

        if (c->holding) {
                if (call_can_retry(c)) {
                        c->proxy->retries++;
                        if (c->proxy->metrics) {
                                gate_metrics_upstream_error(c->proxy->metrics, p->name, "status");
                                gate_metrics_upstream_retry(c->proxy->metrics, p->name);
                        }
                        call_try_next(c);
                        return;
                }
                if (c->kind >= 0) {
                        call_reply_translated(c);
                        return;
                }
                /* Out of tries: the client gets the upstream's own answer, status and body unchanged. */
                call_detach(c);
                r = call_start_response(c, true);
                call_free(c);
                (void) r;
                return;
        }

        if (c->buffering) {
                call_reply_translated(c);
                return;
        }

        if (c->translator) {
                call_detach(c);
                r = stream_translator_finish(c->translator, true, &c->tout);
                (void) call_flush_translated(c);
                /* An upstream stream that ended before its final event (or turned out malformed at the
                 * end) must not look complete: the client has its error event, then the break. */
                if (r < 0) {
                        c->stop_reason = r == -EPIPE ? "stream ended before its final event" :
                                         r == -ENOMEM ? "out of memory translating the stream" :
                                                        "malformed stream";
                        call_log_failure(c, CURLE_OK);
                        c->outcome = USAGE_OUTCOME_UPSTREAM_ERROR;
                        request_reset(c->request);
                } else
                        (void) request_finish(c->request);
                call_free(c);
                return;
        }

        if (!c->started) {
                /* No body at all (e.g. 204): the head goes out now. */
                call_detach(c);
                r = call_start_response(c, true);
                call_free(c);
                (void) r;
                return;
        }
        call_detach(c);
        (void) request_finish(c->request);
        call_free(c);
}

/* The attempt's handle, off the multi handle already, goes back to the pool. */
static void call_put_easy(ProxyCall *c) {
        proxy_easy_put(c->proxy, c->easy);
        c->easy = NULL;
        c->proxy->active--;
}

static void on_curl_done(CURL *easy, CURLcode result, void *userdata) {
        ProxyCall *c = userdata;

        call_put_easy(c);
        on_done(c, result);
}

static void on_h1_done(CURLcode result, void *userdata) {
        ProxyCall *c = userdata;

        /* The transfer is gone (its connection pooled or closed). */
        c->h1 = NULL;
        c->proxy->active--;
        on_done(c, result);
}

/* The chunks of one upstream read were relayed (corked, in on_write()): now they go to the client. When the
 * read ends the answer this is not called: on_done() finishes the response (request_finish() sends what the
 * cork held, with the end, in one write) or breaks it (request_reset() sends it first, then closes). */
static void on_h1_fed(void *userdata) {
        ProxyCall *c = userdata;

        if (c->request)
                request_uncork(c->request);
}

static const H1Callbacks h1_callbacks = {
        .header = on_header,
        .write = on_write,
        .done = on_h1_done,
        .fed = on_h1_fed,
};

static void on_timer(Timer *t) {
        ProxyCall *c = container_of(t, ProxyCall, timer);

        if (c->timer_is_retry) {
                c->timer_is_retry = false;
                call_try_next(c);
                return;
        }
        if (c->head_done) {
                /* The idle timer was armed at some earlier chunk: is the gap really that long? */
                usec_t now, idle = c->cands[c->idx].provider->idle_timeout;
                usec_t deadline = c->last_data > USEC_INFINITY - idle ? USEC_INFINITY : c->last_data + idle;
                if (sd_event_now(c->proxy->event, CLOCK_MONOTONIC, &now) >= 0 && deadline > now &&
                    timer_arm(c->proxy->timers, &c->timer, deadline) >= 0)
                        return;
        }
        /* First byte or idle timeout: end this attempt as a timeout. */
        const Provider *p = c->cands[c->idx].provider;
        char span[32];
        c->timed_out = true;
        if (c->h1) {
                h1_transfer_cancel(c->h1);
                c->h1 = NULL;
                c->proxy->active--;
        } else {
                curl_glue_remove(c->proxy->curl, c->easy);
                call_put_easy(c);
        }
        /* The transfer is off curl now: the buffer is ours to say which timeout it was. */
        (void) format_timespan(span, sizeof span, c->head_done ? p->idle_timeout : p->first_byte_timeout);
        snprintf(c->curl_error, sizeof c->curl_error, c->head_done ? "no data for %s" : "no answer within %s",
                 span);
        on_done(c, CURLE_OPERATION_TIMEDOUT);
}

static void on_client_writable(Request *r, void *userdata) {
        ProxyCall *c = userdata;

        if (!c->paused || (!c->easy && !c->h1))
                return;
        c->paused = false;
        /* The client was behind, not the upstream: the idle clock starts again. */
        call_arm_idle(c);
        /* Last: unpausing may deliver data and even complete (and free) the call right here. */
        if (c->h1)
                h1_transfer_resume(c->h1);
        else
                (void) curl_glue_unpause(c->proxy->curl, c->easy);
}

static void on_client_abort(Request *r, void *userdata) {
        ProxyCall *c = userdata;

        c->client_gone = true;
        /* At the end of a drain the server closes what is left: gate's doing, not the client's. */
        c->outcome = r->server && r->server->aborting ? USAGE_OUTCOME_SHUTDOWN : USAGE_OUTCOME_CLIENT_CLOSED;
        if (c->in_curl)
                return; /* the curl callback returns an error, and on_done frees */
        /* The client went away: cancel the upstream transfer at once (closes or resets its stream). */
        call_free(c);
}

static const RequestHooks proxy_hooks = {
        .on_writable = on_client_writable,
        .on_abort = on_client_abort,
};

/* The client's own provider key, if it sent one (gate's own gk- keys are never forwarded). */
static const char *client_provider_key(Request *r) {
        const char *k = request_api_key(r);

        if (!k || !*k || startswith(k, "gk-"))
                return NULL;
        return k;
}

/* "name: prefix value" into the attempt's list; a NULL name adds prefix as the whole line. */
static int add_header_prefixed(HeaderList *l, const char *name, const char *prefix, const char *value) {
        if ((name ? strlen(name) : 0) + strlen(prefix) + (value ? strlen(value) : 0) > 16384)
                return -E2BIG;
        return header_list_add(l, name, prefix, value);
}

static int add_header(HeaderList *l, const char *name, const char *value) {
        return add_header_prefixed(l, name, "", value);
}

static int add_raw_header(HeaderList *l, const char *line) {
        return add_header_prefixed(l, NULL, line, NULL);
}

static int build_upstream_headers(ProxyCall *c, const Provider *p, const char *key, struct curl_slist **ret) {
#define NAME(s) { s, sizeof(s) - 1 }
        static const struct {
                const char *name;
                size_t len;
        } forward[] = { NAME("content-type"), NAME("accept"), NAME("anthropic-beta"), NAME("openai-organization"),
                        NAME("openai-project"), NAME("openai-beta"), NAME("idempotency-key"), NAME("traceparent"),
                        NAME("tracestate"), NAME("user-agent") };
#undef NAME
        const char *anthropic_version = NULL;
        unsigned seen = 0;              /* bit j: forward[j] was added */
        HeaderList list, *l = &list;
        Request *r = c->request;
        int k = 0;

        header_list_init(l, &c->attempt_arena);
        /* One pass over the client's headers (names are lowercase), in their order; the first letter
         * rules out most of them before any comparison. */
        for (size_t i = 0; i < r->n_headers && k >= 0; i++) {
                const char *name = r->headers[i].name;
                size_t len;

                if (!strchr("acoitu", name[0]) || !name[0])
                        continue;
                len = strlen(name);
                if (len == STRLEN("anthropic-version") && memcmp(name, "anthropic-version", len) == 0) {
                        anthropic_version = anthropic_version ?: r->headers[i].value;
                        continue;
                }
                /* The length and the first letter rule out nearly all before a compare. */
                for (size_t j = 0; j < ELEMENTSOF(forward); j++)
                        if (forward[j].len == len && forward[j].name[0] == name[0] &&
                            memcmp(name, forward[j].name, len) == 0) {
                                /* The first of a repeated header only, as before. */
                                if (!(seen & (1U << j)))
                                        k = add_header(l, name, r->headers[i].value);
                                seen |= 1U << j;
                                break;
                        }
        }
        if (k >= 0 && !(seen & 1U)) /* forward[0] is content-type */
                k = add_raw_header(l, "content-type: application/json");
        if (k >= 0 && p->type == PROVIDER_ANTHROPIC) {
                k = add_header(l, "anthropic-version", anthropic_version ?: "2023-06-01");
                if (k >= 0 && key)
                        k = add_header(l, "x-api-key", key);
        } else if (k >= 0 && key)
                k = add_header_prefixed(l, "authorization", "Bearer ", key);
        if (k >= 0)
                k = add_header(l, "x-request-id", request_id(c->request));
        for (char **h = p->headers; h && *h && k >= 0; h++)
                k = add_raw_header(l, *h);
        /* No "Expect: 100-continue" round trip for large bodies: our upstreams read what we send. */
        if (k >= 0)
                k = add_raw_header(l, "Expect:");
        if (k < 0)
                return k;
        *ret = list.head;
        return 0;
}

/* The upstream URL, base_url + version + path, in the attempt's arena. (OpenAI-style base URLs carry the
 * version path, so the caller drops "/v1" from the client's path for them; Anthropic-style base URLs do
 * not, so the path is appended whole.) */
static int build_url(Arena *a, const Provider *p, const char *version, const char *path, char **ret) {
        size_t b = strlen(p->base_url), v = strlen(version), n = strlen(path);
        char *u = arena_alloc(a, b + v + n + 1);

        if (!u)
                return -ENOMEM;
        *(char *) mempcpy(mempcpy(mempcpy(u, p->base_url, b), version, v), path, n) = 0;
        *ret = u;
        return 0;
}

/* Rewrites the model name in the body when routing stripped a "provider/" prefix; else sends the client's
 * bytes as they are. */
static int build_body(ProxyCall *c, const char **ret, size_t *ret_len) {
        Request *r = c->request;
        const char *model = c->cands[c->idx].model;
        _cleanup_free_ char *asked = NULL;
        int k;

        k = jscan_string((const char *) buf_data(&r->body), &c->model_span, &asked);
        if (k < 0)
                return k;
        if (streq(asked, model)) {
                *ret = (const char *) buf_data(&r->body);
                *ret_len = buf_len(&r->body);
                return 0;
        }
        buf_clear(&c->body);
        k = buf_append(&c->body, buf_data(&r->body), c->model_span.start);
        if (k >= 0)
                k = json_escape_append(&c->body, model);
        if (k >= 0)
                k = buf_append(&c->body, buf_data(&r->body) + c->model_span.end,
                               buf_len(&r->body) - c->model_span.end);
        if (k < 0)
                return k;
        *ret = (const char *) buf_data(&c->body);
        *ret_len = buf_len(&c->body);
        return 0;
}

/* What it takes for provider p to serve a request on path: 0 passthrough (*ret_kind < 0), 1 translation
 * (*ret_kind set), -EOPNOTSUPP when p's API has no such endpoint. */
static int call_kind(const char *path, const Provider *p, TranslateKind *ret_kind) {
        bool anthropic = p->type == PROVIDER_ANTHROPIC;

        *ret_kind = _TRANSLATE_KIND_INVALID;
        if (streq(path, "/v1/chat/completions"))
                *ret_kind = anthropic ? TRANSLATE_CHAT_TO_MESSAGES : _TRANSLATE_KIND_INVALID;
        else if (streq(path, "/v1/messages"))
                *ret_kind = anthropic ? _TRANSLATE_KIND_INVALID : TRANSLATE_MESSAGES_TO_CHAT;
        else if (streq(path, "/v1/responses"))
                /* OpenAI itself has the Responses API; OpenAI-compatible servers mostly do not (responses_api). */
                *ret_kind = anthropic ? TRANSLATE_RESPONSES_TO_MESSAGES :
                            p->responses_native ? _TRANSLATE_KIND_INVALID : TRANSLATE_RESPONSES_TO_CHAT;
        else if (streq(path, "/v1/messages/count_tokens")) {
                if (!anthropic)
                        return -EOPNOTSUPP; /* answered with an estimate before routing gets here */
        } else if (anthropic)
                return -EOPNOTSUPP; /* /v1/completions, /v1/embeddings: Anthropic has neither */
        return *ret_kind >= 0;
}

static void call_try_next(ProxyCall *c) {
        Provider *p;
        const char *key = NULL, *body;
        size_t body_len;
        int k;

        call_stop_transfer(c);
        c->failure = NULL;
        if (c->head_done && c->holding) {
                /* The previous answer was a retryable error: move on, or wait for the same one. */
                if (c->idx + 1 < c->n_cands) {
                        c->idx++;
                        c->same_retries = 0;
                } else {
                        usec_t delay = c->retry_after;
                        c->same_retries++;
                        c->retry_after = 0;
                        c->head_done = false;
                        c->holding = false;
                        buf_clear(&c->hold);
                        call_free_headers(c);
                        c->upstream_wait += delay;
                        c->timer_is_retry = true;
                        (void) timer_arm_relative(c->proxy->timers, &c->timer, delay);
                        return;
                }
        }
        c->head_done = false;
        c->holding = false;
        c->buffering = false;
        c->status = 0;
        c->retry_after = 0;
        c->timed_out = false;
        buf_clear(&c->hold);
        buf_clear(&c->tout);
        c->translator = stream_translator_free(c->translator);
        call_free_headers(c);

        p = c->cands[c->idx].provider;
        if (c->proxy->active >= c->proxy->policy.max_pending || (p->max_concurrent && p->active >= p->max_concurrent)) {
                if (c->idx + 1 < c->n_cands) {
                        c->idx++;
                        call_try_next(c);
                        return;
                }
                call_detach(c);
                (void) api_reply_error(c->request, c->dialect, 503, "overloaded",
                                       (const HttpHeader[]){ { "retry-after", "1" } }, 1,
                                       "Too many requests in flight to %s; try again shortly.", p->name);
                call_free(c);
                return;
        }

        if (p->api_key)
                key = p->api_key;
        else {
                bool allowed = c->proxy->policy.passthrough == PASSTHROUGH_ALWAYS ||
                               (c->proxy->policy.passthrough == PASSTHROUGH_LOOPBACK && request_is_loopback(c->request));
                key = client_provider_key(c->request);
                if (!allowed || !key) {
                        call_detach(c);
                        (void) api_reply_error(c->request, c->dialect, 401, "invalid_api_key", NULL, 0,
                                               !allowed ? "Provider %s has no api_key configured and passing "
                                                          "through the client's key is not allowed here." :
                                                          "Provider %s has no api_key configured: send your "
                                                          "provider API key.", p->name);
                        call_free(c);
                        return;
                }
        }

        (void) call_kind(c->request->path, p, &c->kind);
        if (c->kind >= 0) {
                _cleanup_free_ char *error = NULL;

                translated_request_done(&c->treq);
                k = translate_request(c->kind, (const char *) buf_data(&c->request->body), buf_len(&c->request->body),
                                      c->cands[c->idx].model, &c->treq, &error);
                if (k == -EINVAL) {
                        call_detach(c);
                        (void) api_reply_error(c->request, c->dialect, 400, "translation_refused", NULL, 0, "%s",
                                               error ? error : "The request cannot be translated.");
                        call_free(c);
                        return;
                }
                if (k < 0)
                        goto fail;
                body = c->treq.body;
                body_len = c->treq.len;
                /* Anthropic-style base URLs have no version path; OpenAI-style ones do. */
                k = build_url(&c->attempt_arena, p, p->type == PROVIDER_ANTHROPIC ? "/v1" : "",
                              translate_upstream_path(c->kind), &c->url);
        } else {
                const char *target = c->request->target;

                if (provider_dialect(p->type) == DIALECT_OPENAI && startswith(target, "/v1/"))
                        target += 3;
                k = build_url(&c->attempt_arena, p, "", target, &c->url);
                if (k >= 0)
                        k = build_body(c, &body, &body_len);
        }
        if (k >= 0)
                k = build_upstream_headers(c, p, key, &c->upstream_headers);
        if (k < 0)
                goto fail;

        c->attempts++;
        c->t_attempt = now_mono();
        c->content_length = -1;
        /* Per attempt: one through gate's own client after a failed one through curl must not be logged
         * with curl's old message. */
        c->curl_error[0] = 0;
        if (c->proxy->h1 && c->proxy->policy.builtin_client) {
                H1Request req = {
                        .url = c->url,
                        .method = "POST",
                        .headers = c->upstream_headers,
                        .body = body,
                        .body_len = body_len,
                        .connect_timeout = p->connect_timeout,
                        .error = c->curl_error,
                };

                /* Plain http:// on an IP literal or localhost; anything else goes to curl. */
                k = h1_transfer_start(c->proxy->h1, &req, &h1_callbacks, c, &c->h1);
                if (k >= 0)
                        goto started;
                if (k != -EPROTONOSUPPORT)
                        goto fail;
        }

        k = proxy_curl_open(c->proxy);
        if (k < 0) {
                /* As an unreachable upstream: the next candidate is tried, else the client learns why. */
                c->failure = curl_dl_failure();
                on_done(c, CURLE_FAILED_INIT);
                return;
        }
        c->easy = proxy_easy_get(c->proxy);
        if (!c->easy) {
                k = -ENOMEM;
                goto fail;
        }
        curl_easy_setopt(c->easy, CURLOPT_URL, c->url);
        curl_easy_setopt(c->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->upstream_headers);
        curl_easy_setopt(c->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
        curl_easy_setopt(c->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c->easy, CURLOPT_HEADERDATA, c);
        /* Through a proxy from the environment (https_proxy, which curl honours), the proxy's answer to
         * CONNECT ("200 Connection established") would reach on_header() as if it were the upstream's head:
         * the client's response started before the TLS handshake, then broke when the real head came. */
        curl_easy_setopt(c->easy, CURLOPT_SUPPRESS_CONNECT_HEADERS, 1L);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(c->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) (p->connect_timeout / USEC_PER_MSEC));
        curl_easy_setopt(c->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        /* A burst of calls to a provider not yet connected waits for the first connection to say whether
         * it multiplexes (HTTP/2) instead of opening one connection each: measured with bench/tls-upstream,
         * 64 new streams opened 64 TLS connections, each loading the trust store on the loop. */
        curl_easy_setopt(c->easy, CURLOPT_PIPEWAIT, 1L);
        /* Relay bytes as they come: no decoding, no buffering beyond curl's receive buffer. That buffer
         * lives as long as the transfer: 16 KiB (curl's default) holds many SSE events per read, where
         * 64 KiB made 10,000 streams cost 640 MiB of heap. */
        curl_easy_setopt(c->easy, CURLOPT_HTTP_CONTENT_DECODING, 0L);
        curl_easy_setopt(c->easy, CURLOPT_BUFFERSIZE, 16L * 1024);

        k = curl_glue_add(c->proxy->curl, c->easy, c->curl_error, on_curl_done, c);
        if (k < 0) {
                proxy_easy_put(c->proxy, c->easy);
                c->easy = NULL;
                goto fail;
        }
started:
        c->proxy->active++;
        c->proxy->upstream_requests++;
        p->active++;
        c->counted = p;
        c->timer_is_retry = false;
        (void) timer_arm_relative(c->proxy->timers, &c->timer, p->first_byte_timeout);
        return;
fail:
        log_warning_errno(k, "Failed to start upstream request %s to %s: %m", request_id(c->request), p->name);
        call_detach(c);
        (void) api_reply_error(c->request, c->dialect, 500, "internal_error", NULL, 0,
                               "gate could not start the upstream request (%s).", strerror(-k));
        call_free(c);
}

int proxy_forward(Proxy *proxy, Providers *providers, Request *r, Dialect d, KeyInfo *key) {
        static const char *const keys[] = { "model", "stream", "max_tokens", "max_completion_tokens",
                                            "max_output_tokens" };
        _cleanup_free_ char *model = NULL;
        JsonSpan spans[ELEMENTSOF(keys)];
        size_t offset = 0;
        ProxyCall *c;
        int k;

        k = jscan_object((const char *) buf_data(&r->body), buf_len(&r->body), keys, ELEMENTSOF(keys), spans, &offset);
        if (k == -ENOTDIR)
                return api_reply_error(r, d, 400, "invalid_json", NULL, 0, "The request body must be a JSON object.");
        if (k == -EEXIST)
                return api_reply_error(r, d, 400, "invalid_json", NULL, 0,
                                       "The request body names \"model\" or \"stream\" twice.");
        if (k == -ELOOP)
                return api_reply_error(r, d, 400, "invalid_json", NULL, 0, "The request body is nested too deeply.");
        if (k < 0)
                return api_reply_error(r, d, 400, "invalid_json", NULL, 0,
                                       "The request body is not valid JSON (at byte %zu).", offset);
        if (spans[0].type != 's')
                return api_reply_error(r, d, 400, "missing_model", NULL, 0,
                                       spans[0].type ? "\"model\" must be a string." :
                                                       "The request body needs a \"model\".");
        if (spans[1].type && spans[1].type != 't' && spans[1].type != 'f' && spans[1].type != 'z')
                return api_reply_error(r, d, 400, "invalid_type", NULL, 0, "\"stream\" must be a boolean.");
        k = jscan_string((const char *) buf_data(&r->body), &spans[0], &model);
        if (k < 0)
                return api_reply_error(r, d, 400, "invalid_model", NULL, 0, "\"model\" is not a valid name.");

        if (key && !key_info_allows_model(key, model))
                return api_reply_error(r, d, 403, "model_not_allowed", NULL, 0,
                                       "This API key may not use the model '%s'.", model);

        LimitResult ticket = {};
        if (key && proxy->limits) {
                /* Pre-charge the most the request may use: its max tokens and about 4 bytes per input token. */
                uint64_t tokens = buf_len(&r->body) / 4;
                for (size_t i = 2; i < ELEMENTSOF(keys); i++)
                        if (spans[i].type == 'n') {
                                char num[24] = {};
                                uint64_t v;
                                memcpy(num, buf_data(&r->body) + spans[i].start,
                                       MIN(spans[i].end - spans[i].start, sizeof num - 1));
                                if (parse_uint64(num, &v) >= 0)
                                        tokens += MIN(v, (uint64_t) 1 << 32);
                        }
                int after = limits_charge(proxy->limits, key, tokens, &ticket);
                if (after > 0) {
                        char ra[16];
                        snprintf(ra, sizeof ra, "%d", after);
                        if (proxy->metrics)
                                gate_metrics_rate_limited(proxy->metrics, limit_kind_to_string(ticket.over));
                        return api_reply_error(r, d, 429, ticket.over == LIMIT_BUDGET ? "budget_exceeded" :
                                                          "rate_limit_exceeded",
                                               (const HttpHeader[]){ { "retry-after", ra } }, 1,
                                               ticket.over == LIMIT_BUDGET ?
                                               "This API key's budget for the period is spent." :
                                               ticket.over == LIMIT_RPM ?
                                               "This API key's requests per minute limit is reached." :
                                               "This API key's tokens per minute limit is reached.");
                }
        }

        /* Zeroed up to the arenas' blocks only: 4 KiB of memset per request buys nothing. */
        c = malloc(sizeof *c);
        if (c)
                memset(c, 0, offsetof(ProxyCall, head_first));
        if (!c) {
                if (key && proxy->limits)
                        limits_settle(proxy->limits, &ticket, 0, 0);
                return -ENOMEM;
        }
        proxy->n_calls++;
        arena_init(&c->head_arena, c->head_first, sizeof c->head_first);
        arena_init(&c->attempt_arena, c->attempt_first, sizeof c->attempt_first);
        c->key = key_info_ref(key);
        c->ticket = ticket;
        c->charged = key && proxy->limits;
        c->proxy = proxy;
        c->request = request_ref(r);
        c->providers = providers_ref(providers);
        c->dialect = d;
        c->kind = _TRANSLATE_KIND_INVALID;
        c->model_span = spans[0];
        c->stream = spans[1].type == 't';
        c->content_length = -1;

        k = providers_route(providers, model, ++proxy->seed, c->cands);
        if (k < 0) {
                call_free(c);
                return k;
        }
        c->n_cands = (size_t) k;

        /* Providers of the other dialect serve through translation; those whose API lacks the endpoint
         * (Anthropic has no embeddings) drop out. */
        if (streq(r->path, "/v1/messages/count_tokens") && c->n_cands > 0 &&
            c->cands[0].provider->type != PROVIDER_ANTHROPIC) {
                /* Only Anthropic counts tokens for real: anyone else gets an estimate that says so. */
                _cleanup_free_ char *out = NULL;
                size_t len = 0;
                int rr = translate_count_tokens_estimate((const char *) buf_data(&r->body), buf_len(&r->body), &out,
                                                         &len);
                if (rr == -EINVAL)
                        rr = api_reply_error(r, d, 400, "invalid_request", NULL, 0,
                                             "count_tokens needs a JSON object with a \"messages\" array.");
                else if (rr == -E2BIG)
                        rr = api_reply_error(r, d, 400, "invalid_request", NULL, 0,
                                             "The request body has more than %u JSON values, more than gate "
                                             "estimates.", TRANSLATE_JSON_MAX_VALUES);
                else if (rr >= 0)
                        rr = request_reply(r, 200, (const HttpHeader[]){ { "x-gate-token-count", "estimate" } }, 1,
                                           "application/json", out, len);
                call_free(c);
                return rr;
        }
        size_t kept = 0;
        bool unsupported = false;
        for (size_t i = 0; i < c->n_cands; i++) {
                TranslateKind kind;
                if (call_kind(r->path, c->cands[i].provider, &kind) >= 0)
                        c->cands[kept++] = c->cands[i];
                else {
                        free(c->cands[i].model);
                        unsupported = true;
                }
        }
        c->n_cands = kept;
        if (kept == 0) {
                int rr;
                if (unsupported)
                        rr = api_reply_error(r, d, 400, "unsupported_endpoint", NULL, 0,
                                             "Model '%s' is served by a provider whose API has no %s.", model, r->path);
                else
                        rr = api_reply_error(r, d, 404, "model_not_found", NULL, 0,
                                             "The model '%s' does not exist or no provider serves it.", model);
                call_free(c);
                return rr;
        }
        c->client_model = strdup(model);
        if (!c->client_model) {
                call_free(c);
                return -ENOMEM;
        }

        c->timer.on_expire = on_timer;
        request_set_hooks(r, &proxy_hooks, c);
        call_try_next(c);
        return 0;
}

int proxy_init(Proxy *p, sd_event *event) {
        int r;

        *p = (Proxy){ .event = event, .policy = { .passthrough = PASSTHROUGH_LOOPBACK, .max_pending = 4096 } };

        if (getentropy(&p->seed, sizeof p->seed) < 0)
                p->seed = (uint32_t) now_mono(); /* only the weighted order depends on it */
        /* libcurl and its multi handle come with the first transfer that needs them: proxy_curl_open(). */
        r = timer_queue_new(event, "proxy-timeouts", &p->timers);
        if (r < 0)
                return r;
        upstream_log_init(&p->upstream_log, p->timers, UPSTREAM_LOG_INTERVAL);
        return h1_client_new(event, &p->h1);
}

int proxy_curl_open(Proxy *p) {
        int r;

        if (p->curl)
                return 0;
        r = dlopen_curl();
        if (r < 0)
                return r;
        r = curl_glue_new(p->event, &p->curl);
        if (r < 0)
                return r;
        curl_glue_set_max_idle(p->curl, p->idle_connections);
        curl_glue_set_batch_end(p->curl, proxy_curl_batch_end, p);
        return 0;
}

void proxy_reload_trust(Proxy *p) {
        /* Before libcurl is loaded there is nothing to reload: the bundle is parsed when it is. */
        if (p->curl)
                (void) curl_glue_load_trust(p->curl);
}

void proxy_set_idle_connections(Proxy *p, unsigned n) {
        p->idle_connections = n;
        h1_client_set_idle_max(p->h1, n);
        if (p->curl)
                curl_glue_set_max_idle(p->curl, n);
}

CURL *proxy_easy_get(Proxy *p) {
        if (p->n_idle > 0) {
                CURL *e = p->idle[--p->n_idle];
                curl_easy_reset(e);
                return e;
        }
        return curl_easy_init();
}

void proxy_easy_put(Proxy *p, CURL *easy) {
        if (!easy)
                return;
        if (p->n_idle < ELEMENTSOF(p->idle)) {
                /* Options may point into the call that is ending (header list, body): drop them now. */
                curl_easy_reset(easy);
                p->idle[p->n_idle++] = easy;
        } else
                curl_easy_cleanup(easy);
}

void proxy_done(Proxy *p) {
        while (p->n_idle > 0)
                curl_easy_cleanup(p->idle[--p->n_idle]);
        upstream_log_done(&p->upstream_log);
        p->timers = timer_queue_free(p->timers);
        p->curl = curl_glue_free(p->curl);
        p->h1 = h1_client_free(p->h1);
        p->trim_timer = sd_event_source_disable_unref(p->trim_timer);
}
