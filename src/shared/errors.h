/* Foreign error codes converted to negative errno at the library boundary, one helper per library. */
#pragma once

int errno_from_gnutls(int gnutls_error);
int errno_from_nghttp2(int nghttp2_error);
int errno_from_sqlite(int sqlite_error);
int errno_from_curl(int curl_code);

/* For log messages: the library's own text, kept out of business code. */
const char *gnutls_error_string(int gnutls_error);
const char *nghttp2_error_string(int nghttp2_error);
const char *curl_error_string(int curl_code);
