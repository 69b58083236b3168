/* Service manager notifications (sd_notify): readiness, status, reloading, stopping. */
#pragma once

#include "shared/macro.h"

void notify_ready(const char *status);
void notify_status(const char *status);
void notify_reloading(const char *why);
void notify_stopping(const char *status);
void notify_extend_timeout(usec_t usec);
