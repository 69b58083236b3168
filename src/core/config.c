/* Configuration: GKeyFile lexes the files, a table of typed entries turns them into an immutable Config. */
#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/config.h"
#include "shared/log.h"
#include "shared/util.h"
#include "store/prices.h"

/* After our headers: glib #undefs and redefines MIN/MAX, macro.h would warn the other way round. */
#include <glib.h>

/* A configuration file is a few kilobytes; anything near this is a mistake, not a config. */
#define CONFIG_FILE_MAX (4U << 20)

#define PROVIDER_GROUP_PREFIX "provider."
#define PRICE_GROUP_PREFIX "price."
#define MASK "********"

/* Whether the char c is one of the listed ones (which may include 0). */
#define IN_SET_CHAR(c, ...)                                     \
        ({                                                      \
                const char _c = (c), _set[] = { __VA_ARGS__ };  \
                memchr(_set, _c, sizeof _set) != NULL;          \
        })

static inline const char *strnull(const char *s) {
        return s ?: "(null)";
}

static inline const char *strempty(const char *s) {
        return s ?: "";
}

typedef struct ConfigItem ConfigItem;

typedef struct ConfigType {
        /* Parses value and replaces *field with the result, only on success: a failed key leaves the
         * earlier value (default or earlier file) alone. Returns -EINVAL or -ERANGE with an allocated
         * reason (NULL if that allocation failed), or -ENOMEM. */
        int (*parse)(const ConfigItem *item, const char *value, void *field, char **ret_reason);
        /* Formats the field as a value parse() accepts back. */
        int (*format)(const void *field, char **ret);
        void (*free)(void *field);
        /* Whether a value of this type could be a secret: a boolean or a number never is. */
        bool may_be_secret;
} ConfigType;

struct ConfigItem {
        const char *group;
        const char *key;
        const ConfigType *type;
        size_t offset;
        const char *default_value;      /* parsed when a Config is created; NULL: computed by finalize */
        uint64_t min, max;              /* bounds for numbers, sizes and time spans */
};

/* ---- the value grammar ---- */

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static const char *skip_blank(const char *p) {
        while (is_blank(*p))
                p++;
        return p;
}

/* Reads the quoted string at *p (which points at the quote) into out (room for strlen(*p) + 1 bytes)
 * and moves *p past the closing quote. */
static int read_quoted(const char **p, char *out, size_t *ret_len) {
        const char *s = *p;
        char q = *s++;
        size_t n = 0;

        for (;;) {
                char c = *s++;

                if (c == 0)
                        return -EINVAL;         /* unterminated */
                if (c == q)
                        break;
                if (c == '\\' && q == '"') {
                        switch (*s) {
                        case '"':
                        case '\\':
                                out[n++] = *s;
                                break;
                        case 'n':
                                out[n++] = '\n';
                                break;
                        case 't':
                                out[n++] = '\t';
                                break;
                        case 'r':
                                out[n++] = '\r';
                                break;
                        default:
                                return -EINVAL;
                        }
                        s++;
                        continue;
                }
                out[n++] = c;
        }
        out[n] = 0;
        *p = s;
        *ret_len = n;
        return 0;
}

int config_value_unquote(const char *raw, char **ret) {
        _cleanup_free_ char *out = NULL;
        const char *p;
        size_t n;
        int r;

        if (!raw)
                return -EINVAL;
        out = malloc(strlen(raw) + 1);
        if (!out)
                return -ENOMEM;

        p = skip_blank(raw);
        if (*p == '"' || *p == '\'') {
                r = read_quoted(&p, out, &n);
                if (r < 0)
                        return r;
                p = skip_blank(p);
                /* After the closing quote only a comment may follow: `"a" b` is a typo, not a value. */
                if (*p != 0 && *p != '#')
                        return -EINVAL;
        } else {
                const char *e;

                /* TOML-style inline comment. A '#' glued to text stays, so "abc#def" is one value. */
                for (e = p; *e; e++)
                        if (*e == '#' && (e == p || is_blank(e[-1])))
                                break;
                while (e > p && is_blank(e[-1]))
                        e--;
                n = (size_t) (e - p);
                memcpy(out, p, n);
                out[n] = 0;
        }

        *ret = TAKE_PTR(out);
        return 0;
}

static bool is_list_separator(char c) {
        return is_blank(c) || c == ',' || c == ';';
}

static int split_items(const char *raw, bool allow_quotes, char ***ret, bool *ret_single_quoted) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *buf = NULL;
        const char *p = skip_blank(raw);
        bool array = false, single_quoted = false;
        size_t n = 0;
        int r;

        buf = malloc(strlen(raw) + 1);
        if (!buf)
                return -ENOMEM;

        /* `["a", "b"]` is an array, `[::1]:80` an IPv6 address: an array opens with a quote or closes
         * at once. */
        if (allow_quotes && *p == '[') {
                const char *q = skip_blank(p + 1);
                if (IN_SET_CHAR(*q, '"', '\'', ']')) {
                        array = true;
                        p = q;
                }
        }

        for (;;) {
                bool quoted = false;
                size_t len;

                while (is_list_separator(*p))
                        p++;

                if (*p == 0) {
                        if (array)
                                return -EINVAL; /* no closing ']' */
                        break;
                }
                if (array && *p == ']') {
                        p = skip_blank(p + 1);
                        if (*p != 0 && *p != '#')
                                return -EINVAL;
                        break;
                }
                if (*p == '#' && allow_quotes) {
                        if (array)
                                return -EINVAL;
                        break;
                }

                if (allow_quotes && (*p == '"' || *p == '\'')) {
                        r = read_quoted(&p, buf, &len);
                        if (r < 0)
                                return r;
                        /* "a"b is a typo; "a","b" and "a" "b" are two items. */
                        if (*p != 0 && !is_list_separator(*p) && !(array && *p == ']'))
                                return -EINVAL;
                        quoted = true;
                } else {
                        const char *s = p;
                        while (*p && !is_list_separator(*p) && !(array && *p == ']'))
                                p++;
                        len = (size_t) (p - s);
                        memcpy(buf, s, len);
                        buf[len] = 0;
                }

                r = strv_extend(&l, &n, buf);
                if (r < 0)
                        return r;
                single_quoted = n == 1 && quoted && !array;
        }

        if (!l) {
                l = new0(char *, 1);
                if (!l)
                        return -ENOMEM;
        }
        if (ret_single_quoted)
                *ret_single_quoted = single_quoted && n == 1;
        *ret = TAKE_PTR(l);
        return 0;
}

