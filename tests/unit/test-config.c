/* Unit tests for the configuration loader: parsers, defaults, sources and precedence, errors, dump. */
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

#include "core/config.h"
#include "shared/log.h"
#include "shared/util.h"
#include "tests.h"

#define STATE "/var/lib/gate"

/* The example from the seed document, byte for byte. */
static const char seed_toml[] =
        "[server]\n"
        "bind = \"127.0.0.1:31145\"\n"
        "\n"
        "[database]\n"
        "url = \"sqlite://gate.db\"\n"
        "\n"
        "[p2p]\n"
        "enabled = true\n"
        "listen_port = 4919\n"
        "\n"
        "[relay]\n"
        "enabled = true\n"
        "endpoint = \"https://relay.hellas.ai\"\n";

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void rm_rf(char **dir) {
        if (*dir)
                (void) nftw(*dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(*dir);
}

static char *make_tmpdir(void) {
        char t[] = "/tmp/test-config-XXXXXX";
        return mkdtemp(t) ? strdup(t) : NULL;
}

/* Writes dir/rel (creating parent directories) and returns the full path. */
static char *write_file(const char *dir, const char *rel, const char *content) {
        _cleanup_free_ char *p = NULL, *parent = NULL;
        FILE *f;

        if (asprintf(&p, "%s/%s", dir, rel) < 0)
                return NULL;
        parent = strdup(p);
        if (!parent)
                return NULL;
        *strrchr(parent, '/') = 0;
        if (mkdir_p(parent, 0755) < 0)
                return NULL;
        f = fopen(p, "we");
        if (!f)
                return NULL;
        fputs(content, f);
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(p);
}

static int load_string(const char *s, Config **ret, char **ret_error) {
        return config_load_data("test.conf", s, strlen(s), STATE, ret, ret_error);
}

/* Loads "[group]\nkey = value\n"; returns what config_load_data returns. */
static int load_one(const char *group, const char *key, const char *value, Config **ret, char **ret_error) {
        _cleanup_free_ char *s = NULL;

        if (asprintf(&s, "[%s]\n%s = %s\n", group, key, value) < 0)
                return -ENOMEM;
        return load_string(s, ret, ret_error);
}

static char *dump_to_string(const Config *c) {
        char *s = NULL;
        size_t n = 0;
        FILE *f = open_memstream(&s, &n);

        if (!f)
                return NULL;
        config_dump(c, f);
        fclose(f);
        return s;
}

/* Runs with stderr going to a file and returns what was written (the log output). */
typedef struct Capture {
        int saved;
        char path[64];
} Capture;

static int capture_begin(Capture *cap) {
        int fd;

        strcpy(cap->path, "/tmp/test-config-stderr-XXXXXX");
        fd = mkstemp(cap->path);
        if (fd < 0)
                return -errno;
        fflush(stderr);
        cap->saved = dup(STDERR_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        return 0;
}

static char *capture_end(Capture *cap) {
        char *s = NULL;

        fflush(stderr);
        dup2(cap->saved, STDERR_FILENO);
        close(cap->saved);
        if (read_full_file(cap->path, 1 << 20, &s, NULL) < 0)
                s = NULL;
        unlink(cap->path);
        return s;
}

TEST(defaults) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(config_load_files(NULL, STATE, &c, &error));
        ASSERT_NULL(error);
        ASSERT_NOT_NULL(c);

        ASSERT_EQ(strv_length(c->server_bind), 2);
        ASSERT_STREQ(c->server_bind[0], "127.0.0.1:31145");
        ASSERT_STREQ(c->server_bind[1], "[::1]:31145");
        ASSERT_EQ(c->server_max_connections, 4096);
        ASSERT_EQ(c->server_max_connections_per_ip, 512);
        ASSERT_EQ(c->server_max_body_bytes, 32ULL << 20);
        ASSERT_EQ(c->server_max_header_bytes, 64ULL << 10);
        ASSERT_EQ(c->server_max_headers, 128);
        ASSERT_EQ(c->server_header_timeout, 30 * USEC_PER_SEC);
        ASSERT_EQ(c->server_body_timeout, 60 * USEC_PER_SEC);
        ASSERT_EQ(c->server_idle_timeout, 75 * USEC_PER_SEC);
        ASSERT_EQ(c->server_send_timeout, 60 * USEC_PER_SEC);
        ASSERT_EQ(c->server_drain_timeout, 30 * USEC_PER_SEC);
        ASSERT_EQ(c->server_h2_max_concurrent_streams, 128);

        ASSERT_TRUE(c->auth_loopback_without_key);
        ASSERT_EQ(c->auth_passthrough, PASSTHROUGH_LOOPBACK);

        ASSERT_STREQ(c->database_url, "sqlite:///var/lib/gate/gate.db");
        ASSERT_STREQ(c->database_path, "/var/lib/gate/gate.db");

        ASSERT_NOT_NULL(c->tls_bind);
        ASSERT_EQ(strv_length(c->tls_bind), 0);
        ASSERT_STREQ(c->tls_cert_dir, "/var/lib/gate/certs");
        ASSERT_NULL(c->tls_default_name);

        ASSERT_TRUE(c->p2p_enabled);
        ASSERT_EQ(c->p2p_listen_port, 4919);
        ASSERT_NOT_NULL(c->p2p_peers);
        ASSERT_EQ(strv_length(c->p2p_peers), 0);

        ASSERT_FALSE(c->relay_enabled);
        ASSERT_STREQ(c->relay_endpoint, "https://relay.hellas.ai");

        ASSERT_EQ(c->n_providers, 0);
        ASSERT_EQ(strv_length(c->sources), 0);
        ASSERT_STREQ(c->state_dir, STATE);
}

TEST(relative_state_dir) {
        _cleanup_(config_unrefp) Config *c = NULL, *d = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(config_load_files(NULL, "state", &c, &error));
        ASSERT_STREQ(c->database_path, "state/gate.db");
        ASSERT_STREQ(c->tls_cert_dir, "state/certs");

        ASSERT_ERROR(config_load_files(NULL, NULL, &d, &error), EINVAL);
        ASSERT_NULL(d);
        ASSERT_CONTAINS(error, "state directory");
}

TEST(seed_example) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *path = NULL;

        ASSERT_NOT_NULL(dir);
        path = write_file(dir, "gate.toml", seed_toml);
        ASSERT_NOT_NULL(path);

        unsetenv("DATABASE_URL");
        ASSERT_OK(config_load(path, STATE, &c, &error));
        ASSERT_NULL(error);
        ASSERT_EQ(strv_length(c->server_bind), 1);
        ASSERT_STREQ(c->server_bind[0], "127.0.0.1:31145");
        ASSERT_STREQ(c->database_url, "sqlite://gate.db");
        ASSERT_STREQ(c->database_path, STATE "/gate.db");
        ASSERT_TRUE(c->p2p_enabled);
        ASSERT_EQ(c->p2p_listen_port, 4919);
        ASSERT_TRUE(c->relay_enabled);
        ASSERT_STREQ(c->relay_endpoint, "https://relay.hellas.ai");
        ASSERT_EQ(strv_length(c->sources), 1);
        ASSERT_STREQ(c->sources[0], path);
}

