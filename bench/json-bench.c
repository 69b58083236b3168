/* json-bench: one JSON file parsed or compact-dumped N times by jansson or by gate's json_read/json_write_compact.
 *
 * For callgrind: valgrind --tool=callgrind --toggle-collect=bench_run ./build/bench/json-bench MODE FILE N
 * counts only the N iterations. MODE is jansson-parse, gate-parse (the trees are freed after the count),
 * jansson-parse-free, gate-parse-free (each tree freed in the loop, as a request does), jansson-dump or
 * gate-dump. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/util.h"
#include "translate/json-fast.h"

static int dump_append(const char *p, size_t n, void *userdata) {
        return buf_append(userdata, p, n) < 0 ? -1 : 0;
}

/* Not static and not inlined: callgrind's --toggle-collect finds it by name. Parsed trees are kept in
 * trees[] and freed by the caller, so that json_delete() is not counted as parsing. */
__attribute__((noinline)) int bench_run(const char *mode, const char *s, size_t n, const json_t *tree,
                                        unsigned iters, json_t **trees);
__attribute__((noinline)) int bench_run(const char *mode, const char *s, size_t n, const json_t *tree,
                                        unsigned iters, json_t **trees) {
        Buf b = {};
        int r = 0;

        for (unsigned i = 0; i < iters && r >= 0; i++) {
                json_t *j = NULL;

                if (streq(mode, "jansson-parse-free")) {
                        j = json_loadb(s, n, 0, NULL);
                        r = j ? 0 : -EBADMSG;
                        json_decref(TAKE_PTR(j));
                } else if (streq(mode, "gate-parse-free")) {
                        r = json_read(s, n, 0, &j);
                        json_decref(TAKE_PTR(j));
                } else if (streq(mode, "jansson-parse")) {
                        j = json_loadb(s, n, 0, NULL);
                        r = j ? 0 : -EBADMSG;
                } else if (streq(mode, "gate-parse"))
                        r = json_read(s, n, 0, &j);
                else if (streq(mode, "jansson-dump"))
                        r = json_dump_callback(tree, dump_append, &b, JSON_COMPACT) < 0 ? -ENOMEM : 0;
                else if (streq(mode, "gate-dump"))
                        r = json_write_compact(tree, &b);
                else
                        r = -EINVAL;
                trees[i] = j;
                buf_clear(&b);
        }
        buf_done(&b);
        return r;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *s = NULL;
        json_t *tree;
        size_t n;
        int r;

        if (argc != 4) {
                fprintf(stderr, "usage: json-bench jansson|gate-parse[-free]|jansson|gate-dump FILE N\n");
                return 2;
        }
        r = read_full_file(argv[2], 64U << 20, &s, &n);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", argv[2], strerror(-r));
                return 1;
        }
        tree = json_loadb(s, n, 0, NULL);
        if (!tree) {
                fprintf(stderr, "%s: not JSON\n", argv[2]);
                return 1;
        }
        unsigned iters = (unsigned) strtoul(argv[3], NULL, 10);
        json_t **trees = new0(json_t *, iters + 1);
        if (!trees)
                return 1;
        r = bench_run(argv[1], s, n, tree, iters, trees);
        for (unsigned i = 0; i < iters; i++)
                json_decref(trees[i]);
        free(trees);
        json_decref(tree);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", argv[1], strerror(-r));
                return 1;
        }
        return 0;
}
