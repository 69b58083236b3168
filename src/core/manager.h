/* Manager: owns the event loop and every subsystem; starts them in order and stops them in reverse. */
#pragma once

#include <glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/config.h"
#include "core/listen.h"
#include "http/server.h"
#include "net/tls.h"
#include "proxy/provider.h"
#include "proxy/proxy.h"
#include "api/limits.h"
#include "api/metrics.h"
#include "store/keys.h"
#include "store/prices.h"
#include "store/store.h"
#include "store/usage.h"

typedef enum ManagerState {
        MANAGER_STARTING,
        MANAGER_RUNNING,
        MANAGER_RELOADING,
        MANAGER_STOPPING,
        _MANAGER_STATE_MAX,
        _MANAGER_STATE_INVALID = -EINVAL,
} ManagerState;

typedef struct Manager Manager;

typedef struct Listener {
        Manager *manager;
        ListenerKind kind;
        int fd;
        bool activated;
        char address[128];
        sd_event_source *io;
        sd_event_source *retry;         /* re-enables accepting after EMFILE */
} Listener;

struct Manager {
        sd_event *event;
        /* The sockets systemd passed, taken before anything else opened an fd (see manager_new());
         * handed to the listeners by manager_start(). */
        struct ListenFd *activated;
        size_t n_activated;
        Config *config;
        char *state_dir;
        Store *store;
        HttpServer http;
        TlsCredentials *tls;
        sd_bus *bus;
        Providers *providers;
        Proxy proxy;
        KeyStore *keys;                 /* gate's own API keys, cached */
        UsageQueue *usage;              /* usage rows on their way to the database */
        PriceTable *prices;
        GateMetrics *metrics;           /* served on GET /metrics */
        Limits *limits;                 /* per-key rate limits and budgets */
        sd_event_source *keys_timer;    /* picks up keys created or revoked by the CLI */

        Listener *listeners;
        size_t n_listeners;

        GHashTable *per_address;        /* peer address string -> open connections */
        unsigned n_connections;
        uint64_t connections_refused;

        ManagerState state;
        uint32_t generation;
        usec_t started_at;              /* CLOCK_REALTIME */
        char *last_reload_error;

        sd_event_source *sigterm, *sigint, *sighup;
        sd_event_source *drain_timer;
        int exit_code;
};

const char *manager_state_to_string(ManagerState s);

int manager_new(Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Loads the configuration, opens the store, takes or binds the listeners, loads TLS credentials, and
 * installs signal handlers. Returns -EINVAL with a logged message for an invalid configuration. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT drained everything. Returns the exit code. */
int manager_run(Manager *m);

/* Re-reads the configuration and credentials; on failure keeps everything as it was and returns a
 * negative errno with the reason in *ret_error. reason names the trigger ("SIGHUP", "dbus"). */
int manager_reload(Manager *m, const char *reason, char **ret_error);
/* Re-reads gate's API keys (and the spend of keys new to the limits) from the database now, as the
 * once-a-second poll does when the keys generation moved: D-Bus ReloadKeys and the admin API. On
 * failure the cached keys stay. */
int manager_reload_keys(Manager *m);
/* Only the TLS credentials (the path unit's trigger). */
int manager_reload_certificates(Manager *m, char **ret_error);

/* Begins a graceful stop: stop accepting, drain within [server] drain_timeout, exit. */
void manager_shutdown(Manager *m);

/* The state directory: $STATE_DIRECTORY (first entry), else $XDG_DATA_HOME/gate or ~/.local/share/gate.
 * Created with mode 0700 when create is set. */
int manager_state_directory(bool create, char **ret);
