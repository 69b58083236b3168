/* Manager: owns the event loop and every subsystem; starts them in order and stops them in reverse. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include "api/router.h"
#include "core/bus.h"
#include "core/manager.h"
#include "core/notify.h"
#include "gate-build.h"
#include "net/conn.h"
#include "shared/gnutls-dl.h"
#include "shared/log.h"
#include "shared/util.h"

static const char *const manager_state_table[_MANAGER_STATE_MAX] = {
        [MANAGER_STARTING] = "starting",
        [MANAGER_RUNNING] = "running",
        [MANAGER_RELOADING] = "reloading",
        [MANAGER_STOPPING] = "stopping",
};

static int manager_load_spend(Manager *m);

const char *manager_state_to_string(ManagerState s) {
        if (s < 0 || s >= _MANAGER_STATE_MAX)
                return NULL;
        return manager_state_table[s];
}

int manager_state_directory(bool create, char **ret) {
        _cleanup_free_ char *d = NULL;
        const char *e;
        int r;

        e = getenv("STATE_DIRECTORY");
        if (!isempty(e)) {
                /* systemd passes several directories separated by ':' when the unit names several. */
                d = strndup(e, strcspn(e, ":"));
        } else if (!isempty(e = getenv("XDG_DATA_HOME")) && e[0] == '/') {
                if (asprintf(&d, "%s/gate", e) < 0)
                        d = NULL;
        } else {
                e = getenv("HOME");
                if (isempty(e) || e[0] != '/')
                        return -ENXIO;
                if (asprintf(&d, "%s/.local/share/gate", e) < 0)
                        d = NULL;
        }
        if (!d)
                return -ENOMEM;

        if (create) {
                r = mkdir_p(d, 0700);
                if (r < 0)
                        return r;
                /* systemd's StateDirectory= already made it 0700 for us; a hand-made one may be wider. */
                (void) chmod(d, 0700);
        }
        *ret = TAKE_PTR(d);
        return 0;
}

static void manager_apply_limits(Manager *m) {
        const Config *c = m->config;
        HttpLimits *l = &m->http.limits;

        l->max_body_bytes = c->server_max_body_bytes;
        l->max_body_bytes_total = c->server_max_body_bytes_total;
        l->max_header_bytes = (uint32_t) MIN(c->server_max_header_bytes, (uint64_t) UINT32_MAX);
        l->max_headers = c->server_max_headers;
        l->header_timeout = c->server_header_timeout;
        l->body_timeout = c->server_body_timeout;
        l->idle_timeout = c->server_idle_timeout;
        l->send_timeout = c->server_send_timeout;
        l->h2_max_concurrent_streams = c->server_h2_max_concurrent_streams;
        m->proxy.policy.passthrough = c->auth_passthrough;
        m->proxy.policy.max_pending = c->proxy_max_pending;
        m->proxy.policy.builtin_client = c->proxy_builtin_client;
        proxy_set_idle_connections(&m->proxy, c->proxy_idle_connections);
        m->proxy.usage = m->usage;
        m->proxy.prices = m->prices;
        m->proxy.metrics = m->metrics;
        m->proxy.limits = m->limits;
        if (m->usage) {
                usage_queue_configure(m->usage, c->usage_queue_max, c->usage_flush_interval);
                usage_queue_set_retention(m->usage, c->usage_retention);
        }
        if (m->metrics)
                metrics_set_max_series(m->metrics->registry, c->metrics_max_series);
}

/* A connection and an upstream transfer take an fd each. A multi-threaded process that grows its fd
 * table waits for an RCU grace period inside the accept() or socket() that needed it (measured: 7.8 and
 * 17.7 ms inside the accept() that took fd 256 and fd 512, in a burst of new streams), so the table is
 * grown up front: at start before the usage writer thread exists, and at a reload that raises
 * max_connections (one grace period then, in the reload, instead of one in a client's accept later). */
static void manager_reserve_fds(Manager *m) {
        int r;

        r = fd_table_reserve(MIN(2U * m->config->server_max_connections + 256U, 65536U));
        if (r < 0)
                log_debug_errno(r, "Failed to grow the fd table, ignoring: %m");
}

