/* mock-upstream: OpenAI and Anthropic as gate's tests and benchmarks see them, served by gate's HTTP engine. */
#include <fcntl.h>
#include <getopt.h>
#include <glib.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/listen.h"
#include "http/request.h"
#include "http/server.h"
#include "mock.h"
#include "net/conn.h"
#include "shared/list.h"
#include "shared/log.h"
#include "shared/util.h"
#include "translate/json-fast.h"

/* One accepted connection: the mock keeps the fd so it can break a stream where the protocol layer has
 * no reset of its own (see conn_kill()). */
struct MockConn {
        Mock *mock;
        Conn *conn;
        int fd;                         /* owned by conn */
        const StreamInfo *info;         /* what Request.info points to */
        MockCall *calls;
};

struct Mock {
        sd_event *event;
        HttpServer server;
        int listen_fd;
        sd_event_source *listen_io;
        sd_event_source *listen_retry;
        sd_event_source *sigterm, *sigint;
        int log_fd;
        const char *require_key;
        uint64_t n_requests;
        GHashTable *fail_counts;        /* model string -> failures served so far */
        GHashTable *conns;              /* const StreamInfo * -> MockConn */

        /* Every call's timer (ttfb, pace, reset) is in one TimerQueue (net/timers.h), gate's own heap
         * behind one sd-event timer: as sd-event sources, thousands of paced streams cost a loop
         * iteration, an epoll_wait() and often a timerfd_settime() each. One dispatch serves every call
         * that is due. */
        TimerQueue *timers;
};

static void call_pump(MockCall *c);
static void conn_kill(MockCall *c);
static void call_timer_off(MockCall *c);

/* ---- output helpers shared with the endpoint files ---- */

int buf_put_json(Buf *b, json_t *j, size_t flags) {
        uint8_t *p;
        size_t n;

        if (!j)
                return -ENOMEM;
        n = json_dumpb(j, NULL, 0, flags);
        if (n == 0) {
                json_decref(j);
                return -EINVAL;
        }
        p = buf_reserve(b, n);
        if (!p) {
                json_decref(j);
                return -ENOMEM;
        }
        (void) json_dumpb(j, (char *) p, n, flags);
        buf_commit(b, n);
        json_decref(j);
        return 0;
}

int sse_put(Buf *b, const char *event, json_t *j) {
        int r = 0;

        if (!j)
                return -ENOMEM;
        if (event)
                r = buf_printf(b, "event: %s\n", event);
        if (r >= 0)
                r = buf_append_str(b, "data: ");
        if (r < 0) {
                json_decref(j);
                return r;
        }
        /* gate's writer: jansson's JSON_COMPACT bytes, without its per-token callbacks and cycle checks. */
        r = json_write_compact(j, b);
        json_decref(j);
        if (r >= 0)
                r = buf_append_str(b, "\n\n");
        return r;
}

json_t *json_from_buf(const Buf *b) {
        if (buf_empty(b))
                return json_string("");
        return json_stringn((const char *) buf_data(b), buf_len(b));
}

int base64_append(Buf *b, const void *p, size_t n) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const uint8_t *s = p;
        uint8_t *o = buf_reserve(b, (n + 2) / 3 * 4);
        size_t k = 0;

        if (!o)
                return -ENOMEM;
        for (size_t i = 0; i < n; i += 3) {
                uint32_t v = (uint32_t) s[i] << 16;
                if (i + 1 < n)
                        v |= (uint32_t) s[i + 1] << 8;
                if (i + 2 < n)
                        v |= s[i + 2];
                o[k++] = (uint8_t) alphabet[(v >> 18) & 63];
                o[k++] = (uint8_t) alphabet[(v >> 12) & 63];
                o[k++] = i + 1 < n ? (uint8_t) alphabet[(v >> 6) & 63] : '=';
                o[k++] = i + 2 < n ? (uint8_t) alphabet[v & 63] : '=';
        }
        buf_commit(b, k);
        return 0;
}

/* ---- the deterministic answer ---- */

int call_text_piece(MockCall *c, uint32_t k, Buf *out) {
        size_t start = buf_len(out), n;
        int r;

        /* Not printf: this runs for every streamed text delta. */
        r = buf_append_str(out, k == 0 ? "tok" : " tok");
        if (r >= 0)
                r = buf_append_uint(out, k, 10);
        if (r < 0 || c->d.chunk_bytes == 0)
                return r;
        n = buf_len(out) - start;
        if (n > c->d.chunk_bytes) {
                out->tail -= n - c->d.chunk_bytes;
                return 0;
        }
        uint8_t *p = buf_reserve(out, c->d.chunk_bytes - n);
        if (!p)
                return -ENOMEM;
        memset(p, 'x', c->d.chunk_bytes - n);
        buf_commit(out, c->d.chunk_bytes - n);
        return 0;
}

int call_text_full(MockCall *c, Buf *out) {
        for (uint32_t k = 0; k < c->n_text; k++) {
                int r = call_text_piece(c, k, out);
                if (r < 0)
                        return r;
        }
        return 0;
}

const char *call_tool_name(MockCall *c, uint32_t t) {
        json_t *tools = json_object_get(c->body, "tools"), *item;
        size_t n = json_array_size(tools);
        const char *name;

        /* Chat Completions nests the name in "function"; Responses and Anthropic do not. */
        if (n == 0)
                return "get_weather";
        item = json_array_get(tools, t % n);
        name = json_string_value(json_object_get(item, "name"));
        if (!name)
                name = json_string_value(json_object_get(json_object_get(item, "function"), "name"));
        return name ?: "get_weather";
}

