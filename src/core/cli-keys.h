/* The key and usage commands of the command line, working directly on the database. */
#pragma once

/* `gate keys create|list|show|revoke ...` and `gate usage ...`: argv[0] is the command's name. Return
 * the process exit code. */
int cli_keys(int argc, char *argv[]);
int cli_usage(int argc, char *argv[]);
