/* D-Bus: the ai.hellas.Gate1 object on /ai/hellas/Gate (sd-bus on the manager's sd-event loop). */
#pragma once

#include <systemd/sd-bus.h>

typedef struct Manager Manager;

#define GATE_BUS_NAME "ai.hellas.Gate"
#define GATE_BUS_PATH "/ai/hellas/Gate"
#define GATE_BUS_INTERFACE "ai.hellas.Gate1"

/* Connects to the bus chosen by $GATE_BUS ("system", "user", "none"; default: system when running as
 * root or under the system manager, else user), exports the object and requests the name. A bus that
 * cannot be reached is logged and survived: HTTP keeps serving without it. */
int bus_start(Manager *m);
void bus_stop(Manager *m);

/* Emitted by the manager after the corresponding event. */
void bus_emit_reloaded(Manager *m);
void bus_emit_certificates_reloaded(Manager *m);
void bus_emit_state_changed(Manager *m);

/* The vtable, for the introspection test. */
extern const sd_bus_vtable gate_bus_vtable[];