static void manager_update_status(Manager *m, bool ready) {
        char status[512];
        size_t n = 0;

        bool first = true;

        n += (size_t) snprintf(status + n, sizeof status - n, "Serving on");
        for (size_t i = 0; i < m->n_listeners && n < sizeof status - 140; i++) {
                if (m->listeners[i].kind == LISTENER_P2P)
                        continue;
                n += (size_t) snprintf(status + n, sizeof status - n, "%s %s%s", first ? "" : ",",
                                       m->listeners[i].kind == LISTENER_HTTPS ? "https://" : "",
                                       m->listeners[i].address);
                first = false;
        }
        snprintf(status + n, sizeof status - n, "; generation %u", m->generation);
        if (ready)
                notify_ready(status);
        else
                notify_status(status);
}

/* Connections: counting per peer address and in total, with a canned answer when over the limit. */

static void peer_key(const struct sockaddr_storage *ss, char *buf, size_t n) {
        if (ss->ss_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *) ss)->sin_addr, buf, (socklen_t) n);
        else if (ss->ss_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) ss)->sin6_addr, buf, (socklen_t) n);
        else
                snprintf(buf, n, "local");
}

static void manager_on_conn_free(Conn *c, void *userdata) {
        Manager *m = userdata;
        size_t len;
        const char *key = conn_owner_key(c, &len);
        char k[INET6_ADDRSTRLEN];

        m->n_connections--;
        memcpy(k, key, MIN(len, sizeof k - 1));
        k[MIN(len, sizeof k - 1)] = 0;
        unsigned v = GPOINTER_TO_UINT(g_hash_table_lookup(m->per_address, k));
        if (v <= 1)
                g_hash_table_remove(m->per_address, k);
        else
                g_hash_table_insert(m->per_address, strdup(k), GUINT_TO_POINTER(v - 1));
}

static void refuse_connection(Listener *l, int fd, const char *why) {
        static const char head[] = "HTTP/1.1 503 Service Unavailable\r\n"
                                   "content-type: application/json\r\n"
                                   "retry-after: 1\r\n"
                                   "connection: close\r\n";
        char resp[512];
        int n;

        l->manager->connections_refused++;
        /* Cleartext HTTP gets a proper answer; TLS cannot be answered without a handshake. */
        if (l->kind == LISTENER_HTTP) {
                char body[200];
                int bn = snprintf(body, sizeof body,
                                  "{\"error\":{\"message\":\"%s\",\"type\":\"overloaded_error\","
                                  "\"code\":\"too_many_connections\"}}\n", why);
                n = snprintf(resp, sizeof resp, "%scontent-length: %i\r\n\r\n%s", head, bn, body);
                (void) send(fd, resp, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        safe_close(fd);
}

static int listener_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Listener *l = userdata;

        if (l->manager->state != MANAGER_STOPPING)
                (void) sd_event_source_set_enabled(l->io, SD_EVENT_ON);
        return 0;
}

static int listener_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Listener *l = userdata;
        Manager *m = l->manager;

        /* Bounded per wakeup so one busy listener cannot starve everything else on the loop. */
        for (unsigned i = 0; i < 64; i++) {
                struct sockaddr_storage ss;
                socklen_t len = sizeof ss;
                char key[INET6_ADDRSTRLEN];
                Conn *c;
                Stream *stream;
                int cfd, r;

                cfd = accept4(fd, (struct sockaddr *) &ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                                /* Out of fds: pause accepting briefly instead of spinning on the loop. */
                                log_warning_errno(errno, "Failed to accept connection on %s, pausing 100ms: %m",
                                                  l->address);
                                (void) sd_event_source_set_enabled(l->io, SD_EVENT_OFF);
                                if (!l->retry) {
                                        if (sd_event_add_time_relative(m->event, &l->retry, CLOCK_MONOTONIC,
                                                                       100 * USEC_PER_MSEC, 0, listener_retry, l) >= 0)
                                                (void) sd_event_source_set_description(l->retry, "listener-retry");
                                } else {
                                        (void) sd_event_source_set_time_relative(l->retry, 100 * USEC_PER_MSEC);
                                        (void) sd_event_source_set_enabled(l->retry, SD_EVENT_ONESHOT);
                                }
                                return 0;
                        }
                        log_debug_errno(errno, "accept() on %s failed, ignoring: %m", l->address);
                        return 0;
                }

                if (m->n_connections >= m->config->server_max_connections) {
                        refuse_connection(l, cfd, "Too many connections.");
                        continue;
                }
                peer_key(&ss, key, sizeof key);
                unsigned per = GPOINTER_TO_UINT(g_hash_table_lookup(m->per_address, key));
                if (per >= m->config->server_max_connections_per_ip) {
                        refuse_connection(l, cfd, "Too many connections from this address.");
                        continue;
                }

                r = conn_new(m->event, cfd, listener_kind_to_string(l->kind), (struct sockaddr *) &ss, len,
                             manager_on_conn_free, m, &c);
                if (r < 0) {
                        log_debug_errno(r, "Failed to set up connection, dropping it: %m");
                        continue;
                }
                m->n_connections++;
                g_hash_table_insert(m->per_address, strdup(key), GUINT_TO_POINTER(per + 1));
                conn_set_owner_key(c, key, strlen(key));
                stream = conn_stream(c);

                if (l->kind == LISTENER_HTTPS) {
                        Stream *tls;
                        if (!m->tls) {
                                stream_close(stream, false);
                                continue;
                        }
                        r = tls_stream_new(stream, m->tls, &tls);
                        if (r < 0) {
                                log_debug_errno(r, "Failed to start TLS session: %m");
                                stream_close(stream, false);
                                continue;
                        }
                        stream = tls;
                }
                r = http_server_attach(&m->http, stream);
                if (r < 0) {
                        stream_close(stream, false);
                        continue;
                }
                /* Its request (or TLS hello) is usually there already: a burst of new connections is
                 * served as it is accepted, not a batch later (measured: a cold burst of 256 streams
                 * waited 9.7 ms at p50 between accept and the first read). */
                conn_read_now(c);
        }
        return 0;
}

