/* The LLM API routes: OpenAI's and Anthropic's endpoints, forwarded to providers, and the model list. */
#include <jansson.h>
#include <stdio.h>

#include "api/errors.h"
#include "api/llm.h"
#include "core/manager.h"
#include "proxy/fetch.h"
#include "shared/log.h"
#include "shared/util.h"

/* Who may use the API ([auth] in gate.conf(5)): a valid gate key (gk-…, as x-api-key or Authorization:
 * Bearer) always; without one, loopback clients when loopback_without_key is set, and clients that bring
 * their own provider key where passthrough allows it. Returns 1 when the request may go on (with *ret_key
 * referenced, or NULL), 0 when it was answered (401). */
static int api_authorize(Request *r, Manager *m, Dialect d, KeyInfo **ret_key) {
        const char *presented = request_api_key(r);
        const KeyInfo *k = NULL;
        bool loopback = request_is_loopback(r);
        int e;

        *ret_key = NULL;
        if (presented && startswith(presented, "gk-")) {
                e = keys_verify(m->keys, presented, &k);
                if (e >= 0) {
                        *ret_key = key_info_ref((KeyInfo *) k);
                        return 1;
                }
                (void) api_reply_error(r, d, 401, "invalid_api_key", NULL, 0, "%s",
                                       e == -EKEYREVOKED ? "This API key has been revoked." :
                                       e == -EKEYEXPIRED ? "This API key has expired." : "Invalid API key.");
                return 0;
        }
        if (loopback && m->config->auth_loopback_without_key)
                return 1;
        if (presented && *presented && (m->config->auth_passthrough == PASSTHROUGH_ALWAYS ||
                                        (m->config->auth_passthrough == PASSTHROUGH_LOOPBACK && loopback)))
                return 1; /* the client's own provider key: it pays, the provider checks it */
        (void) api_reply_error(r, d, 401, "missing_api_key", NULL, 0,
                               "This gate needs an API key: send a gate key (gk-...) as x-api-key or "
                               "Authorization: Bearer.");
        return 0;
}

