/* Request: the protocol-neutral request and response that handlers see, with a streaming response API. */
#include <stdio.h>
#include <time.h>
#include <sys/socket.h>

#include "http/request.h"
#include "shared/log.h"
#include "shared/util.h"

int request_new(HttpServer *server, const RequestProtoOps *ops, void *proto, Request **ret) {
        Request *r;

        r = new0(Request, 1);
        if (!r)
                return -ENOMEM;
        r->n_ref = 1;
        arena_init(&r->arena, r->arena_first, sizeof r->arena_first);
        r->server = server;
        r->proto_ops = ops;
        r->proto = proto;
        r->start_usec = now_mono();
        server->active_requests++;
        *ret = r;
        return 0;
}

static Request *request_free(Request *r) {
        arena_done(&r->arena);
        r->server->body_bytes -= MIN(r->server->body_bytes, (uint64_t) buf_len(&r->body));
        buf_done(&r->body);
        if (r->server->active_requests > 0)
                r->server->active_requests--;
        free(r);
        return NULL;
}

int request_body_append(Request *r, const void *p, size_t n) {
        const HttpLimits *l = &r->server->limits;
        int k;

        if (n > l->max_body_bytes || buf_len(&r->body) > l->max_body_bytes - n)
                return -EFBIG;
        /* Bodies are held whole (the model is read from them and retries resend them): bound them all. */
        if (r->server->body_bytes + n > l->max_body_bytes_total)
                return -ENOBUFS;
        k = buf_append(&r->body, p, n);
        if (k < 0)
                return k;
        r->server->body_bytes += n;
        return 0;
}

Request *request_ref(Request *r) {
        if (r)
                r->n_ref++;
        return r;
}

Request *request_unref(Request *r) {
        if (!r)
                return NULL;
        if (--r->n_ref > 0)
                return NULL;
        return request_free(r);
}

int request_add_header(Request *r, const char *name, size_t name_len, const char *value, size_t value_len) {
        char *n, *v;

        if (r->n_headers == r->n_headers_alloc) {
                /* Grown in the arena: the old array stays behind, unused, until the request ends. */
                size_t m = r->n_headers_alloc ? 2 * r->n_headers_alloc : 16;
                HttpHeader *h = arena_alloc(&r->arena, sizeof(HttpHeader) * m);

                if (!h)
                        return -ENOMEM;
                if (r->n_headers > 0)
                        memcpy(h, r->headers, sizeof(HttpHeader) * r->n_headers);
                r->headers = h;
                r->n_headers_alloc = m;
        }
        n = arena_alloc(&r->arena, name_len + 1 + value_len + 1);
        if (!n)
                return -ENOMEM;
        /* Header names are case-insensitive: store them lowercase once, compare cheaply after. */
        for (size_t i = 0; i < name_len; i++) {
                char c = name[i];
                n[i] = c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
        }
        n[name_len] = 0;
        v = n + name_len + 1;
        memcpy(v, value, value_len);
        v[value_len] = 0;
        r->headers[r->n_headers++] = (HttpHeader){ n, v };
        return 0;
}

int request_set_target(Request *r, const char *target, size_t len) {
        const char *q;
        char *t, *p;

        t = arena_strndup(&r->arena, target, len);
        if (!t)
                return -ENOMEM;
        q = memchr(t, '?', len);
        p = q ? arena_strndup(&r->arena, t, (size_t) (q - t)) : t;
        if (!p)
                return -ENOMEM;
        r->target = t;
        r->path = p;
        return 0;
}

int request_set_method(Request *r, const char *method, size_t len) {
        char *m = arena_strndup(&r->arena, method, len);

        if (!m)
                return -ENOMEM;
        r->method = m;
        return 0;
}

int request_set_authority(Request *r, const char *authority, size_t len) {
        char *a = arena_strndup(&r->arena, authority, len);

        if (!a)
                return -ENOMEM;
        r->authority = a;
        return 0;
}

const char *request_header(const Request *r, const char *lowercase_name) {
        for (size_t i = 0; i < r->n_headers; i++)
                if (streq(r->headers[i].name, lowercase_name))
                        return r->headers[i].value;
        return NULL;
}

const char *request_api_key(const Request *r) {
        const char *k = request_header(r, "x-api-key");

        if (!k) {
                const char *a = request_header(r, "authorization");
                if (a && strncasecmp(a, "Bearer ", 7) == 0)
                        k = a + 7;
        }
        return k;
}

/* Ids need to be unique, not secret: a generator seeded once from the kernel instead of a getrandom()
 * call per request. splitmix64 over a counter with a random start: distinct for 2^64 requests. */
