/* The admin API: /admin/keys (list, create, update, revoke) and /admin/usage, for admin keys and loopback. */
#include <jansson.h>
#include <stdio.h>

#include "api/admin.h"
#include "api/errors.h"
#include "core/manager.h"
#include "shared/log.h"
#include "shared/util.h"

/* Admin keys anywhere; loopback clients when [auth] admin_loopback allows (a personal install). */
static bool admin_allowed(Request *r, Manager *m) {
        const char *presented = request_api_key(r);
        const KeyInfo *k = NULL;

        if (presented && startswith(presented, "gk-"))
                return keys_verify(m->keys, presented, &k) >= 0 && k->admin;
        return request_is_loopback(r) && m->config->auth_admin_loopback;
}

static int reply_json(Request *r, unsigned status, json_t *j) {
        _cleanup_free_ char *s = NULL;

        if (!j)
                return -ENOMEM;
        s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
        json_decref(j);
        if (!s)
                return -ENOMEM;
        return request_reply(r, status, (const HttpHeader[]){ { "cache-control", "no-store" } }, 1,
                             "application/json", s, strlen(s));
}

static json_t *json_time_or_null(usec_t t) {
        return t ? json_integer((json_int_t) (t / USEC_PER_SEC)) : json_null();
}

/* A key as the admin API shows it: never its secret or hash. */
static json_t *key_to_json(Manager *m, const KeyInfo *k) {
        json_t *models = json_array();

        for (char **p = k->models; models && p && *p; p++)
                json_array_append_new(models, json_string(*p));
        return json_pack("{s:I, s:s, s:s, s:o, s:I, s:I, s:o, s:o, s:f, s:b, s:o, s:o, s:o}",
                         "id", (json_int_t) k->id, "name", k->name, "prefix", k->prefix,
                         "models", k->models && models ? models : (json_decref(models), json_null()),
                         "rpm", (json_int_t) k->rpm, "tpm", (json_int_t) k->tpm,
                         "budget_usd", k->budget ? json_real((double) k->budget / 1e9) : json_null(),
                         "budget_period", k->budget ? json_string(budget_period_to_string(k->period)) : json_null(),
                         "spent_period_usd", (double) limits_spend(m->limits, k) / 1e9,
                         "admin", k->admin,
                         "created", json_time_or_null(k->created_at),
                         "expires", json_time_or_null(k->expires_at),
                         "revoked", json_time_or_null(k->revoked_at));
}

static int admin_create(Request *r, Manager *m) {
        _cleanup_strv_free_ char **models = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *info = NULL;
        _cleanup_free_ char *key = NULL;
        uint8_t secret[KEY_SECRET_SIZE];
        json_error_t jerr;
        json_t *body, *v, *item;
        KeySpec spec = { .period = _BUDGET_PERIOD_INVALID };
        size_t n_models = 0, i;
        int k;

        body = json_loadb((const char *) buf_data(&r->body), buf_len(&r->body), JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(body)) {
                json_decref(body);
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_json", NULL, 0,
                                       "The body must be a JSON object: {\"name\": ...}.");
        }
        spec.name = json_string_value(json_object_get(body, "name"));
        v = json_object_get(body, "models");
        json_array_foreach(v, i, item) {
                const char *p = json_string_value(item);
                if (!p || !key_pattern_is_valid(p) || strv_extend(&models, &n_models, p) < 0) {
                        json_decref(body);
                        return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                               "\"models\" must be an array of model names or patterns.");
                }
        }
        spec.models = models;
        spec.rpm = (uint32_t) MIN(json_integer_value(json_object_get(body, "rpm")), (json_int_t) UINT32_MAX);
        spec.tpm = (uint32_t) MIN(json_integer_value(json_object_get(body, "tpm")), (json_int_t) UINT32_MAX);
        v = json_object_get(body, "budget_usd");
        if (json_is_number(v) && json_number_value(v) > 0) {
                spec.budget = (uint64_t) (json_number_value(v) * 1e9 + 0.5);
                spec.period = budget_period_from_string(json_string_value(json_object_get(body, "budget_period")));
        }
        v = json_object_get(body, "expires");
        if (json_is_integer(v) && json_integer_value(v) > 0)
                spec.expires_at = (usec_t) json_integer_value(v) * USEC_PER_SEC;
        spec.admin = json_is_true(json_object_get(body, "admin"));

        if (!spec.name || !key_name_is_valid(spec.name) || json_integer_value(json_object_get(body, "rpm")) < 0 ||
            json_integer_value(json_object_get(body, "tpm")) < 0 || (spec.budget && spec.period < 0)) {
                json_decref(body);
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                       "Needs a valid \"name\"; rpm and tpm are whole numbers; a budget_usd "
                                       "needs budget_period \"day\" or \"month\".");
        }

        k = key_secret_load(m->state_dir, true, secret);
        if (k >= 0)
                k = keys_create(m->store, secret, &spec, &info, &key);
        explicit_bzero(secret, sizeof secret);
        json_decref(body);
        if (k == -EEXIST)
                return api_reply_error(r, DIALECT_OPENAI, 409, "conflict", NULL, 0,
                                       "An active key has this name already.");
        if (k == -EINVAL)
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0, "Invalid key settings.");
        if (k < 0)
                return k;
        /* The cache follows at once; on failure the poll retries, as the generation moved. */
        (void) manager_reload_keys(m);
        json_t *j = key_to_json(m, info);
        if (j)
                json_object_set_new(j, "key", json_string(key));
        explicit_bzero(key, strlen(key));
        return reply_json(r, 201, j);
}

