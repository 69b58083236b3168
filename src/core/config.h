/* Config: the immutable, refcounted configuration built from GKeyFile sources by a table of parsers. */
#pragma once

#include <stdio.h>

#include "shared/macro.h"

typedef enum Passthrough {
        PASSTHROUGH_LOOPBACK,
        PASSTHROUGH_ALWAYS,
        PASSTHROUGH_NEVER,
        _PASSTHROUGH_MAX,
        _PASSTHROUGH_INVALID = -EINVAL,
} Passthrough;

/* One "key = value" of a [provider.NAME] group. This module does not interpret provider keys (the
 * provider subsystem does): the value is kept raw, as GKeyFile lexed it, so the provider parser can
 * apply config_value_unquote() or config_value_split() per key, and name the source in its errors. */
typedef struct ConfigProviderEntry {
        char *key;
        char *value;                            /* raw, possibly quoted, never NULL */
        char *source;                           /* the file that set it last */
} ConfigProviderEntry;

/* A [provider.NAME] group, merged over all sources (a later file overrides single keys). */
typedef struct ConfigProvider {
        char *name;                             /* NAME, non-empty */
        ConfigProviderEntry *entries;           /* in order of first appearance */
        size_t n_entries;
} ConfigProvider;

/* A [price.PATTERN] group, merged over all sources key by key. Prices are in micro-USD per million
 * tokens (see store/prices.h); keys left out are 0 here, and "set" says which were given. */
typedef enum ConfigPriceKey {
        CONFIG_PRICE_INPUT,
        CONFIG_PRICE_OUTPUT,
        CONFIG_PRICE_CACHE_READ,
        CONFIG_PRICE_CACHE_WRITE,
        _CONFIG_PRICE_KEY_MAX,
        _CONFIG_PRICE_KEY_INVALID = -EINVAL,
} ConfigPriceKey;

typedef struct ConfigPrice {
        char *pattern;                          /* PATTERN, non-empty */
        uint64_t value[_CONFIG_PRICE_KEY_MAX];
        unsigned set;                           /* bit (1 << ConfigPriceKey) per key given */
} ConfigPrice;

const char *config_price_key_to_string(ConfigPriceKey k);
ConfigPriceKey config_price_key_from_string(const char *s);

typedef struct Config {
        unsigned n_ref;

        /* [server] */
        char **server_bind;                     /* addresses bound when no "http" fd was passed */
        uint32_t server_max_connections;        /* all clients */
        uint32_t server_max_connections_per_ip;
        uint64_t server_max_body_bytes;
        uint64_t server_max_body_bytes_total;   /* all request bodies held at once */
        uint64_t server_max_header_bytes;
        uint32_t server_max_headers;
        usec_t server_header_timeout;
        usec_t server_body_timeout;
        usec_t server_idle_timeout;
        usec_t server_send_timeout;
        usec_t server_drain_timeout;            /* SIGTERM: how long in-flight requests may finish */
        uint32_t server_h2_max_concurrent_streams;

        /* [auth] */
        bool auth_loopback_without_key;
        Passthrough auth_passthrough;
        bool auth_admin_loopback;               /* loopback clients may use /admin without an admin key */

        /* [database] */
        char *database_url;                     /* "sqlite:///abs/path" or "sqlite://relative" */
        char *database_path;                    /* resolved file path */

        /* [tls] */
        char **tls_bind;                        /* addresses for https when no "https" fd was passed */
        char *tls_cert_dir;
        char *tls_default_name;

        /* [p2p] */
        bool p2p_enabled;
        uint16_t p2p_listen_port;
        char **p2p_peers;

        /* [relay] */
        bool relay_enabled;
        char *relay_endpoint;

        /* [proxy] */
        uint32_t proxy_max_pending;             /* upstream transfers in flight, all providers */
        uint32_t proxy_max_attempts;            /* providers tried per request (failover and retries) */
        bool proxy_builtin_client;              /* gate's own HTTP/1.1 client for plain-HTTP IP upstreams */
        uint32_t proxy_idle_connections;        /* the builtin client's idle connections per address */

        /* [usage] */
        uint32_t usage_queue_max;               /* usage rows waiting for the database; the oldest go beyond */
        usec_t usage_flush_interval;            /* how often queued rows are written, in one transaction */
        usec_t usage_retention;                 /* rows older than this are deleted; 0: kept forever */
        char *usage_price_file;                 /* NULL: the shipped DATADIR/gate/prices.conf */

        /* [metrics] */
        uint32_t metrics_max_series;            /* label sets per metric; more are counted as "other" */

        /* [price.PATTERN] groups, in order of first appearance. */
        ConfigPrice *prices;
        size_t n_prices;

        /* [provider.NAME] groups, in order of first appearance, uninterpreted. */
        ConfigProvider *providers;
        size_t n_providers;

        /* Where it came from, for messages and `gate config check`: files in the order read, and
         * "$DATABASE_URL" when the environment overrode [database] url. */
        char **sources;
        char *state_dir;
} Config;

/* The files read, in order, when GATE_CONFIG is unset. root is prepended (tests), may be NULL. */
int config_search_paths(const char *root, char ***ret);

/* Builds a config from explicit files (later wins), then the environment (DATABASE_URL). On a parse
 * error returns -EINVAL and a message naming file, group, key and value in *ret_error. Unknown keys
 * and groups are warned about (log_warning) and ignored. A file that cannot be read fails with its
 * errno (-ENOENT...) and a message naming it. state_dir must not be NULL: the default database and
 * cert_dir live there and relative database paths are resolved against it. ret_error may be NULL;
 * *ret_error is NULL when even the message could not be allocated. Nothing is written to *ret on
 * failure, so a reloading caller simply keeps its old Config. */
int config_load_files(char *const *paths, const char *state_dir, Config **ret, char **ret_error);

/* The same for one in-memory source (tests, fuzzers); source names it in messages. */
int config_load_data(const char *source, const void *data, size_t size, const char *state_dir,
                     Config **ret, char **ret_error);

/* The normal entry: GATE_CONFIG (one file, which must exist) if set, else the search paths (none
 * existing means all defaults). explicit_file, if not NULL, replaces both (used by
 * `gate config check FILE`). */
int config_load(const char *explicit_file, const char *state_dir, Config **ret, char **ret_error);

/* The value grammar, shared with the provider subsystem. A value may be bare or quoted with "..."
 * (escapes \" \\ \n \t \r) or '...' (no escapes); "#" at the start or after whitespace, outside
 * quotes, starts a comment. config_value_unquote() gives one string; config_value_split() gives a
 * list from "a, b c;d", one quoted string holding such a list, or a TOML-like ["a", "b"] array. Both
 * return -EINVAL on bad quoting, -ENOMEM on OOM. */
int config_value_unquote(const char *raw, char **ret);
int config_value_split(const char *raw, char ***ret);

/* Returns the entry for key in a provider group, or NULL. */
const ConfigProviderEntry *config_provider_find(const ConfigProvider *p, const char *key);

Config *config_ref(Config *c);
Config *config_unref(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_unref);

/* Prints the effective configuration in GKeyFile syntax, secrets masked: values of keys containing
 * "key", "secret", "token" or "password" (booleans and numbers excepted), and the password of a
 * database URL. */
void config_dump(const Config *c, FILE *f);

const char *passthrough_to_string(Passthrough p);
Passthrough passthrough_from_string(const char *s);
