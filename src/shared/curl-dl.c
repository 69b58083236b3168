/* curl-dl: libcurl-gnutls, loaded on the first transfer that needs it; include this, never <curl/curl.h>. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/curl-dl.h"
#include "shared/log.h"

DLSYM_FUNCTION(curl_easy_cleanup);
DLSYM_FUNCTION(curl_easy_getinfo);
DLSYM_FUNCTION(curl_easy_init);
DLSYM_FUNCTION(curl_easy_pause);
DLSYM_FUNCTION(curl_easy_reset);
DLSYM_FUNCTION(curl_easy_setopt);
DLSYM_FUNCTION(curl_easy_strerror);
DLSYM_FUNCTION(curl_free);
DLSYM_FUNCTION(curl_global_init);
DLSYM_FUNCTION(curl_multi_add_handle);
DLSYM_FUNCTION(curl_multi_assign);
DLSYM_FUNCTION(curl_multi_cleanup);
DLSYM_FUNCTION(curl_multi_info_read);
DLSYM_FUNCTION(curl_multi_init);
DLSYM_FUNCTION(curl_multi_remove_handle);
DLSYM_FUNCTION(curl_multi_setopt);
DLSYM_FUNCTION(curl_multi_socket_action);
DLSYM_FUNCTION(curl_url);
DLSYM_FUNCTION(curl_url_cleanup);
DLSYM_FUNCTION(curl_url_get);
DLSYM_FUNCTION(curl_url_set);
DLSYM_FUNCTION(curl_version_info);

static DlLibrary curl_library = {
        .soname = CURL_SONAME,
        .unavailable = "HTTPS and host-name upstreams are unavailable",
};
static bool curl_initialized;
static int curl_init_error;

int dlopen_curl(void) {
        int r;

        if (curl_initialized)
                return 0;
        if (curl_init_error < 0)
                return curl_init_error;
        r = dl_library_open(&curl_library,
                            DLSYM_ARG(curl_easy_cleanup),
                            DLSYM_ARG(curl_easy_getinfo),
                            DLSYM_ARG(curl_easy_init),
                            DLSYM_ARG(curl_easy_pause),
                            DLSYM_ARG(curl_easy_reset),
                            DLSYM_ARG(curl_easy_setopt),
                            DLSYM_ARG(curl_easy_strerror),
                            DLSYM_ARG(curl_free),
                            DLSYM_ARG(curl_global_init),
                            DLSYM_ARG(curl_multi_add_handle),
                            DLSYM_ARG(curl_multi_assign),
                            DLSYM_ARG(curl_multi_cleanup),
                            DLSYM_ARG(curl_multi_info_read),
                            DLSYM_ARG(curl_multi_init),
                            DLSYM_ARG(curl_multi_remove_handle),
                            DLSYM_ARG(curl_multi_setopt),
                            DLSYM_ARG(curl_multi_socket_action),
                            DLSYM_ARG(curl_url),
                            DLSYM_ARG(curl_url_cleanup),
                            DLSYM_ARG(curl_url_get),
                            DLSYM_ARG(curl_url_set),
                            DLSYM_ARG(curl_version_info),
                            NULL);
        if (r < 0)
                return r;
        /* From the loop's thread: the usage writer, gate's only other thread, never touches curl. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                curl_init_error = -EIO;
                return log_error_errno(curl_init_error, "Failed to initialize libcurl; %s.",
                                       curl_library.unavailable);
        }
        curl_initialized = true;
        return 0;
}

bool curl_dl_loaded(void) {
        return curl_initialized;
}

const char *curl_dl_failure(void) {
        if (curl_init_error < 0)
                return "libcurl failed to initialize; HTTPS and host-name upstreams are unavailable";
        return curl_library.message;
}
