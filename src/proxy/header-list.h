/* HeaderList: an upstream request's header lines as a curl_slist, built in an arena. */
#pragma once

#include "shared/arena.h"
#include "shared/curl-dl.h"

/* Both upstream clients read the same list (curl's CURLOPT_HTTPHEADER and H1Request.headers). Its nodes
 * and strings live in the caller's arena, not in curl's own lists (curl only reads the list it is given):
 * no allocation per header, everything freed with the arena. */
typedef struct HeaderList {
        Arena *arena;
        struct curl_slist *head, **tail;
} HeaderList;

void header_list_init(HeaderList *l, Arena *arena);

/* Appends "name: prefix value"; a NULL name appends prefix (and value) as the whole line ("Name: value",
 * or "Expect:" to suppress a header curl would add). Callers bound the sizes they accept. */
int header_list_add(HeaderList *l, const char *name, const char *prefix, const char *value);