TEST(unquote) {
        static const struct {
                const char *in, *out;
        } good[] = {
                { "plain", "plain" },
                { "  spaced value \t", "spaced value" },
                { "\"quoted\"", "quoted" },
                { "  \"  keeps inner space \"  ", "  keeps inner space " },
                { "\"a\\\"b\\\\c\"", "a\"b\\c" },
                { "\"tab\\there\\n\\r\"", "tab\there\n\r" },
                { "'literal \\n'", "literal \\n" },
                { "\"\"", "" },
                { "", "" },
                { "value # comment", "value" },
                { "\"value\" # comment", "value" },
                { "\"with # hash\"", "with # hash" },
                { "abc#def", "abc#def" },
                { "# only a comment", "" },
                { "a\"b", "a\"b" },
        };
        static const char *const bad[] = {
                "\"unterminated",
                "\"bad escape \\q\"",
                "\"a\" trailing",
                "'a'b",
                "\"\\",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_free_ char *s = NULL;
                ASSERT_OK(config_value_unquote(good[i].in, &s));
                ASSERT_STREQ(s, good[i].out);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *s = NULL;
                ASSERT_ERROR(config_value_unquote(bad[i], &s), EINVAL);
                ASSERT_NULL(s);
        }
}

static bool strv_equals(char **a, const char *const *b) {
        size_t i;

        for (i = 0; a && a[i] && b[i]; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return (!a || !a[i]) && !b[i];
}

TEST(split) {
        static const struct {
                const char *in;
                const char *out[4];
        } good[] = {
                { "", { NULL } },
                { "   ", { NULL } },
                { "a", { "a", NULL } },
                { "a,b", { "a", "b", NULL } },
                { "a, b c", { "a", "b", "c", NULL } },
                { "a;b;", { "a", "b", NULL } },
                { "\"a b\"", { "a", "b", NULL } },
                { "\"a\", \"b\"", { "a", "b", NULL } },
                { "\"a,b\" c", { "a,b", "c", NULL } },
                { "[\"a\", \"b\"]", { "a", "b", NULL } },
                { "[ \"a b\" , 'c' ]", { "a b", "c", NULL } },
                { "[]", { NULL } },
                { "[ ]  # nothing", { NULL } },
                { "[\"x\"] # comment", { "x", NULL } },
                { "[::1]:31145, 127.0.0.1:1", { "[::1]:31145", "127.0.0.1:1", NULL } },
                { "[\"[::1]:31145\"]", { "[::1]:31145", NULL } },
                { "a # b c", { "a", NULL } },
                { "a#b", { "a#b", NULL } },
                { "\"a #b\"", { "a", "#b", NULL } },
        };
        static const char *const bad[] = {
                "[\"a\"",
                "[\"a\" # unterminated",
                "\"a",
                "\"a\"b",
                "[\"a\"] b",
                "\"\\x\"",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                _cleanup_strv_free_ char **l = NULL;
                ASSERT_OK(config_value_split(good[i].in, &l));
                ASSERT_NOT_NULL(l);
                if (!strv_equals(l, good[i].out))
                        TEST_FAIL("split(\"%s\") gave %zu items, first \"%s\"", good[i].in, strv_length(l),
                                  l[0] ?: "(none)");
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char **l = NULL;
                ASSERT_ERROR(config_value_split(bad[i], &l), EINVAL);
                ASSERT_NULL(l);
        }
}

/* Every typed key with values it must accept and values it must refuse. */
typedef struct ValueCase {
        const char *group, *key, *value;
        bool ok;
} ValueCase;

static const ValueCase value_cases[] = {
        /* size */
        { "server", "max_body_bytes", "32M", true },
        { "server", "max_body_bytes", "\"64K\"", true },
        { "server", "max_body_bytes", "1024", true },
        { "server", "max_body_bytes", "1GiB", true },
        { "server", "max_body_bytes", "12Q", false },
        { "server", "max_body_bytes", "1023", false },
        { "server", "max_body_bytes", "", false },
        { "server", "max_body_bytes", "-5M", false },
        { "server", "max_body_bytes", "99999999999999999999", false },
        { "server", "max_header_bytes", "16M", true },
        { "server", "max_header_bytes", "17M", false },
        /* uint32 */
        { "server", "max_connections", "1", true },
        { "server", "max_connections", "0", false },
        { "server", "max_connections", "-1", false },
        { "server", "max_connections", "4294967296", false },
        { "server", "max_connections", "12abc", false },
        { "server", "max_connections_per_ip", "64", true },
        { "server", "max_headers", "0", false },
        { "server", "h2_max_concurrent_streams", "1", true },
        { "server", "h2_max_concurrent_streams", "10000", true },
        { "server", "h2_max_concurrent_streams", "10001", false },
        { "server", "h2_max_concurrent_streams", "0", false },
        /* timespan */
        { "server", "header_timeout", "30s", true },
        { "server", "header_timeout", "500ms", true },
        { "server", "header_timeout", "2min", true },
        { "server", "header_timeout", "1h", true },
        { "server", "header_timeout", "10", true },
        { "server", "header_timeout", "0", false },
        { "server", "header_timeout", "0s", false },
        { "server", "body_timeout", "soon", false },
        { "server", "idle_timeout", "8h", true },
        { "server", "send_timeout", "5 fortnights", false },
        { "server", "drain_timeout", "200h", false },
        /* address list */
        { "server", "bind", "127.0.0.1:8080", true },
        { "server", "bind", "[::1]:8080 *:9090", true },
        { "server", "bind", "localhost:1", true },
        { "server", "bind", "\"0.0.0.0:80\", \"[::]:80\"", true },
        { "server", "bind", "[\"0.0.0.0:80\"]", true },
        { "server", "bind", "127.0.0.1", false },
        { "server", "bind", "127.0.0.1:65536", false },
        { "server", "bind", "example.com:80", false },
        { "server", "bind", "::1:80", false },
        { "tls", "bind", "0.0.0.0:443", true },
        { "tls", "bind", "0.0.0.0:https", false },
        /* bool */
        { "auth", "loopback_without_key", "true", true },
        { "auth", "loopback_without_key", "false", true },
        { "auth", "loopback_without_key", "yes", true },
        { "auth", "loopback_without_key", "0", true },
        { "auth", "loopback_without_key", "\"true\"", true },
        { "auth", "loopback_without_key", "maybe", false },
        { "auth", "loopback_without_key", "", false },
        { "p2p", "enabled", "TRUE!", false },
        /* enum */
        { "auth", "passthrough", "loopback", true },
        { "auth", "passthrough", "always", true },
        { "auth", "passthrough", "never", true },
        { "auth", "passthrough", "sometimes", false },
        /* port */
        { "p2p", "listen_port", "1", true },
        { "p2p", "listen_port", "65535", true },
        { "p2p", "listen_port", "0", false },
        { "p2p", "listen_port", "65536", false },
        { "p2p", "listen_port", "http", false },
        /* strings, paths, urls */
        { "p2p", "peers", "node1 node2", true },
        { "p2p", "peers", "[\"node1\"", false },
        { "server", "bind", "\"127.0.0.1:1", false },
        { "tls", "cert_dir", "/etc/gate/certs", true },
        { "tls", "cert_dir", "\"unterminated", false },
        { "tls", "default_name", "gate.example.org", true },
        { "relay", "endpoint", "https://relay.example.org", true },
        { "relay", "endpoint", "http://127.0.0.1:8080/x", true },
        { "relay", "endpoint", "ftp://relay.example.org", false },
        { "relay", "endpoint", "https://", false },
        { "relay", "endpoint", "relay.example.org", false },
        /* database url */
        { "database", "url", "sqlite:///abs/gate.db", true },
        { "database", "url", "sqlite://rel.db", true },
        { "database", "url", "sqlite:rel.db", true },
        { "database", "url", "/bare/path.db", true },
        { "database", "url", "sqlite::memory:", true },
        { "database", "url", "postgres://user@host/db", false },
        { "database", "url", "mysql:x", false },
        { "database", "url", "sqlite://", false },
        { "database", "url", "sqlite:///var/lib/", false },
};

TEST(parsers) {
        for (size_t i = 0; i < ELEMENTSOF(value_cases); i++) {
                const ValueCase *v = value_cases + i;
                _cleanup_(config_unrefp) Config *c = NULL;
                _cleanup_free_ char *error = NULL;
                int r;

                r = load_one(v->group, v->key, v->value, &c, &error);
                if (v->ok && r < 0)
                        TEST_FAIL("[%s] %s = %s refused: %s", v->group, v->key, v->value, error);
                if (!v->ok) {
                        if (r != -EINVAL)
                                TEST_FAIL("[%s] %s = %s accepted (r=%d)", v->group, v->key, v->value, r);
                        ASSERT_NULL(c);
                        /* Every refusal names the file, group and key. */
                        ASSERT_CONTAINS(error, "test.conf: ");
                        ASSERT_CONTAINS(error, v->group);
                        ASSERT_CONTAINS(error, v->key);
                }
        }
}

TEST(parsed_values) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(load_string("[server]\n"
                              "bind = [::]:80, 0.0.0.0:80\n"
                              "max_connections = 100\n"
                              "max_connections_per_ip = \"10\"\n"
                              "max_body_bytes = 1G\n"
                              "max_header_bytes = 8K\n"
                              "max_headers = 50\n"
                              "header_timeout = 500ms\n"
                              "body_timeout = 2min\n"
                              "idle_timeout = 1h\n"
                              "send_timeout = 7\n"
                              "drain_timeout = 5s\n"
                              "h2_max_concurrent_streams = 64\n"
                              "[auth]\n"
                              "loopback_without_key = no\n"
                              "passthrough = never\n"
                              "[database]\n"
                              "url = sqlite:///srv/gate/db.sqlite?mode=rwc\n"
                              "[tls]\n"
                              "bind = 0.0.0.0:443;[::]:443;\n"
                              "cert_dir = \"/srv/certs\"\n"
                              "default_name = 'gate.example.org'\n"
                              "[p2p]\n"
                              "enabled = false\n"
                              "listen_port = 5000\n"
                              "peers = [\"node-a\", \"node-b@10.0.0.1:4919\"]\n"
                              "[relay]\n"
                              "enabled = 1\n"
                              "endpoint = http://relay.local:8080\n",
                              &c, &error));
        ASSERT_EQ(strv_length(c->server_bind), 2);
        ASSERT_STREQ(c->server_bind[0], "[::]:80");
        ASSERT_STREQ(c->server_bind[1], "0.0.0.0:80");
        ASSERT_EQ(c->server_max_connections, 100);
        ASSERT_EQ(c->server_max_connections_per_ip, 10);
        ASSERT_EQ(c->server_max_body_bytes, 1ULL << 30);
        ASSERT_EQ(c->server_max_header_bytes, 8192);
        ASSERT_EQ(c->server_max_headers, 50);
        ASSERT_EQ(c->server_header_timeout, 500 * USEC_PER_MSEC);
        ASSERT_EQ(c->server_body_timeout, 120 * USEC_PER_SEC);
        ASSERT_EQ(c->server_idle_timeout, 3600 * USEC_PER_SEC);
        ASSERT_EQ(c->server_send_timeout, 7 * USEC_PER_SEC);
        ASSERT_EQ(c->server_drain_timeout, 5 * USEC_PER_SEC);
        ASSERT_EQ(c->server_h2_max_concurrent_streams, 64);
        ASSERT_FALSE(c->auth_loopback_without_key);
        ASSERT_EQ(c->auth_passthrough, PASSTHROUGH_NEVER);
        ASSERT_STREQ(c->database_path, "/srv/gate/db.sqlite");
        ASSERT_EQ(strv_length(c->tls_bind), 2);
        ASSERT_STREQ(c->tls_bind[1], "[::]:443");
        ASSERT_STREQ(c->tls_cert_dir, "/srv/certs");
        ASSERT_STREQ(c->tls_default_name, "gate.example.org");
        ASSERT_FALSE(c->p2p_enabled);
        ASSERT_EQ(c->p2p_listen_port, 5000);
        ASSERT_EQ(strv_length(c->p2p_peers), 2);
        ASSERT_STREQ(c->p2p_peers[1], "node-b@10.0.0.1:4919");
        ASSERT_TRUE(c->relay_enabled);
        ASSERT_STREQ(c->relay_endpoint, "http://relay.local:8080");
}

