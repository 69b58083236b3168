/* The command line: parses argv and runs one command; returns the process exit code. */
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/bus.h"
#include "core/cli-keys.h"
#include "core/cli.h"
#include "core/config.h"
#include "core/manager.h"
#include "gate-build.h"
#include "http/request.h"
#include "shared/gettext.h"    /* what a person reads at the terminal is translated (po/); logs are not */
#include "shared/log.h"

static void help(FILE *f) {
        /* TRANSLATORS: keep the command and option names, and the column the descriptions start in. */
        fputs(_("Usage: gate [OPTIONS] COMMAND ...\n"
                "\n"
                "An LLM API gateway: OpenAI- and Anthropic-compatible APIs on port 31145.\n"
                "\n"), f);
        fputs(_("Commands:\n"
                "  serve                 Run the daemon in the foreground\n"
                "  config check [FILE]   Check the configuration and print the effective one\n"
                "  status [--json]       Show the running daemon's state (over D-Bus)\n"
                "  reload [--certificates]\n"
                "                        Reload the configuration (or only the certificates)\n"
                "  keys create --name NAME [OPTIONS]\n"
                "                        Create an API key of gate's own (shown once)\n"
                "  keys list [--json]    List the API keys, without secrets\n"
                "  keys show KEY [--json]\n"
                "                        Show one API key (KEY: its ID or name)\n"
                "  keys update KEY [OPTIONS]\n"
                "                        Change an API key's name, models, limits or expiry\n"
                "  keys revoke KEY       Revoke an API key\n"
                "  usage [--since DATE] [--key KEY] [--json]\n"
                "                        Sum the recorded usage per key and model\n"
                "\n"), f);
        fputs(_("Options:\n"
                "  -h --help             Show this help\n"
                "     --version          Show the version\n"
                "     --user             Talk to a daemon on the user bus (default: system bus)\n"
                "\n"), f);
        fputs(_("Environment: GATE_CONFIG (config file), DATABASE_URL, GATE_LOG (log level).\n"
                "See gate(8) and gate.conf(5).\n"), f);
}

int cli_usage_error(const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "gate: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        fputs(_("Try 'gate --help' for more information.\n"), stderr);
        return EXIT_USAGE;
}

static int cmd_serve(int argc, char *argv[]) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        if (argc > 1)
                return cli_usage_error(_("serve takes no arguments, got '%s'."), argv[1]);

        /* The daemon speaks English in its logs (%m included), whatever the environment says. */
        (void) setlocale(LC_ALL, "C");

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
                return cli_usage_error(_("config: unknown or missing subcommand '%s' (expected 'check')."),
                                   argc < 2 ? "" : argv[1]);
        if (argc > 3)
                return cli_usage_error(_("config check takes at most one FILE, got '%s'."), argv[3]);

        r = manager_state_directory(false, &state_dir);
        if (r < 0) {
                log_error_errno(r, "Failed to determine the state directory: %m");
                return EXIT_FAILURE;
        }
        r = config_load(argc == 3 ? argv[2] : NULL, state_dir, &c, &error);
        if (r < 0) {
                fprintf(stderr, _("gate: invalid configuration: %s\n"), error ? error : strerror(-r));
                return EXIT_CONFIG;
        }
        config_dump(c, stdout);
        return EXIT_SUCCESS;
}

static bool arg_user = false;

bool cli_user_bus(void) {
        return arg_user;
}

static int bus_connect(sd_bus **ret) {
        int r;

        r = arg_user ? sd_bus_open_user(ret) : sd_bus_open_system(ret);
        if (r < 0)
                fprintf(stderr,
                        arg_user ? _("gate: failed to connect to the user bus: %s\n")
                                 : _("gate: failed to connect to the system bus: %s\n"),
                        strerror(-r));
        return r;
}