static void request_id_random(uint8_t out[static 12]) {
        static uint64_t state, salt;
        static bool seeded;
        uint64_t a, b;

        if (!seeded) {
                uint64_t seed[2] = {};
                (void) getentropy(seed, sizeof seed);
                state = seed[0];
                salt = seed[1];
                seeded = true;
        }
        a = state += UINT64_C(0x9e3779b97f4a7c15);
        a = (a ^ (a >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        a = (a ^ (a >> 27)) * UINT64_C(0x94d049bb133111eb);
        a ^= a >> 31;
        b = a ^ salt;
        b = (b ^ (b >> 33)) * UINT64_C(0xff51afd7ed558ccd);
        b ^= b >> 33;
        memcpy(out, &a, 8);
        memcpy(out + 8, &b, 4);
}

const char *request_id(Request *r) {
        const char *given;
        bool ok;

        if (r->id[0])
                return r->id;
        given = request_header(r, "x-request-id");
        ok = given && given[0] && strlen(given) < sizeof r->id;
        for (const char *q = given; ok && *q; q++)
                if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                      strchr("-_.:", *q)))
                        ok = false;
        if (ok) {
                snprintf(r->id, sizeof r->id, "%s", given);
                return r->id;
        }
        static const char hex[] = "0123456789abcdef";
        uint8_t rnd[12];
        request_id_random(rnd);
        memcpy(r->id, "req_", 4);
        for (size_t i = 0; i < sizeof rnd; i++) {
                r->id[4 + 2 * i] = hex[rnd[i] >> 4];
                r->id[5 + 2 * i] = hex[rnd[i] & 15];
        }
        r->id[4 + 2 * sizeof rnd] = 0;
        return r->id;
}

/* Copies the handler's headers and adds x-request-id and x-gate-overhead-us where missing. out must have
 * room for n + 2 entries; overhead is the buffer for the number. */
static size_t response_headers(Request *r, const HttpHeader *headers, size_t n, HttpHeader *out,
                               char overhead[static 24]) {
        bool have_id = false, have_overhead = false;
        size_t m = 0;

        for (size_t i = 0; i < n; i++) {
                if ((headers[i].name[0] | 0x20) == 'x') {
                        if (strcasecmp(headers[i].name, "x-request-id") == 0)
                                have_id = true;
                        else if (strcasecmp(headers[i].name, "x-gate-overhead-us") == 0)
                                have_overhead = true;
                }
                out[m++] = headers[i];
        }
        if (!have_id)
                out[m++] = (HttpHeader){ "x-request-id", request_id(r) };
        if (!have_overhead) {
                usec_t total = now_mono() - r->start_usec;
                format_uint64(total > r->upstream_wait ? total - r->upstream_wait : 0, overhead);
                out[m++] = (HttpHeader){ "x-gate-overhead-us", overhead };
        }
        return m;
}

void request_set_hooks(Request *r, const RequestHooks *hooks, void *userdata) {
        r->hooks = hooks;
        r->hooks_userdata = userdata;
}

bool request_is_loopback(const Request *r) {
        return sockaddr_is_loopback((const struct sockaddr *) &r->peer);
}

void request_dispatch(Request *r) {
        int k;

        r->server->requests_total++;
        if (!r->server->dispatch) {
                (void) request_reply_error(r, 404, "not_found_error", "not_found", "No handler.");
                return;
        }
        k = r->server->dispatch(r, r->server->dispatch_userdata);
        if (k < 0)
                log_debug_errno(k, "Handler for %s %s failed: %m", r->method, r->path);
        /* A handler that failed without answering leaves the client hanging: answer for it. */
        if (k < 0 && !r->head_sent && r->proto_ops)
                (void) request_reply_error(r, 500, "server_error", "internal_error", "Internal error.");
}

void request_notify_writable(Request *r) {
        if (!r->want_writable || r->aborted)
                return;
        r->want_writable = false;
        if (r->hooks && r->hooks->on_writable)
                r->hooks->on_writable(r, r->hooks_userdata);
}

void request_abort(Request *r) {
        if (r->aborted)
                return;
        r->aborted = true;
        r->proto_ops = NULL;
        r->proto = NULL;
        r->info = NULL;
        if (r->head_sent && !r->ended && r->server->active_streams > 0)
                r->server->active_streams--;
        if (r->hooks && r->hooks->on_abort)
                r->hooks->on_abort(r, r->hooks_userdata);
}

int request_start(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers) {
        return request_start_length(r, status, headers, n_headers, -1);
}

int request_start_length(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                         int64_t content_length) {
        HttpHeader h[n_headers + 2];
        char overhead[24];
        size_t n;
        int k;

        if (!r->proto_ops)
                return -ECONNRESET;
        if (r->head_sent)
                return -EBUSY;
        n = response_headers(r, headers, n_headers, h, overhead);
        k = r->proto_ops->send_head(r, status, h, n, content_length);
        if (k < 0)
                return k;
        r->status = status;
        r->head_sent = true;
        r->server->active_streams++;
        return 0;
}

int request_write(Request *r, const void *p, size_t n) {
        int k;

        if (!r->proto_ops)
                return -ECONNRESET;
        if (!r->head_sent || r->ended)
                return -EBUSY;
        k = r->proto_ops->send_body(r, p, n);
        if (k < 0)
                return k;
        r->bytes_out += n;
        if (r->proto_ops && r->proto_ops->pending(r) > r->server->limits.send_high_water) {
                r->want_writable = true;
                return 1;
        }
        return 0;
}