TEST(database_paths) {
        static const struct {
                const char *url, *path;
        } cases[] = {
                { "sqlite:///abs/gate.db", "/abs/gate.db" },
                { "sqlite://gate.db", STATE "/gate.db" },
                { "sqlite://sub/gate.db", STATE "/sub/gate.db" },
                { "sqlite:rel.db", STATE "/rel.db" },
                { "sqlite:/abs.db", "/abs.db" },
                { "SQLite://x.db", STATE "/x.db" },
                { "/bare/abs.db", "/bare/abs.db" },
                { "bare.db", STATE "/bare.db" },
                { "./dir:colon.db", STATE "/./dir:colon.db" },
                { "sqlite::memory:", ":memory:" },
                { "\"sqlite://quoted.db\"", STATE "/quoted.db" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(config_unrefp) Config *c = NULL;
                _cleanup_free_ char *error = NULL;

                ASSERT_OK(load_one("database", "url", cases[i].url, &c, &error));
                ASSERT_STREQ(c->database_path, cases[i].path);
        }
}

TEST(error_message) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *e3 = NULL;

        ASSERT_ERROR(load_one("server", "max_body_bytes", "\"12Q\"", &c, &error), EINVAL);
        ASSERT_NULL(c);
        ASSERT_STREQ(error, "test.conf: [server] max_body_bytes = \"12Q\": invalid size");

        ASSERT_ERROR(load_one("server", "max_body_bytes", "100", &c, &e2), EINVAL);
        ASSERT_CONTAINS(e2, "test.conf: [server] max_body_bytes = \"100\": out of range");
        ASSERT_CONTAINS(e2, "1K");

        /* Long values are cut short: a message is not the place for a pasted file. */
        _cleanup_free_ char *e4 = NULL, *long_value = malloc(1001);
        ASSERT_NOT_NULL(long_value);
        memset(long_value, 'x', 1000);
        long_value[1000] = 0;
        ASSERT_ERROR(load_one("server", "max_headers", long_value, &c, &e4), EINVAL);
        ASSERT_CONTAINS(e4, "xxx...\": invalid number");
        ASSERT_TRUE(strlen(e4) < 400);

        /* Control characters are escaped, so the message stays on one line. */
        ASSERT_ERROR(load_one("auth", "passthrough", "\"a\\nb\"", &c, &e3), EINVAL);
        ASSERT_STREQ(e3, "test.conf: [auth] passthrough = \"a\\x0ab\": expected loopback, always or never");
}

