/* The command line: parses argv and runs one command; returns the process exit code. */
#pragma once

#include <stdbool.h>

#define EXIT_USAGE 2
#define EXIT_CONFIG 78          /* EX_CONFIG from sysexits.h */

int cli_main(int argc, char *argv[]);

/* Whether --user was given: commands that talk to a running daemon use the user bus, else the system
 * bus. */
bool cli_user_bus(void);

/* "gate: MESSAGE" and the --help hint on stderr; returns EXIT_USAGE. Shared by every command. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