int call_tool_args(MockCall *c, uint32_t t, Buf *out) {
        return buf_printf(out, "{\"location\":\"Paris\",\"n\":%" PRIu32 "}", t);
}

int call_tool_piece(MockCall *c, uint32_t t, uint32_t i, Buf *out) {
        _cleanup_(buf_done) Buf args = {};
        size_t len, from, to;
        int r;

        r = call_tool_args(c, t, &args);
        if (r < 0)
                return r;
        len = buf_len(&args);
        from = (size_t) i * len / MOCK_TOOL_PIECES;
        to = (size_t) (i + 1) * len / MOCK_TOOL_PIECES;
        return buf_append(out, buf_data(&args) + from, to - from);
}

uint64_t call_output_tokens(MockCall *c) {
        return (uint64_t) c->n_text + (uint64_t) c->d.tools * MOCK_TOOL_PIECES;
}

void call_apply_max_tokens(MockCall *c, const char *const *fields) {
        bool text = c->d.tools == 0 || c->d.preamble;

        c->max_tokens = 0;
        for (const char *const *f = fields; f && *f; f++) {
                json_t *v = json_object_get(c->body, *f);
                if (json_is_integer(v) && json_integer_value(v) > 0) {
                        c->max_tokens = (uint64_t) json_integer_value(v);
                        break;
                }
        }
        c->n_text = text ? c->d.chunks : 0;
        c->truncated = false;
        if (text && c->max_tokens > 0 && c->n_text > c->max_tokens) {
                c->n_text = (uint32_t) c->max_tokens;
                c->truncated = true;
        }
}

int call_reject(MockCall *c, unsigned status, const char *type, const char *message, const char *param,
                const char *code) {
        c->bad_status = status;
        c->bad_type = type;
        c->bad_message = message;
        c->bad_param = param;
        c->bad_code = code;
        return -EBADMSG;
}

int call_bad_request(MockCall *c, const char *message, const char *param, const char *code) {
        return call_reject(c, 400, "invalid_request_error", message, param, code);
}

int call_add_step(MockCall *c, uint16_t kind, uint32_t index, uint32_t count) {
        Step *s;

        if (count == 0)
                return 0;
        s = realloc(c->steps, sizeof(Step) * (c->n_steps + 1));
        if (!s)
                return -ENOMEM;
        c->steps = s;
        c->steps[c->n_steps++] = (Step){ kind, index, count };
        return 0;
}

/* ---- the request log ---- */

static void mock_log_json(Mock *m, json_t *j) {
        _cleanup_(buf_done) Buf b = {};

        if (m->log_fd < 0 || !j) {
                json_decref(j);
                return;
        }
        if (buf_put_json(&b, j, JSON_COMPACT) < 0 || buf_append_str(&b, "\n") < 0) {
                log_warning("Failed to format request log line, ignoring.");
                return;
        }
        /* One write per line on an O_APPEND fd: lines never interleave and are on disk at once. */
        if (write(m->log_fd, buf_data(&b), buf_len(&b)) != (ssize_t) buf_len(&b))
                log_warning_errno(errno, "Failed to write request log, ignoring: %m");
}

static void mock_log_request(Mock *m, uint64_t id, Request *r, const char *model) {
        json_t *headers = json_object(), *j, *body;

        if (!headers)
                return;
        for (size_t i = 0; i < r->n_headers; i++) {
                const char *name = r->headers[i].name, *value = r->headers[i].value;
                const char *prev = json_string_value(json_object_get(headers, name));

                if (prev) {
                        _cleanup_free_ char *joined = NULL;
                        if (asprintf(&joined, "%s, %s", prev, value) >= 0)
                                (void) json_object_set_new(headers, name, json_string(joined));
                } else
                        (void) json_object_set_new(headers, name, json_string(value));
        }
        body = json_from_buf(&r->body);
        j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:o, s:o?, s:s?}",
                      "id", (json_int_t) id,
                      "method", r->method,
                      "path", r->path,
                      "target", r->target,
                      "protocol", r->protocol ?: "",
                      "headers", headers,
                      "body", body ?: json_null(),
                      "model", model);
        if (j && !body) {
                /* Not UTF-8: keep the exact bytes anyway. */
                _cleanup_(buf_done) Buf b64 = {};
                if (base64_append(&b64, buf_data(&r->body), buf_len(&r->body)) >= 0)
                        (void) json_object_set_new(j, "body_base64", json_from_buf(&b64));
        }
        mock_log_json(m, j);
}

static void call_log_event(MockCall *c, const char *event) {
        json_t *j = json_pack("{s:I, s:s}", "id", (json_int_t) c->id, "event", event);

        if (j && c->status > 0)
                (void) json_object_set_new(j, "status", json_integer(c->status));
        if (j && c->stream)
                (void) json_object_set_new(j, "events", json_integer((json_int_t) c->events));
        mock_log_json(c->mock, j);
}

/* ---- call lifecycle ---- */

static MockCall *call_ref(MockCall *c) {
        c->n_ref++;
        return c;
}

static void call_conn_unlink(MockCall *c) {
        if (!c->conn)
                return;
        LIST_REMOVE(c->conn->calls, c, conn_prev, conn_next);
        c->conn = NULL;
}