static int manager_add_listener(Manager *m, ListenerKind kind, int fd, bool activated) {
        Listener *nl, *l;
        int r;

        nl = realloc(m->listeners, sizeof(Listener) * (m->n_listeners + 1));
        if (!nl) {
                safe_close(fd);
                return -ENOMEM;
        }
        m->listeners = nl;
        /* The array moved: event sources point at their Listener, so re-point them. */
        for (size_t i = 0; i < m->n_listeners; i++) {
                if (m->listeners[i].io)
                        (void) sd_event_source_set_userdata(m->listeners[i].io, &m->listeners[i]);
                if (m->listeners[i].retry)
                        (void) sd_event_source_set_userdata(m->listeners[i].retry, &m->listeners[i]);
        }
        l = &m->listeners[m->n_listeners++];
        *l = (Listener){ .manager = m, .kind = kind, .fd = fd, .activated = activated };
        listen_format_address(fd, l->address, sizeof l->address);

        /* The p2p socket is held for the P2P subsystem; until it exists nothing accepts on it. */
        if (kind == LISTENER_P2P)
                return 0;

        r = sd_event_add_io(m->event, &l->io, fd, EPOLLIN, listener_on_io, l);
        if (r < 0)
                return log_error_errno(r, "Failed to watch listener %s: %m", l->address);
        (void) sd_event_source_set_description(l->io, kind == LISTENER_HTTPS ? "listen-https" : "listen-http");
        return 0;
}

static bool manager_has_listener(Manager *m, ListenerKind kind) {
        for (size_t i = 0; i < m->n_listeners; i++)
                if (m->listeners[i].kind == kind)
                        return true;
        return false;
}

static int manager_bind_from_config(Manager *m, ListenerKind kind, char **addresses, const char *key) {
        unsigned bound = 0;
        int r, first_error = 0;

        for (char **a = addresses; a && *a; a++) {
                int fd = listen_bind(*a, 4096);
                if (fd < 0) {
                        if (fd == -EADDRINUSE)
                                log_error("Failed to listen on %s: address already in use. Another program "
                                          "(or another gate) holds the port; stop it, or change %s.", *a, key);
                        else if (fd == -EACCES)
                                log_error("Failed to listen on %s: permission denied. Ports below 1024 need "
                                          "socket activation or CAP_NET_BIND_SERVICE; or change %s.", *a, key);
                        else
                                log_full_errno(fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT ? LOG_WARNING : LOG_ERR,
                                               fd, "Failed to listen on %s (%s): %m", *a, key);
                        /* An address family the host lacks (no IPv6) is survivable; the rest is not. */
                        if (fd != -EADDRNOTAVAIL && fd != -EAFNOSUPPORT && first_error == 0)
                                first_error = fd;
                        continue;
                }
                r = manager_add_listener(m, kind, fd, false);
                if (r < 0)
                        return r;
                bound++;
        }
        if (first_error < 0)
                return first_error;
        return (int) bound;
}