int config_value_split(const char *raw, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        bool single_quoted;
        int r;

        if (!raw)
                return -EINVAL;
        r = split_items(raw, true, &l, &single_quoted);
        if (r < 0)
                return r;

        /* One quoted string is a whole list that was quoted like any other value: bind = "a b". */
        if (single_quoted) {
                char **inner;

                r = split_items(l[0], false, &inner, NULL);
                if (r < 0)
                        return r;
                strv_free(l);
                l = inner;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- messages ---- */

_printf_(1, 2) static char *message_new(const char *format, ...) {
        va_list ap;
        char *s;
        int k;

        va_start(ap, format);
        k = vasprintf(&s, format, ap);
        va_end(ap);
        return k < 0 ? NULL : s;
}

_printf_(2, 3) static void set_error(char **ret_error, const char *format, ...) {
        va_list ap;
        char *s;

        if (!ret_error)
                return;
        va_start(ap, format);
        if (vasprintf(&s, format, ap) < 0)
                s = NULL;
        va_end(ap);
        *ret_error = s;
}

/* Values end up in messages and the journal: keep them on one line and unambiguous. */
static char *escape_for_message(const char *s) {
        size_t n = strlen(s);
        char *out, *o;

        if (n > 256)
                n = 256;
        out = malloc(n * 4 + 4);
        if (!out)
                return NULL;
        o = out;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c == '"' || c == '\\') {
                        *o++ = '\\';
                        *o++ = (char) c;
                } else if (c < 0x20 || c == 0x7f)
                        o += sprintf(o, "\\x%02x", c);
                else
                        *o++ = (char) c;
        }
        if (n < strlen(s))
                o = stpcpy(o, "...");
        *o = 0;
        return out;
}

/* "scheme://user:secret@host/..." -> "scheme://user:********@host/...". Anything else is copied. */
static char *mask_url_password(const char *url) {
        const char *a, *colon, *at, *end;
        char *out;

        a = strstr(url, "://");
        if (!a)
                return strdup(url);
        a += 3;
        end = a + strcspn(a, "/?#");
        at = memrchr(a, '@', (size_t) (end - a));
        if (!at)
                return strdup(url);
        colon = memchr(a, ':', (size_t) (at - a));
        if (!colon)
                return strdup(url);

        if (asprintf(&out, "%.*s" MASK "%s", (int) (colon + 1 - url), url, at) < 0)
                return NULL;
        return out;
}

static bool key_is_secret(const char *key) {
        static const char *const words[] = { "key", "secret", "token", "password" };

        for (size_t i = 0; i < ELEMENTSOF(words); i++)
                if (strcasestr(key, words[i]))
                        return true;
        return false;
}

/* ---- types ---- */

static void *field_of(Config *c, const ConfigItem *item) {
        return (uint8_t *) c + item->offset;
}

static const void *field_of_const(const Config *c, const ConfigItem *item) {
        return (const uint8_t *) c + item->offset;
}

static int unquote_or_reason(const char *value, char **ret, char **ret_reason) {
        int r;

        r = config_value_unquote(value, ret);
        if (r == -EINVAL)
                *ret_reason = message_new("invalid quoting");
        return r;
}

static bool needs_quotes(const char *s) {
        if (isempty(s))
                return false;
        if (is_blank(s[0]) || is_blank(s[strlen(s) - 1]))
                return true;
        if (IN_SET_CHAR(s[0], '"', '\''))
                return true;
        for (const char *p = s; *p; p++)
                if (IN_SET_CHAR(*p, '#', '\\', '"', '\n', '\r', '\t'))
                        return true;
        return false;
}

static char *quote(const char *s) {
        char *out, *o;

        out = malloc(strlen(s) * 2 + 3);
        if (!out)
                return NULL;
        o = out;
        *o++ = '"';
        for (; *s; s++)
                switch (*s) {
                case '"':
                case '\\':
                        *o++ = '\\';
                        *o++ = *s;
                        break;
                case '\n':
                        o = stpcpy(o, "\\n");
                        break;
                case '\t':
                        o = stpcpy(o, "\\t");
                        break;
                case '\r':
                        o = stpcpy(o, "\\r");
                        break;
                default:
                        *o++ = *s;
                }
        *o++ = '"';
        *o = 0;
        return out;
}

static char *format_string_value(const char *s) {
        if (!s)
                return strdup("");
        return needs_quotes(s) ? quote(s) : strdup(s);
}

