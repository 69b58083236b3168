/* Service manager notifications (sd_notify): readiness, status, reloading, stopping. */
#include <systemd/sd-daemon.h>
#include <time.h>

#include "core/notify.h"
#include "shared/util.h"

/* sd_notify() is a no-op without $NOTIFY_SOCKET, so these are safe outside systemd. We keep the
 * environment (unset_environment=0): a reload notifies again. */

void notify_ready(const char *status) {
        (void) sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void notify_status(const char *status) {
        (void) sd_notifyf(0, "STATUS=%s", status);
}

void notify_reloading(const char *why) {
        /* MONOTONIC_USEC is read by systemd >= 253 (Type=notify-reload) only; 252 ignores it. */
        (void) sd_notifyf(0, "RELOADING=1\nSTATUS=Reloading (%s)\nMONOTONIC_USEC=%llu", why,
                          (unsigned long long) now_usec(CLOCK_MONOTONIC));
}

void notify_stopping(const char *status) {
        (void) sd_notifyf(0, "STOPPING=1\nSTATUS=%s", status);
}

void notify_extend_timeout(usec_t usec) {
        (void) sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long) usec);
}
