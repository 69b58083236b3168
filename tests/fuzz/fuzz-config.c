/* libFuzzer target for the configuration loader: GKeyFile lexing, the value grammar, every parser, dump. */
#include <stdio.h>

#include "core/config.h"
#include "shared/log.h"
#include "shared/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static FILE *devnull = NULL;
        _cleanup_(config_unrefp) Config *c = NULL;
        _cleanup_free_ char *error = NULL, *s = NULL, *unquoted = NULL;
        _cleanup_strv_free_ char **l = NULL;

        if (!devnull) {
                /* Unknown keys warn; thousands of inputs a second must not flood stderr. */
                log_set_max_level(LOG_CRIT);
                /* The environment is a source too; keep runs reproducible. */
                unsetenv("DATABASE_URL");
                devnull = fopen("/dev/null", "we");
                if (!devnull)
                        abort();
        }

        if (size > 64 * 1024)
                return 0;

        if (config_load_data("fuzz.conf", data, size, "/var/lib/gate", &c, &error) >= 0) {
                config_dump(c, devnull);
                for (size_t i = 0; i < c->n_providers; i++)
                        for (size_t j = 0; j < c->providers[i].n_entries; j++) {
                                _cleanup_free_ char *v = NULL;
                                _cleanup_strv_free_ char **vl = NULL;
                                (void) config_value_unquote(c->providers[i].entries[j].value, &v);
                                (void) config_value_split(c->providers[i].entries[j].value, &vl);
                        }
        } else if (!error)
                abort();        /* every failure explains itself */

        /* The value grammar on its own, with the whole input as one value. */
        s = strndup((const char *) data, size);
        if (!s)
                return 0;
        (void) config_value_unquote(s, &unquoted);
        (void) config_value_split(s, &l);
        return 0;
}
