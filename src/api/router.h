/* Router: maps a complete request to its handler by method and path. */
#pragma once

#include "http/request.h"

typedef struct Manager Manager;

/* HttpServer.dispatch: userdata is the Manager. */
int router_dispatch(Request *r, void *userdata);