TEST(error_stops_at_first_and_names_file) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *a = NULL, *b = NULL;

        ASSERT_NOT_NULL(dir);
        a = write_file(dir, "a.conf", "[server]\nmax_connections = 10\n");
        b = write_file(dir, "b.conf", "[p2p]\nlisten_port = 99999\n");
        ASSERT_NOT_NULL(a);
        ASSERT_NOT_NULL(b);

        char *const paths[] = { a, b, NULL };
        ASSERT_ERROR(config_load_files(paths, STATE, &c, &error), EINVAL);
        ASSERT_NULL(c);
        ASSERT_CONTAINS(error, b);
        ASSERT_CONTAINS(error, "[p2p] listen_port = \"99999\"");
}

TEST(syntax_error) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *e3 = NULL, *e4 = NULL, *path = NULL;

        ASSERT_NOT_NULL(dir);
        path = write_file(dir, "broken.conf",
                          "# comment\n[server]\nthis is not a key value pair\nbind = 1.2.3.4:5\n");
        ASSERT_NOT_NULL(path);

        char *const paths[] = { path, NULL };
        ASSERT_ERROR(config_load_files(paths, STATE, &c, &error), EINVAL);
        ASSERT_NULL(c);
        ASSERT_CONTAINS(error, path);
        ASSERT_CONTAINS(error, "broken.conf:3:");

        ASSERT_ERROR(load_string("bind = 1.2.3.4:5\n", &c, &e2), EINVAL);
        ASSERT_CONTAINS(e2, "test.conf:1:");

        ASSERT_ERROR(load_string("[server\n", &c, &e3), EINVAL);
        ASSERT_CONTAINS(e3, "test.conf:1:");

        /* A pasted secret on a line of its own is not repeated whole in the message. */
        ASSERT_ERROR(load_string("[provider.x]\nsk-0123456789abcdefSECRETSECRET\n", &c, &e4), EINVAL);
        ASSERT_CONTAINS(e4, "test.conf:2:");
        ASSERT_FALSE(strstr(e4, "SECRETSECRET"));
}