static MockCall *call_unref(MockCall *c) {
        if (!c || --c->n_ref > 0)
                return NULL;
        call_conn_unlink(c);
        call_timer_off(c);
        if (c->request) {
                request_set_hooks(c->request, NULL, NULL);
                request_unref(c->request);
        }
        json_decref(c->body);
        free(c->steps);
        buf_done(&c->scratch);
        stream_done(c);
        free(c);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(MockCall *, call_unref);

/* The response is over (event: "done", "aborted" or "reset"): log it and let go of the request. */
static void call_end(MockCall *c, const char *event) {
        Request *r;

        if (c->state == CALL_ENDED)
                return;
        c->state = CALL_ENDED;
        call_timer_off(c);
        call_log_event(c, event);
        r = TAKE_PTR(c->request);
        if (r) {
                request_set_hooks(r, NULL, NULL);
                request_unref(r);
        }
        call_unref(c);   /* the call's own reference, held while it answers */
}

static void call_on_timer(MockCall *c);

static void call_timer_off(MockCall *c) {
        timer_disarm(c->mock->timers, &c->timer);
}

static void call_on_expire(Timer *t) {
        MockCall *c = container_of(t, MockCall, timer);

        /* Held while it runs: answering may end the call and drop its own reference. */
        call_ref(c);
        call_on_timer(c);
        call_unref(c);
}

static int call_arm_timer(MockCall *c, uint64_t usec) {
        /* A timer is never due in the loop iteration that armed it: a zero delay still yields. */
        c->timer.on_expire = call_on_expire;
        return timer_arm_relative(c->mock->timers, &c->timer, MAX(usec, (uint64_t) 1));
}

/* Breaks the client's connection under the engine and makes the engine notice (its write then fails).
 * Only for protocol layers without RequestProtoOps.reset (HTTP/2 at the time of writing): this takes the
 * whole connection down, not one stream. The call's hooks must be cleared already. */
static void conn_kill(MockCall *c) {
        Request *r = c->request;

        if (c->conn)
                (void) shutdown(c->conn->fd, SHUT_RDWR);
        if (!r || !r->proto_ops || r->ended)
                return;
        if (r->head_sent)
                (void) request_finish(r);
        else
                (void) request_reply(r, 502, NULL, 0, NULL, NULL, 0);
}

static void call_reset(MockCall *c) {
        Request *r = c->request;
        bool native = r && r->proto_ops && r->proto_ops->reset;

        /* Without a native reset the socket is cut: let what was sent so far reach the client first,
         * so it sees exactly reset_after events. */
        if (!native && r && r->proto_ops && r->proto_ops->pending(r) > 0 && c->reset_tries++ < 1000) {
                c->resetting = true;
                if (call_arm_timer(c, 2 * USEC_PER_MSEC) >= 0)
                        return;
        }
        c->resetting = false;
        log_debug("Request %" PRIu64 ": breaking the stream after %" PRIu64 " events.", c->id, c->events);
        if (r) {
                request_set_hooks(r, NULL, NULL);
                if (native)
                        request_reset(r);
                else
                        conn_kill(c);
        }
        call_end(c, "reset");
}

static void request_on_writable(Request *r, void *userdata) {
        MockCall *c = userdata;

        c->blocked = false;
        if (!c->pacing)
                call_pump(c);
}

static void request_on_abort(Request *r, void *userdata) {
        MockCall *c = userdata;

        log_debug("Request %" PRIu64 ": client went away.", c->id);
        call_end(c, "aborted");
}

static const RequestHooks call_hooks = {
        .on_writable = request_on_writable,
        .on_abort = request_on_abort,
};

/* ---- errors in each provider's own shape ---- */

static void openai_error_for(unsigned status, const char **type, const char **code, const char **message) {
        switch (status) {
        case 400:
                *type = "invalid_request_error", *code = NULL;
                *message = "Injected error (mock-upstream).";
                break;
        case 401:
                *type = "invalid_request_error", *code = "invalid_api_key";
                *message = "Incorrect API key provided: mock. You can find your API key at "
                           "https://platform.openai.com/account/api-keys.";
                break;
        case 403:
                *type = "invalid_request_error", *code = "unsupported_country_region_territory";
                *message = "Country, region, or territory not supported";
                break;
        case 404:
                *type = "invalid_request_error", *code = "model_not_found";
                *message = "The model does not exist or you do not have access to it.";
                break;
        case 429:
                *type = "requests", *code = "rate_limit_exceeded";
                *message = "Rate limit reached for requests. Please try again later.";
                break;
        case 500:
                *type = "server_error", *code = NULL;
                *message = "The server had an error while processing your request. Sorry about that!";
                break;
        case 503:
        case 529:
                *type = "server_error", *code = NULL;
                *message = "The server is overloaded or not ready yet.";
                break;
        default:
                *type = status < 500 ? "invalid_request_error" : "server_error", *code = NULL;
                *message = "Injected error (mock-upstream).";
        }
}

static void anthropic_error_for(unsigned status, const char **type, const char **message) {
        switch (status) {
        case 400:
                *type = "invalid_request_error", *message = "Injected error (mock-upstream).";
                break;
        case 401:
                *type = "authentication_error", *message = "invalid x-api-key";
                break;
        case 403:
                *type = "permission_error";
                *message = "Your API key does not have permission to use the specified resource.";
                break;
        case 404:
                *type = "not_found_error", *message = "Not found.";
                break;
        case 413:
                *type = "request_too_large", *message = "Request exceeds the maximum allowed number of bytes.";
                break;
        case 429:
                *type = "rate_limit_error",
                *message = "Number of requests has exceeded your rate limit. Please try again later.";
                break;
        case 500:
                *type = "api_error", *message = "Internal server error";
                break;
        case 504:
                *type = "timeout_error", *message = "Request timed out";
                break;
        case 529:
                *type = "overloaded_error", *message = "Overloaded";
                break;
        default:
                *type = status < 500 ? "invalid_request_error" : "api_error";
                *message = "Injected error (mock-upstream).";
        }
}

static void call_reply(MockCall *c, unsigned status, const char *content_type, const Buf *body,
                       const HttpHeader *extra, size_t n_extra) {
        HttpHeader h[4];
        size_t n = 0;
        int r;

        h[n++] = (HttpHeader){ c->dialect == DIALECT_ANTHROPIC ? "request-id" : "x-request-id", c->request_id };
        for (size_t i = 0; i < n_extra && n < ELEMENTSOF(h); i++)
                h[n++] = extra[i];
        c->status = status;
        r = request_reply(c->request, status, h, n, content_type, buf_data(body), buf_len(body));
        if (r < 0) {
                log_debug_errno(r, "Request %" PRIu64 ": failed to reply: %m", c->id);
                call_end(c, "aborted");
                return;
        }
        call_end(c, "done");
}

/* type/code/param/message as OpenAI would send them; the Anthropic shape uses type and message. */
static void call_reply_error_full(MockCall *c, unsigned status, const char *type, const char *code,
                                  const char *param, const char *message) {
        _cleanup_(buf_done) Buf b = {};
        char retry[32];
        HttpHeader extra[1];
        size_t n_extra = 0;
        json_t *j;

        if (c->d.retry_after >= 0) {
                (void) snprintf(retry, sizeof retry, "%" PRIi64, c->d.retry_after);
                extra[n_extra++] = (HttpHeader){ "retry-after", retry };
        }
        if (c->dialect == DIALECT_ANTHROPIC)
                j = json_pack("{s:s, s:{s:s, s:s}, s:s}", "type", "error", "error", "type", type, "message",
                              message, "request_id", c->request_id);
        else if (status == 502)
                /* OpenAI's edge answers this one itself, with its own field order and a numeric code. */
                j = json_pack("{s:{s:i, s:s, s:n, s:s}}", "error", "code", 502, "message", "Bad gateway.",
                              "param", "type", "cf_bad_gateway");
        else
                j = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", message, "type", type, "param",
                              param, "code", code);
        /* OpenAI pretty-prints its error bodies; Anthropic's are compact. */
        if (buf_put_json(&b, j, c->dialect == DIALECT_ANTHROPIC ? JSON_COMPACT : JSON_INDENT(4)) < 0 ||
            (c->dialect == DIALECT_OPENAI && buf_append_str(&b, "\n") < 0)) {
                call_end(c, "aborted");
                return;
        }
        call_reply(c, status, "application/json", &b, extra, n_extra);
}