static int manager_load_tls(Manager *m, char **ret_error) {
        TlsLoadReport report = {};
        TlsCredentials *creds = NULL;
        int r;

        /* Loaded on the first need: a gate without a TLS listener never maps GnuTLS. */
        r = dlopen_gnutls();
        if (r < 0) {
                if (ret_error)
                        *ret_error = strdup_or_null(gnutls_dl_failure());
                return r;
        }
        r = tls_credentials_load_dir(m->config->tls_cert_dir, m->config->tls_default_name, m->tls, &creds, &report);
        if (report.errors)
                log_warning("Problems in certificate directory %s:\n%s", m->config->tls_cert_dir, report.errors);
        if (r < 0) {
                if (ret_error && asprintf(ret_error, "No usable certificate in %s: %s", m->config->tls_cert_dir,
                                          report.errors ? report.errors : strerror(-r)) < 0)
                        *ret_error = NULL;
                tls_load_report_done(&report);
                return r;
        }
        tls_credentials_unref(m->tls);
        m->tls = creds;
        log_info("Loaded %u certificate(s) from %s%s.", report.loaded + report.kept, m->config->tls_cert_dir,
                 report.kept ? " (some kept from before)" : "");
        tls_load_report_done(&report);
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        manager_shutdown(userdata);
        return 0;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        _cleanup_free_ char *error = NULL;

        (void) manager_reload(userdata, "SIGHUP", &error);
        return 0;
}

static void manager_on_idle(void *userdata) {
        Manager *m = userdata;

        if (m->state == MANAGER_STOPPING)
                (void) sd_event_exit(m->event, m->exit_code);
}

static int on_drain_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        log_warning("Drain timeout reached with %u connection(s) left, closing them.", m->http.n_sessions);
        http_server_abort_all(&m->http);
        return sd_event_exit(m->event, m->exit_code);
}

void manager_shutdown(Manager *m) {
        int r;

        if (m->state == MANAGER_STOPPING)
                return;
        m->state = MANAGER_STOPPING;
        notify_stopping("Draining connections");
        bus_emit_state_changed(m);
        log_info("Stopping: no new connections, draining %u connection(s) for up to %llus.",
                 m->http.n_sessions, (unsigned long long) (m->config->server_drain_timeout / USEC_PER_SEC));

        /* The listening sockets stay open (they may be systemd's); we just stop accepting. */
        for (size_t i = 0; i < m->n_listeners; i++) {
                (void) sd_event_source_set_enabled(m->listeners[i].io, SD_EVENT_OFF);
                (void) sd_event_source_set_enabled(m->listeners[i].retry, SD_EVENT_OFF);
        }

        r = sd_event_add_time_relative(m->event, &m->drain_timer, CLOCK_MONOTONIC,
                                       m->config->server_drain_timeout, 0, on_drain_timeout, m);
        if (r < 0) {
                log_error_errno(r, "Failed to arm drain timer, stopping now: %m");
                (void) sd_event_exit(m->event, m->exit_code);
                return;
        }
        (void) sd_event_source_set_description(m->drain_timer, "drain-timeout");
        http_server_drain(&m->http);
}

int manager_reload_certificates(Manager *m, char **ret_error) {
        int r;

        if (!manager_has_listener(m, LISTENER_HTTPS)) {
                /* Nothing serves TLS yet: the certificates are read when an https listener appears. A
                 * path unit firing meanwhile is not an error. */
                log_debug("Certificate reload requested without an https listener, nothing to do.");
                return 0;
        }
        r = manager_load_tls(m, ret_error);
        if (r < 0)
                return r;
        bus_emit_certificates_reloaded(m);
        return 0;
}

