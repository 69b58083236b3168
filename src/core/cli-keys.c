/* The key and usage commands of the command line, working directly on the database. */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <wchar.h>

#include "core/bus.h"
#include "core/cli-keys.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/manager.h"
#include "shared/gettext.h"    /* what a person reads at the terminal is translated (po/); logs are not */
#include "shared/log.h"
#include "shared/util.h"
#include "store/keys.h"
#include "store/prices.h"
#include "store/usage.h"

/* Table headings and key states are not translated: scripts read them, as they read the JSON. */

/* Columns a string takes on the terminal: names and translations have more than ASCII. */
static size_t display_width(const char *s) {
        size_t n = mbstowcs(NULL, s, 0);
        wchar_t *w;
        int k;

        if (n == (size_t) -1)
                return strlen(s);
        w = new(wchar_t, n + 1);
        if (!w)
                return strlen(s);
        mbstowcs(w, s, n + 1);
        k = wcswidth(w, n);
        free(w);
        return k < 0 ? strlen(s) : (size_t) k;
}

/* ---- times and amounts ---- */

static void format_time(char *buf, size_t n, usec_t t, bool iso) {
        time_t s = (time_t) (t / USEC_PER_SEC);
        struct tm tm;

        if (t == 0 || !gmtime_r(&s, &tm)) {
                snprintf(buf, n, iso ? "" : "-");
                return;
        }
        strftime(buf, n, iso ? "%Y-%m-%dT%H:%M:%SZ" : "%Y-%m-%d %H:%M", &tm);
}

/* One cell of a table, padded by display width; the last of a row ends it. */
static void print_cell(const char *s, size_t width, bool right, bool last) {
        size_t pad = width > display_width(s) ? width - display_width(s) : 0;

        if (last && !right)
                pad = 0;
        printf("%*s%s%*s%s", right ? (int) pad : 0, "", s, right ? 0 : (int) pad, "", last ? "\n" : "  ");
}

static json_t *json_time(usec_t t) {
        char b[64];

        if (t == 0)
                return json_null();
        format_time(b, sizeof b, t, true);
        return json_string(b);
}

static json_t *json_usd(uint64_t nano) {
        return json_real((double) nano / 1e9);
}

/* Dates are UTC: "2025-06-30", "2025-06-30T12:00[:00][Z]" (or a space for the T), "@UNIXSECONDS",
 * "today", "month" (the first of this month), or a span "30d", "12h", "90min", "2w" (from now, in the
 * direction sign says: +1 for --expires, -1 for --since). */
static int parse_date(const char *s, int sign, usec_t now, usec_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t seconds;
        } spans[] = {
                { "w", 7 * 86400 }, { "d", 86400 }, { "h", 3600 }, { "min", 60 }, { "m", 60 }, { "s", 1 },
        };
        struct tm tm = {};
        time_t t;
        char tail[8] = "";
        int n = 0, k;

        if (isempty(s))
                return -EINVAL;
        if (streq(s, "today") || streq(s, "month")) {
                usec_t start;
                BudgetPeriod p = streq(s, "today") ? BUDGET_PERIOD_DAY : BUDGET_PERIOD_MONTH;
                int r = budget_period_bounds(p, now, &start, NULL);
                if (r < 0)
                        return r;
                *ret = start;
                return 0;
        }
        if (s[0] == '@') {
                uint64_t v;
                if (parse_uint64(s + 1, &v) < 0 || v > INT64_MAX / USEC_PER_SEC)
                        return -EINVAL;
                *ret = v * USEC_PER_SEC;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(spans); i++)
                if (endswith(s, spans[i].suffix) && strlen(s) > strlen(spans[i].suffix)) {
                        _cleanup_free_ char *num = strndup(s, strlen(s) - strlen(spans[i].suffix));
                        uint64_t v;

                        if (!num)
                                return -ENOMEM;
                        if (parse_uint64(num, &v) < 0)
                                continue;
                        if (v > 100 * 365 * 86400ULL / spans[i].seconds)
                                return -ERANGE;
                        v *= spans[i].seconds * USEC_PER_SEC;
                        if (sign < 0 && v > now)
                                return -ERANGE;
                        *ret = sign < 0 ? now - v : now + v;
                        return 0;
                }

        k = sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n);
        if (k != 3 || n != 10)
                return -EINVAL;
        if (s[n] == 'T' || s[n] == ' ') {
                int m = 0;

                k = sscanf(s + n + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &m);
                if (k != 2 || m != 5)
                        return -EINVAL;
                n += 1 + m;
                if (s[n] == ':') {
                        k = sscanf(s + n + 1, "%2d%n", &tm.tm_sec, &m);
                        if (k != 1 || m != 2)
                                return -EINVAL;
                        n += 1 + m;
                }
                snprintf(tail, sizeof tail, "%s", s + n);
                if (!streq(tail, "") && !streq(tail, "Z"))
                        return -EINVAL;
        } else if (s[n] != 0)
                return -EINVAL;

        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        struct tm check = tm;
        t = timegm(&tm);
        /* timegm() normalises 2025-02-30 into March: such a date is a mistake, not a date. */
        if (t < 0 || tm.tm_mday != check.tm_mday || tm.tm_mon != check.tm_mon || tm.tm_hour != check.tm_hour ||
            tm.tm_min != check.tm_min || tm.tm_sec != check.tm_sec)
                return -EINVAL;
        *ret = (usec_t) t * USEC_PER_SEC;
        return 0;
}

/* ---- the database ---- */

/* When root works on a state directory that belongs to the service user, files it creates there must
 * end up the service user's too, or the daemon could not open its own database. */
static void fix_owner(const char *state_dir, const char *db) {
        struct stat dir, st;

        if (geteuid() != 0 || stat(state_dir, &dir) < 0 || dir.st_uid == 0)
                return;
        for (int i = 0; i < 3; i++) {
                _cleanup_free_ char *p = NULL;

                if (asprintf(&p, "%s%s", db, i == 0 ? "" : i == 1 ? "-wal" : "-shm") < 0)
                        return;
                if (lstat(p, &st) >= 0 && S_ISREG(st.st_mode) && st.st_uid == 0 &&
                    chown(p, dir.st_uid, dir.st_gid) < 0)
                        log_debug_errno(errno, "Failed to give %s to the state directory's owner, ignoring: %m",
                                        p);
        }
}

