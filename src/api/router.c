/* Router: maps a complete request to its handler by method and path. */
#include <stdio.h>

#include "api/router.h"
#include "core/manager.h"
#include "gate-build.h"

typedef int (*HandlerFunc)(Request *r, Manager *m);

typedef struct Route {
        const char *path;
        const char *methods;            /* space-separated, for matching and the Allow header */
        HandlerFunc handler;
} Route;

static int handle_health(Request *r, Manager *m) {
        char body[256];
        int n;

        n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"version\":\"%s\",\"generation\":%u}\n",
                     manager_state_to_string(m->state), GATE_VERSION, m->generation);
        /* A stopping gate is still healthy enough to finish requests, but should get no new ones. */
        return request_reply(r, m->state == MANAGER_STOPPING ? 503 : 200,
                             (const HttpHeader[]){ { "cache-control", "no-store" } }, 1,
                             "application/json", body, (size_t) n);
}

static const Route routes[] = {
        { "/health", "GET HEAD", handle_health },
};

static bool method_in(const char *method, const char *list) {
        size_t n = strlen(method);

        for (const char *p = list; *p;) {
                const char *e = strchrnul(p, ' ');
                if ((size_t) (e - p) == n && memcmp(p, method, n) == 0)
                        return true;
                p = *e ? e + 1 : e;
        }
        return false;
}

int router_dispatch(Request *r, void *userdata) {
        Manager *m = userdata;

        for (size_t i = 0; i < ELEMENTSOF(routes); i++) {
                char allow[64], msg[128];

                if (!streq(r->path, routes[i].path))
                        continue;
                if (method_in(r->method, routes[i].methods))
                        return routes[i].handler(r, m);

                snprintf(allow, sizeof allow, "%s", routes[i].methods);
                for (char *p = allow; *p; p++)
                        if (*p == ' ')
                                *p = ',';
                snprintf(msg, sizeof msg, "Method %s is not allowed on %s.", r->method, routes[i].path);
                _cleanup_(buf_done) Buf b = {};
                int k = http_error_json(&b, "invalid_request_error", "method_not_allowed", msg);
                if (k < 0)
                        return k;
                return request_reply(r, 405, (const HttpHeader[]){ { "allow", allow } }, 1, "application/json",
                                     buf_data(&b), buf_len(&b));
        }

        /* Like the providers' own APIs: name what was asked, so a wrong base URL is obvious. */
        char msg[320];
        snprintf(msg, sizeof msg, "Invalid URL (%s %.256s).", r->method, r->path);
        return request_reply_error(r, 404, "invalid_request_error", "not_found", msg);
}
