/* Helpers shared by the translators: JSON, drop lists, stop reasons, usage, ids and the reasoning mapping. */
#include <stdio.h>
#include <sys/random.h>
#include <time.h>

#include "shared/util.h"
#include "translate/json-fast.h"
#include "translate/translate-internal.h"

/* ---- JSON ---- */

int json_parse_object(const char *s, size_t n, json_t **ret) {
        return json_parse_object_keep(s, n, NULL, ret);
}

int json_parse_object_keep(const char *s, size_t n, const JsonKeep *keep, json_t **ret) {
        json_t *j;
        int r;

        r = json_read_keep(s, n, 0, TRANSLATE_JSON_MAX_VALUES, keep, &j);
        if (r < 0)
                return r;
        if (!json_is_object(j)) {
                json_decref(j);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

/* One pass straight into the buffer, without jansson's per-token callbacks (json-write.c). */
int json_dump_to_buf(const json_t *j, Buf *b) {
        return json_write_compact(j, b);
}

int json_dump_to_string(const json_t *j, char **ret, size_t *ret_len) {
        _cleanup_(buf_done) Buf b = {};
        char *s;
        int r;

        r = json_dump_to_buf(j, &b);
        if (r < 0)
                return r;
        s = buf_steal_str(&b, ret_len);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

char *json_dump_any(const json_t *j) {
        _cleanup_(buf_done) Buf b = {};

        if (json_write_any(j, &b) < 0)
                return NULL;
        return buf_steal_str(&b, NULL);
}

json_t *json_dump_any_string(const json_t *j) {
        _cleanup_(buf_done) Buf b = {};

        if (json_write_any(j, &b) < 0)
                return NULL;
        /* UTF-8: the writer refuses strings that are not, and what it writes around them is ASCII. */
        return json_stringn_utf8((const char *) buf_data(&b), buf_len(&b));
}

json_t *json_object_build(const char *key, ...) {
        json_t *o = json_object();
        bool ok = o;
        va_list ap;

        va_start(ap, key);
        for (const char *k = key; k; k = va_arg(ap, const char *)) {
                json_t *v = va_arg(ap, json_t *);

                if (ok && v)
                        ok = json_object_set_new_nocheck(o, k, v) >= 0;     /* which releases v on failure */
                else {
                        json_decref(v);
                        ok = false;
                }
        }
        va_end(ap);
        if (!ok) {
                json_decref(o);
                return NULL;
        }
        return o;
}

int64_t json_get_uint(const json_t *o, const char *key) {
        json_t *v = json_object_get(o, key);

        if (json_is_integer(v))
                return json_integer_value(v) >= 0 ? (int64_t) json_integer_value(v) : -1;
        if (json_is_real(v)) {
                double d = json_real_value(v);
                if (d >= 0 && d < 9.0e15 && d == (double) (int64_t) d)
                        return (int64_t) d;
        }
        return -1;
}

int json_set(json_t *o, const char *key, json_t *v) {
        if (!v)
                return -ENOMEM;
        return json_object_set_new(o, key, v) < 0 ? -ENOMEM : 0;
}

int json_append(json_t *a, json_t *v) {
        if (!v)
                return -ENOMEM;
        return json_array_append_new(a, v) < 0 ? -ENOMEM : 0;
}

int json_share_member(json_t *to, const json_t *from, const char *key) {
        json_t *v = json_object_get(from, key);

        if (!v)
                return 0;
        return json_set(to, key, json_incref(v));
}

json_t *json_stringn_lossy(const char *s, size_t n) {
        _cleanup_(buf_done) Buf b = {};
        json_t *j;
        size_t i = 0;

        j = json_stringn(s ?: "", n);
        if (j || n == 0)
                return j;
        /* Not UTF-8: keep what is, replace what is not, one byte at a time. */
        while (i < n) {
                unsigned char c = (unsigned char) s[i];
                size_t len = utf8_sequence_length(c);
                json_t *probe = len > 0 && i + len <= n ? json_stringn(s + i, len) : NULL;

                if (probe && !(len == 1 && c == 0)) {
                        json_decref(probe);
                        if (buf_append(&b, s + i, len) < 0)
                                return NULL;
                        i += len;
                } else {
                        json_decref(probe);
                        if (buf_append_str(&b, "\xef\xbf\xbd") < 0)
                                return NULL;
                        i++;
                }
        }
        return json_stringn((const char *) buf_data(&b), buf_len(&b));
}

int sse_put(Buf *out, const char *event, const json_t *j) {
        int r = 0;

        if (event)
                r = buf_printf(out, "event: %s\n", event);
        if (r >= 0)
                r = buf_append_str(out, "data: ");
        if (r >= 0)
                r = json_dump_to_buf(j, out);
        if (r >= 0)
                r = buf_append_str(out, "\n\n");
        return r;
}

/* ---- request context ---- */

void req_ctx_done(ReqCtx *c) {
        strv_free(c->dropped);
        c->dropped = NULL;
        c->n_dropped = 0;
        free(c->error);
        c->error = NULL;
}

int req_drop(ReqCtx *c, const char *field) {
        for (size_t i = 0; i < c->n_dropped; i++)
                if (streq(c->dropped[i], field))
                        return 0;
        return strv_extend(&c->dropped, &c->n_dropped, field);
}

int req_refuse(ReqCtx *c, const char *format, ...) {
        va_list ap;
        char *m;
        int k;

        if (c->error)
                return -EINVAL;
        va_start(ap, format);
        k = vasprintf(&m, format, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        c->error = m;
        return -EINVAL;
}

int req_dropped_join(ReqCtx *c, char **ret) {
        _cleanup_(buf_done) Buf b = {};
        char *s;

        if (c->n_dropped == 0) {
                *ret = NULL;
                return 0;
        }
        for (size_t i = 0; i < c->n_dropped; i++)
                if ((i > 0 && buf_append_str(&b, ",") < 0) || buf_append_str(&b, c->dropped[i]) < 0)
                        return -ENOMEM;
        s = buf_steal_str(&b, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* ---- stop reasons ---- */

StopReason stop_reason_from_anthropic(const char *s) {
        static const char *const table[_STOP_REASON_MAX] = {
                [STOP_END_TURN] = "end_turn",
                [STOP_MAX_TOKENS] = "max_tokens",
                [STOP_STOP_SEQUENCE] = "stop_sequence",
                [STOP_TOOL_USE] = "tool_use",
                [STOP_REFUSAL] = "refusal",
                [STOP_PAUSE_TURN] = "pause_turn",
                [STOP_CONTEXT_WINDOW] = "model_context_window_exceeded",
        };

        if (!s)
                return STOP_NONE;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (table[i] && streq(table[i], s))
                        return (StopReason) i;
        return _STOP_REASON_INVALID;
}

StopReason stop_reason_from_openai(const char *s) {
        if (!s)
                return STOP_NONE;
        if (streq(s, "stop"))
                return STOP_END_TURN;
        if (streq(s, "length"))
                return STOP_MAX_TOKENS;
        if (streq(s, "tool_calls") || streq(s, "function_call"))
                return STOP_TOOL_USE;
        if (streq(s, "content_filter"))
                return STOP_REFUSAL;
        return _STOP_REASON_INVALID;
}

const char *stop_reason_to_anthropic(StopReason r) {
        switch (r) {
        case STOP_MAX_TOKENS: return "max_tokens";
        case STOP_STOP_SEQUENCE: return "stop_sequence";
        case STOP_TOOL_USE: return "tool_use";
        case STOP_REFUSAL: return "refusal";
        case STOP_PAUSE_TURN: return "pause_turn";
        case STOP_CONTEXT_WINDOW: return "model_context_window_exceeded";
        default: return "end_turn";
        }
}

const char *stop_reason_to_openai(StopReason r) {
        switch (r) {
        case STOP_MAX_TOKENS:
        case STOP_CONTEXT_WINDOW: return "length";
        case STOP_TOOL_USE: return "tool_calls";
        case STOP_REFUSAL: return "content_filter";
        default: return "stop";         /* end_turn, stop_sequence, pause_turn */
        }
}

const char *stop_reason_to_responses_incomplete(StopReason r) {
        switch (r) {
        case STOP_MAX_TOKENS:
        case STOP_CONTEXT_WINDOW: return "max_output_tokens";
        case STOP_REFUSAL: return "content_filter";
        default: return NULL;
        }
}

/* ---- the answer ---- */

void reply_done(Reply *r) {
        for (size_t i = 0; i < r->n_blocks; i++) {
                free(r->blocks[i].text);
                free(r->blocks[i].signature);
                free(r->blocks[i].id);
                free(r->blocks[i].name);
        }
        free(r->blocks);
        free(r->id);
        free(r->stop_sequence);
        *r = (Reply){};
}

ReplyBlock *reply_add_block(Reply *r, BlockKind kind) {
        ReplyBlock *b = reallocarray(r->blocks, r->n_blocks + 1, sizeof(ReplyBlock));

        if (!b)
                return NULL;
        r->blocks = b;
        b = &r->blocks[r->n_blocks++];
        *b = (ReplyBlock){ .kind = kind };
        return b;
}

/* ---- usage ---- */

static uint64_t get_count(const json_t *o, const char *key) {
        int64_t v = json_get_uint(o, key);
        return v > 0 ? (uint64_t) v : 0;
}

void usage_from_openai(const json_t *u, TranslateUsage *ret) {
        uint64_t prompt, cached, write;

        if (!json_is_object(u))
                return;
        prompt = get_count(u, "prompt_tokens");
        cached = get_count(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
        /* OpenAI reports no cache writes; an OpenAI-compatible server (or gate itself) may, with Anthropic's
         * name, and then counts them inside prompt_tokens like the reads. */
        write = get_count(u, "cache_creation_input_tokens");
        ret->known = true;
        ret->cache_read = cached;
        ret->cache_write = write;
        ret->input = prompt > cached + write ? prompt - cached - write : 0;
        ret->output = get_count(u, "completion_tokens");
        ret->reasoning = get_count(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
}

void usage_from_anthropic(const json_t *u, TranslateUsage *ret) {
        if (!json_is_object(u))
                return;
        ret->known = true;
        if (json_object_get(u, "input_tokens") && !json_is_null(json_object_get(u, "input_tokens")))
                ret->input = get_count(u, "input_tokens");
        if (json_is_number(json_object_get(u, "cache_read_input_tokens")))
                ret->cache_read = get_count(u, "cache_read_input_tokens");
        if (json_is_number(json_object_get(u, "cache_creation_input_tokens")))
                ret->cache_write = get_count(u, "cache_creation_input_tokens");
        if (json_is_number(json_object_get(u, "output_tokens")))
                ret->output = get_count(u, "output_tokens");
        if (json_is_object(json_object_get(u, "output_tokens_details")))
                ret->reasoning = get_count(json_object_get(u, "output_tokens_details"), "thinking_tokens");
}

json_t *usage_to_openai(const TranslateUsage *u) {
        uint64_t prompt = u->input + u->cache_read + u->cache_write;

        /* prompt_tokens includes the cache, as OpenAI counts; the Anthropic-named members keep reads and
         * writes apart for billing (LiteLLM's names, which OpenAI-side tools already read). */
        return json_pack("{s:I, s:I, s:I, s:{s:I}, s:{s:I}, s:I, s:I}",
                         "prompt_tokens", (json_int_t) prompt,
                         "completion_tokens", (json_int_t) u->output,
                         "total_tokens", (json_int_t) (prompt + u->output),
                         "prompt_tokens_details", "cached_tokens", (json_int_t) u->cache_read,
                         "completion_tokens_details", "reasoning_tokens", (json_int_t) u->reasoning,
                         "cache_read_input_tokens", (json_int_t) u->cache_read,
                         "cache_creation_input_tokens", (json_int_t) u->cache_write);
}

json_t *usage_to_anthropic(const TranslateUsage *u) {
        return json_pack("{s:I, s:I, s:I, s:I}", "input_tokens", (json_int_t) u->input,
                         "cache_creation_input_tokens", (json_int_t) u->cache_write,
                         "cache_read_input_tokens", (json_int_t) u->cache_read,
                         "output_tokens", (json_int_t) u->output);
}

json_t *usage_to_responses(const TranslateUsage *u) {
        uint64_t in = u->input + u->cache_read + u->cache_write;

        return json_pack("{s:I, s:{s:I}, s:I, s:{s:I}, s:I, s:I, s:I}",
                         "input_tokens", (json_int_t) in,
                         "input_tokens_details", "cached_tokens", (json_int_t) u->cache_read,
                         "output_tokens", (json_int_t) u->output,
                         "output_tokens_details", "reasoning_tokens", (json_int_t) u->reasoning,
                         "total_tokens", (json_int_t) (in + u->output),
                         "cache_read_input_tokens", (json_int_t) u->cache_read,
                         "cache_creation_input_tokens", (json_int_t) u->cache_write);
}

/* ---- ids ---- */

void random_hex(char *buf, size_t n_hex) {
        static const char hex[] = "0123456789abcdef";
        uint8_t raw[32];
        size_t n = MIN((n_hex + 1) / 2, sizeof raw);

        if (getrandom(raw, n, GRND_NONBLOCK) != (ssize_t) n) {
                /* Ids need to be unlikely to repeat, not secret. */
                uint64_t x = (uint64_t) time(NULL) ^ ((uint64_t) (uintptr_t) buf << 16) ^ (uint64_t) clock();
                for (size_t i = 0; i < n; i++) {
                        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                        raw[i] = (uint8_t) x;
                }
        }
        for (size_t i = 0; i < n_hex && i / 2 < n; i++)
                buf[i] = hex[(raw[i / 2] >> (i % 2 ? 0 : 4)) & 15];
        buf[MIN(n_hex, 2 * n)] = 0;
}

static bool id_char_ok(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '-';
}

int id_derive(const char *prefix, const char *upstream_id, char **ret) {
        static const char *const known[] = { "chatcmpl-", "chatcmpl_", "msg_", "resp_", "cmpl-" };
        _cleanup_(buf_done) Buf b = {};
        const char *tail = upstream_id ?: "";
        char rnd[25], *s;

        for (size_t i = 0; i < ELEMENTSOF(known); i++)
                if (startswith(tail, known[i]) && tail[strlen(known[i])]) {
                        tail += strlen(known[i]);
                        break;
                }
        if (buf_append_str(&b, prefix) < 0)
                return -ENOMEM;
        /* Keep ids short and tame whatever the upstream sent. */
        for (size_t i = 0; tail[i] && i < 96; i++)
                if (buf_append(&b, id_char_ok(tail[i]) ? &tail[i] : "_", 1) < 0)
                        return -ENOMEM;
        if (buf_len(&b) == strlen(prefix)) {
                random_hex(rnd, 24);
                if (buf_append_str(&b, rnd) < 0)
                        return -ENOMEM;
        }
        s = buf_steal_str(&b, NULL);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int tool_id_sanitize(const char *prefix, const char *id, const char *base, unsigned n, char **ret) {
        char *s;

        if (isempty(id)) {
                /* No id from the upstream: one made from the answer's id and the call's place in it, so the
                 * same answer always gets the same ids. */
                if (asprintf(&s, "%s%s_%u", prefix, base ?: "", n) < 0)
                        return -ENOMEM;
        } else if (!(s = strdup(id)))
                return -ENOMEM;
        for (char *p = s; *p; p++)
                if (!id_char_ok(*p))
                        *p = '_';
        *ret = s;
        return 0;
}

/* ---- reasoning ----
 *
 * Anthropic thinking.budget_tokens  ->  OpenAI reasoning_effort
 *      < 4096                            "low"
 *      4096 ... 16383                    "medium"
 *      >= 16384                          "high"
 *
 * OpenAI reasoning_effort  ->  Anthropic thinking {type: enabled, budget_tokens}
 *      "none"                            no thinking
 *      "minimal"                         1024 (Anthropic's minimum)
 *      "low"                             2048
 *      "medium"                          8192
 *      "high"                            24576
 *      "xhigh"                           32768
 *
 * Each effort's budget maps back to the same effort ("minimal" comes back as "low", which OpenAI's scale
 * has no other place for). The budget must stay below max_tokens: request-chat.c lowers it to fit, and
 * drops thinking (listed) when less than the minimum is left. */

const char *reasoning_effort_from_budget(int64_t budget) {
        if (budget < 4096)
                return "low";
        if (budget < 16384)
                return "medium";
        return "high";
}

int64_t thinking_budget_from_effort(const char *effort) {
        static const struct {
                const char *effort;
                int64_t budget;
        } table[] = {
                { "none", 0 }, { "minimal", 1024 }, { "low", 2048 }, { "medium", 8192 }, { "high", 24576 },
                { "xhigh", 32768 },
        };

        for (size_t i = 0; effort && i < ELEMENTSOF(table); i++)
                if (streq(table[i].effort, effort))
                        return table[i].budget;
        return -1;
}