/* Opens the configured database. Without create, a database that does not exist yet gives EXIT_SUCCESS
 * and *ret_store NULL (nothing to show). Returns an exit code. */
static int open_store(bool create, char **ret_state_dir, Store **ret_store) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *state_dir = NULL;
        Store *s = NULL;
        int r;

        r = manager_state_directory(create, &state_dir);
        if (r < 0) {
                log_error_errno(r, "Failed to determine the state directory: %m");
                return EXIT_FAILURE;
        }
        r = config_load(NULL, state_dir, &c, &error);
        if (r < 0) {
                fprintf(stderr, _("gate: invalid configuration: %s\n"), error ? error : strerror(-r));
                return EXIT_CONFIG;
        }
        if (streq(c->database_path, ":memory:")) {
                fputs(_("gate: the database is in memory ([database] url = sqlite::memory:): it keeps no keys "
                        "or usage.\n"), stderr);
                return EXIT_FAILURE;
        }
        if (!create && access(c->database_path, F_OK) < 0 && errno == ENOENT) {
                *ret_state_dir = TAKE_PTR(state_dir);
                *ret_store = NULL;
                return EXIT_SUCCESS;
        }

        free(error);
        error = NULL;
        r = store_open(c->database_path, &s, &error);
        if (r < 0) {
                fprintf(stderr, _("gate: the database %s cannot be used: %s\n"), c->database_path,
                        error ? error : strerror(-r));
                return r == -EBADMSG || r == -EPROTONOSUPPORT ? EXIT_CONFIG : EXIT_FAILURE;
        }
        fix_owner(state_dir, c->database_path);
        *ret_state_dir = TAKE_PTR(state_dir);
        *ret_store = s;
        return EXIT_SUCCESS;
}

static int find_key(Store *s, const char *id_or_name, KeyInfo **ret) {
        int r;

        r = s ? keys_find(s, id_or_name, ret) : -ENOENT;
        if (r == -ENOENT)
                fprintf(stderr, _("gate: no key \"%s\".\n"), id_or_name);
        else if (r == -ENOTUNIQ)
                fprintf(stderr,
                        _("gate: several revoked keys are called \"%s\": give the ID (see gate keys list).\n"),
                        id_or_name);
        else if (r < 0)
                fprintf(stderr, _("gate: failed to look up key \"%s\": %s\n"), id_or_name, strerror(-r));
        return r;
}

/* ---- keys ---- */

/* A daemon that does not answer within this long is not waited for: its poll picks the change up. */
#define KEYS_NOTIFY_TIMEOUT (5 * USEC_PER_SEC)

/* After a change to the keys, asks a running daemon to reload them (D-Bus ReloadKeys, on the bus
 * `gate reload` uses), so that the change is in force when the command returns. Without a bus or a
 * daemon on it there is nobody to tell: silence, and the command succeeds. A daemon that cannot be told
 * (access denied, a failure) is mentioned, and still picks the change up by its once-a-second poll. */
static void keys_notify_daemon(void) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        int r;

        r = cli_user_bus() ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
        if (r < 0) {
                log_debug_errno(r, "No %s bus, so no daemon to tell about the keys: %m",
                                cli_user_bus() ? "user" : "system");
                return;
        }
        r = sd_bus_message_new_method_call(bus, &call, GATE_BUS_NAME, GATE_BUS_PATH, GATE_BUS_INTERFACE,
                                           "ReloadKeys");
        /* The service is bus-activatable: a key change must not start a daemon that is not running. */
        if (r >= 0)
                r = sd_bus_message_set_auto_start(call, false);
        if (r >= 0)
                r = sd_bus_call(bus, call, KEYS_NOTIFY_TIMEOUT, &e, &reply);
        if (r >= 0) {
                log_debug("The running daemon reloaded its keys.");
                return;
        }
        if (sd_bus_error_has_names(&e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER)) {
                log_debug("No daemon on the bus; it reads the keys when it starts.");
                return;
        }
        /* TRANSLATORS: %s: the reason, from the bus (in English) or the system. */
        fprintf(stderr, _("gate: the running daemon could not be told at once (%s); it applies the change "
                          "within a second.\n"),
                e.message ?: strerror(-r));
}

static const char *key_state(const KeyInfo *k, usec_t now) {
        if (k->revoked_at > 0)
                return "revoked";
        if (k->expires_at > 0 && now >= k->expires_at)
                return "expired";
        return "active";
}

typedef struct KeyRow {
        KeyInfo *key;
        uint64_t spent;                 /* this period's with a budget, else all time */
        uint64_t spent_total;
        usec_t last_used;
} KeyRow;

static int key_row_fill(Store *s, KeyInfo *k, usec_t now, KeyRow *ret) {
        usec_t start = 0;
        int r;

        *ret = (KeyRow) { .key = k };
        r = usage_spend(s, k->id, 0, &ret->spent_total);
        if (r >= 0 && k->budget > 0 && (r = budget_period_bounds(k->period, now, &start, NULL)) >= 0)
                r = usage_spend(s, k->id, start, &ret->spent);
        else
                ret->spent = ret->spent_total;
        if (r >= 0)
                r = usage_last_used(s, k->id, &ret->last_used);
        return r;
}

static char *strv_join_comma(char **l) {
        char *s = strdup("");

        for (char **i = l; s && i && *i; i++) {
                if (i != l)
                        s = strjoin_free(s, ",");
                if (s)
                        s = strjoin_free(s, *i);
        }
        return s;
}

