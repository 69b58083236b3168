/* D-Bus: the ai.hellas.Gate1 object on /ai/hellas/Gate (sd-bus on the manager's sd-event loop). */
#include <stdio.h>

#include "core/bus.h"
#include "core/manager.h"
#include "gate-build.h"
#include "shared/log.h"

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        if (streq(property, "Version"))
                return sd_bus_message_append(reply, "s", GATE_VERSION);
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", manager_state_to_string(m->state));
        if (streq(property, "Generation"))
                return sd_bus_message_append(reply, "u", m->generation);
        if (streq(property, "StartedAt"))
                return sd_bus_message_append(reply, "t", (uint64_t) m->started_at);
        if (streq(property, "NodeId"))
                /* The P2P identity does not exist yet: a defined empty value until it does. */
                return sd_bus_message_append(reply, "s", "");
        if (streq(property, "Connections"))
                return sd_bus_message_append(reply, "u", m->n_connections);
        if (streq(property, "ActiveStreams"))
                return sd_bus_message_append(reply, "u", m->http.active_streams);
        if (streq(property, "RequestsTotal"))
                return sd_bus_message_append(reply, "t", m->http.requests_total);
        if (streq(property, "CertificateNotAfter"))
                return sd_bus_message_append(reply, "t", m->tls ? tls_credentials_not_after(m->tls) : 0);
        if (streq(property, "RelayState"))
                return sd_bus_message_append(reply, "s", m->config->relay_enabled ? "unavailable" : "disabled");
        if (streq(property, "UsageQueueDrops"))
                return sd_bus_message_append(reply, "t", m->usage ? usage_queue_drops(m->usage) : (uint64_t) 0);
        return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", property);
}

static int property_get_strv(sd_bus *bus, const char *path, const char *interface, const char *property,
                             sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        if (streq(property, "ListenAddresses")) {
                for (size_t i = 0; i < m->n_listeners; i++) {
                        char s[160];
                        snprintf(s, sizeof s, "%s %s", listener_kind_to_string(m->listeners[i].kind),
                                 m->listeners[i].address);
                        r = sd_bus_message_append(reply, "s", s);
                        if (r < 0)
                                return r;
                }
        } else if (streq(property, "CertificateNames") && m->tls) {
                for (char *const *n = tls_credentials_names(m->tls); n && *n; n++) {
                        r = sd_bus_message_append(reply, "s", *n);
                        if (r < 0)
                                return r;
                }
        }
        /* Peers: empty until the P2P subsystem exists. */
        return sd_bus_message_close_container(reply);
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *e = NULL;
        int r;

        r = manager_reload(m, "dbus", &e);
        if (r == -EINVAL)
                return sd_bus_error_setf(error, GATE_BUS_INTERFACE ".Error.InvalidConfig", "%s",
                                         e ? e : "Invalid configuration.");
        if (r < 0)
                return sd_bus_error_setf(error, GATE_BUS_INTERFACE ".Error.ReloadFailed", "%s",
                                         e ? e : strerror(-r));
        return sd_bus_reply_method_return(msg, "u", m->generation);
}

static int method_reload_certificates(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *e = NULL;
        int r;

        r = manager_reload_certificates(m, &e);
        if (r < 0)
                return sd_bus_error_setf(error, GATE_BUS_INTERFACE ".Error.CertificatesFailed", "%s",
                                         e ? e : strerror(-r));
        return sd_bus_reply_method_return(msg, "t", tls_credentials_not_after(m->tls));
}

/* `gate keys create|update|revoke` call this after their write, so that the change is in force when
 * they return; the reply waits for the reload. */
static int method_reload_keys(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = 0;
        int r;

        r = manager_reload_keys(m);
        if (r < 0)
                return sd_bus_error_setf(error, GATE_BUS_INTERFACE ".Error.KeysFailed",
                                         "Failed to reload the API keys, keeping the cached ones: %s", strerror(-r));
        (void) keys_all(m->keys, &n);
        return sd_bus_reply_method_return(msg, "u", (uint32_t) MIN(n, (size_t) UINT32_MAX));
}

