/* curl-dl: libcurl-gnutls, loaded on the first transfer that needs it; include this, never <curl/curl.h>. */
#pragma once

#ifdef curl_easy_setopt
#error "<curl/curl.h> was included before shared/curl-dl.h: its type-check macros would call libcurl directly"
#endif
/* curl's type-checking wrappers are macros around direct calls; the calls go through sym_* here. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "shared/dlopen-util.h"

#define CURL_SONAME "libcurl-gnutls.so.4"

DLSYM_PROTOTYPE(curl_easy_cleanup);
DLSYM_PROTOTYPE(curl_easy_getinfo);
DLSYM_PROTOTYPE(curl_easy_init);
DLSYM_PROTOTYPE(curl_easy_pause);
DLSYM_PROTOTYPE(curl_easy_reset);
DLSYM_PROTOTYPE(curl_easy_setopt);
DLSYM_PROTOTYPE(curl_easy_strerror);
DLSYM_PROTOTYPE(curl_free);
DLSYM_PROTOTYPE(curl_global_init);
DLSYM_PROTOTYPE(curl_multi_add_handle);
DLSYM_PROTOTYPE(curl_multi_assign);
DLSYM_PROTOTYPE(curl_multi_cleanup);
DLSYM_PROTOTYPE(curl_multi_info_read);
DLSYM_PROTOTYPE(curl_multi_init);
DLSYM_PROTOTYPE(curl_multi_remove_handle);
DLSYM_PROTOTYPE(curl_multi_setopt);
DLSYM_PROTOTYPE(curl_multi_socket_action);
DLSYM_PROTOTYPE(curl_url);
DLSYM_PROTOTYPE(curl_url_cleanup);
DLSYM_PROTOTYPE(curl_url_get);
DLSYM_PROTOTYPE(curl_url_set);
DLSYM_PROTOTYPE(curl_version_info);

/* curl.h's own three-argument forms of these call libcurl directly: ours replace them. */
#undef curl_easy_getinfo
#undef curl_easy_setopt
#undef curl_multi_setopt

/* Call sites read as plain libcurl. Function-like, so typeof(curl_x) above still names the real function,
 * and a use of a function as a value (not mapped) fails to link instead of pulling libcurl in. */
#define curl_easy_cleanup(...) sym_curl_easy_cleanup(__VA_ARGS__)
#define curl_easy_getinfo(...) sym_curl_easy_getinfo(__VA_ARGS__)
#define curl_easy_init(...) sym_curl_easy_init(__VA_ARGS__)
#define curl_easy_pause(...) sym_curl_easy_pause(__VA_ARGS__)
#define curl_easy_reset(...) sym_curl_easy_reset(__VA_ARGS__)
#define curl_easy_setopt(...) sym_curl_easy_setopt(__VA_ARGS__)
#define curl_easy_strerror(...) sym_curl_easy_strerror(__VA_ARGS__)
#define curl_free(...) sym_curl_free(__VA_ARGS__)
#define curl_global_init(...) sym_curl_global_init(__VA_ARGS__)
#define curl_multi_add_handle(...) sym_curl_multi_add_handle(__VA_ARGS__)
#define curl_multi_assign(...) sym_curl_multi_assign(__VA_ARGS__)
#define curl_multi_cleanup(...) sym_curl_multi_cleanup(__VA_ARGS__)
#define curl_multi_info_read(...) sym_curl_multi_info_read(__VA_ARGS__)
#define curl_multi_init(...) sym_curl_multi_init(__VA_ARGS__)
#define curl_multi_remove_handle(...) sym_curl_multi_remove_handle(__VA_ARGS__)
#define curl_multi_setopt(...) sym_curl_multi_setopt(__VA_ARGS__)
#define curl_multi_socket_action(...) sym_curl_multi_socket_action(__VA_ARGS__)
#define curl_url(...) sym_curl_url(__VA_ARGS__)
#define curl_url_cleanup(...) sym_curl_url_cleanup(__VA_ARGS__)
#define curl_url_get(...) sym_curl_url_get(__VA_ARGS__)
#define curl_url_set(...) sym_curl_url_set(__VA_ARGS__)
#define curl_version_info(...) sym_curl_version_info(__VA_ARGS__)

/* Header lists (struct curl_slist) are gate's own, built in arenas (proxy/header-list.h): gate's HTTP/1.1
 * client reads them without libcurl, and curl only reads the lists it is given. */

/* Loads libcurl and runs its global initialisation, once. On failure (logged once) every later call
 * returns the same error and curl_dl_failure() says why. */
int dlopen_curl(void);
bool curl_dl_loaded(void);
/* "libcurl-gnutls.so.4 cannot be loaded: ...; HTTPS upstreams are unavailable", or NULL. */
const char *curl_dl_failure(void);