static json_t *key_json(const KeyRow *row, usec_t now, const char *secret) {
        const KeyInfo *k = row->key;
        json_t *models = json_array(), *j;

        for (char **p = k->models; models && p && *p; p++)
                json_array_append_new(models, json_string(*p));
        j = json_pack("{s:I, s:s, s:s+, s:o, s:I, s:I, s:o, s:o, s:o, s:o, s:b, s:s, s:o, s:o, s:o, s:o, s:o}",
                      "id", (json_int_t) k->id,
                      "name", k->name,
                      "prefix", KEY_PREFIX, k->prefix,
                      "models", models ?: json_null(),
                      "rpm", (json_int_t) k->rpm,
                      "tpm", (json_int_t) k->tpm,
                      "budget_usd", k->budget > 0 ? json_usd(k->budget) : json_null(),
                      "budget_period",
                      k->budget > 0 ? json_string(budget_period_to_string(k->period)) : json_null(),
                      "spent_period_usd", k->budget > 0 ? json_usd(row->spent) : json_null(),
                      "spent_total_usd", json_usd(row->spent_total),
                      "admin", k->admin,
                      "state", key_state(k, now),
                      "created", json_time(k->created_at),
                      "expires", json_time(k->expires_at),
                      "revoked", json_time(k->revoked_at),
                      "last_used", json_time(row->last_used),
                      "key", secret ? json_string(secret) : json_null());
        if (j && !secret)
                json_object_del(j, "key");
        return j;
}

static int print_json(json_t *j) {
        _cleanup_free_ char *s = NULL;

        if (!j)
                return log_oom(), EXIT_FAILURE;
        s = json_dumps(j, JSON_INDENT(2) | JSON_REAL_PRECISION(15));
        if (!s)
                return log_oom(), EXIT_FAILURE;
        printf("%s\n", s);
        return EXIT_SUCCESS;
}

static void print_key(const KeyRow *row, usec_t now) {
        const KeyInfo *k = row->key;
        _cleanup_free_ char *models = strv_join_comma(k->models);
        char id[32], prefix[32], state[64], rpm[32], tpm[32], budget[128], spent[256], created[64], expires[64],
                revoked[64], last[64], a[USD_FORMAT_MAX], b[USD_FORMAT_MAX];
        struct {
                const char *label, *value;
        } lines[13];
        size_t n = 0, width = 0;

        snprintf(id, sizeof id, "%llu", (unsigned long long) k->id);
        snprintf(prefix, sizeof prefix, "gk-%s", k->prefix);
        snprintf(state, sizeof state, "%s%s", key_state(k, now), k->admin ? ", admin" : "");
        if (k->rpm > 0)
                snprintf(rpm, sizeof rpm, "%" PRIu32, k->rpm);
        else
                snprintf(rpm, sizeof rpm, "%s", _("unlimited"));
        if (k->tpm > 0)
                snprintf(tpm, sizeof tpm, "%" PRIu32, k->tpm);
        else
                snprintf(tpm, sizeof tpm, "%s", _("unlimited"));
        usd_format(a, sizeof a, k->budget, COST_DECIMALS, 2);
        if (k->budget == 0)
                snprintf(budget, sizeof budget, "%s", _("none"));
        else if (k->period == BUDGET_PERIOD_DAY)
                snprintf(budget, sizeof budget, _("$%s per day (UTC)"), a);
        else
                snprintf(budget, sizeof budget, _("$%s per month (UTC)"), a);
        usd_format(a, sizeof a, row->spent, COST_DECIMALS, 2);
        usd_format(b, sizeof b, row->spent_total, COST_DECIMALS, 2);
        if (k->budget == 0)
                snprintf(spent, sizeof spent, _("$%s in all"), b);
        else if (k->period == BUDGET_PERIOD_DAY)
                snprintf(spent, sizeof spent, _("$%s today, $%s in all"), a, b);
        else
                snprintf(spent, sizeof spent, _("$%s this month, $%s in all"), a, b);
        format_time(created, sizeof created, k->created_at, false);
        strcat(created, " UTC");
        format_time(expires, sizeof expires, k->expires_at, false);
        strcat(expires, " UTC");
        format_time(revoked, sizeof revoked, k->revoked_at, false);
        strcat(revoked, " UTC");
        format_time(last, sizeof last, row->last_used, false);
        strcat(last, " UTC");

        lines[n++] = (typeof(lines[0])) { "ID", id };
        lines[n++] = (typeof(lines[0])) { _("Name"), k->name };
        lines[n++] = (typeof(lines[0])) { _("Prefix"), prefix };
        lines[n++] = (typeof(lines[0])) { _("State"), state };
        lines[n++] = (typeof(lines[0])) { _("Models"), isempty(models) ? _("all") : models };
        lines[n++] = (typeof(lines[0])) { "RPM", rpm };
        lines[n++] = (typeof(lines[0])) { "TPM", tpm };
        lines[n++] = (typeof(lines[0])) { _("Budget"), budget };
        lines[n++] = (typeof(lines[0])) { _("Spent"), spent };
        lines[n++] = (typeof(lines[0])) { _("Created"), created };
        lines[n++] = (typeof(lines[0])) { _("Expires"), k->expires_at > 0 ? expires : _("never") };
        if (k->revoked_at > 0)
                lines[n++] = (typeof(lines[0])) { _("Revoked"), revoked };
        lines[n++] = (typeof(lines[0])) { _("Last used"), row->last_used > 0 ? last : _("never") };

        for (size_t i = 0; i < n; i++)
                width = MAX(width, display_width(lines[i].label));
        for (size_t i = 0; i < n; i++)
                printf("%*s%s: %s\n", (int) (width - display_width(lines[i].label)), "", lines[i].label,
                       lines[i].value);
}

static void keys_help(FILE *f) {
        /* TRANSLATORS: keep the command and option names. */
        fputs(_("Usage: gate keys create --name NAME [OPTIONS]\n"
                "       gate keys list [--json]\n"
                "       gate keys show KEY [--json]\n"
                "       gate keys update KEY [OPTIONS]\n"
                "       gate keys revoke KEY\n"
                "\n"
                "Options of create and update:\n"
                "  --name NAME           The key's name (required by create)\n"
                "  --models PATTERNS     Models the key may use (globs; default and '*': all)\n"
                "  --rpm N, --tpm N      Requests and tokens per minute (default and 0: no limit)\n"
                "  --budget-usd X        Spending limit in USD per --budget-period day|month\n"
                "                        (update: 0 removes it)\n"
                "  --expires DATE        When the key stops working (default and never: never)\n"
                "  --admin, --no-admin   Mark the key as an administrator's, or not\n"
                "  --json                Print the key and its settings as JSON\n"
                "\n"
                "Manages gate's own API keys in the database. The key is printed once, by create;\n"
                "only a keyed hash of it is stored. KEY is a key's ID or name. DATE is UTC:\n"
                "2025-12-31, 2025-12-31T18:00, @UNIXTIME, or a span from now: 30d, 12h, 2w.\n"
                "update changes only the settings it is given. A running daemon applies changes\n"
                "at once.\n"), f);
}