TEST(invalid_utf8) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_ERROR(load_string("[tls]\ndefault_name = \xff\xfe\n", &c, &error), EINVAL);
        ASSERT_CONTAINS(error, "[tls] default_name");
        ASSERT_CONTAINS(error, "UTF-8");
}

TEST(missing_file) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;
        char *const paths[] = { (char *) "/nonexistent/gate.conf", NULL };

        ASSERT_ERROR(config_load_files(paths, STATE, &c, &error), ENOENT);
        ASSERT_NULL(c);
        ASSERT_CONTAINS(error, "/nonexistent/gate.conf");
}

TEST(unknown_keys_warn) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *log = NULL;
        Capture cap;
        int saved_level = log_get_max_level(), r;

        log_set_max_level(LOG_INFO);
        ASSERT_OK(capture_begin(&cap));
        r = load_string("[server]\n"
                        "bind = 127.0.0.1:1\n"
                        "colour = blue\n"
                        "[wibble]\n"
                        "x = 1\n"
                        "[provider.openai]\n"
                        "type = openai\n"
                        "[provider.]\n"
                        "y = 2\n",
                        &c, &error);
        log = capture_end(&cap);
        log_set_max_level(saved_level);

        ASSERT_OK(r);
        ASSERT_STREQ(c->server_bind[0], "127.0.0.1:1");
        ASSERT_CONTAINS(log, "test.conf: [server] unknown key \"colour\"");
        ASSERT_CONTAINS(log, "test.conf: unknown group [wibble]");
        ASSERT_CONTAINS(log, "[provider.]");
        /* Provider groups belong to another subsystem: no warning. */
        ASSERT_FALSE(strstr(log, "openai"));
        ASSERT_EQ(c->n_providers, 1);
}

