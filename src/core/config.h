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

typedef struct Config {
        unsigned n_ref;

        /* [server] */
        char **server_bind;                     /* addresses bound when no "http" fd was passed */
        uint32_t server_max_connections;        /* all clients */
        uint32_t server_max_connections_per_ip;
        uint64_t server_max_body_bytes;
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

        /* Where it came from, for messages and `gate config check`. */
        char **sources;
        char *state_dir;
} Config;

/* The files read, in order, when GATE_CONFIG is unset. root is prepended (tests), may be NULL. */
int config_search_paths(const char *root, char ***ret);

/* Builds a config from explicit files (later wins), then the environment (DATABASE_URL). On a parse
 * error returns -EINVAL and a message naming file, group, key and value in *ret_error. Unknown keys
 * and groups are warned about (log_warning) and ignored. */
int config_load_files(char *const *paths, const char *state_dir, Config **ret, char **ret_error);

/* The normal entry: GATE_CONFIG (one file) if set, else the search paths. explicit_file, if not NULL,
 * replaces both (used by `gate config check FILE`). */
int config_load(const char *explicit_file, const char *state_dir, Config **ret, char **ret_error);

Config *config_ref(Config *c);
Config *config_unref(Config *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Config *, config_unref);

/* Prints the effective configuration in GKeyFile syntax, secrets masked. */
void config_dump(const Config *c, FILE *f);

const char *passthrough_to_string(Passthrough p);
Passthrough passthrough_from_string(const char *s);
