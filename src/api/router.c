/* Router: maps a complete request to its handler by method and path. */
#include <stdio.h>

#include "api/admin.h"
#include "api/errors.h"
#include "api/llm.h"
#include "api/router.h"
#include "core/manager.h"
#include "gate-build.h"

typedef int (*HandlerFunc)(Request *r, Manager *m);

typedef struct Route {
        const char *path;               /* exact, or a prefix when it ends in '/' */
        const char *methods;            /* space-separated, for matching and the Allow header */
        HandlerFunc handler;
} Route;

static int handle_health(Request *r, Manager *m) {
        /* Probed often (load balancers, systemd, benchmarks): formatted once per state and generation. */
        static char body[256];
        static int n;
        static ManagerState state;
        static unsigned generation;

        if (n <= 0 || state != m->state || generation != m->generation) {
                state = m->state;
                generation = m->generation;
                n = snprintf(body, sizeof body,
                             "{\"status\":\"%s\",\"version\":\"%s\",\"generation\":%u}\n",
                             manager_state_to_string(state), GATE_VERSION, generation);
        }
        /* A stopping gate still answers 200 ("status":"stopping"): during a restart the requests that reach
         * the old process are served, not failed. */
        return request_reply(r, 200,
                             (const HttpHeader[]){ { "cache-control", "no-store" } }, 1,
                             "application/json", body, (size_t) n);
}

static const Route routes[] = {
        { "/health", "GET HEAD", handle_health },
        { "/metrics", "GET HEAD", api_metrics },
        { "/admin/keys", "GET HEAD POST", api_admin_keys },
        { "/admin/keys/", "PATCH DELETE", api_admin_keys },
        { "/admin/usage", "GET HEAD", api_admin_usage },
        { "/v1/chat/completions", "POST", api_forward },
        { "/v1/completions", "POST", api_forward },
        { "/v1/responses", "POST", api_forward },
        { "/v1/embeddings", "POST", api_forward },
        { "/v1/messages", "POST", api_forward },
        { "/v1/messages/count_tokens", "POST", api_forward },
        { "/v1/models", "GET HEAD", api_models },
        { "/v1/models/", "GET HEAD", api_models },
};

static bool route_matches(const Route *route, const char *path) {
        size_t n = strlen(route->path);
        if (route->path[n - 1] == '/')
                return strneq(path, route->path, n) && path[n] != 0;
        return streq(path, route->path);
}

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

                if (!route_matches(&routes[i], r->path))
                        continue;
                if (method_in(r->method, routes[i].methods))
                        return routes[i].handler(r, m);

                snprintf(allow, sizeof allow, "%s", routes[i].methods);
                for (char *p = allow; *p; p++)
                        if (*p == ' ')
                                *p = ',';
                snprintf(msg, sizeof msg, "Method %s is not allowed on %s.", r->method, routes[i].path);
                return api_reply_error(r, api_request_dialect(r), 405, "method_not_allowed",
                                       (const HttpHeader[]){ { "allow", allow } }, 1, "%s", msg);
        }

        /* Like the providers' own APIs: name what was asked, so a wrong base URL is obvious. */
        return api_reply_error(r, api_request_dialect(r), 404, "not_found", NULL, 0, "Invalid URL (%s %.256s).",
                               r->method, r->path);
}