TEST(search_paths_and_precedence) {
        _cleanup_(rm_rf) char *root = make_tmpdir();
        _cleanup_strv_free_ char **paths = NULL;
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *p1 = NULL, *p2 = NULL, *p3 = NULL, *p4 = NULL, *p5 = NULL,
                            *p6 = NULL, *sub = NULL;

        ASSERT_NOT_NULL(root);

        /* Nothing there: no files, and loading them gives the defaults. */
        ASSERT_OK(config_search_paths(root, &paths));
        ASSERT_NOT_NULL(paths);
        ASSERT_EQ(strv_length(paths), 0);
        strv_free(TAKE_PTR(paths));

        p1 = write_file(root, "usr/lib/gate/gate.conf",
                        "[server]\nmax_connections = 1\nmax_headers = 1\nmax_body_bytes = 1K\n"
                        "idle_timeout = 1s\n");
        p2 = write_file(root, "etc/gate/gate.conf",
                        "[server]\nmax_headers = 2\nmax_body_bytes = 2K\nidle_timeout = 2s\n");
        p3 = write_file(root, "etc/gate/gate.conf.d/20-b.conf", "[server]\nidle_timeout = 4s\n");
        p4 = write_file(root, "etc/gate/gate.conf.d/10-a.conf",
                        "[server]\nmax_body_bytes = 3K\nidle_timeout = 3s\n");
        /* Not configuration: wrong suffix, hidden, a directory. */
        p5 = write_file(root, "etc/gate/gate.conf.d/30-c.conf.disabled", "[server]\nidle_timeout = 9s\n");
        p6 = write_file(root, "etc/gate/gate.conf.d/.40-d.conf", "[server]\nidle_timeout = 9s\n");
        ASSERT_OK(asprintf(&sub, "%s/etc/gate/gate.conf.d/50-dir.conf", root));
        ASSERT_OK(mkdir_p(sub, 0755));
        ASSERT_TRUE(p1 && p2 && p3 && p4 && p5 && p6);

        ASSERT_OK(config_search_paths(root, &paths));
        ASSERT_EQ(strv_length(paths), 4);
        ASSERT_STREQ(paths[0], p1);
        ASSERT_STREQ(paths[1], p2);
        ASSERT_STREQ(paths[2], p4);
        ASSERT_STREQ(paths[3], p3);

        ASSERT_OK(config_load_files(paths, STATE, &c, &error));
        ASSERT_EQ(c->server_max_connections, 1);                       /* only in /usr/lib */
        ASSERT_EQ(c->server_max_headers, 2);                           /* /etc beats /usr/lib */
        ASSERT_EQ(c->server_max_body_bytes, 3072);                     /* drop-in beats /etc */
        ASSERT_EQ(c->server_idle_timeout, 4 * USEC_PER_SEC);           /* 20-b after 10-a */
        ASSERT_EQ(c->server_send_timeout, 60 * USEC_PER_SEC);          /* nowhere: default */
        ASSERT_EQ(strv_length(c->sources), 4);
        ASSERT_STREQ(c->sources[3], p3);
}

TEST(lists_replace_and_clear) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *a = NULL, *b = NULL;

        ASSERT_NOT_NULL(dir);
        a = write_file(dir, "a.conf", "[server]\nbind = 10.0.0.1:1 10.0.0.2:2\n[p2p]\npeers = a b\n");
        b = write_file(dir, "b.conf", "[server]\nbind = 10.0.0.3:3\n[p2p]\npeers =\n");
        ASSERT_TRUE(a && b);

        char *const paths[] = { a, b, NULL };
        ASSERT_OK(config_load_files(paths, STATE, &c, &error));
        ASSERT_EQ(strv_length(c->server_bind), 1);
        ASSERT_STREQ(c->server_bind[0], "10.0.0.3:3");
        ASSERT_NOT_NULL(c->p2p_peers);
        ASSERT_EQ(strv_length(c->p2p_peers), 0);
}

TEST(gate_config_env) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *e3 = NULL, *a = NULL, *b = NULL, *missing = NULL;

        ASSERT_NOT_NULL(dir);
        unsetenv("DATABASE_URL");
        a = write_file(dir, "a.conf", "[server]\nmax_headers = 11\n");
        b = write_file(dir, "b.conf", "[server]\nmax_headers = 22\n");
        ASSERT_TRUE(a && b);

        ASSERT_OK(setenv("GATE_CONFIG", a, 1));
        ASSERT_OK(config_load(NULL, STATE, &c, &error));
        ASSERT_EQ(c->server_max_headers, 11);
        ASSERT_EQ(strv_length(c->sources), 1);
        ASSERT_STREQ(c->sources[0], a);

        /* An explicit file beats GATE_CONFIG. */
        ASSERT_OK(config_load(b, STATE, &d, &e2));
        ASSERT_EQ(d->server_max_headers, 22);

        /* GATE_CONFIG naming a missing file is an error, not a silent fallback to defaults. */
        ASSERT_OK(asprintf(&missing, "%s/missing.conf", dir));
        ASSERT_OK(setenv("GATE_CONFIG", missing, 1));
        ASSERT_ERROR(config_load(NULL, STATE, &e, &e3), ENOENT);
        ASSERT_NULL(e);
        ASSERT_CONTAINS(e3, missing);

        unsetenv("GATE_CONFIG");
}

TEST(database_url_env) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL, *d = NULL, *e = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *e3 = NULL, *path = NULL;

        ASSERT_NOT_NULL(dir);
        path = write_file(dir, "gate.conf", "[database]\nurl = sqlite:///from/file.db\n");
        ASSERT_NOT_NULL(path);
        char *const paths[] = { path, NULL };

        ASSERT_OK(setenv("DATABASE_URL", "sqlite:///from/env.db", 1));
        ASSERT_OK(config_load_files(paths, STATE, &c, &error));
        ASSERT_STREQ(c->database_url, "sqlite:///from/env.db");
        ASSERT_STREQ(c->database_path, "/from/env.db");
        ASSERT_EQ(strv_length(c->sources), 2);
        ASSERT_STREQ(c->sources[1], "$DATABASE_URL");

        /* Empty means unset. */
        ASSERT_OK(setenv("DATABASE_URL", "", 1));
        ASSERT_OK(config_load_files(paths, STATE, &d, &e2));
        ASSERT_STREQ(d->database_path, "/from/file.db");

        /* A bad one is an error that names the variable, without echoing the password. */
        ASSERT_OK(setenv("DATABASE_URL", "postgres://gate:hunter2@db.example.org/gate", 1));
        ASSERT_ERROR(config_load_files(paths, STATE, &e, &e3), EINVAL);
        ASSERT_NULL(e);
        ASSERT_CONTAINS(e3, "$DATABASE_URL: [database] url = ");
        ASSERT_CONTAINS(e3, "postgres");
        ASSERT_CONTAINS(e3, "only sqlite");
        ASSERT_FALSE(strstr(e3, "hunter2"));

        unsetenv("DATABASE_URL");
}