int manager_reload(Manager *m, const char *reason, char **ret_error) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        if (m->state == MANAGER_STOPPING) {
                if (ret_error)
                        *ret_error = strdup("gate is stopping.");
                return -ESHUTDOWN;
        }
        m->state = MANAGER_RELOADING;
        notify_reloading(reason);

        r = config_load(NULL, m->state_dir, &c, &error);
        _cleanup_(providers_unrefp) Providers *providers = NULL;
        if (r >= 0)
                r = providers_build(c, &providers, &error);
        PriceTable *prices = NULL;
        if (r >= 0)
                r = price_table_from_config(c, &prices, &error);
        if (r < 0) {
                log_error("Reload (%s) failed, keeping the running configuration: %s", reason,
                          error ? error : strerror(-r));
                free(m->last_reload_error);
                m->last_reload_error = strdup_or_null(error);
                m->state = MANAGER_RUNNING;
                char status[600];
                snprintf(status, sizeof status, "Reload failed: %.500s", error ? error : strerror(-r));
                notify_ready(status);
                if (ret_error)
                        *ret_error = TAKE_PTR(error);
                return r;
        }

        if (!strv_equal(c->server_bind, m->config->server_bind) || !strv_equal(c->tls_bind, m->config->tls_bind))
                log_notice("Listen addresses changed in the configuration; they apply on restart.");
        if (!streq(c->database_path, m->config->database_path))
                log_notice("The database path changed in the configuration; it applies on restart.");

        bool more_connections = c->server_max_connections > m->config->server_max_connections;
        config_unref(m->config);
        m->config = TAKE_PTR(c);
        if (more_connections)
                manager_reserve_fds(m);
        /* Live calls keep the provider set they started with; new ones get the new set. */
        providers_unref(m->providers);
        m->providers = TAKE_PTR(providers);
        price_table_unref(m->prices);
        m->prices = TAKE_PTR(prices);
        if (m->keys) {
                r = keys_reload(m->keys);
                if (r >= 0)
                        r = manager_load_spend(m);
                if (r < 0)
                        log_warning_errno(r, "Failed to reload the API keys, keeping the cached ones: %m");
        }
        manager_apply_limits(m);

        if (manager_has_listener(m, LISTENER_HTTPS)) {
                _cleanup_free_ char *tls_error = NULL;
                /* Bad certificates do not fail a config reload: the old pairs stay in service. */
                if (manager_load_tls(m, &tls_error) < 0)
                        log_warning("TLS credentials not reloaded: %s", tls_error ? tls_error : "unknown error");
        }
        proxy_reload_trust(&m->proxy);

        m->generation++;
        m->state = MANAGER_RUNNING;
        free(m->last_reload_error);
        m->last_reload_error = NULL;
        char reason_field[64], generation_field[48];
        snprintf(reason_field, sizeof reason_field, "GATE_RELOAD_REASON=%s", reason);
        snprintf(generation_field, sizeof generation_field, "GATE_GENERATION=%u", m->generation);
        log_struct_internal(LOG_INFO, 0,
                            (const char *const[]){ "MESSAGE_ID=6b0f1bd2c2a44a5f9c1ef8f3b6a0d6a1", reason_field,
                                                   generation_field, NULL },
                            "Reloaded configuration (%s), generation %u.", reason, m->generation);
        manager_update_status(m, true);
        bus_emit_reloaded(m);
        return 0;
}

/* Budgets start from what the usage rows say each key spent in its current period. */
static int manager_load_spend(Manager *m) {
        size_t n = 0;
        KeyInfo *const *all = keys_all(m->keys, &n);

        return limits_load_spend(m->limits, m->store, all, n);
}

/* Gauges read when /metrics is rendered. */
static double metric_connections(void *userdata) {
        return ((Manager *) userdata)->n_connections;
}
static double metric_streams(void *userdata) {
        return ((Manager *) userdata)->http.active_streams;
}
static double metric_queue_depth(void *userdata) {
        Manager *m = userdata;
        return m->usage ? (double) usage_queue_depth(m->usage) : 0;
}
static double metric_queue_drops(void *userdata) {
        Manager *m = userdata;
        return m->usage ? (double) usage_queue_drops(m->usage) : 0;
}

int manager_reload_keys(Manager *m) {
        int r;

        if (!m->keys)
                return -ENXIO;
        r = keys_reload(m->keys);
        if (r >= 0)
                r = manager_load_spend(m);
        if (r < 0)
                return r;
        log_debug("Reloaded the API keys on request.");
        return 0;
}

/* Keys created or revoked by `gate keys` (another process) apply within a second, no reload needed: the
 * fallback for when the command could not call ReloadKeys (no bus, or the bus policy). */
