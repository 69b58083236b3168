/* CurlGlue: libcurl's multi interface driven by sd-event (socket and timer callbacks). */
#pragma once

#include <systemd/sd-event.h>

#include "shared/curl-dl.h"

typedef struct CurlGlue CurlGlue;

/* Called once per transfer when it finished (result CURLE_OK or an error). The easy handle has been
 * removed from the multi handle already; the callee owns it again. */
typedef void (*CurlDoneCallback)(CURL *easy, CURLcode result, void *userdata);

int curl_glue_new(sd_event *event, CurlGlue **ret);
CurlGlue *curl_glue_free(CurlGlue *g);

/* Starts a transfer, its TLS trusting the system's CA bundle file where curl would read a whole directory
 * for every new connection (see pick_ca_file()); with GnuTLS, gate parses that bundle once and checks each
 * new connection's server itself. error (CURL_ERROR_SIZE bytes, or NULL) becomes the transfer's
 * CURLOPT_ERRORBUFFER and holds the detail of a failure when on_done runs. on_done runs from the event
 * loop, never from inside this call. */
int curl_glue_add(CurlGlue *g, CURL *easy, char *error, CurlDoneCallback on_done, void *userdata);
/* Stops a transfer early (client went away); on_done is not called. */
void curl_glue_remove(CurlGlue *g, CURL *easy);
/* Resumes a transfer that a write callback paused. */
int curl_glue_unpause(CurlGlue *g, CURL *easy);

unsigned curl_glue_active(const CurlGlue *g);

/* Whether curl is running its socket or timer actions now: a write callback relaying data from inside one
 * may hold it back (request_cork()) until the batch_end callback, called once after each batch of actions
 * and after the transfers they finished got on_done. Writes from curl_glue_unpause() are not inside one. */
bool curl_glue_in_action(const CurlGlue *g);
void curl_glue_set_batch_end(CurlGlue *g, void (*batch_end)(void *userdata), void *userdata);

/* Parses the system's CA bundle again (at a reload). On failure the CAs parsed before stay. */
int curl_glue_load_trust(CurlGlue *g);

/* Upstream connections kept open for reuse after their transfers end (CURLMOPT_MAXCONNECTS). */
void curl_glue_set_max_idle(CurlGlue *g, unsigned n);