static int format_or_oom(char *s, char **ret) {
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void free_string(void *field) {
        char **p = field;
        *p = mfree(*p);
}

static void free_strv(void *field) {
        char ***p = field;
        strv_free(*p);
        *p = NULL;
}

/* Strings: an empty value means unset, which for most keys means "the default". */
static int parse_string(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        char **p = field, *s;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        if (isempty(s))
                s = mfree(s);
        free(*p);
        *p = s;
        return 0;
}

static int format_string(const void *field, char **ret) {
        return format_or_oom(format_string_value(*(char *const *) field), ret);
}

static const ConfigType type_string = { parse_string, format_string, free_string, true };
static const ConfigType type_path = { parse_string, format_string, free_string, true };

/* An http(s) URL: anything else in relay.endpoint is a mistake that would surface much later. */
static int parse_url(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        char **p = field;
        const char *host;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        if (startswith(s, "https://"))
                host = s + STRLEN("https://");
        else if (startswith(s, "http://"))
                host = s + STRLEN("http://");
        else
                host = NULL;
        if (!host || IN_SET_CHAR(*host, 0, '/', '?', '#') || strpbrk(s, " \t\r\n")) {
                *ret_reason = message_new("not an http:// or https:// URL");
                return -EINVAL;
        }
        free(*p);
        *p = TAKE_PTR(s);
        return 0;
}

static const ConfigType type_url = { parse_url, format_string, free_string, true };

static char *strv_join_values(char *const *l) {
        bool plain = true;
        char *s = strdup("");

        for (char *const *i = l; i && *i; i++)
                if (isempty(*i) || needs_quotes(*i) || strpbrk(*i, " ,;") || startswith(*i, "[]"))
                        plain = false;

        /* Plain items read best as "a, b"; anything odd goes in a ["a", "b"] array. */
        if (!plain)
                s = strjoin_free(s, "[");
        for (char *const *i = l; s && i && *i; i++) {
                _cleanup_free_ char *q = NULL;

                if (i != l)
                        s = strjoin_free(s, ", ");
                if (!s)
                        return NULL;
                if (plain)
                        s = strjoin_free(s, *i);
                else {
                        q = quote(*i);
                        s = q ? strjoin_free(s, q) : mfree(s);
                }
        }
        if (s && !plain)
                s = strjoin_free(s, "]");
        return s;
}

static int parse_string_list(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        char ***p = field, **l;
        int r;

        r = config_value_split(value, &l);
        if (r == -EINVAL)
                *ret_reason = message_new("invalid list or quoting");
        if (r < 0)
                return r;
        strv_free(*p);
        *p = l;
        return 0;
}

static int format_string_list(const void *field, char **ret) {
        return format_or_oom(strv_join_values(*(char **const *) field), ret);
}

static const ConfigType type_string_list = { parse_string_list, format_string_list, free_strv, true };

static int parse_address_list(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_strv_free_ char **l = NULL;
        char ***p = field;
        int r;

        r = config_value_split(value, &l);
        if (r == -EINVAL)
                *ret_reason = message_new("invalid list or quoting");
        if (r < 0)
                return r;
        for (char **i = l; *i; i++) {
                struct sockaddr_storage ss;
                socklen_t len;

                if (parse_socket_address(*i, &ss, &len) < 0) {
                        _cleanup_free_ char *e = escape_for_message(*i);
                        *ret_reason = message_new("invalid socket address \"%s\"", strnull(e));
                        return -EINVAL;
                }
        }
        strv_free(*p);
        *p = TAKE_PTR(l);
        return 0;
}

static const ConfigType type_address_list = { parse_address_list, format_string_list, free_strv, false };

static int parse_bool_item(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        r = parse_bool(s);
        if (r < 0) {
                *ret_reason = message_new("invalid boolean, expected true or false");
                return -EINVAL;
        }
        *(bool *) field = r;
        return 0;
}

static int format_bool(const void *field, char **ret) {
        return format_or_oom(strdup(*(const bool *) field ? "true" : "false"), ret);
}

static const ConfigType type_bool = { parse_bool_item, format_bool, NULL, false };

/* Numbers of every width go through one bounded parse, then are stored at the field's width. */
static int parse_bounded(const ConfigItem *item, const char *value, int (*parse)(const char *, uint64_t *),
                         const char *what, char *(*format)(uint64_t), uint64_t *ret, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        uint64_t v;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        r = parse(s, &v);
        if (r == -ERANGE || (r >= 0 && (v < item->min || v > item->max))) {
                _cleanup_free_ char *a = format(item->min), *b = format(item->max);
                *ret_reason = message_new("out of range, must be between %s and %s", strnull(a), strnull(b));
                return -ERANGE;
        }
        if (r < 0) {
                *ret_reason = message_new("invalid %s", what);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

static char *format_number(uint64_t v) {
        char *s;
        return asprintf(&s, "%" PRIu64, v) < 0 ? NULL : s;
}

static char *format_size(uint64_t v) {
        static const struct { const char *suffix; unsigned shift; } table[] = {
                { "G", 30 }, { "M", 20 }, { "K", 10 },
        };
        char *s;

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (v != 0 && v % (UINT64_C(1) << table[i].shift) == 0) {
                        if (asprintf(&s, "%" PRIu64 "%s", v >> table[i].shift, table[i].suffix) < 0)
                                return NULL;
                        return s;
                }
        return format_number(v);
}

static char *format_timespan_alloc(uint64_t v) {
        char buf[64];

        format_timespan(buf, sizeof buf, v);
        return strdup(buf);
}

static int parse_number_u64(const char *s, uint64_t *ret) {
        return parse_uint64(s, ret);
}

static int parse_uint32_item(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        uint64_t v;
        int r;

        r = parse_bounded(item, value, parse_number_u64, "number", format_number, &v, ret_reason);
        if (r < 0)
                return r;
        *(uint32_t *) field = (uint32_t) v;
        return 0;
}

static int format_uint32(const void *field, char **ret) {
        return format_or_oom(format_number(*(const uint32_t *) field), ret);
}

static const ConfigType type_uint32 = { parse_uint32_item, format_uint32, NULL, false };

static int parse_port(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        uint64_t v;
        int r;

        r = parse_bounded(item, value, parse_number_u64, "port", format_number, &v, ret_reason);
        if (r < 0)
                return r;
        *(uint16_t *) field = (uint16_t) v;
        return 0;
}

static int format_port(const void *field, char **ret) {
        return format_or_oom(format_number(*(const uint16_t *) field), ret);
}

static const ConfigType type_port = { parse_port, format_port, NULL, false };

static int parse_size_item(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        return parse_bounded(item, value, parse_size, "size", format_size, field, ret_reason);
}

static int format_size_item(const void *field, char **ret) {
        return format_or_oom(format_size(*(const uint64_t *) field), ret);
}

static const ConfigType type_size = { parse_size_item, format_size_item, NULL, false };

static int parse_timespan_item(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        return parse_bounded(item, value, parse_timespan, "time span", format_timespan_alloc, field,
                             ret_reason);
}

static int format_timespan_item(const void *field, char **ret) {
        return format_or_oom(format_timespan_alloc(*(const usec_t *) field), ret);
}

static const ConfigType type_timespan = { parse_timespan_item, format_timespan_item, NULL, false };

/* A retention is counted in days and weeks too, and may be forever ("infinity" or 0, stored as 0). */
static int parse_retention(const char *s, uint64_t *ret) {
        static const struct {
                const char *suffix;
                uint64_t factor;
        } long_units[] = {
                { "d", 24 * 3600 * USEC_PER_SEC },
                { "w", 7 * 24 * 3600 * USEC_PER_SEC },
        };

        if (streq(s, "infinity") || streq(s, "0")) {
                *ret = 0;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(long_units); i++)
                if (endswith(s, long_units[i].suffix)) {
                        _cleanup_free_ char *num = strndup(s, strlen(s) - strlen(long_units[i].suffix));
                        uint64_t v;

                        if (!num)
                                return -ENOMEM;
                        if (parse_uint64(num, &v) < 0)
                                return -EINVAL;
                        if (v > UINT64_MAX / long_units[i].factor)
                                return -ERANGE;
                        *ret = v * long_units[i].factor;
                        return 0;
                }
        return parse_timespan(s, ret);
}

static char *format_retention(uint64_t v) {
        char *s;

        if (v == 0)
                return strdup("infinity");
        if (v % (24 * 3600 * USEC_PER_SEC) == 0)
                return asprintf(&s, "%" PRIu64 "d", v / (24 * 3600 * USEC_PER_SEC)) < 0 ? NULL : s;
        return format_timespan_alloc(v);
}

static int parse_retention_item(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        uint64_t v;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        r = parse_retention(s, &v);
        if (r == -ENOMEM)
                return r;
        /* Below a month, a month's budget would no longer see the rows of its own period. */
        if (r == -ERANGE || (r >= 0 && v != 0 && (v < item->min || v > item->max))) {
                _cleanup_free_ char *a = format_retention(item->min), *b = format_retention(item->max);
                *ret_reason = message_new("out of range, must be infinity (or 0: keep forever), or between "
                                          "%s and %s", strnull(a), strnull(b));
                return -ERANGE;
        }
        if (r < 0) {
                *ret_reason = message_new("invalid time span, expected e.g. 90d, 26w or infinity");
                return -EINVAL;
        }
        *(usec_t *) field = v;
        return 0;
}

static int format_retention_item(const void *field, char **ret) {
        return format_or_oom(format_retention(*(const usec_t *) field), ret);
}

static const ConfigType type_retention = { parse_retention_item, format_retention_item, NULL, false };

static const char *const passthrough_table[_PASSTHROUGH_MAX] = {
        [PASSTHROUGH_LOOPBACK] = "loopback",
        [PASSTHROUGH_ALWAYS] = "always",
        [PASSTHROUGH_NEVER] = "never",
};

const char *passthrough_to_string(Passthrough p) {
        if (p < 0 || p >= _PASSTHROUGH_MAX)
                return NULL;
        return passthrough_table[p];
}

Passthrough passthrough_from_string(const char *s) {
        if (!s)
                return _PASSTHROUGH_INVALID;
        for (Passthrough p = 0; p < _PASSTHROUGH_MAX; p++)
                if (streq(s, passthrough_table[p]))
                        return p;
        return _PASSTHROUGH_INVALID;
}

static int parse_passthrough(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        Passthrough p;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        p = passthrough_from_string(s);
        if (p < 0) {
                *ret_reason = message_new("expected loopback, always or never");
                return -EINVAL;
        }
        *(Passthrough *) field = p;
        return 0;
}

static int format_passthrough(const void *field, char **ret) {
        return format_or_oom(strdup(strnull(passthrough_to_string(*(const Passthrough *) field))), ret);
}

static const ConfigType type_passthrough = { parse_passthrough, format_passthrough, NULL, false };

/* Resolves a database URL to a file path. Accepted: "sqlite:///abs", "sqlite://rel", "sqlite:/abs",
 * "sqlite:rel", "sqlite::memory:", and a bare path; relative paths are relative to state_dir. With
 * state_dir NULL only validates. A "?options" suffix of a URL (sqlx style, e.g. mode=rwc) is dropped. */
static int database_url_to_path(const char *url, const char *state_dir, char **ret, char **ret_reason) {
        _cleanup_free_ char *path = NULL;
        const char *colon, *rest;
        size_t n;

        n = strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
        colon = n > 0 && isalpha((unsigned char) url[0]) && url[n] == ':' ? url + n : NULL;

        if (colon) {
                if (n != STRLEN("sqlite") || strncasecmp(url, "sqlite", n) != 0) {
                        _cleanup_free_ char *e = escape_for_message(url);
                        *ret_reason = message_new("unsupported database URL scheme \"%.*s\", "
                                                  "only sqlite is supported",
                                                  (int) MIN(n, (size_t) 32), strnull(e));
                        return -EINVAL;
                }
                rest = colon + 1;
                if (startswith(rest, "//"))
                        rest += 2;
                if (streq(rest, ":memory:")) {
                        path = strdup(":memory:");
                        if (!path)
                                return -ENOMEM;
                        goto done;
                }
                n = strcspn(rest, "?");
        } else {
                rest = url;
                n = strlen(rest);
        }

        if (n == 0) {
                *ret_reason = message_new("no database file name");
                return -EINVAL;
        }
        if (rest[n - 1] == '/') {
                *ret_reason = message_new("database path names a directory, not a file");
                return -EINVAL;
        }

        if (rest[0] == '/' || !state_dir) {
                path = strndup(rest, n);
                if (!path)
                        return -ENOMEM;
        } else if (asprintf(&path, "%s/%.*s", state_dir, (int) n, rest) < 0)
                return -ENOMEM;

done:
        if (ret)
                *ret = TAKE_PTR(path);
        return 0;
}

static int parse_database_url(const ConfigItem *item, const char *value, void *field, char **ret_reason) {
        _cleanup_free_ char *s = NULL;
        char **p = field;
        int r;

        r = unquote_or_reason(value, &s, ret_reason);
        if (r < 0)
                return r;
        if (!isempty(s)) {
                r = database_url_to_path(s, NULL, NULL, ret_reason);
                if (r < 0)
                        return r;
        } else
                s = mfree(s);           /* unset: the default in the state directory */
        free(*p);
        *p = TAKE_PTR(s);
        return 0;
}

static const ConfigType type_database_url = { parse_database_url, format_string, free_string, true };

/* ---- the table ---- */

#define OFF(field) offsetof(Config, field)
#define DAY (24 * 3600 * USEC_PER_SEC)
#define WEEK (7 * DAY)

static const ConfigItem config_items[] = {
        { "server", "bind", &type_address_list, OFF(server_bind), "127.0.0.1:31145 [::1]:31145" },
        { "server", "max_connections", &type_uint32, OFF(server_max_connections), "4096", 1, 1000000 },
        { "server", "max_connections_per_ip", &type_uint32, OFF(server_max_connections_per_ip), "512", 1, 1000000 },
        { "server", "max_body_bytes", &type_size, OFF(server_max_body_bytes), "32M", 1024, UINT64_C(1) << 40 },
        { "server", "max_body_bytes_total", &type_size, OFF(server_max_body_bytes_total), "512M", 1024,
          UINT64_C(1) << 40 },
        { "server", "max_header_bytes", &type_size, OFF(server_max_header_bytes), "64K", 1024, 16U << 20 },
        { "server", "max_headers", &type_uint32, OFF(server_max_headers), "128", 1, 10000 },
        { "server", "header_timeout", &type_timespan, OFF(server_header_timeout), "30s", 1, WEEK },
        { "server", "body_timeout", &type_timespan, OFF(server_body_timeout), "60s", 1, WEEK },
        { "server", "idle_timeout", &type_timespan, OFF(server_idle_timeout), "75s", 1, WEEK },
        { "server", "send_timeout", &type_timespan, OFF(server_send_timeout), "60s", 1, WEEK },
        { "server", "drain_timeout", &type_timespan, OFF(server_drain_timeout), "30s", 1, WEEK },
        { "server", "h2_max_concurrent_streams", &type_uint32, OFF(server_h2_max_concurrent_streams),
          "128", 1, 10000 },

        { "auth", "loopback_without_key", &type_bool, OFF(auth_loopback_without_key), "true" },
        { "auth", "passthrough", &type_passthrough, OFF(auth_passthrough), "loopback" },
        { "auth", "admin_loopback", &type_bool, OFF(auth_admin_loopback), "true" },

        { "database", "url", &type_database_url, OFF(database_url), NULL },

        { "tls", "bind", &type_address_list, OFF(tls_bind), "" },
        { "tls", "cert_dir", &type_path, OFF(tls_cert_dir), NULL },
        { "tls", "default_name", &type_string, OFF(tls_default_name), NULL },

        { "p2p", "enabled", &type_bool, OFF(p2p_enabled), "true" },
        { "p2p", "listen_port", &type_port, OFF(p2p_listen_port), "4919", 1, 65535 },
        /* Peers are whatever the P2P layer dials (node ids, addresses): not validated here. */
        { "p2p", "peers", &type_string_list, OFF(p2p_peers), "" },

        { "relay", "enabled", &type_bool, OFF(relay_enabled), "false" },
        { "relay", "endpoint", &type_url, OFF(relay_endpoint), "https://relay.hellas.ai" },

        { "proxy", "max_pending", &type_uint32, OFF(proxy_max_pending), "4096", 1, 1000000 },
        { "proxy", "max_attempts", &type_uint32, OFF(proxy_max_attempts), "3", 1, 8 },
        { "proxy", "builtin_client", &type_bool, OFF(proxy_builtin_client), "true" },
        { "proxy", "idle_connections", &type_uint32, OFF(proxy_idle_connections), "1024", 0, 65536 },

        /* A row is 600 bytes, and the writer holds a copy of the queue while it writes. */
        { "usage", "queue_max", &type_uint32, OFF(usage_queue_max), "10000", 1, 1000000 },
        { "usage", "flush_interval", &type_timespan, OFF(usage_flush_interval), "1s", 10 * USEC_PER_MSEC,
          3600 * USEC_PER_SEC },
        { "usage", "retention", &type_retention, OFF(usage_retention), "90d", 31 * DAY, 36500 * DAY },
        { "usage", "price_file", &type_path, OFF(usage_price_file), NULL },

        { "metrics", "max_series", &type_uint32, OFF(metrics_max_series), "1000", 1, 1000000 },
};

static const char *const config_groups[] = { "server", "auth", "database", "tls", "p2p", "relay", "proxy",
                                             "usage", "metrics" };

static const ConfigItem *config_item_find(const char *group, const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (streq(config_items[i].group, group) && streq(config_items[i].key, key))
                        return config_items + i;
        return NULL;
}

static bool config_group_known(const char *group) {
        for (size_t i = 0; i < ELEMENTSOF(config_groups); i++)
                if (streq(config_groups[i], group))
                        return true;
        return false;
}

/* ---- lifecycle ---- */

static void config_provider_done(ConfigProvider *p) {
        for (size_t i = 0; i < p->n_entries; i++) {
                free(p->entries[i].key);
                free(p->entries[i].value);
                free(p->entries[i].source);
        }
        free(p->entries);
        free(p->name);
}

static Config *config_free(Config *c) {
        if (!c)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++)
                if (config_items[i].type->free)
                        config_items[i].type->free(field_of(c, config_items + i));
        free(c->database_path);
        for (size_t i = 0; i < c->n_providers; i++)
                config_provider_done(c->providers + i);
        free(c->providers);
        for (size_t i = 0; i < c->n_prices; i++)
                free(c->prices[i].pattern);
        free(c->prices);
        strv_free(c->sources);
        free(c->state_dir);
        free(c);
        return NULL;
}

Config *config_ref(Config *c) {
        if (!c)
                return NULL;
        c->n_ref++;
        return c;
}

Config *config_unref(Config *c) {
        if (!c)
                return NULL;
        if (--c->n_ref > 0)
                return NULL;
        return config_free(c);
}

static int config_new(const char *state_dir, Config **ret, char **ret_error) {
        _cleanup_(config_unrefp) Config *c = NULL;
        int r;

        if (isempty(state_dir)) {
                set_error(ret_error, "No state directory given");
                return -EINVAL;
        }

        c = new0(Config, 1);
        if (!c)
                return -ENOMEM;
        c->n_ref = 1;
        c->state_dir = strdup(state_dir);
        c->sources = new0(char *, 1);
        if (!c->state_dir || !c->sources)
                return -ENOMEM;

        /* Defaults go through the same parsers as files do, so they obey the same rules. */
        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = config_items + i;
                _cleanup_free_ char *reason = NULL;

                if (!item->default_value)
                        continue;
                r = item->type->parse(item, item->default_value, field_of(c, item), &reason);
                if (r < 0) {
                        set_error(ret_error, "Built-in default [%s] %s = \"%s\" is invalid: %s", item->group,
                                  item->key, item->default_value, strnull(reason));
                        return r;
                }
        }

        *ret = TAKE_PTR(c);
        return 0;
}

static int config_add_source(Config *c, const char *source) {
        size_t n = strv_length(c->sources);
        return strv_extend(&c->sources, &n, source);
}

static int config_apply_value(Config *c, const char *source, const ConfigItem *item, const char *value,
                              char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        int r;

        r = item->type->parse(item, value, field_of(c, item), &reason);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                _cleanup_free_ char *unquoted = NULL, *masked = NULL, *e = NULL;

                /* Show the value as the parser saw it: "12Q", not "\"12Q\"". */
                (void) config_value_unquote(value, &unquoted);
                masked = mask_url_password(unquoted ?: value);
                e = masked ? escape_for_message(masked) : NULL;

                set_error(ret_error, "%s: [%s] %s = \"%s\": %s", source, item->group, item->key, strnull(e),
                          reason ?: "invalid value");
                return -EINVAL;
        }
        return 0;
}

