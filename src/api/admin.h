/* The admin API: /admin/keys (list, create, revoke) and /admin/usage, for admin keys and trusted loopback. */
#pragma once

#include "http/request.h"

typedef struct Manager Manager;

int api_admin_keys(Request *r, Manager *m);     /* GET, POST /admin/keys; DELETE /admin/keys/{id|name} */
int api_admin_usage(Request *r, Manager *m);    /* GET /admin/usage[?since=UNIX_SECONDS] */