static void call_reply_status(MockCall *c, unsigned status) {
        const char *type, *code = NULL, *message;

        if (c->dialect == DIALECT_ANTHROPIC)
                anthropic_error_for(status, &type, &message);
        else
                openai_error_for(status, &type, &code, &message);
        call_reply_error_full(c, status, type, code, NULL, message);
}

static void call_reply_bad_request(MockCall *c) {
        call_reply_error_full(c, c->bad_status ?: 400, c->bad_type ?: "invalid_request_error", c->bad_code,
                              c->bad_param, c->bad_message ?: "Invalid request.");
}

/* ---- answering ---- */

static void call_answer_json(MockCall *c) {
        _cleanup_(buf_done) Buf b = {};
        HttpHeader h[2];
        int r;

        r = c->ep->body(c, &b);
        if (r < 0) {
                log_debug_errno(r, "Request %" PRIu64 ": failed to build the answer: %m", c->id);
                call_reply_status(c, 500);
                return;
        }
        if (c->d.reset_after < 0 && c->d.stall_after < 0) {
                call_reply(c, 200, "application/json", &b, NULL, 0);
                return;
        }

        /* A body that breaks off (reset_after) or stops coming (stall_after): half of it, unframed. */
        h[0] = (HttpHeader){ "content-type", "application/json" };
        h[1] = (HttpHeader){ c->dialect == DIALECT_ANTHROPIC ? "request-id" : "x-request-id", c->request_id };
        c->status = 200;
        r = request_start(c->request, 200, h, 2);
        if (r >= 0)
                r = request_write(c->request, buf_data(&b), buf_len(&b) / 2);
        if (r < 0) {
                call_end(c, "aborted");
                return;
        }
        c->state = CALL_STREAMING;
        if (c->d.reset_after >= 0)
                call_reset(c);
        else
                c->state = CALL_STALLED;
}

