/* The differential check of gate's JSON reader and writer against jansson, shared by fuzz-json and test-json. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "json-diff.h"
#include "shared/buf.h"
#include "translate/json-fast.h"

static int dump_append(const char *p, size_t n, void *userdata) {
        return buf_append(userdata, p, n) < 0 ? -1 : 0;
}

/* jansson's JSON_COMPACT dump and ours of j into two buffers; < 0 when both fail, -2 when they disagree. */
static int dump_both(const json_t *j, Buf *theirs, Buf *ours) {
        int a = json_dump_callback(j, dump_append, theirs, JSON_COMPACT);
        int b = json_write_compact(j, ours);

        if ((a < 0) != (b < 0)) {
                fprintf(stderr, "json-diff: jansson dump %s, ours %s (%d)\n", a < 0 ? "failed" : "worked",
                        b < 0 ? "failed" : "worked", b);
                return -2;
        }
        if (a < 0)
                return -1;
        if (buf_len(theirs) != buf_len(ours) || memcmp(buf_data(theirs), buf_data(ours), buf_len(ours)) != 0) {
                fprintf(stderr, "json-diff: dumps differ:\n jansson: %.*s\n ours:    %.*s\n",
                        (int) buf_len(theirs), (const char *) buf_data(theirs),
                        (int) buf_len(ours), (const char *) buf_data(ours));
                return -2;
        }
        return 0;
}

/* Scalars (JSON_DECODE_ANY) are compared inside a one-element array: the writer only does containers. */
static json_t *container(json_t *v) {
        json_t *a;

        if (json_is_object(v) || json_is_array(v))
                return json_incref(v);
        a = json_array();
        if (a)
                json_array_append(a, v);
        return a;
}

int json_diff_parse(const char *s, size_t n, size_t flags) {
        json_error_t e;
        json_t *theirs = json_loadb(s, n, flags, &e), *ours = NULL, *ct = NULL, *co = NULL;
        Buf d[4] = {};
        int r = json_read(s, n, flags, &ours), ret = -1;

        if (!theirs && json_error_code(&e) == json_error_out_of_memory)
                goto out;   /* nothing to compare */
        if (!theirs != (r < 0)) {
                fprintf(stderr, "json-diff: jansson %s (%s), ours %s (%d) for %zu bytes: %.*s\n",
                        theirs ? "accepts" : "rejects", theirs ? "" : e.text, r < 0 ? "rejects" : "accepts", r,
                        n, (int) MIN(n, (size_t) 200), s);
                goto out;
        }
        if (!theirs) {
                if (r != -EBADMSG && r != -ENOMEM) {
                        fprintf(stderr, "json-diff: unexpected error %d\n", r);
                        goto out;
                }
                ret = 0;
                goto out;
        }
        if (!json_equal(theirs, ours)) {
                fprintf(stderr, "json-diff: trees differ for %.*s\n", (int) MIN(n, (size_t) 200), s);
                goto out;
        }
        ct = container(theirs);
        co = container(ours);
        if (!ct || !co)
                goto out;
        /* Each tree by each writer: key order and integer/real types show in the bytes. */
        if (dump_both(ct, &d[0], &d[1]) < 0 || dump_both(co, &d[2], &d[3]) < 0)
                goto out;
        if (buf_len(&d[0]) != buf_len(&d[2]) || memcmp(buf_data(&d[0]), buf_data(&d[2]), buf_len(&d[0])) != 0) {
                fprintf(stderr, "json-diff: the trees dump differently:\n jansson's: %.*s\n ours:      %.*s\n",
                        (int) buf_len(&d[0]), (const char *) buf_data(&d[0]),
                        (int) buf_len(&d[2]), (const char *) buf_data(&d[2]));
                goto out;
        }
        ret = 1;
out:
        json_decref(theirs);
        json_decref(ours);
        json_decref(ct);
        json_decref(co);
        for (size_t i = 0; i < 4; i++)
                buf_done(&d[i]);
        return ret;
}

int json_diff_string(const char *s, size_t n) {
        json_t *a = json_array(), *k = json_object();
        Buf d[2] = {};
        int ret = -1, r;

        if (!a || !k)
                goto out;
        /* As a value and as a key: keys go through the same escaping. */
        if (json_array_append_new(a, json_stringn_nocheck(s, n)) < 0 ||
            json_object_setn_new_nocheck(k, s, n, json_true()) < 0 || json_array_append(a, k) < 0)
                goto out;
        r = dump_both(a, &d[0], &d[1]);
        ret = r == -2 ? -1 : 0;
out:
        json_decref(a);
        json_decref(k);
        buf_done(&d[0]);
        buf_done(&d[1]);
        return ret;
}

/* What json_diff_keep() keeps: nested, with an array of objects, an empty key and one that only an escape
 * spells in most inputs. */
static const JsonKeep keep_inner[] = { { "a" }, { "b" }, { "" }, {} };
static const JsonKeep keep_root[] = {
        { "a", keep_inner }, { "choices", keep_inner }, { "c" }, { "\xc3\xa9" }, { "id" }, {}
};

/* Deletes from v what keep does not name, as json-fast.h says json_read_keep() leaves it out. */
static int prune(json_t *v, const JsonKeep *keep) {
        if (json_is_array(v)) {
                for (size_t i = 0; i < json_array_size(v); i++)
                        if (prune(json_array_get(v, i), keep) < 0)
                                return -1;
        } else if (json_is_object(v)) {
                const char *key;
                json_t *m;
                void *tmp;

                json_object_foreach_safe(v, tmp, key, m) {
                        const JsonKeep *k = keep;
                        while (k->key && strcmp(k->key, key) != 0)
                                k++;
                        if (!k->key) {
                                if (json_object_del(v, key) < 0)
                                        return -1;
                        } else if (k->inner && prune(m, k->inner) < 0)
                                return -1;
                }
        }
        return 0;
}

int json_diff_keep(const char *s, size_t n, size_t flags, size_t max_values) {
        json_t *full = NULL, *kept = NULL;
        int a = json_read_max(s, n, flags, max_values, &full);
        int b = json_read_keep(s, n, flags, max_values, keep_root, &kept), ret = -1;

        if (a == -ENOMEM || b == -ENOMEM) {
                ret = 0;
                goto out;
        }
        if (a != b) {
                fprintf(stderr, "json-diff: json_read_max() gives %d, json_read_keep() %d for %.*s\n", a, b,
                        (int) MIN(n, (size_t) 200), s);
                goto out;
        }
        if (a < 0) {
                ret = 0;
                goto out;
        }
        if (prune(full, keep_root) < 0) {
                ret = 0;        /* out of memory */
                goto out;
        }
        if (!json_equal(full, kept)) {
                fprintf(stderr, "json-diff: json_read_keep() made another tree than the pruned one for %.*s\n",
                        (int) MIN(n, (size_t) 200), s);
                goto out;
        }
        ret = 1;
out:
        json_decref(full);
        json_decref(kept);
        return ret;
}