/* "none" and 0 take a limit away. */
static int parse_limit(const char *s, uint32_t *ret) {
        if (streq(s, "none")) {
                *ret = 0;
                return 0;
        }
        return parse_uint32(s, ret);
}

/* The options of create and update; update has --no-admin on top. */
enum {
        ARG_SPEC_NAME = 0x100,
        ARG_SPEC_MODELS,
        ARG_SPEC_RPM,
        ARG_SPEC_TPM,
        ARG_SPEC_BUDGET,
        ARG_SPEC_PERIOD,
        ARG_SPEC_EXPIRES,
        ARG_SPEC_ADMIN,
        ARG_SPEC_NO_ADMIN,
        ARG_SPEC_JSON,
};

/* A macro and not a table of its own: getopt_long() takes one table, and create must not know
 * --no-admin (its abbreviations would change: "--n" would no longer be --name). */
#define KEY_SPEC_OPTIONS                                                        \
        { "name", required_argument, NULL, ARG_SPEC_NAME },                     \
        { "models", required_argument, NULL, ARG_SPEC_MODELS },                 \
        { "rpm", required_argument, NULL, ARG_SPEC_RPM },                       \
        { "tpm", required_argument, NULL, ARG_SPEC_TPM },                       \
        { "budget-usd", required_argument, NULL, ARG_SPEC_BUDGET },             \
        { "budget-period", required_argument, NULL, ARG_SPEC_PERIOD },          \
        { "expires", required_argument, NULL, ARG_SPEC_EXPIRES },               \
        { "admin", no_argument, NULL, ARG_SPEC_ADMIN },                         \
        { "json", no_argument, NULL, ARG_SPEC_JSON },                           \
        { "help", no_argument, NULL, 'h' }

/* A usage error of create or update, each with its own message, as the translations have them: both
 * strings are written out at the call so that xgettext finds them and printf checks them. -EINVAL. */
#define key_spec_usage_error(update, create_fmt, update_fmt, ...)                                       \
        (cli_usage_error((update) ? (update_fmt) : (create_fmt), __VA_ARGS__), -EINVAL)

/* Reads option c of KEY_SPEC_OPTIONS (--help aside) into spec, *models and *json. What takes a setting
 * away is update's alone: "none" for a rate limit or budget, a budget of 0, "never", and "*" alone for
 * every model. Any other c is an unknown option. Returns the KEY_FIELD_* the option sets (0 for --json),
 * or -EINVAL once the usage error is printed. */
static int key_spec_parse_option(int c, char *argv[], bool update, usec_t now, KeySpec *spec, char ***models,
                                 bool *json) {
        uint32_t v;

        switch (c) {
        case ARG_SPEC_NAME:
                if (!key_name_is_valid(optarg))
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid name \"%s\": 1 to %d printable "
                                                      "characters, not all digits."),
                                                    _("keys update: invalid name \"%s\": 1 to %d printable "
                                                      "characters, not all digits."),
                                                    optarg, KEY_NAME_MAX);
                spec->name = optarg;
                return KEY_FIELD_NAME;
        case ARG_SPEC_MODELS:
                strv_free(*models);
                *models = NULL;
                if (config_value_split(optarg, models) < 0)
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --models \"%s\"."),
                                                    _("keys update: invalid --models \"%s\"."),
                                                    optarg);
                for (char **p = *models; *p; p++)
                        if (!key_pattern_is_valid(*p))
                                return key_spec_usage_error(update,
                                                            _("keys create: invalid model pattern \"%s\"."),
                                                            _("keys update: invalid model pattern \"%s\"."),
                                                            *p);
                /* "*" alone is every model: stored as no list, as create without --models. */
                if (update && strv_length(*models) == 1 && streq((*models)[0], "*")) {
                        strv_free(*models);
                        *models = NULL;
                }
                return KEY_FIELD_MODELS;
        case ARG_SPEC_RPM:
                if ((update ? parse_limit(optarg, &v) : parse_uint32(optarg, &v)) < 0)
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --rpm \"%s\": a number of "
                                                      "requests per minute."),
                                                    _("keys update: invalid --rpm \"%s\": a number of "
                                                      "requests per minute, 0 or none for no limit."),
                                                    optarg);
                spec->rpm = v;
                return KEY_FIELD_RPM;
        case ARG_SPEC_TPM:
                if ((update ? parse_limit(optarg, &v) : parse_uint32(optarg, &v)) < 0)
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --tpm \"%s\": a number of "
                                                      "tokens per minute."),
                                                    _("keys update: invalid --tpm \"%s\": a number of "
                                                      "tokens per minute, 0 or none for no limit."),
                                                    optarg);
                spec->tpm = v;
                return KEY_FIELD_TPM;
        case ARG_SPEC_BUDGET:
                if (update && streq(optarg, "none"))
                        spec->budget = 0;
                else if (usd_parse(optarg, COST_DECIMALS, &spec->budget) < 0 || spec->budget > INT64_MAX ||
                         (!update && spec->budget == 0))
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --budget-usd \"%s\": "
                                                      "US dollars, e.g. 25 or 7.50, more than 0."),
                                                    _("keys update: invalid --budget-usd \"%s\": "
                                                      "US dollars, e.g. 25 or 7.50, or 0 or none for no "
                                                      "budget."),
                                                    optarg);
                return KEY_FIELD_BUDGET;
        case ARG_SPEC_PERIOD:
                spec->period = budget_period_from_string(optarg);
                if (spec->period < 0)
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --budget-period \"%s\": "
                                                      "day or month."),
                                                    _("keys update: invalid --budget-period \"%s\": "
                                                      "day or month."),
                                                    optarg);
                return KEY_FIELD_PERIOD;
        case ARG_SPEC_EXPIRES:
                if (update && streq(optarg, "never"))
                        spec->expires_at = 0;
                else if (parse_date(optarg, +1, now, &spec->expires_at) < 0)
                        return key_spec_usage_error(update,
                                                    _("keys create: invalid --expires \"%s\"."),
                                                    _("keys update: invalid --expires \"%s\"."),
                                                    optarg);
                else if (spec->expires_at <= now)
                        return key_spec_usage_error(update,
                                                    _("keys create: --expires \"%s\" is in the past."),
                                                    _("keys update: --expires \"%s\" is in the past."),
                                                    optarg);
                return KEY_FIELD_EXPIRES;
        case ARG_SPEC_ADMIN:
                spec->admin = true;
                return KEY_FIELD_ADMIN;
        case ARG_SPEC_JSON:
                *json = true;
                return 0;
        default:
                return key_spec_usage_error(update,
                                            _("keys create: unknown or incomplete option '%s'."),
                                            _("keys update: unknown or incomplete option '%s'."),
                                            argv[optind - 1]);
        }
}