/* Turns a failed call into a message a person can act on. */
static int bus_call_failed(const char *what, const sd_bus_error *e, int r) {
        if (sd_bus_error_has_name(e, SD_BUS_ERROR_SERVICE_UNKNOWN) ||
            sd_bus_error_has_name(e, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                fprintf(stderr,
                        /* TRANSLATORS: the first %s is the command (reload, status), the second a D-Bus name. */
                        arg_user ? _("gate: %s: gate is not running (no %s on the user bus).\n")
                                 /* TRANSLATORS: the first %s is the command, the second a D-Bus name. */
                                 : _("gate: %s: gate is not running (no %s on the system bus).\n"),
                        what, GATE_BUS_NAME);
        else if (sd_bus_error_has_name(e, SD_BUS_ERROR_ACCESS_DENIED))
                /* TRANSLATORS: %s: the command (reload, status); then the bus's own message, in English. */
                fprintf(stderr, _("gate: %s: access denied (%s). Only root may do this on the system bus.\n"), what,
                        e->message ? e->message : "policy");
        else
                /* TRANSLATORS: %s: the command (reload, status); then the reason, from the bus or the system. */
                fprintf(stderr, _("gate: %s failed: %s\n"), what, e && e->message ? e->message : strerror(-r));
        return sd_bus_error_has_name(e, GATE_BUS_INTERFACE ".Error.InvalidConfig") ? EXIT_CONFIG : EXIT_FAILURE;
}

static int cmd_reload(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        bool certs = false;
        int r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--certificates"))
                        certs = true;
                else if (streq(argv[i], "--user"))
                        arg_user = true;
                else
                        return cli_usage_error(_("reload: unknown argument '%s'."), argv[i]);
        }
        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;
        r = sd_bus_call_method(bus, GATE_BUS_NAME, GATE_BUS_PATH, GATE_BUS_INTERFACE,
                               certs ? "ReloadCertificates" : "Reload", &e, &reply, "");
        if (r < 0)
                return bus_call_failed("reload", &e, r);
        if (certs) {
                uint64_t not_after = 0;
                (void) sd_bus_message_read(reply, "t", &not_after);
                printf(_("Certificates reloaded; earliest expiry %llu (µs since the epoch).\n"),
                       (unsigned long long) not_after);
        } else {
                uint32_t gen = 0;
                (void) sd_bus_message_read(reply, "u", &gen);
                printf(_("Reloaded, generation %u.\n"), gen);
        }
        return EXIT_SUCCESS;
}

static int print_property(sd_bus_message *reply, const char *name, bool json, bool first) {
        char type;
        const char *contents;
        int r;

        r = sd_bus_message_peek_type(reply, &type, &contents);
        if (r < 0)
                return r;
        if (json)
                printf("%s\n  \"%s\": ", first ? "" : ",", name);
        else
                printf("%18s: ", name);

        r = sd_bus_message_enter_container(reply, 'v', contents);
        if (r < 0)
                return r;
        if (streq(contents, "s")) {
                const char *v;
                r = sd_bus_message_read(reply, "s", &v);
                if (r < 0)
                        return r;
                if (json) {
                        _cleanup_(buf_done) Buf b = {};
                        json_escape_append(&b, v);
                        printf("%.*s", (int) buf_len(&b), (const char *) buf_data(&b));
                } else
                        printf("%s", v);
        } else if (streq(contents, "u")) {
                uint32_t v;
                r = sd_bus_message_read(reply, "u", &v);
                if (r < 0)
                        return r;
                printf("%u", v);
        } else if (streq(contents, "t")) {
                uint64_t v;
                r = sd_bus_message_read(reply, "t", &v);
                if (r < 0)
                        return r;
                printf("%llu", (unsigned long long) v);
        } else if (streq(contents, "as")) {
                const char *v;
                bool f = true;
                r = sd_bus_message_enter_container(reply, 'a', "s");
                if (r < 0)
                        return r;
                printf(json ? "[" : "");
                while ((r = sd_bus_message_read(reply, "s", &v)) > 0) {
                        if (json) {
                                _cleanup_(buf_done) Buf b = {};
                                json_escape_append(&b, v);
                                printf("%s%.*s", f ? "" : ",", (int) buf_len(&b), (const char *) buf_data(&b));
                        } else
                                printf("%s%s", f ? "" : ", ", v);
                        f = false;
                }
                if (r < 0)
                        return r;
                printf(json ? "]" : "");
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        } else {
                r = sd_bus_message_skip(reply, contents);
                if (r < 0)
                        return r;
                printf(json ? "null" : "?");
        }
        if (!json)
                printf("\n");
        return sd_bus_message_exit_container(reply);
}

static int cmd_status(int argc, char *argv[]) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_bus_error_free) sd_bus_error e = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        bool json = false, first = true;
        int r;

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--json"))
                        json = true;
                else if (streq(argv[i], "--user"))
                        arg_user = true;
                else
                        return cli_usage_error(_("status: unknown argument '%s'."), argv[i]);
        }
        if (bus_connect(&bus) < 0)
                return EXIT_FAILURE;
        r = sd_bus_call_method(bus, GATE_BUS_NAME, GATE_BUS_PATH, "org.freedesktop.DBus.Properties", "GetAll", &e,
                               &reply, "s", GATE_BUS_INTERFACE);
        if (r < 0)
                return bus_call_failed("status", &e, r);

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                goto bad;
        if (json)
                printf("{");
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *name;
                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        goto bad;
                r = print_property(reply, name, json, first);
                if (r < 0)
                        goto bad;
                first = false;
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        goto bad;
        }
        if (r < 0)
                goto bad;
        if (json)
                printf("\n}\n");
        return EXIT_SUCCESS;