static int config_provider_set(Config *c, const char *name, const char *key, const char *value,
                               const char *source) {
        ConfigProvider *p = NULL;
        ConfigProviderEntry *e = NULL;
        _cleanup_free_ char *v = NULL, *s = NULL;

        for (size_t i = 0; i < c->n_providers; i++)
                if (streq(c->providers[i].name, name)) {
                        p = c->providers + i;
                        break;
                }
        if (!p) {
                _cleanup_free_ char *n = strdup(name);
                ConfigProvider *np;

                if (!n)
                        return -ENOMEM;
                np = reallocarray(c->providers, c->n_providers + 1, sizeof *np);
                if (!np)
                        return -ENOMEM;
                c->providers = np;
                p = c->providers + c->n_providers++;
                *p = (ConfigProvider) { .name = TAKE_PTR(n) };
        }

        v = strdup(value);
        s = strdup(source);
        if (!v || !s)
                return -ENOMEM;

        for (size_t i = 0; i < p->n_entries; i++)
                if (streq(p->entries[i].key, key)) {
                        e = p->entries + i;
                        break;
                }
        if (!e) {
                _cleanup_free_ char *k = strdup(key);
                ConfigProviderEntry *ne;

                if (!k)
                        return -ENOMEM;
                ne = reallocarray(p->entries, p->n_entries + 1, sizeof *ne);
                if (!ne)
                        return -ENOMEM;
                p->entries = ne;
                e = p->entries + p->n_entries++;
                *e = (ConfigProviderEntry) { .key = TAKE_PTR(k) };
        }

        free(e->value);
        e->value = TAKE_PTR(v);
        free(e->source);
        e->source = TAKE_PTR(s);
        return 0;
}