static int keys_create_cmd(int argc, char *argv[]) {
        static const struct option options[] = {
                KEY_SPEC_OPTIONS,
                {}
        };
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_strv_free_ char **models = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *info = NULL;
        _cleanup_free_ char *state_dir = NULL, *key = NULL;
        uint8_t secret[KEY_SECRET_SIZE];
        KeySpec spec = { .period = _BUDGET_PERIOD_INVALID };
        usec_t now = now_usec(CLOCK_REALTIME);
        bool json = false;
        int c, r;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0) {
                if (c == 'h') {
                        keys_help(stdout);
                        return EXIT_SUCCESS;
                }
                if (key_spec_parse_option(c, argv, /* update= */ false, now, &spec, &models, &json) < 0)
                        return EXIT_USAGE;
        }
        if (optind < argc)
                return cli_usage_error(_("keys create: unexpected argument '%s'."), argv[optind]);
        if (!spec.name)
                return cli_usage_error("%s", _("keys create: --name is required."));
        if ((spec.budget > 0) != (spec.period >= 0))
                return cli_usage_error("%s", _("keys create: --budget-usd and --budget-period go together."));
        spec.models = models;

        r = open_store(true, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        r = key_secret_load(state_dir, true, secret);
        if (r < 0) {
                log_error_errno(r, "Failed to load the key secret %s/" KEY_SECRET_FILE ": %m", state_dir);
                return EXIT_FAILURE;
        }
        r = keys_create(s, secret, &spec, &info, &key);
        explicit_bzero(secret, sizeof secret);
        if (r == -EEXIST) {
                fprintf(stderr, _("gate: an active key is already called \"%s\".\n"), spec.name);
                return EXIT_FAILURE;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to create the key: %m");
                return EXIT_FAILURE;
        }
        keys_notify_daemon();

        if (json) {
                _cleanup_(json_decrefp) json_t *j = key_json(&(KeyRow) { .key = info }, now, key);
                r = print_json(j);
        } else {
                /* The key alone on stdout, so that KEY=$(gate keys create ...) works; the rest for people. */
                printf("%s\n", key);
                fprintf(stderr,
                        _("Created key %llu \"%s\" (gk-%s...). This is the only time the key is shown.\n"),
                        (unsigned long long) info->id, info->name, info->prefix);
                r = EXIT_SUCCESS;
        }
        explicit_bzero(key, strlen(key));
        return r;
}