bad:
        fprintf(stderr, _("gate: status: unexpected reply from the daemon: %s\n"), strerror(-r));
        return EXIT_FAILURE;
}

/* Translations for what the command line prints (po/). Only LC_MESSAGES follows the environment: every other
 * category stays "C", because the code the command line shares with the daemon (the configuration parser, HTTP)
 * uses strcasecmp(), tolower() and isalpha(), whose results follow LC_CTYPE (in a Turkish locale 'I' does not
 * fold to 'i'). The translations are still written in LC_CTYPE's character set, looked up
 * here and then set back, so that a terminal in another encoding than UTF-8 gets its own.
 *
 * glibc ignores $LANGUAGE while LC_MESSAGES is "C", but not when it is "C.UTF-8", which is always present:
 * LANG=C.UTF-8 LANGUAGE=de gives German without any other locale installed. */
static void i18n_setup(void) {
        char codeset[64] = "";

        (void) setlocale(LC_MESSAGES, "");
        if (setlocale(LC_CTYPE, "")) {
                snprintf(codeset, sizeof codeset, "%s", nl_langinfo(CODESET));
                (void) setlocale(LC_CTYPE, "C");
        }
        (void) bindtextdomain(GETTEXT_PACKAGE, GATE_LOCALEDIR);
        if (codeset[0])
                (void) bind_textdomain_codeset(GETTEXT_PACKAGE, codeset);
        (void) textdomain(GETTEXT_PACKAGE);
}

int cli_main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_USER };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "user", no_argument, NULL, ARG_USER },
                {}
        };
        int c;

        i18n_setup();
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
                case ARG_USER:
                        arg_user = true;
                        break;
                case '?':
                default:
                        return cli_usage_error(_("unknown option '%s'."), argv[optind - 1]);
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
        if (streq(cmd, "keys"))
                return cli_keys(argc - optind, argv + optind);
        if (streq(cmd, "usage"))
                return cli_usage(argc - optind, argv + optind);
        if (streq(cmd, "status"))
                return cmd_status(argc - optind, argv + optind);
        if (streq(cmd, "reload"))
                return cmd_reload(argc - optind, argv + optind);
        if (streq(cmd, "help")) {
                help(stdout);
                return EXIT_SUCCESS;
        }
        return cli_usage_error(_("unknown command '%s'."), cmd);
}