static void call_start_stream(MockCall *c) {
        HttpHeader h[3];
        int r;

        r = c->ep->plan(c);
        if (r < 0) {
                call_reply_status(c, 500);
                return;
        }
        h[0] = (HttpHeader){ "content-type", "text/event-stream; charset=utf-8" };
        h[1] = (HttpHeader){ "cache-control", "no-cache" };
        h[2] = (HttpHeader){ c->dialect == DIALECT_ANTHROPIC ? "request-id" : "x-request-id", c->request_id };
        c->status = 200;
        r = request_start(c->request, 200, h, ELEMENTSOF(h));
        if (r < 0) {
                log_debug_errno(r, "Request %" PRIu64 ": failed to start the stream: %m", c->id);
                call_end(c, "aborted");
                return;
        }
        c->state = CALL_STREAMING;
        call_pump(c);
}

/* Produces events until the stream ends, the client's queue is full, or pacing holds the next back. */
static void call_pump(MockCall *c) {
        _cleanup_(call_unrefp) MockCall *ref = call_ref(c);
        unsigned burst = 0;
        int r;

        while (c->state == CALL_STREAMING && !c->blocked && !c->pacing) {
                const Step *s;

                if (c->d.reset_after >= 0 && c->events >= (uint64_t) c->d.reset_after) {
                        call_reset(c);
                        return;
                }
                if (c->d.stall_after >= 0 && c->events >= (uint64_t) c->d.stall_after) {
                        log_debug("Request %" PRIu64 ": stalling after %" PRIu64 " events.", c->id, c->events);
                        c->state = CALL_STALLED;
                        return;
                }
                if (c->step >= c->n_steps) {
                        r = request_finish(c->request);
                        call_end(c, r < 0 ? "aborted" : "done");
                        return;
                }
                /* Fairness: a long fast stream yields to the loop now and then. */
                if (burst++ >= 64) {
                        c->pacing = true;
                        if (call_arm_timer(c, 0) < 0)
                                call_end(c, "aborted");
                        return;
                }

                buf_clear(&c->scratch);
                if (c->d.error_after >= 0 && c->events >= (uint64_t) c->d.error_after) {
                        /* The provider's error event in the middle of a 200 stream, then the end. */
                        r = c->ep->stream_error(c, &c->scratch);
                        if (r >= 0)
                                r = request_write(c->request, buf_data(&c->scratch), buf_len(&c->scratch));
                        if (r >= 0)
                                r = request_finish(c->request);
                        c->events++;
                        call_end(c, r < 0 ? "aborted" : "done");
                        return;
                }

                s = &c->steps[c->step];
                r = stream_render(c, s, c->sub, &c->scratch);
                if (r < 0) {
                        log_debug_errno(r, "Request %" PRIu64 ": failed to render an event: %m", c->id);
                        call_reset(c);
                        return;
                }
                if (++c->sub >= s->count) {
                        c->step++;
                        c->sub = 0;
                }
                r = request_write(c->request, buf_data(&c->scratch), buf_len(&c->scratch));
                if (r < 0) {
                        log_debug_errno(r, "Request %" PRIu64 ": write failed: %m", c->id);
                        call_end(c, "aborted");
                        return;
                }
                c->events++;
                if (r > 0)
                        c->blocked = true;
                if (c->d.pace_ms > 0 && c->step < c->n_steps) {
                        c->pacing = true;
                        if (call_arm_timer(c, (uint64_t) c->d.pace_ms * USEC_PER_MSEC) < 0)
                                call_end(c, "aborted");
                        return;
                }
        }
}

static void call_on_timer(MockCall *c) {
        switch (c->state) {
        case CALL_WAITING:
                if (c->fail > 0)
                        call_reply_status(c, c->fail);
                else if (c->stream)
                        call_start_stream(c);
                else
                        call_answer_json(c);
                break;
        case CALL_STREAMING:
                if (c->resetting) {
                        call_reset(c);
                        break;
                }
                c->pacing = false;
                call_pump(c);
                break;
        default:
                break;
        }
}

/* ---- directives ---- */

static int parse_u32(const char *s, uint32_t max, uint32_t *ret) {
        uint64_t v;

        if (parse_uint64(s, &v) < 0 || v > max)
                return -EINVAL;
        *ret = (uint32_t) v;
        return 0;
}

