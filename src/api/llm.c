/* The LLM API routes: OpenAI's and Anthropic's endpoints, forwarded to providers, and the model list. */
#include <stdio.h>

#include "api/errors.h"
#include "api/llm.h"
#include "core/manager.h"
#include "shared/util.h"

int api_forward(Request *r, Manager *m) {
        Dialect d = api_request_dialect(r);

        if (m->state == MANAGER_STOPPING)
                return api_reply_error(r, d, 503, "shutting_down", (const HttpHeader[]){ { "retry-after", "1" } }, 1,
                                       "gate is shutting down.");
        return proxy_forward(&m->proxy, m->providers, r, d);
}

/* Models a provider names exactly (patterns with wildcards are not listable). */
static bool model_is_exact(const char *m) {
        return !strpbrk(m, "*?");
}

static int append_model(Buf *b, Dialect d, const char *id, const char *owner, bool *first) {
        int k = buf_append_str(b, *first ? "" : ",");
        *first = false;
        if (d == DIALECT_ANTHROPIC) {
                if (k >= 0)
                        k = buf_append_str(b, "{\"type\":\"model\",\"id\":");
                if (k >= 0)
                        k = json_escape_append(b, id);
                if (k >= 0)
                        k = buf_append_str(b, ",\"display_name\":");
                if (k >= 0)
                        k = json_escape_append(b, id);
                if (k >= 0)
                        k = buf_append_str(b, ",\"created_at\":\"1970-01-01T00:00:00Z\"}");
        } else {
                if (k >= 0)
                        k = buf_append_str(b, "{\"id\":");
                if (k >= 0)
                        k = json_escape_append(b, id);
                if (k >= 0)
                        k = buf_append_str(b, ",\"object\":\"model\",\"created\":0,\"owned_by\":");
                if (k >= 0)
                        k = json_escape_append(b, owner);
                if (k >= 0)
                        k = buf_append_str(b, "}");
        }
        return k;
}

int api_models(Request *r, Manager *m) {
        Dialect d = api_request_dialect(r);
        const char *one = NULL;
        _cleanup_(buf_done) Buf b = {};
        _cleanup_free_ char *first_id = NULL, *last_id = NULL;
        bool first = true;
        int k = 0;

        if (startswith(r->path, "/v1/models/")) {
                one = r->path + strlen("/v1/models/");
                if (isempty(one))
                        one = NULL;
        }

        for (size_t i = 0; i < m->providers->n_items && k >= 0; i++) {
                const Provider *p = m->providers->items[i];
                for (char **x = p->models; x && *x && k >= 0; x++) {
                        if (!model_is_exact(*x))
                                continue;
                        if (one) {
                                /* "provider/model" names it too. */
                                size_t nl = strlen(p->name);
                                bool match = streq(one, *x) ||
                                             (strneq(one, p->name, nl) && one[nl] == '/' && streq(one + nl + 1, *x));
                                if (!match)
                                        continue;
                                b.head = b.tail = 0;
                                first = true;
                                k = append_model(&b, d, one, p->name, &first);
                                if (k < 0)
                                        return k;
                                return request_reply(r, 200, NULL, 0, "application/json", buf_data(&b), buf_len(&b));
                        }
                        k = append_model(&b, d, *x, p->name, &first);
                        if (!first_id)
                                first_id = strdup(*x);
                        free(last_id);
                        last_id = strdup(*x);
                }
        }
        if (k < 0)
                return k;
        if (one)
                return api_reply_error(r, d, 404, "model_not_found", NULL, 0,
                                       "The model '%.200s' does not exist or no provider serves it.", one);

        _cleanup_(buf_done) Buf out = {};
        if (d == DIALECT_ANTHROPIC) {
                k = buf_append_str(&out, "{\"data\":[");
                if (k >= 0)
                        k = buf_append(&out, buf_data(&b), buf_len(&b));
                if (k >= 0)
                        k = buf_append_str(&out, "],\"has_more\":false,\"first_id\":");
                if (k >= 0)
                        k = first_id ? json_escape_append(&out, first_id) : buf_append_str(&out, "null");
                if (k >= 0)
                        k = buf_append_str(&out, ",\"last_id\":");
                if (k >= 0)
                        k = last_id ? json_escape_append(&out, last_id) : buf_append_str(&out, "null");
                if (k >= 0)
                        k = buf_append_str(&out, "}\n");
        } else {
                k = buf_append_str(&out, "{\"object\":\"list\",\"data\":[");
                if (k >= 0)
                        k = buf_append(&out, buf_data(&b), buf_len(&b));
                if (k >= 0)
                        k = buf_append_str(&out, "]}\n");
        }
        if (k < 0)
                return k;
        return request_reply(r, 200, NULL, 0, "application/json", buf_data(&out), buf_len(&out));
}
