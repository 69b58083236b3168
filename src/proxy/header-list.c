/* HeaderList: an upstream request's header lines as a curl_slist, built in an arena. */
#include <string.h>

#include "proxy/header-list.h"

void header_list_init(HeaderList *l, Arena *arena) {
        *l = (HeaderList) { .arena = arena, .head = NULL, .tail = &l->head };
}

int header_list_add(HeaderList *l, const char *name, const char *prefix, const char *value) {
        size_t a = name ? strlen(name) : 0, b = strlen(prefix), v = value ? strlen(value) : 0;
        struct curl_slist *n;
        char *line, *q;

        n = arena_alloc(l->arena, sizeof *n);
        line = q = arena_alloc(l->arena, a + 2 + b + v + 1);
        if (!n || !line)
                return -ENOMEM;
        if (name) {
                q = mempcpy(q, name, a);
                q = mempcpy(q, ": ", 2);
        }
        q = mempcpy(q, prefix, b);
        q = mempcpy(q, value ?: "", v);
        *q = 0;
        *n = (struct curl_slist) { .data = line };
        *l->tail = n;
        l->tail = &n->next;
        return 0;
}