static int parse_directives(const char *model, Directives *d, char *bad, size_t bad_len) {
        _cleanup_free_ char *copy = NULL;
        const char *plus = model ? strchr(model, '+') : NULL;
        char *state = NULL;

        *d = DIRECTIVES_DEFAULT;
        if (!plus)
                return 0;
        copy = strdup(plus + 1);
        if (!copy)
                return -ENOMEM;
        for (char *item = strtok_r(copy, "+", &state); item; item = strtok_r(NULL, "+", &state)) {
                char *value = strchr(item, '=');
                uint32_t v;
                int r;

                if (!value) {
                        (void) snprintf(bad, bad_len, "mock-upstream: directive \"%s\" needs a value (key=value).",
                                        item);
                        return -EINVAL;
                }
                *value++ = 0;
                r = parse_u32(value, UINT32_MAX, &v);
                if (r >= 0) {
                        if (streq(item, "chunks"))
                                r = v <= 100000000 ? (d->chunks = v, 0) : -ERANGE;
                        else if (streq(item, "chunk_bytes"))
                                r = v <= MOCK_MAX_CHUNK_BYTES ? (d->chunk_bytes = v, 0) : -ERANGE;
                        else if (streq(item, "pace_ms"))
                                r = v <= 3600000 ? (d->pace_ms = v, 0) : -ERANGE;
                        else if (streq(item, "ttfb_ms"))
                                r = v <= 3600000 ? (d->ttfb_ms = v, 0) : -ERANGE;
                        else if (streq(item, "error"))
                                r = v >= 400 && v <= 599 ? (d->error = v, 0) : -ERANGE;
                        else if (streq(item, "retry_after"))
                                d->retry_after = v;
                        else if (streq(item, "reset_after"))
                                d->reset_after = v;
                        else if (streq(item, "stall_after"))
                                d->stall_after = v;
                        else if (streq(item, "error_after"))
                                d->error_after = v;
                        else if (streq(item, "tools"))
                                r = v <= MOCK_MAX_TOOLS ? (d->tools = v, 0) : -ERANGE;
                        else if (streq(item, "fail_times"))
                                d->fail_times = v, d->has_fail_times = true;
                        else if (streq(item, "usage"))
                                r = v <= 1 ? (d->usage = v, 0) : -ERANGE;
                        else if (streq(item, "preamble"))
                                r = v <= 1 ? (d->preamble = v, 0) : -ERANGE;
                        else if (streq(item, "cache_read"))
                                d->cache_read = v;
                        else if (streq(item, "cache_write"))
                                d->cache_write = v;
                        else {
                                (void) snprintf(bad, bad_len, "mock-upstream: unknown directive \"%s\".", item);
                                return -EINVAL;
                        }
                }
                if (r < 0) {
                        (void) snprintf(bad, bad_len, "mock-upstream: invalid value \"%s\" for directive \"%s\".",
                                        value, item);
                        return -EINVAL;
                }
        }
        return 0;
}

/* ---- routing and dispatch ---- */

static const Endpoint *route(const Request *r, const char **ret_arg) {
        bool anthropic = request_header(r, "anthropic-version") || request_header(r, "x-api-key");

        *ret_arg = NULL;
        if (streq(r->method, "POST")) {
                if (streq(r->path, "/v1/chat/completions"))
                        return &endpoint_openai_chat;
                if (streq(r->path, "/v1/completions"))
                        return &endpoint_openai_completions;
                if (streq(r->path, "/v1/responses"))
                        return &endpoint_openai_responses;
                if (streq(r->path, "/v1/embeddings"))
                        return &endpoint_openai_embeddings;
                if (streq(r->path, "/v1/messages"))
                        return &endpoint_anthropic_messages;
                if (streq(r->path, "/v1/messages/count_tokens"))
                        return &endpoint_anthropic_count_tokens;
        } else if (streq(r->method, "GET")) {
                /* Both providers serve /v1/models: the auth header tells whose client is asking. */
                if (streq(r->path, "/v1/models"))
                        return anthropic ? &endpoint_anthropic_models : &endpoint_openai_models;
                if (startswith(r->path, "/v1/models/") && r->path[STRLEN("/v1/models/")] &&
                    !strchr(r->path + STRLEN("/v1/models/"), '/')) {
                        *ret_arg = r->path + STRLEN("/v1/models/");
                        return anthropic ? &endpoint_anthropic_model : &endpoint_openai_model;
                }
        }
        return NULL;
}

static bool call_authorized(MockCall *c, bool *ret_missing) {
        const char *key = c->mock->require_key, *h;

        *ret_missing = false;
        if (!key)
                return true;
        if (c->dialect == DIALECT_ANTHROPIC)
                h = request_header(c->request, "x-api-key");
        else {
                h = request_header(c->request, "authorization");
                if (h && strncasecmp(h, "Bearer ", 7) == 0)
                        h += 7;
                else
                        h = NULL;
        }
        *ret_missing = !h;
        return h && streq(h, key);
}

static unsigned call_injected_failure(MockCall *c) {
        Mock *m = c->mock;
        gpointer v;
        unsigned n;

        if (!c->d.has_fail_times)
                return c->d.error;
        n = g_hash_table_lookup_extended(m->fail_counts, c->model, NULL, &v) ? GPOINTER_TO_UINT(v) : 0;
        if (n >= c->d.fail_times)
                return 0;
        g_hash_table_replace(m->fail_counts, g_strdup(c->model), GUINT_TO_POINTER(n + 1));
        return c->d.error ?: 503;
}

/* The handler failed before answering: the engine answers 500 for us once we let go. */
static int call_fail(MockCall *c, int error) {
        call_end(c, "aborted");
        return error;
}

