/* The command line: parses argv and runs one command; returns the process exit code. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/cli.h"
#include "core/config.h"
#include "core/manager.h"
#include "gate-build.h"
#include "shared/log.h"

static void help(FILE *f) {
        fprintf(f,
                "Usage: gate [OPTIONS] COMMAND ...\n"
                "\n"
                "An LLM API gateway: OpenAI- and Anthropic-compatible APIs on port 31145.\n"
                "\n"
                "Commands:\n"
                "  serve                 Run the daemon in the foreground\n"
                "  config check [FILE]   Check the configuration and print the effective one\n"
                "\n"
                "Options:\n"
                "  -h --help             Show this help\n"
                "     --version          Show the version\n"
                "\n"
                "Environment: GATE_CONFIG (config file), DATABASE_URL, GATE_LOG (log level).\n"
                "See gate(8) and gate.conf(5).\n");
}

_printf_(1, 2) static int usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "gate: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'gate --help' for more information.\n");
        return EXIT_USAGE;
}

static int cmd_serve(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        if (argc > 1)
                return usage_error("serve takes no arguments, got '%s'.", argv[1]);

        r = manager_new(&m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        r = manager_start(m);
        if (r == -EINVAL)
                return EXIT_CONFIG;
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

static int cmd_config(int argc, char *argv[]) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *state_dir = NULL;
        int r;

        if (argc < 2 || !streq(argv[1], "check"))
                return usage_error("config: unknown or missing subcommand '%s' (expected 'check').",
                                   argc < 2 ? "" : argv[1]);
        if (argc > 3)
                return usage_error("config check takes at most one FILE, got '%s'.", argv[3]);

        r = manager_state_directory(false, &state_dir);
        if (r < 0) {
                log_error_errno(r, "Failed to determine the state directory: %m");
                return EXIT_FAILURE;
        }
        r = config_load(argc == 3 ? argv[2] : NULL, state_dir, &c, &error);
        if (r < 0) {
                fprintf(stderr, "gate: invalid configuration: %s\n", error ? error : strerror(-r));
                return EXIT_CONFIG;
        }
        config_dump(c, stdout);
        return EXIT_SUCCESS;
}

int cli_main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        int c;

        log_setup();

        /* Options stop at the command: "gate config check --foo" is the command's business. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help(stdout);
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("gate %s\n", GATE_VERSION);
                        return EXIT_SUCCESS;
                case '?':
                default:
                        return usage_error("unknown option '%s'.", argv[optind - 1]);
                }

        if (optind >= argc) {
                help(stderr);
                return EXIT_USAGE;
        }

        const char *cmd = argv[optind];
        if (streq(cmd, "serve"))
                return cmd_serve(argc - optind, argv + optind);
        if (streq(cmd, "config"))
                return cmd_config(argc - optind, argv + optind);
        if (streq(cmd, "help")) {
                help(stdout);
                return EXIT_SUCCESS;
        }
        return usage_error("unknown command '%s'.", cmd);
}