const sd_bus_vtable gate_bus_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Generation", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StartedAt", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("NodeId", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ListenAddresses", "as", property_get_strv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        /* Counters change all the time: readable, no change signals (clients poll). */
        SD_BUS_PROPERTY("Connections", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("ActiveStreams", "u", property_get, 0, 0),
        SD_BUS_PROPERTY("RequestsTotal", "t", property_get, 0, 0),
        SD_BUS_PROPERTY("CertificateNotAfter", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CertificateNames", "as", property_get_strv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RelayState", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Peers", "as", property_get_strv, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UsageQueueDrops", "t", property_get, 0, 0),
        /* Who may call these is the bus policy's business (root only on the system bus). */
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_RESULT("u", generation), method_reload,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReloadCertificates", SD_BUS_NO_ARGS, SD_BUS_RESULT("t", not_after),
                                method_reload_certificates, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReloadKeys", SD_BUS_NO_ARGS, SD_BUS_RESULT("u", keys), method_reload_keys,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("Reloaded", SD_BUS_ARGS("u", generation), 0),
        SD_BUS_SIGNAL_WITH_ARGS("CertificatesReloaded", SD_BUS_ARGS("t", not_after), 0),
        SD_BUS_VTABLE_END
};

static int bus_choose(sd_bus **ret, const char **ret_kind) {
        const char *e = getenv("GATE_BUS");

        if (e && streq(e, "none"))
                return 0;
        /* Under the system manager $INVOCATION_ID is set and $MANAGERPID is not (that one is the user
         * manager's); root outside systemd also means the system bus. */
        bool system_default = geteuid() == 0 || (getenv("INVOCATION_ID") && !getenv("MANAGERPID"));
        if ((e && streq(e, "system")) || (!e && system_default)) {
                *ret_kind = "system";
                return sd_bus_open_system(ret);
        }
        if (e && !streq(e, "user"))
                return -EINVAL;
        *ret_kind = "user";
        return sd_bus_open_user(ret);
}

int bus_start(Manager *m) {
        const char *kind = NULL;
        int r;

        r = bus_choose(&m->bus, &kind);
        if (r == 0 && !m->bus) {
                log_debug("D-Bus disabled by GATE_BUS=none.");
                return 0;
        }
        if (r < 0) {
                log_warning_errno(r, "Failed to connect to the %s bus, continuing without D-Bus: %m",
                                  kind ? kind : "requested");
                m->bus = sd_bus_unref(m->bus);
                return 0;
        }

        r = sd_bus_add_object_vtable(m->bus, NULL, GATE_BUS_PATH, GATE_BUS_INTERFACE, gate_bus_vtable, m);
        if (r < 0)
                goto fail;
        r = sd_bus_request_name(m->bus, GATE_BUS_NAME, 0);
        if (r < 0) {
                log_warning_errno(r, "Failed to acquire the bus name %s on the %s bus (%s), continuing "
                                  "without D-Bus: %m", GATE_BUS_NAME, kind,
                                  r == -EACCES ? "is the D-Bus policy installed?" :
                                  r == -EEXIST ? "is another gate running?" : "see above");
                m->bus = sd_bus_flush_close_unref(m->bus);
                return 0;
        }
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                goto fail;
        log_debug("Serving %s on the %s bus.", GATE_BUS_NAME, kind);
        return 0;
fail:
        log_warning_errno(r, "Failed to set up D-Bus, continuing without it: %m");
        m->bus = sd_bus_flush_close_unref(m->bus);
        return 0;
}

void bus_stop(Manager *m) {
        if (!m->bus)
                return;
        (void) sd_bus_release_name(m->bus, GATE_BUS_NAME);
        m->bus = sd_bus_flush_close_unref(m->bus);
}

void bus_emit_reloaded(Manager *m) {
        if (!m->bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus, GATE_BUS_PATH, GATE_BUS_INTERFACE, "Generation", "State",
                                              "CertificateNotAfter", "CertificateNames", NULL);
        (void) sd_bus_emit_signal(m->bus, GATE_BUS_PATH, GATE_BUS_INTERFACE, "Reloaded", "u", m->generation);
}

void bus_emit_certificates_reloaded(Manager *m) {
        if (!m->bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus, GATE_BUS_PATH, GATE_BUS_INTERFACE, "CertificateNotAfter",
                                              "CertificateNames", NULL);
        (void) sd_bus_emit_signal(m->bus, GATE_BUS_PATH, GATE_BUS_INTERFACE, "CertificatesReloaded", "t",
                                  m->tls ? tls_credentials_not_after(m->tls) : 0);
}

void bus_emit_state_changed(Manager *m) {
        if (!m->bus)
                return;
        (void) sd_bus_emit_properties_changed(m->bus, GATE_BUS_PATH, GATE_BUS_INTERFACE, "State", NULL);
}