static const char *const config_price_key_table[_CONFIG_PRICE_KEY_MAX] = {
        [CONFIG_PRICE_INPUT] = "input",
        [CONFIG_PRICE_OUTPUT] = "output",
        [CONFIG_PRICE_CACHE_READ] = "cache_read",
        [CONFIG_PRICE_CACHE_WRITE] = "cache_write",
};

const char *config_price_key_to_string(ConfigPriceKey k) {
        if (k < 0 || k >= _CONFIG_PRICE_KEY_MAX)
                return NULL;
        return config_price_key_table[k];
}

ConfigPriceKey config_price_key_from_string(const char *s) {
        if (!s)
                return _CONFIG_PRICE_KEY_INVALID;
        for (ConfigPriceKey k = 0; k < _CONFIG_PRICE_KEY_MAX; k++)
                if (streq(s, config_price_key_table[k]))
                        return k;
        return _CONFIG_PRICE_KEY_INVALID;
}

/* One key of a [price.PATTERN] group. Unlike provider groups these are parsed here: they are plain
 * numbers, and `gate config check` should catch a typo in a price. */
static int config_price_set(Config *c, const char *pattern, const char *key, const char *value,
                            const char *source, char **ret_error) {
        _cleanup_free_ char *unquoted = NULL;
        ConfigPrice *p = NULL;
        ConfigPriceKey k;
        uint64_t v;
        int r;

        k = config_price_key_from_string(key);
        if (k < 0) {
                log_warning("%s: [" PRICE_GROUP_PREFIX "%s] unknown key \"%s\", ignoring.", source, pattern, key);
                return 0;
        }

        r = config_value_unquote(value, &unquoted);
        if (r == -ENOMEM)
                return r;
        if (r >= 0)
                r = usd_parse(unquoted, PRICE_DECIMALS, &v);
        if (r < 0) {
                _cleanup_free_ char *e = escape_for_message(unquoted ?: value), *g = escape_for_message(pattern);

                set_error(ret_error, "%s: [" PRICE_GROUP_PREFIX "%s] %s = \"%s\": invalid price, expected US "
                          "dollars per million tokens with at most %u decimals",
                          source, strnull(g), key, strnull(e), PRICE_DECIMALS);
                return -EINVAL;
        }

        for (size_t i = 0; i < c->n_prices; i++)
                if (streq(c->prices[i].pattern, pattern)) {
                        p = c->prices + i;
                        break;
                }
        if (!p) {
                _cleanup_free_ char *n = strdup(pattern);
                ConfigPrice *np;

                if (!n)
                        return -ENOMEM;
                np = reallocarray(c->prices, c->n_prices + 1, sizeof *np);
                if (!np)
                        return -ENOMEM;
                c->prices = np;
                p = c->prices + c->n_prices++;
                *p = (ConfigPrice) { .pattern = TAKE_PTR(n) };
        }
        p->value[k] = v;
        p->set |= 1U << k;
        return 0;
}