TEST(reload_keeps_old_on_error) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *current = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *a = NULL, *b = NULL;
        Config *next = NULL;

        ASSERT_NOT_NULL(dir);
        a = write_file(dir, "a.conf", "[server]\nmax_connections = 77\n");
        b = write_file(dir, "b.conf", "[server]\nmax_connections = 78\nmax_body_bytes = lots\n");
        ASSERT_TRUE(a && b);

        char *const pa[] = { a, NULL }, *const pb[] = { b, NULL };
        ASSERT_OK(config_load_files(pa, STATE, &current, &error));
        ASSERT_EQ(current->server_max_connections, 77);

        /* The reload fails as a whole: nothing half-applied, nothing returned. */
        ASSERT_ERROR(config_load_files(pb, STATE, &next, &e2), EINVAL);
        ASSERT_NULL(next);
        ASSERT_CONTAINS(e2, "max_body_bytes");
        ASSERT_EQ(current->server_max_connections, 77);
}

TEST(refcount) {
        _cleanup_free_ char *error = NULL;
        Config *c = NULL;

        ASSERT_NULL(config_unref(NULL));
        ASSERT_NULL(config_ref(NULL));
        ASSERT_OK(config_load_files(NULL, STATE, &c, &error));
        ASSERT_EQ(c->n_ref, 1);
        ASSERT_TRUE(config_ref(c) == c);
        ASSERT_EQ(c->n_ref, 2);
        ASSERT_NULL(config_unref(c));
        ASSERT_EQ(c->n_ref, 1);
        ASSERT_NULL(config_unref(c));
}

TEST(providers) {
        _cleanup_(rm_rf) char *dir = make_tmpdir();
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *a = NULL, *b = NULL, *models = NULL;
        _cleanup_strv_free_ char **l = NULL;
        const ConfigProviderEntry *e;

        ASSERT_NOT_NULL(dir);
        a = write_file(dir, "a.conf",
                       "[provider.openai]\n"
                       "type = openai\n"
                       "api_key = \"sk-first\"\n"
                       "[provider.local]\n"
                       "type = openai-compatible\n"
                       "base_url = http://127.0.0.1:8000/v1\n");
        b = write_file(dir, "b.conf",
                       "[provider.openai]\n"
                       "api_key = \"sk-second\"\n"
                       "models = [\"gpt-4o*\", \"o1*\"]\n");
        ASSERT_TRUE(a && b);

        char *const paths[] = { a, b, NULL };
        ASSERT_OK(config_load_files(paths, STATE, &c, &error));
        ASSERT_EQ(c->n_providers, 2);
        ASSERT_STREQ(c->providers[0].name, "openai");
        ASSERT_STREQ(c->providers[1].name, "local");

        ASSERT_EQ(c->providers[0].n_entries, 3);
        ASSERT_STREQ(c->providers[0].entries[0].key, "type");
        ASSERT_STREQ(c->providers[0].entries[0].source, a);

        e = config_provider_find(&c->providers[0], "api_key");
        ASSERT_NOT_NULL(e);
        ASSERT_STREQ(e->value, "\"sk-second\"");         /* raw, later file wins */
        ASSERT_STREQ(e->source, b);
        ASSERT_OK(config_value_unquote(e->value, &models));
        ASSERT_STREQ(models, "sk-second");

        e = config_provider_find(&c->providers[0], "models");
        ASSERT_NOT_NULL(e);
        ASSERT_OK(config_value_split(e->value, &l));
        ASSERT_EQ(strv_length(l), 2);
        ASSERT_STREQ(l[1], "o1*");

        ASSERT_NULL(config_provider_find(&c->providers[1], "api_key"));
        ASSERT_NULL(config_provider_find(NULL, "x"));
}

TEST(dump_masks_secrets) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *s = NULL;

        ASSERT_OK(load_string("[provider.openai]\n"
                              "type = openai\n"
                              "api_key = \"sk-live-0123456789\"\n"
                              "api_key_env = \"\"\n"
                              "client_secret = hush\n"
                              "Auth_Token = t0k3n\n"
                              "password = pw\n"
                              "base_url = https://user:letmein@api.example.org/v1\n",
                              &c, &error));
        s = dump_to_string(c);
        ASSERT_NOT_NULL(s);

        ASSERT_CONTAINS(s, "# Effective gate configuration");
        ASSERT_CONTAINS(s, "#   test.conf\n");
        ASSERT_CONTAINS(s, "[server]\nbind = 127.0.0.1:31145, [::1]:31145\n");
        ASSERT_CONTAINS(s, "max_body_bytes = 32M\n");
        ASSERT_CONTAINS(s, "header_timeout = 30s\n");
        ASSERT_CONTAINS(s, "loopback_without_key = true\n");
        ASSERT_CONTAINS(s, "passthrough = loopback\n");
        ASSERT_CONTAINS(s, "url = sqlite:///var/lib/gate/gate.db\n");
        ASSERT_CONTAINS(s, "[provider.openai]\ntype = openai\n");
        ASSERT_CONTAINS(s, "api_key = ********\n");
        ASSERT_CONTAINS(s, "api_key_env = \"\"\n");             /* empty: nothing to hide */
        ASSERT_CONTAINS(s, "client_secret = ********\n");
        ASSERT_CONTAINS(s, "Auth_Token = ********\n");
        ASSERT_CONTAINS(s, "password = ********\n");
        ASSERT_CONTAINS(s, "base_url = https://user:********@api.example.org/v1\n");
        ASSERT_FALSE(strstr(s, "sk-live"));
        ASSERT_FALSE(strstr(s, "hush"));
        ASSERT_FALSE(strstr(s, "t0k3n"));
        ASSERT_FALSE(strstr(s, "= pw"));
        ASSERT_FALSE(strstr(s, "letmein"));
}