void request_cork(Request *r) {
        r->corked = true;
}

void request_uncork(Request *r) {
        if (!r->corked)
                return;
        r->corked = false;
        if (r->proto_ops && r->proto_ops->flush)
                r->proto_ops->flush(r);
}

int request_finish(Request *r) {
        int k;

        if (!r->proto_ops)
                return -ECONNRESET;
        if (!r->head_sent || r->ended)
                return -EBUSY;
        r->ended = true;
        if (r->server->active_streams > 0)
                r->server->active_streams--;
        k = r->proto_ops->send_end(r);
        return k;
}

int request_reply(Request *r, unsigned status, const HttpHeader *headers, size_t n_headers,
                  const char *content_type, const void *body, size_t len) {
        HttpHeader h[n_headers + 1], all[n_headers + 3];
        char overhead[24];
        size_t n = 0;
        int k;

        if (!r->proto_ops)
                return -ECONNRESET;
        if (r->head_sent)
                return -EBUSY;
        if (content_type)
                h[n++] = (HttpHeader){ "content-type", content_type };
        for (size_t i = 0; i < n_headers; i++)
                h[n++] = headers[i];
        n = response_headers(r, h, n, all, overhead);

        k = r->proto_ops->send_head(r, status, all, n, (int64_t) len);
        if (k < 0)
                return k;
        r->status = status;
        r->head_sent = true;
        if (len > 0) {
                k = r->proto_ops->send_body(r, body, len);
                if (k < 0)
                        return k;
                r->bytes_out += len;
        }
        r->ended = true;
        return r->proto_ops->send_end(r);
}

int json_escape_append(Buf *b, const char *s) {
        static const char hex[] = "0123456789abcdef";
        int k;

        k = buf_append(b, "\"", 1);
        for (const unsigned char *p = (const unsigned char *) s; k >= 0 && *p; p++) {
                switch (*p) {
                case '"':
                        k = buf_append(b, "\\\"", 2);
                        break;
                case '\\':
                        k = buf_append(b, "\\\\", 2);
                        break;
                case '\n':
                        k = buf_append(b, "\\n", 2);
                        break;
                case '\r':
                        k = buf_append(b, "\\r", 2);
                        break;
                case '\t':
                        k = buf_append(b, "\\t", 2);
                        break;
                default:
                        if (*p < 0x20) {
                                char e[6] = { '\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15] };
                                k = buf_append(b, e, 6);
                        } else
                                k = buf_append(b, p, 1);
                }
        }
        if (k >= 0)
                k = buf_append(b, "\"", 1);
        return k;
}

int http_error_json(Buf *b, const char *type, const char *code, const char *message) {
        int k;

        k = buf_append_str(b, "{\"error\":{\"message\":");
        if (k >= 0)
                k = json_escape_append(b, message);
        if (k >= 0)
                k = buf_append_str(b, ",\"type\":");
        if (k >= 0)
                k = json_escape_append(b, type);
        if (k >= 0)
                k = buf_append_str(b, ",\"code\":");
        if (k >= 0)
                k = code ? json_escape_append(b, code) : buf_append_str(b, "null");
        if (k >= 0)
                k = buf_append_str(b, "}}\n");
        return k;
}

int request_reply_error(Request *r, unsigned status, const char *type, const char *code, const char *message) {
        _cleanup_(buf_done) Buf b = {};
        int k;

        k = http_error_json(&b, type, code, message);
        if (k < 0)
                return k;
        return request_reply(r, status, NULL, 0, "application/json", buf_data(&b), buf_len(&b));
}

const char *http_status_reason(unsigned status) {
        switch (status) {
        case 100: return "Continue";
        case 101: return "Switching Protocols";
        case 200: return "OK";
        case 201: return "Created";
        case 202: return "Accepted";
        case 204: return "No Content";
        case 206: return "Partial Content";
        case 301: return "Moved Permanently";
        case 302: return "Found";
        case 304: return "Not Modified";
        case 307: return "Temporary Redirect";
        case 308: return "Permanent Redirect";
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 402: return "Payment Required";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 406: return "Not Acceptable";
        case 408: return "Request Timeout";
        case 409: return "Conflict";
        case 411: return "Length Required";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 417: return "Expectation Failed";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 431: return "Request Header Fields Too Large";
        case 499: return "Client Closed Request";
        case 500: return "Internal Server Error";
        case 501: return "Not Implemented";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        case 505: return "HTTP Version Not Supported";
        case 529: return "Site Overloaded";
        default: return "Unknown";
        }
}

const char *http_date_now(void) {
        static char cached[64];
        static time_t cached_at = -1;
        time_t now = time(NULL);
        struct tm tm;

        if (now != cached_at) {
                gmtime_r(&now, &tm);
                strftime(cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
                cached_at = now;
        }
        return cached;
}

void request_reset(Request *r) {
        if (!r->proto_ops)
                return;
        if (r->head_sent && !r->ended && r->server->active_streams > 0)
                r->server->active_streams--;
        r->ended = true;
        if (r->proto_ops->reset)
                r->proto_ops->reset(r);
        request_abort(r);
}