/* PATCH /admin/keys/ID: what `gate keys update` does. Strict about names and types, so that a typo
 * is an error, not a silent no-op; null takes a setting away. */
static int admin_update(Request *r, Manager *m, const char *which) {
        _cleanup_(key_info_unrefp) KeyInfo *key = NULL, *info = NULL;
        _cleanup_strv_free_ char **models = NULL;
        json_error_t jerr;
        json_t *body, *v;
        const char *field;
        KeySpec spec = { .period = _BUDGET_PERIOD_INVALID };
        unsigned fields = 0;
        int k;

        body = json_loadb((const char *) buf_data(&r->body), buf_len(&r->body), JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(body)) {
                json_decref(body);
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_json", NULL, 0,
                                       "The body must be a JSON object: {\"rpm\": ...}.");
        }
        json_object_foreach(body, field, v) {
                bool ok = true;

                if (streq(field, "name")) {
                        spec.name = json_string_value(v);
                        ok = spec.name && key_name_is_valid(spec.name);
                        fields |= KEY_FIELD_NAME;
                } else if (streq(field, "models")) {
                        size_t n = 0, i;
                        json_t *item;

                        ok = json_is_array(v) || json_is_null(v);
                        json_array_foreach(v, i, item) {
                                const char *p = json_string_value(item);
                                if (!p || !key_pattern_is_valid(p) || strv_extend(&models, &n, p) < 0) {
                                        ok = false;
                                        break;
                                }
                        }
                        fields |= KEY_FIELD_MODELS;
                } else if (streq(field, "rpm") || streq(field, "tpm")) {
                        json_int_t n = json_is_null(v) ? 0 : json_integer_value(v);

                        ok = (json_is_integer(v) || json_is_null(v)) && n >= 0 && n <= UINT32_MAX;
                        if (field[0] == 'r')
                                spec.rpm = (uint32_t) n;
                        else
                                spec.tpm = (uint32_t) n;
                        fields |= field[0] == 'r' ? KEY_FIELD_RPM : KEY_FIELD_TPM;
                } else if (streq(field, "budget_usd")) {
                        double usd = json_is_null(v) ? 0 : json_number_value(v);

                        ok = (json_is_number(v) || json_is_null(v)) && usd >= 0 && usd < 9e9;
                        spec.budget = ok ? (uint64_t) (usd * 1e9 + 0.5) : 0;
                        fields |= KEY_FIELD_BUDGET;
                } else if (streq(field, "budget_period")) {
                        spec.period = budget_period_from_string(json_string_value(v));
                        ok = spec.period >= 0;
                        fields |= KEY_FIELD_PERIOD;
                } else if (streq(field, "expires")) {
                        json_int_t t = json_is_null(v) ? 0 : json_integer_value(v);

                        ok = json_is_null(v) ||
                             (json_is_integer(v) && t > 0 && (usec_t) t < USEC_INFINITY / USEC_PER_SEC &&
                              (usec_t) t * USEC_PER_SEC > now_usec(CLOCK_REALTIME));
                        spec.expires_at = ok ? (usec_t) t * USEC_PER_SEC : 0;
                        fields |= KEY_FIELD_EXPIRES;
                } else if (streq(field, "admin")) {
                        ok = json_is_boolean(v);
                        spec.admin = json_is_true(v);
                        fields |= KEY_FIELD_ADMIN;
                } else {
                        k = api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                            "Unknown field \"%.64s\": name, models, rpm, tpm, budget_usd, "
                                            "budget_period, expires, admin.", field);
                        json_decref(body);
                        return k;
                }
                if (!ok) {
                        k = api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                            "Invalid \"%s\".", field);
                        json_decref(body);
                        return k;
                }
        }
        spec.models = models;
        if (fields == 0) {
                json_decref(body);
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                       "Nothing to change: give at least one field.");
        }

        k = keys_find(m->store, which, &key);
        if (k >= 0)
                k = keys_update(m->store, key->id, &spec, fields, &info);
        json_decref(body);      /* spec.name pointed into it */
        if (k == -ENOENT || k == -ENOTUNIQ)
                return api_reply_error(r, DIALECT_OPENAI, 404, "not_found", NULL, 0, "No such key.");
        if (k == -EKEYREVOKED)
                return api_reply_error(r, DIALECT_OPENAI, 409, "conflict", NULL, 0,
                                       "The key is revoked; revoked keys cannot be changed.");
        if (k == -EEXIST)
                return api_reply_error(r, DIALECT_OPENAI, 409, "conflict", NULL, 0,
                                       "An active key has this name already.");
        if (k == -EINVAL)
                return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                       "A budget needs a budget_period, and a budget_period a budget.");
        if (k < 0)
                return k;
        (void) manager_reload_keys(m);
        return reply_json(r, 200, key_to_json(m, info));
}

