/* The command line: parses argv and runs one command; returns the process exit code. */
#pragma once

#define EXIT_USAGE 2
#define EXIT_CONFIG 78          /* EX_CONFIG from sysexits.h */

int cli_main(int argc, char *argv[]);