static int on_keys_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r;

        r = keys_reload_if_changed(m->keys);
        if (r < 0)
                log_debug_errno(r, "Failed to check the API keys for changes, ignoring: %m");
        if (r > 0 && (r = manager_load_spend(m)) < 0)
                log_warning_errno(r, "Failed to read the spend of new keys, ignoring: %m");
        (void) sd_event_source_set_time(s, usec + USEC_PER_SEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

int manager_new(Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->state = MANAGER_STARTING;
        m->generation = 1;
        m->started_at = now_usec(CLOCK_REALTIME);
        m->per_address = g_hash_table_new_full(g_str_hash, g_str_equal, free, NULL);

        /* systemd's sockets first: LISTEN_FDS names fds from 3 on, and any fd opened before looking
         * (the event loop's epoll fd, say) could take a number a broken launcher named but did not pass
         * — which we would then close as "not a socket". */
        r = listen_fds_from_systemd(&m->activated, &m->n_activated);
        if (r < 0)
                return r;

        r = sd_event_new(&m->event);
        if (r < 0)
                return r;
        http_server_init(&m->http, m->event);
        m->http.dispatch = router_dispatch;
        m->http.dispatch_userdata = m;
        m->http.on_idle = manager_on_idle;
        m->http.on_idle_userdata = m;

        *ret = TAKE_PTR(m);
        return 0;
}

int manager_start(Manager *m) {
        _cleanup_free_ char *error = NULL;
        sigset_t mask;
        int r;

        /* 1. Configuration: everything else depends on it. */
        r = manager_state_directory(true, &m->state_dir);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the state directory: %m");

        r = config_load(NULL, m->state_dir, &m->config, &error);
        if (r >= 0)
                r = providers_build(m->config, &m->providers, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error("Invalid configuration: %s", error ? error : strerror(-r));
                return -EINVAL;
        }
        manager_apply_limits(m);

        /* 2. Storage. */
        r = store_open(m->config->database_path, &m->store, &error);
        if (r == -EBADMSG || r == -EPROTONOSUPPORT) {
                /* Not ours to repair: say what to do, and exit as a configuration problem (78). */
                log_error("The database %s cannot be used: %s. %s", m->config->database_path,
                          error ? error : strerror(-r),
                          r == -EBADMSG ? "Move it aside (or restore a backup) and start again; gate then "
                                          "creates a fresh one." :
                                          "It was written by a newer gate: run that version, or restore a backup.");
                return -EINVAL;
        }
        if (r < 0)
                return log_error_errno(r, "Failed to open the database: %s", error ? error : strerror(-r));

        /* 2a. Keys, prices and the usage writer, on the database. */
        r = price_table_from_config(m->config, &m->prices, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0) {
                log_error("Invalid configuration: %s", error ? error : strerror(-r));
                return -EINVAL;
        }
        r = keys_new(m->store, m->state_dir, &m->keys);
        if (r < 0)
                return log_error_errno(r, "Failed to load the API keys: %m");
        r = limits_new(&m->limits);
        if (r >= 0)
                r = manager_load_spend(m);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the key limits: %m");
        /* Before the first thread (see manager_reserve_fds()). */
        manager_reserve_fds(m);
        r = usage_queue_new(m->config->database_path, m->config->usage_queue_max, &m->usage);
        if (r >= 0)
                r = usage_queue_start(m->usage, m->config->usage_flush_interval);
        if (r < 0)
                return log_error_errno(r, "Failed to start the usage writer: %m");
        r = gate_metrics_new(m->config->metrics_max_series, &m->metrics);
        if (r >= 0)
                r = gate_metrics_add_sources(m->metrics, &(GateMetricsSources){
                        .active_connections = metric_connections,
                        .active_streams = metric_streams,
                        .usage_queue_depth = metric_queue_depth,
                        .usage_queue_drops = metric_queue_drops,
                        .userdata = m,
                });
        if (r < 0)
                return log_error_errno(r, "Failed to set up the metrics: %m");
        r = sd_event_add_time_relative(m->event, &m->keys_timer, CLOCK_MONOTONIC, USEC_PER_SEC, 0,
                                       on_keys_timer, m);
        if (r < 0)
                return log_error_errno(r, "Failed to arm the key refresh timer: %m");
        (void) sd_event_source_set_description(m->keys_timer, "keys-refresh");

        /* 2b. The upstream side: libcurl on our loop. */
        r = proxy_init(&m->proxy, m->event);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the upstream client: %m");
        manager_apply_limits(m);

        /* 3. Listeners: systemd's by name first; what it did not pass, from the configuration. */
        for (size_t i = 0; i < m->n_activated; i++) {
                int fd = TAKE_FD(m->activated[i].fd);
                r = manager_add_listener(m, m->activated[i].kind, fd, true);
                if (r < 0)
                        return r;
        }
        if (m->n_activated == 0)
                log_info("Not socket-activated, binding the configured addresses.");

        if (!manager_has_listener(m, LISTENER_HTTP)) {
                r = manager_bind_from_config(m, LISTENER_HTTP, m->config->server_bind, "[server] bind");
                if (r < 0)
                        return r;
        }
        if (!manager_has_listener(m, LISTENER_HTTP))
                return log_error_errno(ENOTCONN, "No HTTP listener: neither passed by systemd nor bound from "
                                       "[server] bind. Refusing to start.");
        if (!manager_has_listener(m, LISTENER_HTTPS) && m->config->tls_bind) {
                r = manager_bind_from_config(m, LISTENER_HTTPS, m->config->tls_bind, "[tls] bind");
                if (r < 0)
                        return r;
        }

        /* 4. TLS credentials, only when something listens for TLS. Failure leaves https off. */
        if (manager_has_listener(m, LISTENER_HTTPS)) {
                _cleanup_free_ char *tls_error = NULL;
                r = manager_load_tls(m, &tls_error);
                /* Unlike missing certificates, a missing library is not fixed by installing files and
                 * reloading: a TLS listener that cannot work is a start-up error. */
                if (r == -ELIBACC || r == -ELIBBAD)
                        return log_error_errno(r, "Refusing to start with a TLS listener: %s",
                                               tls_error ?: gnutls_dl_failure() ?: strerror(-r));
                if (r < 0)
                        log_error("HTTPS stays off until certificates are installed and gate is reloaded: %s",
                                  tls_error ? tls_error : strerror(-r));
        }

        /* 5. Signals: blocked first, then handled on the loop. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGPIPE);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return log_error_errno(errno, "Failed to block signals: %m");
        r = sd_event_add_signal(m->event, &m->sigterm, SIGTERM, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sigint, SIGINT, on_sigterm, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, &m->sighup, SIGHUP, on_sighup, m);
        if (r < 0)
                return log_error_errno(r, "Failed to install signal handlers: %m");
        (void) sd_event_source_set_description(m->sigterm, "signal-term");
        (void) sd_event_source_set_description(m->sigint, "signal-int");
        (void) sd_event_source_set_description(m->sighup, "signal-hup");

        /* 6. Watchdog from WATCHDOG_USEC: pinged from the loop, so a stuck loop gets us restarted. */
        r = sd_event_set_watchdog(m->event, true);
        if (r < 0)
                log_warning_errno(r, "Failed to enable the watchdog, ignoring: %m");

        /* 7. D-Bus, last: the name appears only once everything behind it works (before READY). */
        r = bus_start(m);
        if (r < 0)
                return r;

        m->state = MANAGER_RUNNING;
        manager_update_status(m, true);
        for (size_t i = 0; i < m->n_listeners; i++)
                log_info("Listening on %s (%s%s).", m->listeners[i].address,
                         listener_kind_to_string(m->listeners[i].kind),
                         m->listeners[i].activated ? ", from systemd" : "");
        return 0;
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        log_info("Stopped.");
        return r;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;

        /* Reverse order of manager_start(). */
        for (size_t i = 0; i < m->n_activated; i++)
                safe_close(m->activated[i].fd);
        m->activated = mfree(m->activated);
        bus_stop(m);
        http_server_done(&m->http);
        sd_event_source_disable_unref(m->drain_timer);
        sd_event_source_disable_unref(m->sigterm);
        sd_event_source_disable_unref(m->sigint);
        sd_event_source_disable_unref(m->sighup);
        tls_credentials_unref(m->tls);
        proxy_done(&m->proxy);
        providers_unref(m->providers);
        sd_event_source_disable_unref(m->keys_timer);
        gate_metrics_free(m->metrics);
        limits_free(m->limits);
        usage_queue_free(m->usage);
        keys_free(m->keys);
        price_table_unref(m->prices);
        for (size_t i = 0; i < m->n_listeners; i++) {
                sd_event_source_disable_unref(m->listeners[i].io);
                sd_event_source_disable_unref(m->listeners[i].retry);
                safe_close(m->listeners[i].fd);
        }
        free(m->listeners);
        store_close(m->store);
        config_unref(m->config);
        if (m->per_address)
                g_hash_table_destroy(m->per_address);
        free(m->state_dir);
        free(m->last_reload_error);
        sd_event_unref(m->event);
        free(m);
        return NULL;
}