int api_admin_keys(Request *r, Manager *m) {
        int k;

        if (!admin_allowed(r, m))
                return api_reply_error(r, DIALECT_OPENAI, 403, "forbidden", NULL, 0,
                                       "The admin API needs an admin key (gate keys create --admin).");

        if (streq(r->path, "/admin/keys") && streq(r->method, "POST"))
                return admin_create(r, m);

        if (startswith(r->path, "/admin/keys/") && streq(r->method, "PATCH"))
                return admin_update(r, m, r->path + strlen("/admin/keys/"));

        if (startswith(r->path, "/admin/keys/") && streq(r->method, "DELETE")) {
                _cleanup_(key_info_unrefp) KeyInfo *key = NULL;
                k = keys_find(m->store, r->path + strlen("/admin/keys/"), &key);
                if (k == -ENOENT || k == -ENOTUNIQ)
                        return api_reply_error(r, DIALECT_OPENAI, 404, "not_found", NULL, 0, "No such key.");
                if (k >= 0)
                        k = keys_revoke(m->store, key->id);
                if (k == -EALREADY)
                        return api_reply_error(r, DIALECT_OPENAI, 409, "conflict", NULL, 0, "Already revoked.");
                if (k < 0)
                        return k;
                (void) manager_reload_keys(m);
                return reply_json(r, 200, json_pack("{s:I, s:b}", "id", (json_int_t) key->id, "revoked", 1));
        }

        if (streq(r->path, "/admin/keys") && (streq(r->method, "GET") || streq(r->method, "HEAD"))) {
                size_t n = 0;
                KeyInfo *const *all = keys_all(m->keys, &n);
                json_t *data = json_array();
                for (size_t i = 0; data && i < n; i++)
                        json_array_append_new(data, key_to_json(m, all[i]));
                return reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
        }
        return api_reply_error(r, DIALECT_OPENAI, 405, "method_not_allowed", NULL, 0,
                               "Use GET or POST on /admin/keys, PATCH or DELETE on /admin/keys/ID.");
}

int api_admin_usage(Request *r, Manager *m) {
        UsageSummary *rows = NULL;
        size_t n = 0;
        uint64_t since = 0;
        const char *q;
        json_t *data;
        int k;

        if (!admin_allowed(r, m))
                return api_reply_error(r, DIALECT_OPENAI, 403, "forbidden", NULL, 0,
                                       "The admin API needs an admin key (gate keys create --admin).");
        q = strstr(r->target, "since=");
        if (q) {
                char num[24] = {};
                memcpy(num, q + 6, strcspn(q + 6, "&") < sizeof num - 1 ? strcspn(q + 6, "&") : sizeof num - 1);
                if (parse_uint64(num, &since) < 0 || since > UINT64_MAX / USEC_PER_SEC)
                        return api_reply_error(r, DIALECT_OPENAI, 400, "invalid_request", NULL, 0,
                                               "since= takes seconds since the epoch.");
        }
        /* Rows still queued ([usage] flush_interval) appear on the next call: the writer thread owns
         * the flush, and the loop never waits on SQLite. */
        k = usage_summarize(m->store, since * USEC_PER_SEC, USAGE_ANY_KEY, &rows, &n);
        if (k < 0)
                return k;
        data = json_array();
        for (size_t i = 0; data && i < n; i++) {
                /* By the words of the usage column "outcome", all of them, for a stable shape. */
                json_t *outcomes = json_object();
                for (UsageOutcome o = 1; outcomes && o < _USAGE_OUTCOME_MAX; o++)
                        json_object_set_new(outcomes, usage_outcome_to_string(o),
                                            json_integer((json_int_t) rows[i].outcomes[o]));
                json_array_append_new(data, json_pack(
                        "{s:I, s:o, s:s, s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:f}",
                        "key_id", (json_int_t) rows[i].key_id,
                        "key_name", rows[i].key_name ? json_string(rows[i].key_name) : json_null(),
                        "model", rows[i].model ? rows[i].model : "",
                        "requests", (json_int_t) rows[i].requests, "errors", (json_int_t) rows[i].errors,
                        "incomplete", (json_int_t) usage_summary_incomplete(rows + i),
                        "outcomes", outcomes,
                        "unpriced", (json_int_t) rows[i].unpriced,
                        "input_tokens", (json_int_t) rows[i].input_tokens,
                        "output_tokens", (json_int_t) rows[i].output_tokens,
                        "cache_read_tokens", (json_int_t) rows[i].cache_read_tokens,
                        "cache_write_tokens", (json_int_t) rows[i].cache_write_tokens,
                        "cost_usd", (double) rows[i].cost / 1e9));
        }
        usage_summary_free_many(rows, n);
        return reply_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}