const ConfigProviderEntry *config_provider_find(const ConfigProvider *p, const char *key) {
        if (!p || !key)
                return NULL;
        for (size_t i = 0; i < p->n_entries; i++)
                if (streq(p->entries[i].key, key))
                        return p->entries + i;
        return NULL;
}

static void g_key_file_freep(GKeyFile **k) {
        if (*k)
                g_key_file_free(*k);
}

static void g_error_freep(GError **e) {
        if (*e)
                g_error_free(*e);
}

static void g_strfreevp(char ***l) {
        g_strfreev(*l);
}

static void g_freep(void *p) {
        g_free(*(void **) p);
}

static bool keyfile_parses(const char *data, size_t size) {
        _cleanup_(g_key_file_freep) GKeyFile *k = g_key_file_new();
        return g_key_file_load_from_data(k, data, size, G_KEY_FILE_NONE, NULL);
}

/* GKeyFile does not say where it failed, but its errors are local to one line: the shortest failing
 * prefix of lines ends at the culprit. Found by bisection, on the error path only. Returns 0 if the
 * prefixes do not behave that way. */
static unsigned keyfile_error_line(const char *data, size_t size) {
        size_t *ends = NULL;
        size_t n = 0, lo, hi;
        unsigned line = 0;

        for (size_t i = 0; i < size; i++)
                if (data[i] == '\n' || i + 1 == size) {
                        size_t *ne = reallocarray(ends, n + 1, sizeof *ends);
                        if (!ne) {
                                free(ends);
                                return 0;
                        }
                        ends = ne;
                        ends[n++] = i + 1;
                }

        /* Invariant: the first lo lines parse, the first hi lines do not. */
        lo = 0;
        hi = n;
        if (n == 0 || keyfile_parses(data, ends[n - 1]))
                goto finish;
        while (hi - lo > 1) {
                size_t mid = lo + (hi - lo) / 2;
                if (keyfile_parses(data, ends[mid - 1]))
                        lo = mid;
                else
                        hi = mid;
        }
        line = (unsigned) hi;
finish:
        free(ends);
        return line;
}