static int mock_dispatch(Request *r, void *userdata) {
        Mock *m = userdata;
        const Endpoint *ep;
        const char *arg;
        json_error_t jerr;
        MockCall *c;
        bool missing;
        unsigned fail;
        int k;

        c = new0(MockCall, 1);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->mock = m;
        c->id = ++m->n_requests;
        c->request = request_ref(r);
        c->state = CALL_WAITING;
        c->d = DIRECTIVES_DEFAULT;
        (void) snprintf(c->request_id, sizeof c->request_id, "req_mock_%" PRIu64, c->id);
        request_set_hooks(r, &call_hooks, c);

        c->conn = r->info ? g_hash_table_lookup(m->conns, r->info) : NULL;
        if (c->conn)
                LIST_PREPEND(c->conn->calls, c, conn_prev, conn_next);

        if (!buf_empty(&r->body))
                c->body = json_loadb((const char *) buf_data(&r->body), buf_len(&r->body),
                                     JSON_REJECT_DUPLICATES, &jerr);
        if (json_is_object(c->body))
                c->model = json_string_value(json_object_get(c->body, "model"));
        mock_log_request(m, c->id, r, c->model);
        c->input_tokens = MAX(buf_len(&r->body) / 4, (size_t) 1);

        ep = route(r, &arg);
        c->ep = ep;
        c->path_arg = arg;
        c->dialect = ep ? ep->dialect :
                     (request_header(r, "anthropic-version") || startswith(r->path, "/v1/messages")) ?
                     DIALECT_ANTHROPIC : DIALECT_OPENAI;

        if (!ep) {
                if (c->dialect == DIALECT_ANTHROPIC)
                        call_reply_error_full(c, 404, "not_found_error", NULL, NULL, "Not Found");
                else {
                        _cleanup_free_ char *msg = NULL;
                        if (asprintf(&msg, "Invalid URL (%s %s)", r->method, r->path) < 0)
                                msg = NULL;
                        call_reply_error_full(c, 404, "invalid_request_error", NULL, NULL, msg ?: "Invalid URL");
                }
                return 0;
        }

        if (!call_authorized(c, &missing)) {
                if (c->dialect == DIALECT_ANTHROPIC)
                        call_reply_error_full(c, 401, "authentication_error", NULL, NULL,
                                              missing ? "x-api-key header is required" : "invalid x-api-key");
                else if (missing)
                        call_reply_error_full(c, 401, "invalid_request_error", NULL, NULL,
                                              "You didn't provide an API key. You need to provide your API key "
                                              "in an Authorization header using Bearer auth (i.e. "
                                              "Authorization: Bearer YOUR_KEY).");
                else
                        call_reply_error_full(c, 401, "invalid_request_error", "invalid_api_key", NULL,
                                              "Incorrect API key provided. You can find your API key at "
                                              "https://platform.openai.com/account/api-keys.");
                return 0;
        }
        if (c->dialect == DIALECT_ANTHROPIC && !request_header(r, "anthropic-version")) {
                call_reply_error_full(c, 400, "invalid_request_error", NULL, NULL,
                                      "anthropic-version: header is required");
                return 0;
        }
        if (ep->body_required && !json_is_object(c->body)) {
                if (c->dialect == DIALECT_ANTHROPIC)
                        call_reply_error_full(c, 400, "invalid_request_error", NULL, NULL,
                                              c->body || buf_empty(&r->body) ?
                                              "The request body is not a JSON object." :
                                              "There was an issue with your request body: invalid JSON.");
                else
                        call_reply_error_full(c, 400, "invalid_request_error", NULL, NULL,
                                              "We could not parse the JSON body of your request. (HINT: This "
                                              "likely means you aren't using your HTTP library correctly. The "
                                              "OpenAI API expects a JSON payload, but what was sent was not "
                                              "valid JSON.)");
                return 0;
        }

        k = parse_directives(c->model, &c->d, c->bad_buf, sizeof c->bad_buf);
        if (k == -ENOMEM)
                return call_fail(c, k);
        if (k < 0) {
                (void) call_bad_request(c, c->bad_buf, "model", NULL);
                c->d = DIRECTIVES_DEFAULT;
                call_reply_bad_request(c);
                return 0;
        }
        if (ep->prepare) {
                k = ep->prepare(c);
                if (k == -EBADMSG) {
                        call_reply_bad_request(c);
                        return 0;
                }
                if (k < 0)
                        return call_fail(c, k);
        }

        fail = call_injected_failure(c);
        if (c->d.ttfb_ms > 0 || (c->stream && fail == 0)) {
                /* Answer from the loop: streams never start inside the engine's read callback. */
                c->fail = fail;
                k = call_arm_timer(c, (uint64_t) c->d.ttfb_ms * USEC_PER_MSEC);
                if (k < 0)
                        return call_fail(c, k);
                return 0;
        }
        if (fail > 0)
                call_reply_status(c, fail);
        else
                call_answer_json(c);
        return 0;
}

/* ---- connections ---- */

static void mock_on_conn_free(Conn *conn, void *userdata) {
        MockConn *mc = userdata;

        (void) g_hash_table_remove(mc->mock->conns, mc->info);
        while (mc->calls)
                call_conn_unlink(mc->calls);
        free(mc);
}

static int mock_on_listen_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Mock *m = userdata;

        (void) sd_event_source_set_enabled(m->listen_io, SD_EVENT_ON);
        return 0;
}

/* Out of fds: stop accepting for a moment instead of spinning on the listener. */
static void mock_pause_listening(Mock *m) {
        const usec_t pause = 100 * USEC_PER_MSEC;

        (void) sd_event_source_set_enabled(m->listen_io, SD_EVENT_OFF);
        if (m->listen_retry) {
                (void) sd_event_source_set_time_relative(m->listen_retry, pause);
                (void) sd_event_source_set_enabled(m->listen_retry, SD_EVENT_ONESHOT);
        } else if (sd_event_add_time_relative(m->event, &m->listen_retry, CLOCK_MONOTONIC, pause, 0,
                                              mock_on_listen_retry, m) >= 0)
                (void) sd_event_source_set_description(m->listen_retry, "mock-listen-retry");
}