static int keys_update_cmd(int argc, char *argv[]) {
        static const struct option options[] = {
                KEY_SPEC_OPTIONS,
                { "no-admin", no_argument, NULL, ARG_SPEC_NO_ADMIN },
                {}
        };
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_strv_free_ char **models = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *k = NULL, *info = NULL;
        _cleanup_free_ char *state_dir = NULL;
        KeySpec spec = { .period = _BUDGET_PERIOD_INVALID };
        usec_t now = now_usec(CLOCK_REALTIME);
        unsigned fields = 0;
        const char *which = NULL;
        bool json = false;
        int c, r;

        optind = 0;
        opterr = 0;
        /* Options may come before or after KEY: "gate keys update ci --rpm 10" reads naturally. */
        while ((c = getopt_long(argc, argv, "-h", options, NULL)) >= 0)
                switch (c) {
                case 1:
                        if (which)
                                return cli_usage_error(_("keys update: unexpected argument '%s'."), optarg);
                        which = optarg;
                        break;
                case 'h':
                        keys_help(stdout);
                        return EXIT_SUCCESS;
                case ARG_SPEC_NO_ADMIN:
                        spec.admin = false;
                        fields |= KEY_FIELD_ADMIN;
                        break;
                default:
                        r = key_spec_parse_option(c, argv, /* update= */ true, now, &spec, &models, &json);
                        if (r < 0)
                                return EXIT_USAGE;
                        fields |= r;
                }
        if (!which)
                return cli_usage_error("%s", _("keys update: which key? Give its ID or name."));
        if (fields == 0)
                return cli_usage_error("%s", _("keys update: nothing to change; give at least one option."));
        if ((fields & KEY_FIELD_BUDGET) && spec.budget == 0 && (fields & KEY_FIELD_PERIOD))
                return cli_usage_error("%s", _("keys update: --budget-period goes with a budget, not with "
                                               "--budget-usd 0."));
        spec.models = models;

        r = open_store(false, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        if (find_key(s, which, &k) < 0)
                return EXIT_FAILURE;
        /* What needs the key's present settings is checked here for a clear message; keys_update()
         * checks it again in its transaction. */
        if (k->revoked_at > 0) {
                fprintf(stderr, _("gate: key %llu \"%s\" is revoked; revoked keys cannot be changed.\n"),
                        (unsigned long long) k->id, k->name);
                return EXIT_FAILURE;
        }
        if ((fields & KEY_FIELD_BUDGET) && spec.budget > 0 && !(fields & KEY_FIELD_PERIOD) && k->budget == 0)
                return cli_usage_error(_("keys update: key \"%s\" has no budget yet: give --budget-period "
                                         "day or month too."), k->name);
        if ((fields & KEY_FIELD_PERIOD) && !(fields & KEY_FIELD_BUDGET) && k->budget == 0)
                return cli_usage_error(_("keys update: key \"%s\" has no budget: give --budget-usd too."),
                                       k->name);

        r = keys_update(s, k->id, &spec, fields, &info);
        if (r == -EEXIST) {
                fprintf(stderr, _("gate: an active key is already called \"%s\".\n"), spec.name);
                return EXIT_FAILURE;
        }
        if (r == -EKEYREVOKED) {
                fprintf(stderr, _("gate: key %llu \"%s\" is revoked; revoked keys cannot be changed.\n"),
                        (unsigned long long) k->id, k->name);
                return EXIT_FAILURE;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to update key %" PRIu64 ": %m", k->id);
                return EXIT_FAILURE;
        }
        keys_notify_daemon();
        if (json) {
                KeyRow row;

                r = key_row_fill(s, info, now, &row);
                if (r < 0) {
                        log_error_errno(r, "Failed to read usage: %m");
                        return EXIT_FAILURE;
                }
                _cleanup_(json_decrefp) json_t *j = key_json(&row, now, NULL);
                return print_json(j);
        }
        fprintf(stderr, _("Updated key %llu \"%s\" (gk-%s...).\n"), (unsigned long long) info->id, info->name,
                info->prefix);
        return EXIT_SUCCESS;
}

static int keys_list_cmd(int argc, char *argv[]) {
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_free_ char *state_dir = NULL;
        _cleanup_free_ KeyRow *rows = NULL;
        KeyInfo **l = NULL;
        size_t n = 0;
        usec_t now = now_usec(CLOCK_REALTIME);
        bool json = false;
        int r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else
                        return cli_usage_error(_("keys list: unknown argument '%s'."), argv[i]);
        }
        r = open_store(false, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        if (s) {
                r = keys_list(s, &l, &n);
                if (r < 0) {
                        log_error_errno(r, "Failed to list keys: %m");
                        return EXIT_FAILURE;
                }
        }
        rows = new0(KeyRow, MAX(n, (size_t) 1));
        if (!rows) {
                key_info_unref_many(l, n);
                return log_oom(), EXIT_FAILURE;
        }
        for (size_t i = 0; i < n; i++) {
                r = key_row_fill(s, l[i], now, rows + i);
                if (r < 0) {
                        key_info_unref_many(l, n);
                        log_error_errno(r, "Failed to read usage: %m");
                        return EXIT_FAILURE;
                }
        }

        if (json) {
                _cleanup_(json_decrefp) json_t *a = json_array();
                for (size_t i = 0; a && i < n; i++)
                        json_array_append_new(a, key_json(rows + i, now, NULL));
                r = print_json(a);
                key_info_unref_many(l, n);
                return r;
        }

        if (n == 0) {
                fputs(_("No keys. Create one with: gate keys create --name NAME\n"), stderr);
                return EXIT_SUCCESS;
        }

        /* Columns as wide as their widest cell. */
        enum { C_ID, C_NAME, C_PREFIX, C_MODELS, C_RPM, C_TPM, C_BUDGET, C_SPENT, C_CREATED, C_LAST, C_STATE,
               _C_MAX };
        static const char *const heads[_C_MAX] = { "ID", "NAME", "PREFIX", "MODELS", "RPM", "TPM", "BUDGET",
                                                   "SPENT", "CREATED", "LAST USED", "STATE" };
        char ***cells = new0(char **, n);
        size_t width[_C_MAX];

        for (size_t c = 0; c < _C_MAX; c++)
                width[c] = strlen(heads[c]);
        for (size_t i = 0; cells && i < n; i++) {
                const KeyInfo *k = rows[i].key;
                char b[3][USD_FORMAT_MAX + 16], t[2][64];
                _cleanup_free_ char *models = strv_join_comma(k->models);

                cells[i] = new0(char *, _C_MAX);
                if (!cells[i])
                        break;
                format_time(t[0], sizeof t[0], k->created_at, false);
                format_time(t[1], sizeof t[1], rows[i].last_used, false);
                if (k->budget > 0) {
                        usd_format(b[0], USD_FORMAT_MAX, k->budget, COST_DECIMALS, 2);
                        strcat(b[0], k->period == BUDGET_PERIOD_DAY ? "/day" : "/month");
                } else
                        strcpy(b[0], "-");
                usd_format(b[1], sizeof b[1], rows[i].spent, COST_DECIMALS, 2);
                (void) asprintf(&cells[i][C_ID], "%" PRIu64, k->id);
                cells[i][C_NAME] = strdup(k->name);
                (void) asprintf(&cells[i][C_PREFIX], KEY_PREFIX "%s", k->prefix);
                cells[i][C_MODELS] = strdup(isempty(models) ? "*" : models);
                if (k->rpm > 0)
                        (void) asprintf(&cells[i][C_RPM], "%" PRIu32, k->rpm);
                else
                        cells[i][C_RPM] = strdup("-");
                if (k->tpm > 0)
                        (void) asprintf(&cells[i][C_TPM], "%" PRIu32, k->tpm);
                else
                        cells[i][C_TPM] = strdup("-");
                cells[i][C_BUDGET] = strdup(b[0]);
                cells[i][C_SPENT] = strdup(b[1]);
                cells[i][C_CREATED] = strdup(t[0]);
                cells[i][C_LAST] = strdup(rows[i].last_used > 0 ? t[1] : "never");
                (void) asprintf(&cells[i][C_STATE], "%s%s", key_state(k, now), k->admin ? ",admin" : "");
                for (size_t c = 0; c < _C_MAX; c++)
                        width[c] = MAX(width[c], display_width(cells[i][c] ?: "?"));
        }
        for (size_t c = 0; c < _C_MAX; c++)
                print_cell(heads[c], width[c], false, c + 1 == _C_MAX);
        for (size_t i = 0; cells && i < n && cells[i]; i++) {
                for (size_t c = 0; c < _C_MAX; c++) {
                        bool right = c == C_ID || c == C_RPM || c == C_TPM || c == C_SPENT;
                        print_cell(cells[i][c] ?: "?", width[c], right, c + 1 == _C_MAX);
                        free(cells[i][c]);
                }
                free(cells[i]);
        }
        free(cells);
        fputs(_("\nSPENT: spent in the current period (UTC) for keys with a budget, else in all; in USD.\n"),
              stdout);
        key_info_unref_many(l, n);
        return EXIT_SUCCESS;
}

static int keys_show_cmd(int argc, char *argv[]) {
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_free_ char *state_dir = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *k = NULL;
        const char *which = NULL;
        usec_t now = now_usec(CLOCK_REALTIME);
        bool json = false;
        KeyRow row;
        int r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (!which && argv[i][0] != '-')
                        which = argv[i];
                else
                        return cli_usage_error(_("keys show: unexpected argument '%s'."), argv[i]);
        }
        if (!which)
                return cli_usage_error("%s", _("keys show: which key? Give its ID or name."));
        r = open_store(false, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        if (find_key(s, which, &k) < 0)
                return EXIT_FAILURE;
        r = key_row_fill(s, k, now, &row);
        if (r < 0) {
                log_error_errno(r, "Failed to read usage: %m");
                return EXIT_FAILURE;
        }
        if (json) {
                _cleanup_(json_decrefp) json_t *j = key_json(&row, now, NULL);
                return print_json(j);
        }
        print_key(&row, now);
        return EXIT_SUCCESS;
}

static int keys_revoke_cmd(int argc, char *argv[]) {
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_free_ char *state_dir = NULL;
        _cleanup_(key_info_unrefp) KeyInfo *k = NULL;
        int r;

        if (argc != 2 || argv[1][0] == '-')
                return cli_usage_error("%s", _("keys revoke: give exactly one key ID or name."));
        r = open_store(false, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        if (find_key(s, argv[1], &k) < 0)
                return EXIT_FAILURE;
        r = keys_revoke(s, k->id);
        if (r == -EALREADY) {
                fprintf(stderr, _("gate: key %llu \"%s\" is revoked already.\n"), (unsigned long long) k->id,
                        k->name);
                return EXIT_SUCCESS;
        }
        if (r < 0) {
                log_error_errno(r, "Failed to revoke key %" PRIu64 ": %m", k->id);
                return EXIT_FAILURE;
        }
        keys_notify_daemon();
        fprintf(stderr, _("Revoked key %llu \"%s\" (gk-%s...).\n"), (unsigned long long) k->id, k->name,
                k->prefix);
        return EXIT_SUCCESS;
}

int cli_keys(int argc, char *argv[]) {
        if (argc < 2) {
                keys_help(stderr);
                return EXIT_USAGE;
        }
        if (streq(argv[1], "create"))
                return keys_create_cmd(argc - 1, argv + 1);
        if (streq(argv[1], "list"))
                return keys_list_cmd(argc - 1, argv + 1);
        if (streq(argv[1], "show"))
                return keys_show_cmd(argc - 1, argv + 1);
        if (streq(argv[1], "update"))
                return keys_update_cmd(argc - 1, argv + 1);
        if (streq(argv[1], "revoke"))
                return keys_revoke_cmd(argc - 1, argv + 1);
        if (streq(argv[1], "--help") || streq(argv[1], "-h") || streq(argv[1], "help")) {
                keys_help(stdout);
                return EXIT_SUCCESS;
        }
        return cli_usage_error(_("keys: unknown subcommand '%s' (expected create, list, show, update or revoke)."),
                               argv[1]);
}

/* ---- usage ---- */

static void usage_help(FILE *f) {
        /* TRANSLATORS: keep the command and option names, and today and month. */
        fputs(_("Usage: gate usage [--since DATE] [--key KEY] [--json]\n"
                "\n"
                "Sums the usage rows in the database per key and model: requests, errors,\n"
                "incomplete requests (cut off or never answered, by outcome with --json), tokens\n"
                "(input excludes cache reads and writes) and cost in USD. KEY is a key's ID or\n"
                "name. DATE is UTC: 2025-06-01, 2025-06-01T12:00, @UNIXTIME, today, month (its\n"
                "first day), or a span back from now: 7d, 24h. Without --since, all rows.\n"), f);
}

static void summary_add(UsageSummary *total, const UsageSummary *u) {
        total->requests += u->requests;
        total->errors += u->errors;
        for (UsageOutcome o = 0; o < _USAGE_OUTCOME_MAX; o++)
                total->outcomes[o] += u->outcomes[o];
        total->unpriced += u->unpriced;
        total->input_tokens += u->input_tokens;
        total->output_tokens += u->output_tokens;
        total->cache_read_tokens += u->cache_read_tokens;
        total->cache_write_tokens += u->cache_write_tokens;
        total->cost += u->cost;
}

/* {"upstream_error": N, ...}: every word of the usage column "outcome", for a stable shape. */
static json_t *usage_summary_outcomes_json(const UsageSummary *u) {
        json_t *j = json_object();

        for (UsageOutcome o = 1; j && o < _USAGE_OUTCOME_MAX; o++)
                json_object_set_new(j, usage_outcome_to_string(o), json_integer((json_int_t) u->outcomes[o]));
        return j;
}

static json_t *summary_json(const UsageSummary *u, bool with_key) {
        json_t *j = json_pack("{s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:o, s:I}",
                              "requests", (json_int_t) u->requests,
                              "errors", (json_int_t) u->errors,
                              "incomplete", (json_int_t) usage_summary_incomplete(u),
                              "outcomes", usage_summary_outcomes_json(u),
                              "unpriced", (json_int_t) u->unpriced,
                              "input_tokens", (json_int_t) u->input_tokens,
                              "output_tokens", (json_int_t) u->output_tokens,
                              "cache_read_tokens", (json_int_t) u->cache_read_tokens,
                              "cache_write_tokens", (json_int_t) u->cache_write_tokens,
                              "cost_usd", json_usd(u->cost),
                              "cost_nanousd", (json_int_t) MIN(u->cost, (uint64_t) INT64_MAX));
        if (j && with_key) {
                json_object_set_new(j, "key_id",
                                    u->key_id > 0 ? json_integer((json_int_t) u->key_id) : json_null());
                json_object_set_new(j, "key_name", u->key_name ? json_string(u->key_name) : json_null());
                json_object_set_new(j, "model", json_string(u->model));
        }
        return j;
}

int cli_usage(int argc, char *argv[]) {
        enum { ARG_SINCE = 0x100, ARG_KEY, ARG_JSON };
        static const struct option options[] = {
                { "since", required_argument, NULL, ARG_SINCE },
                { "key", required_argument, NULL, ARG_KEY },
                { "json", no_argument, NULL, ARG_JSON },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        _cleanup_(store_closep) Store *s = NULL;
        _cleanup_free_ char *state_dir = NULL;
        UsageSummary *l = NULL, total = {};
        const char *key = NULL;
        uint64_t key_id = USAGE_ANY_KEY;
        usec_t since = 0, now = now_usec(CLOCK_REALTIME);
        bool json = false;
        size_t n = 0;
        int c, r;

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        usage_help(stdout);
                        return EXIT_SUCCESS;
                case ARG_SINCE:
                        if (parse_date(optarg, -1, now, &since) < 0)
                                return cli_usage_error(_("usage: invalid --since \"%s\"."), optarg);
                        break;
                case ARG_KEY:
                        key = optarg;
                        break;
                case ARG_JSON:
                        json = true;
                        break;
                default:
                        return cli_usage_error(_("usage: unknown or incomplete option '%s'."), argv[optind - 1]);
                }
        if (optind < argc)
                return cli_usage_error(_("usage: unexpected argument '%s'."), argv[optind]);

        r = open_store(false, &state_dir, &s);
        if (r != EXIT_SUCCESS)
                return r;
        if (key) {
                _cleanup_(key_info_unrefp) KeyInfo *k = NULL;
                if (find_key(s, key, &k) < 0)
                        return EXIT_FAILURE;
                key_id = k->id;
        }
        if (s) {
                r = usage_summarize(s, since, key_id, &l, &n);
                if (r < 0) {
                        log_error_errno(r, "Failed to read usage: %m");
                        return EXIT_FAILURE;
                }
        }
        for (size_t i = 0; i < n; i++)
                summary_add(&total, l + i);

        if (json) {
                _cleanup_(json_decrefp) json_t *j = NULL;
                json_t *rows = json_array();

                for (size_t i = 0; rows && i < n; i++)
                        json_array_append_new(rows, summary_json(l + i, true));
                j = json_pack("{s:o, s:o, s:o}", "since", json_time(since), "rows", rows ?: json_null(), "total",
                              summary_json(&total, false));
                usage_summary_free_many(l, n);
                return print_json(j);
        }

        if (n == 0) {
                fputs(since > 0 ? _("No usage recorded in that time.\n") : _("No usage recorded.\n"), stderr);
                return EXIT_SUCCESS;
        }

        size_t wkey = strlen("KEY"), wmodel = strlen("MODEL");
        for (size_t i = 0; i < n; i++) {
                char b[96];
                if (l[i].key_id > 0)
                        snprintf(b, sizeof b, "%" PRIu64 " %s", l[i].key_id, l[i].key_name ?: "?");
                else
                        snprintf(b, sizeof b, "-");
                wkey = MAX(wkey, display_width(b));
                wmodel = MAX(wmodel, display_width(l[i].model));
        }
        print_cell("KEY", wkey, false, false);
        print_cell("MODEL", wmodel, false, false);
        printf("%8s  %6s  %10s  %12s  %12s  %12s  %12s  %14s  %8s\n", "REQUESTS", "ERRORS", "INCOMPLETE", "INPUT",
               "OUTPUT", "CACHE READ", "CACHE WRITE", "COST (USD)", "UNPRICED");
        for (size_t i = 0; i <= n; i++) {
                const UsageSummary *u = i < n ? l + i : &total;
                char b[96], cost[USD_FORMAT_MAX];

                if (i == n)
                        snprintf(b, sizeof b, "TOTAL");
                else if (u->key_id > 0)
                        snprintf(b, sizeof b, "%llu %s", (unsigned long long) u->key_id, u->key_name ?: "?");
                else
                        snprintf(b, sizeof b, "-");
                print_cell(b, wkey, false, false);
                print_cell(i < n ? u->model : "", wmodel, false, false);
                printf("%8llu  %6llu  %10llu  %12llu  %12llu  %12llu  %12llu  %14s  %8llu\n",
                       (unsigned long long) u->requests, (unsigned long long) u->errors,
                       (unsigned long long) usage_summary_incomplete(u),
                       (unsigned long long) u->input_tokens, (unsigned long long) u->output_tokens,
                       (unsigned long long) u->cache_read_tokens, (unsigned long long) u->cache_write_tokens,
                       usd_format(cost, sizeof cost, u->cost, COST_DECIMALS, 2),
                       (unsigned long long) u->unpriced);
        }
        if (usage_summary_incomplete(&total) > 0) {
                /* TRANSLATORS: INCOMPLETE is the column's heading, kept; lines with the outcomes follow. */
                fputs(_("\nINCOMPLETE: requests that did not end normally: a stream cut off counts here with its "
                        "status 200.\n"), stdout);
                for (UsageOutcome o = 1; o < _USAGE_OUTCOME_MAX; o++)
                        if (total.outcomes[o] > 0)
                                printf("  %-18s %llu\n", usage_outcome_to_string(o),
                                       (unsigned long long) total.outcomes[o]);
        }
        if (total.unpriced > 0)
                fputs(_("\nUNPRICED: requests with tokens whose model the price table does not know; they cost 0 "
                        "here.\n"), stdout);
        usage_summary_free_many(l, n);
        return EXIT_SUCCESS;
}