/* glib quotes the offending line, which may be a pasted API key: keep only a prefix of it. */
static char *sanitize_glib_message(const char *m) {
        const char *open = strstr(m, "\xe2\x80\x9c"), *close;   /* “ */
        const char *cut;
        char *s;

        if (!open || !(close = strstr(open + 3, "\xe2\x80\x9d")))       /* ” */
                return strdup(m);
        if (close - (open + 3) <= 12)
                return strdup(m);
        /* Cut after 12 bytes, backing off to the start of a UTF-8 character. */
        cut = open + 3 + 12;
        while (cut > open + 3 && ((unsigned char) *cut & 0xc0) == 0x80)
                cut--;
        if (asprintf(&s, "%.*s...%s", (int) (cut - m), m, close) < 0)
                return NULL;
        return s;
}

static int config_apply_keyfile(Config *c, GKeyFile *k, const char *source, char **ret_error) {
        _cleanup_(g_strfreevp) char **groups = NULL;
        int r;

        groups = g_key_file_get_groups(k, NULL);
        for (char **g = groups; g && *g; g++) {
                _cleanup_(g_strfreevp) char **keys = NULL;
                const char *provider = NULL, *price = NULL;

                if (startswith(*g, PROVIDER_GROUP_PREFIX) && (*g)[STRLEN(PROVIDER_GROUP_PREFIX)] != 0)
                        provider = *g + STRLEN(PROVIDER_GROUP_PREFIX);
                else if (startswith(*g, PRICE_GROUP_PREFIX) && (*g)[STRLEN(PRICE_GROUP_PREFIX)] != 0)
                        price = *g + STRLEN(PRICE_GROUP_PREFIX);
                else if (!config_group_known(*g)) {
                        log_warning("%s: unknown group [%s], ignoring.", source, *g);
                        continue;
                }

                keys = g_key_file_get_keys(k, *g, NULL, NULL);
                for (char **key = keys; key && *key; key++) {
                        _cleanup_(g_freep) char *value = NULL;
                        const ConfigItem *item = NULL;
                        bool seen = false;

                        /* A key given twice is listed twice; its value is the last one either way. */
                        for (char **o = keys; o < key; o++)
                                if (streq(*o, *key))
                                        seen = true;
                        if (seen)
                                continue;

                        if (!provider && !price) {
                                item = config_item_find(*g, *key);
                                if (!item) {
                                        log_warning("%s: [%s] unknown key \"%s\", ignoring.",
                                                    source, *g, *key);
                                        continue;
                                }
                        }

                        value = g_key_file_get_value(k, *g, *key, NULL);
                        if (!value)
                                return -ENOMEM;
                        if (!g_utf8_validate(value, -1, NULL)) {
                                set_error(ret_error, "%s: [%s] %s: value is not valid UTF-8",
                                          source, *g, *key);
                                return -EINVAL;
                        }

                        if (provider)
                                r = config_provider_set(c, provider, *key, value, source);
                        else if (price)
                                r = config_price_set(c, price, *key, value, source, ret_error);
                        else
                                r = config_apply_value(c, source, item, value, ret_error);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int config_apply_data(Config *c, const char *source, const char *data, size_t size,
                             char **ret_error) {
        _cleanup_(g_key_file_freep) GKeyFile *k = NULL;
        _cleanup_(g_error_freep) GError *error = NULL;
        int r;

        r = config_add_source(c, source);
        if (r < 0)
                return r;

        k = g_key_file_new();
        if (!g_key_file_load_from_data(k, data, size, G_KEY_FILE_NONE, &error)) {
                _cleanup_free_ char *m = sanitize_glib_message(error->message);
                unsigned line = keyfile_error_line(data, size);

                if (line > 0)
                        set_error(ret_error, "%s:%u: %s", source, line, strnull(m));
                else
                        set_error(ret_error, "%s: %s", source, strnull(m));
                return -EINVAL;
        }

        return config_apply_keyfile(c, k, source, ret_error);
}

static int config_apply_file(Config *c, const char *path, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        r = read_full_file(path, CONFIG_FILE_MAX, &data, &size);
        if (r < 0) {
                set_error(ret_error, "%s: %s", path, r == -EFBIG ? "File too large" : strerror(-r));
                return r;
        }
        return config_apply_data(c, path, data, size, ret_error);
}

static int config_apply_environment(Config *c, char **ret_error) {
        const char *e;
        int r;

        e = getenv("DATABASE_URL");
        if (isempty(e))
                return 0;
        r = config_add_source(c, "$DATABASE_URL");
        if (r < 0)
                return r;
        return config_apply_value(c, "$DATABASE_URL", config_item_find("database", "url"), e, ret_error);
}

/* Fills in what depends on the state directory and derives what is computed from other keys. */
static int config_finalize(Config *c, char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        int r;

        if (!c->tls_cert_dir && asprintf(&c->tls_cert_dir, "%s/certs", c->state_dir) < 0) {
                c->tls_cert_dir = NULL;
                return -ENOMEM;
        }

        if (!c->database_url) {
                /* A relative state directory must not be resolved against itself a second time. */
                if (c->state_dir[0] == '/')
                        r = asprintf(&c->database_url, "sqlite://%s/gate.db", c->state_dir);
                else
                        r = asprintf(&c->database_url, "sqlite://gate.db");
                if (r < 0) {
                        c->database_url = NULL;
                        return -ENOMEM;
                }
        }

        r = database_url_to_path(c->database_url, c->state_dir, &c->database_path, &reason);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                set_error(ret_error, "[database] url: %s", strnull(reason));
                return r;
        }
        return 0;
}

static int config_load_internal(char *const *paths, const char *source, const void *data, size_t size,
                                const char *state_dir, Config **ret, char **ret_error) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = config_new(state_dir, &c, &error);
        if (r >= 0)
                for (char *const *p = paths; p && *p; p++) {
                        r = config_apply_file(c, *p, &error);
                        if (r < 0)
                                break;
                }
        if (r >= 0 && source)
                r = config_apply_data(c, source, data, size, &error);
        if (r >= 0)
                r = config_apply_environment(c, &error);
        if (r >= 0)
                r = config_finalize(c, &error);
        if (r == -ENOMEM && !error)
                error = strdup("Out of memory");
        if (r < 0) {
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }

        if (ret_error)
                *ret_error = NULL;
        *ret = TAKE_PTR(c);
        return 0;
}

int config_load_files(char *const *paths, const char *state_dir, Config **ret, char **ret_error) {
        return config_load_internal(paths, NULL, NULL, 0, state_dir, ret, ret_error);
}

int config_load_data(const char *source, const void *data, size_t size, const char *state_dir,
                     Config **ret, char **ret_error) {
        return config_load_internal(NULL, source ?: "(data)", data ?: "", data ? size : 0, state_dir, ret,
                                    ret_error);
}

static int path_join_root(const char *root, const char *path, char **ret) {
        char *s;

        if (isempty(root) || streq(root, "/"))
                s = strdup(path);
        else if (asprintf(&s, "%s%s%s", root, endswith(root, "/") ? "" : "/", path + 1) < 0)
                s = NULL;
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int strv_extend_if_file(char ***l, size_t *n, const char *path) {
        struct stat st;

        /* Directories and sockets are not configuration; a dangling symlink is as good as absent. */
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
                return 0;
        return strv_extend(l, n, path);
}

static int compare_strings(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int config_search_paths(const char *root, char ***ret) {
        _cleanup_strv_free_ char **l = NULL, **dropins = NULL;
        _cleanup_free_ char *vendor = NULL, *etc = NULL, *dir = NULL;
        size_t n = 0, n_dropins = 0;
        DIR *d;
        int r;

        if (path_join_root(root, "/usr/lib/gate/gate.conf", &vendor) < 0 ||
            path_join_root(root, "/etc/gate/gate.conf", &etc) < 0 ||
            path_join_root(root, "/etc/gate/gate.conf.d", &dir) < 0)
                return -ENOMEM;

        r = strv_extend_if_file(&l, &n, vendor);
        if (r < 0)
                return r;
        r = strv_extend_if_file(&l, &n, etc);
        if (r < 0)
                return r;

        d = opendir(dir);
        if (d) {
                struct dirent *de;

                while ((de = readdir(d))) {
                        _cleanup_free_ char *p = NULL;

                        if (de->d_name[0] == '.' || !endswith(de->d_name, ".conf"))
                                continue;
                        if (asprintf(&p, "%s/%s", dir, de->d_name) < 0) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        r = strv_extend_if_file(&dropins, &n_dropins, p);
                        if (r < 0) {
                                closedir(d);
                                return r;
                        }
                }
                closedir(d);
        }

        if (n_dropins > 0)
                qsort(dropins, n_dropins, sizeof *dropins, compare_strings);
        for (size_t i = 0; i < n_dropins; i++) {
                r = strv_extend(&l, &n, dropins[i]);
                if (r < 0)
                        return r;
        }

        if (!l) {
                l = new0(char *, 1);
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int config_load(const char *explicit_file, const char *state_dir, Config **ret, char **ret_error) {
        _cleanup_strv_free_ char **paths = NULL;
        const char *e;
        int r;

        if (!explicit_file) {
                e = getenv("GATE_CONFIG");
                if (!isempty(e))
                        explicit_file = e;
        }

        if (explicit_file) {
                char *const one[] = { (char *) explicit_file, NULL };
                return config_load_files(one, state_dir, ret, ret_error);
        }

        r = config_search_paths(NULL, &paths);
        if (r < 0) {
                set_error(ret_error, "Failed to enumerate configuration files: %s", strerror(-r));
                return r;
        }
        return config_load_files(paths, state_dir, ret, ret_error);
}

/* ---- dump ---- */

void config_dump(const Config *c, FILE *f) {
        const char *group = NULL;

        if (!c || !f)
                return;

        fputs("# Effective gate configuration. Sources, later overriding earlier:\n", f);
        if (strv_length(c->sources) == 0)
                fputs("#   (none: built-in defaults)\n", f);
        for (char **s = c->sources; s && *s; s++)
                fprintf(f, "#   %s\n", *s);
        fprintf(f, "# State directory: %s\n", c->state_dir);

        for (size_t i = 0; i < ELEMENTSOF(config_items); i++) {
                const ConfigItem *item = config_items + i;
                _cleanup_free_ char *v = NULL, *masked = NULL;

                if (!group || !streq(group, item->group)) {
                        group = item->group;
                        fprintf(f, "\n[%s]\n", group);
                }
                if (item->type->format(field_of_const(c, item), &v) < 0) {
                        fprintf(f, "# %s = (out of memory)\n", item->key);
                        continue;
                }
                if (item->type->may_be_secret && key_is_secret(item->key) && !isempty(v))
                        masked = strdup(MASK);
                else
                        masked = mask_url_password(v);
                masked = masked ?: strdup("(out of memory)");
                /* "key =" rather than "key = ": no trailing blanks for editors to flag. */
                fprintf(f, "%s =%s%s\n", item->key, isempty(masked) ? "" : " ", strempty(masked));

                if (streq(item->group, "database") && streq(item->key, "url") && c->database_path) {
                        _cleanup_free_ char *p = mask_url_password(c->database_path);
                        fprintf(f, "# resolved path: %s\n", p ?: "(out of memory)");
                }
        }

        for (size_t i = 0; i < c->n_providers; i++) {
                const ConfigProvider *p = c->providers + i;

                fprintf(f, "\n[" PROVIDER_GROUP_PREFIX "%s]\n", p->name);
                for (size_t j = 0; j < p->n_entries; j++) {
                        const ConfigProviderEntry *e = p->entries + j;
                        _cleanup_free_ char *v = NULL, *unquoted = NULL;

                        /* Decide on the unquoted value, so that `api_key = ""` does not look set. */
                        if (key_is_secret(e->key) &&
                            !(config_value_unquote(e->value, &unquoted) >= 0 && isempty(unquoted)))
                                v = strdup(MASK);
                        else
                                v = mask_url_password(e->value);
                        fprintf(f, "%s = %s\n", e->key, v ?: "(out of memory)");
                }
        }

        for (size_t i = 0; i < c->n_prices; i++) {
                const ConfigPrice *p = c->prices + i;

                fprintf(f, "\n[" PRICE_GROUP_PREFIX "%s]\n", p->pattern);
                for (ConfigPriceKey k = 0; k < _CONFIG_PRICE_KEY_MAX; k++) {
                        char b[USD_FORMAT_MAX];

                        if (p->set & (1U << k))
                                fprintf(f, "%s = %s\n", config_price_key_to_string(k),
                                        usd_format(b, sizeof b, p->value[k], PRICE_DECIMALS, 2));
                }
        }
}