TEST(dump_round_trips) {
        _cleanup_(config_unrefp) Config *c = NULL, *d = NULL;
        _cleanup_free_ char *error = NULL, *e2 = NULL, *s1 = NULL, *s2 = NULL;
        const char *b1, *b2;

        ASSERT_OK(load_string("[server]\n"
                              "bind = [\"[::1]:1\", \"127.0.0.1:2\"]\n"
                              "max_body_bytes = 1536\n"
                              "header_timeout = 1500ms\n"
                              "[auth]\npassthrough = always\n"
                              "[tls]\ndefault_name = \" odd # name \\\"x\\\" \"\n"
                              "cert_dir = \"/a\\tb\\nc\\rd\"\n"
                              "[p2p]\npeers = [\"with space\", \"b\"]\n",
                              &c, &error));
        s1 = dump_to_string(c);
        ASSERT_NOT_NULL(s1);
        ASSERT_OK(load_string(s1, &d, &e2));
        ASSERT_STREQ(d->tls_default_name, " odd # name \"x\" ");
        ASSERT_STREQ(d->tls_cert_dir, "/a\tb\nc\rd");
        ASSERT_EQ(strv_length(d->p2p_peers), 2);
        ASSERT_STREQ(d->p2p_peers[0], "with space");
        ASSERT_EQ(d->server_max_body_bytes, 1536);
        ASSERT_EQ(d->server_header_timeout, 1500 * USEC_PER_MSEC);
        ASSERT_EQ(d->auth_passthrough, PASSTHROUGH_ALWAYS);

        /* Past the header comment (which lists the sources) the two dumps are identical. */
        s2 = dump_to_string(d);
        ASSERT_NOT_NULL(s2);
        b1 = strstr(s1, "\n[server]");
        b2 = strstr(s2, "\n[server]");
        ASSERT_TRUE(b1 && b2);
        ASSERT_STREQ(b1, b2);
}

TEST(comments_and_quotes_in_files) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(load_string("# leading comment\n"
                              "[server]\n"
                              "bind = 127.0.0.1:31145      # used only when not socket-activated\n"
                              "max_headers = \"64\" # quoted number\n"
                              "max_headers = 65\n"      /* twice: the last one wins */
                              "[tls]\n"
                              "cert_dir = \"/path with spaces/certs\"\n",
                              &c, &error));
        ASSERT_EQ(strv_length(c->server_bind), 1);
        ASSERT_STREQ(c->server_bind[0], "127.0.0.1:31145");
        ASSERT_EQ(c->server_max_headers, 65);
        ASSERT_STREQ(c->tls_cert_dir, "/path with spaces/certs");
}

TEST(empty_resets_to_default) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(load_string("[tls]\ncert_dir =\ndefault_name = \"\"\n[database]\nurl =\n", &c, &error));
        ASSERT_STREQ(c->tls_cert_dir, STATE "/certs");
        ASSERT_NULL(c->tls_default_name);
        ASSERT_STREQ(c->database_path, STATE "/gate.db");
}

TEST(passthrough_strings) {
        ASSERT_STREQ(passthrough_to_string(PASSTHROUGH_LOOPBACK), "loopback");
        ASSERT_STREQ(passthrough_to_string(PASSTHROUGH_ALWAYS), "always");
        ASSERT_STREQ(passthrough_to_string(PASSTHROUGH_NEVER), "never");
        ASSERT_NULL(passthrough_to_string(_PASSTHROUGH_MAX));
        ASSERT_NULL(passthrough_to_string(_PASSTHROUGH_INVALID));
        ASSERT_EQ(passthrough_from_string("never"), PASSTHROUGH_NEVER);
        ASSERT_EQ(passthrough_from_string("Never"), _PASSTHROUGH_INVALID);
        ASSERT_EQ(passthrough_from_string(NULL), _PASSTHROUGH_INVALID);
}

TEST(dump_defaults) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *s = NULL;

        ASSERT_OK(config_load_files(NULL, STATE, &c, &error));
        s = dump_to_string(c);
        ASSERT_CONTAINS(s, "(none: built-in defaults)");
        ASSERT_CONTAINS(s, "# resolved path: /var/lib/gate/gate.db\n");
        ASSERT_CONTAINS(s, "[tls]\nbind =\ncert_dir = /var/lib/gate/certs\ndefault_name =\n");
        ASSERT_CONTAINS(s, "[relay]\nenabled = false\nendpoint = https://relay.hellas.ai\n");
}

/* The real search paths: only checkable where no gate is installed, which is where tests run. */
TEST(load_without_files) {
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_strv_free_ char **paths = NULL;
        _cleanup_free_ char *error = NULL;

        ASSERT_OK(config_search_paths(NULL, &paths));
        if (strv_length(paths) > 0) {
                printf("skipping %s: %s exists\n", test_current, paths[0]);
                return;
        }
        unsetenv("GATE_CONFIG");
        unsetenv("DATABASE_URL");
        ASSERT_OK(config_load(NULL, STATE, &c, &error));
        ASSERT_EQ(strv_length(c->sources), 0);
        ASSERT_EQ(c->server_max_connections, 4096);
}