int api_forward(Request *r, Manager *m) {
        Dialect d = api_request_dialect(r);
        _cleanup_(key_info_unrefp) KeyInfo *key = NULL;

        if (m->state == MANAGER_STOPPING)
                return api_reply_error(r, d, 503, "shutting_down", (const HttpHeader[]){ { "retry-after", "1" } }, 1,
                                       "gate is shutting down.");
        if (api_authorize(r, m, d, &key) == 0)
                return 0;
        return proxy_forward(&m->proxy, m->providers, r, d, key);
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

static int models_reply(Request *r, Providers *providers) {
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

        for (size_t i = 0; i < providers->n_items && k >= 0; i++) {
                const Provider *p = providers->items[i];
                /* Configured exact names first, then what the provider itself lists (once each). */
                _cleanup_strv_free_ char **all = NULL;
                size_t n_all = 0;
                for (char **x = p->models; x && *x && k >= 0; x++)
                        if (model_is_exact(*x) && !strv_contains(all, *x))
                                k = strv_extend(&all, &n_all, *x);
                for (char **x = p->listed_models; x && *x && k >= 0; x++)
                        if (!strv_contains(all, *x))
                                k = strv_extend(&all, &n_all, *x);
                for (char **x = all; x && *x && k >= 0; x++) {
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

/* GET /v1/models, waiting for the providers whose own list is due (list_models = true). */
#define MODELS_FETCH_MAX 32

typedef struct ModelsCall ModelsCall;

typedef struct ModelsFetch {
        ModelsCall *call;
        Provider *provider;
        Fetch *fetch;
} ModelsFetch;

struct ModelsCall {
        Request *request;
        Providers *providers;
        ModelsFetch fetches[MODELS_FETCH_MAX];
        size_t n;
        size_t pending;
};

static void models_call_free(ModelsCall *c) {
        for (size_t i = 0; i < c->n; i++)
                fetch_cancel(c->fetches[i].fetch);
        request_set_hooks(c->request, NULL, NULL);
        request_unref(c->request);
        providers_unref(c->providers);
        free(c);
}

static void models_on_abort(Request *r, void *userdata) {
        models_call_free(userdata);
}

static const RequestHooks models_hooks = { .on_abort = models_on_abort };

static int parse_model_ids(const char *body, size_t len, char ***ret) {
        _cleanup_strv_free_ char **ids = NULL;
        json_t *root, *data, *item;
        size_t n = 0, i;
        int k = 0;

        root = json_loadb(body, len, 0, NULL);
        if (!root)
                return -EBADMSG;
        data = json_object_get(root, "data");
        if (!json_is_array(data))
                k = -EBADMSG;
        json_array_foreach(data, i, item) {
                const char *id = json_string_value(json_object_get(item, "id"));
                if (k < 0 || n >= 4096)
                        break;
                if (id && *id && strlen(id) < 256)
                        k = strv_extend(&ids, &n, id);
        }
        json_decref(root);
        if (k < 0)
                return k;
        *ret = TAKE_PTR(ids);
        return 0;
}

static void models_on_fetched(int error, long status, const char *body, size_t len, void *userdata) {
        ModelsFetch *f = userdata;
        ModelsCall *c = f->call;
        Provider *p = f->provider;
        char **ids = NULL;
        int k;

        f->fetch = NULL; /* freed by fetch.c after this callback */
        if (error < 0)
                log_warning_errno(error, "Failed to list the models of provider %s, keeping the last list: %m",
                                  p->name);
        else if (status != 200)
                log_warning("Provider %s answered %ld to its model list, keeping the last list.", p->name, status);
        else if ((k = parse_model_ids(body, len, &ids)) < 0)
                log_warning_errno(k, "Provider %s sent a model list gate cannot read, keeping the last list: %m",
                                  p->name);
        else {
                strv_free(p->listed_models);
                p->listed_models = ids;
        }
        /* Failures count as fetched too: a broken provider is asked again after the TTL, not per request. */
        p->listed_at = now_mono();

        if (--c->pending > 0)
                return;
        request_set_hooks(c->request, NULL, NULL);
        (void) models_reply(c->request, c->providers);
        models_call_free(c);
}

int api_models(Request *r, Manager *m) {
        _cleanup_(key_info_unrefp) KeyInfo *key = NULL;
        ModelsCall *c = NULL;
        usec_t now = now_mono();
        int k;

        if (api_authorize(r, m, api_request_dialect(r), &key) == 0)
                return 0;

        for (size_t i = 0; i < m->providers->n_items; i++) {
                Provider *p = m->providers->items[i];

                if (!p->list_models || (p->listed_at > 0 && now - p->listed_at < p->models_ttl))
                        continue;
                if (!c) {
                        c = new0(ModelsCall, 1);
                        if (!c)
                                return -ENOMEM;
                        c->request = request_ref(r);
                        c->providers = providers_ref(m->providers);
                }
                if (c->n >= MODELS_FETCH_MAX)
                        break;
                ModelsFetch *f = &c->fetches[c->n];
                *f = (ModelsFetch){ .call = c, .provider = p };
                /* OpenAI-style base URLs carry the version; Anthropic-style ones do not. */
                k = proxy_fetch(&m->proxy, p, p->type == PROVIDER_ANTHROPIC ? "/v1/models?limit=1000" : "/models",
                                models_on_fetched, f, &f->fetch);
                if (k < 0) {
                        log_warning_errno(k, "Failed to ask provider %s for its models: %m", p->name);
                        continue;
                }
                c->n++;
                c->pending++;
        }
        if (!c || c->pending == 0) {
                if (c)
                        models_call_free(c);
                return models_reply(r, m->providers);
        }
        request_set_hooks(r, &models_hooks, c);
        return 0;
}

/* GET /metrics: Prometheus text. Loopback clients, and holders of an admin gate key elsewhere. */
int api_metrics(Request *r, Manager *m) {
        _cleanup_(buf_done) Buf b = {};
        int k;

        if (!request_is_loopback(r)) {
                const char *presented = request_api_key(r);
                const KeyInfo *key = NULL;

                if (!presented || keys_verify(m->keys, presented, &key) < 0 || !key->admin)
                        return api_reply_error(r, DIALECT_OPENAI, 403, "forbidden", NULL, 0,
                                               "/metrics is for loopback clients and admin keys.");
        }
        k = metrics_render(m->metrics->registry, &b);
        if (k < 0)
                return k;
        return request_reply(r, 200, (const HttpHeader[]){ { "cache-control", "no-store" } }, 1,
                             METRICS_CONTENT_TYPE, buf_data(&b), buf_len(&b));
}