static int mock_on_listen(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Mock *m = userdata;

        for (unsigned i = 0; i < 64; i++) {
                MockConn *mc;
                Conn *conn;
                int cfd, r;

                cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                log_warning_errno(errno, "Failed to accept connection, pausing 100ms: %m");
                                mock_pause_listening(m);
                        } else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                                log_debug_errno(errno, "accept() failed, ignoring: %m");
                        return 0;
                }

                mc = new0(MockConn, 1);
                if (!mc) {
                        safe_close(cfd);
                        continue;
                }
                mc->mock = m;
                mc->fd = cfd;
                r = conn_new(m->event, cfd, "http", NULL, 0, mock_on_conn_free, mc, &conn);
                if (r < 0) {
                        free(mc);
                        log_debug_errno(r, "Failed to set up connection, dropping it: %m");
                        continue;
                }
                mc->conn = conn;
                mc->info = &conn_stream(conn)->info;
                g_hash_table_insert(m->conns, (gpointer) mc->info, mc);
                r = http_server_attach(&m->server, conn_stream(conn));
                if (r < 0) {
                        log_debug_errno(r, "Failed to attach HTTP to connection, dropping it: %m");
                        stream_close(conn_stream(conn), false);
                }
        }
        return 0;
}

static int mock_on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Mock *m = userdata;

        log_debug("Received %s, exiting.", strsignal((int) si->ssi_signo));
        return sd_event_exit(m->event, 0);
}

/* ---- main ---- */

static void help(void) {
        printf("mock-upstream --listen ADDRESS [--log FILE] [--require-key KEY]\n\n"
               "A stand-in for the OpenAI and Anthropic APIs, for gate's tests and benchmarks.\n"
               "Prints \"listening ADDRESS\" once ready; runs until SIGTERM or SIGINT.\n"
               "Behaviour is chosen per request by directives in the model name:\n"
               "  gpt-4o+chunks=10+pace_ms=20, claude-3-5-sonnet+error=529+retry_after=2 ...\n"
               "See tests/mock/README.md.\n");
}

static void mock_done(Mock *m) {
        /* Sessions first: aborting their requests logs them and frees the calls. */
        http_server_done(&m->server);
        sd_event_source_disable_unref(m->listen_io);
        sd_event_source_disable_unref(m->listen_retry);
        m->timers = timer_queue_free(m->timers);
        sd_event_source_disable_unref(m->sigterm);
        sd_event_source_disable_unref(m->sigint);
        safe_close(m->listen_fd);
        safe_close(m->log_fd);
        if (m->fail_counts)
                g_hash_table_destroy(m->fail_counts);
        if (m->conns)
                g_hash_table_destroy(m->conns);
        sd_event_unref(m->event);
}

int main(int argc, char *argv[]) {
        static const struct option options[] = {
                { "listen", required_argument, NULL, 'l' },
                { "log", required_argument, NULL, 'L' },
                { "require-key", required_argument, NULL, 'k' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        _cleanup_(mock_done) Mock m = { .listen_fd = -EBADF, .log_fd = -EBADF };
        const char *listen_address = NULL, *log_path = NULL;
        char address[128];
        sigset_t mask;
        int c, r;

        log_setup();
        while ((c = getopt_long(argc, argv, "hl:L:k:", options, NULL)) >= 0)
                switch (c) {
                case 'l':
                        listen_address = optarg;
                        break;
                case 'L':
                        log_path = optarg;
                        break;
                case 'k':
                        m.require_key = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc || !listen_address) {
                log_error("Usage: mock-upstream --listen ADDRESS [--log FILE] [--require-key KEY]");
                return EXIT_FAILURE;
        }

        m.fail_counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        m.conns = g_hash_table_new(g_direct_hash, g_direct_equal);

        if (log_path) {
                m.log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
                if (m.log_fd < 0)
                        return log_error_errno(errno, "Failed to open request log \"%s\": %m", log_path),
                               EXIT_FAILURE;
        }

        r = sd_event_default(&m.event);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate event loop: %m"), EXIT_FAILURE;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m"), EXIT_FAILURE;
        r = sd_event_add_signal(m.event, &m.sigterm, SIGTERM, mock_on_signal, &m);
        if (r >= 0)
                r = sd_event_add_signal(m.event, &m.sigint, SIGINT, mock_on_signal, &m);
        if (r < 0)
                return log_error_errno(r, "Failed to install signal handlers: %m"), EXIT_FAILURE;
        (void) sd_event_source_set_description(m.sigterm, "signal-term");
        (void) sd_event_source_set_description(m.sigint, "signal-int");

        r = timer_queue_new(m.event, "mock-call-timers", &m.timers);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate timers: %m"), EXIT_FAILURE;
        http_server_init(&m.server, m.event);
        m.server.dispatch = mock_dispatch;
        m.server.dispatch_userdata = &m;

        m.listen_fd = listen_bind(listen_address, 4096);
        if (m.listen_fd < 0)
                return log_error_errno(m.listen_fd, "Failed to listen on \"%s\": %m", listen_address),
                       EXIT_FAILURE;
        r = sd_event_add_io(m.event, &m.listen_io, m.listen_fd, EPOLLIN, mock_on_listen, &m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch listener: %m"), EXIT_FAILURE;
        (void) sd_event_source_set_description(m.listen_io, "mock-listen");

        listen_format_address(m.listen_fd, address, sizeof address);
        printf("listening %s\n", address);
        fflush(stdout);

        r = sd_event_loop(m.event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m"), EXIT_FAILURE;
        return EXIT_SUCCESS;
}
