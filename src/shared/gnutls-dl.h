/* gnutls-dl: GnuTLS, loaded for a TLS listener or to check upstream certificates; include this, never <gnutls/gnutls.h>. */
#pragma once

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/ocsp.h>
#include <gnutls/x509.h>

#include "shared/dlopen-util.h"

#define GNUTLS_SONAME "libgnutls.so.30"

DLSYM_PROTOTYPE(gnutls_alert_send);
DLSYM_PROTOTYPE(gnutls_alert_send_appropriate);
DLSYM_PROTOTYPE(gnutls_alpn_get_selected_protocol);
DLSYM_PROTOTYPE(gnutls_alpn_set_protocols);
DLSYM_PROTOTYPE(gnutls_bye);
DLSYM_PROTOTYPE(gnutls_certificate_allocate_credentials);
DLSYM_PROTOTYPE(gnutls_certificate_free_credentials);
DLSYM_PROTOTYPE(gnutls_certificate_get_peers);
DLSYM_PROTOTYPE(gnutls_certificate_server_set_request);
DLSYM_PROTOTYPE(gnutls_certificate_set_retrieve_function2);
DLSYM_PROTOTYPE(gnutls_certificate_verification_status_print);
DLSYM_PROTOTYPE(gnutls_credentials_set);
DLSYM_PROTOTYPE(gnutls_deinit);
DLSYM_PROTOTYPE(gnutls_error_is_fatal);
DLSYM_PROTOTYPE(gnutls_free);
DLSYM_PROTOTYPE(gnutls_handshake);
DLSYM_PROTOTYPE(gnutls_handshake_set_timeout);
DLSYM_PROTOTYPE(gnutls_init);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_check_crt);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_deinit);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_get_single);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_import);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_init);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_verify);
DLSYM_PROTOTYPE(gnutls_ocsp_resp_verify_direct);
DLSYM_PROTOTYPE(gnutls_ocsp_status_request_get2);
DLSYM_PROTOTYPE(gnutls_pcert_deinit);
DLSYM_PROTOTYPE(gnutls_pcert_import_x509_list);
DLSYM_PROTOTYPE(gnutls_pk_bits_to_sec_param);
DLSYM_PROTOTYPE(gnutls_pk_get_name);
DLSYM_PROTOTYPE(gnutls_priority_deinit);
DLSYM_PROTOTYPE(gnutls_priority_init);
DLSYM_PROTOTYPE(gnutls_priority_set);
DLSYM_PROTOTYPE(gnutls_privkey_deinit);
DLSYM_PROTOTYPE(gnutls_privkey_import_x509_raw);
DLSYM_PROTOTYPE(gnutls_privkey_init);
DLSYM_PROTOTYPE(gnutls_protocol_get_name);
DLSYM_PROTOTYPE(gnutls_protocol_get_version);
DLSYM_PROTOTYPE(gnutls_pubkey_deinit);
DLSYM_PROTOTYPE(gnutls_pubkey_get_key_id);
DLSYM_PROTOTYPE(gnutls_pubkey_import_privkey);
DLSYM_PROTOTYPE(gnutls_pubkey_init);
DLSYM_PROTOTYPE(gnutls_record_recv);
DLSYM_PROTOTYPE(gnutls_record_send);
DLSYM_PROTOTYPE(gnutls_sec_param_to_pk_bits);
DLSYM_PROTOTYPE(gnutls_server_name_get);
DLSYM_PROTOTYPE(gnutls_session_get_ptr);
DLSYM_PROTOTYPE(gnutls_session_set_ptr);
DLSYM_PROTOTYPE(gnutls_sign_get_name);
DLSYM_PROTOTYPE(gnutls_sign_is_secure2);
DLSYM_PROTOTYPE(gnutls_strerror);
DLSYM_PROTOTYPE(gnutls_transport_set_errno);
DLSYM_PROTOTYPE(gnutls_transport_set_ptr);
DLSYM_PROTOTYPE(gnutls_transport_set_pull_function);
DLSYM_PROTOTYPE(gnutls_transport_set_pull_timeout_function);
DLSYM_PROTOTYPE(gnutls_transport_set_push_function);
DLSYM_PROTOTYPE(gnutls_x509_crt_check_issuer);
DLSYM_PROTOTYPE(gnutls_x509_crt_deinit);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_activation_time);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_dn2);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_expiration_time);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_pk_algorithm);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_signature_algorithm);
DLSYM_PROTOTYPE(gnutls_x509_crt_get_tlsfeatures);
DLSYM_PROTOTYPE(gnutls_x509_crt_import);
DLSYM_PROTOTYPE(gnutls_x509_crt_init);
DLSYM_PROTOTYPE(gnutls_x509_crt_list_import2);
DLSYM_PROTOTYPE(gnutls_x509_tlsfeatures_deinit);
DLSYM_PROTOTYPE(gnutls_x509_tlsfeatures_get);
DLSYM_PROTOTYPE(gnutls_x509_tlsfeatures_init);
DLSYM_PROTOTYPE(gnutls_x509_trust_list_add_trust_file);
DLSYM_PROTOTYPE(gnutls_x509_trust_list_deinit);
DLSYM_PROTOTYPE(gnutls_x509_trust_list_get_issuer);
DLSYM_PROTOTYPE(gnutls_x509_trust_list_init);
DLSYM_PROTOTYPE(gnutls_x509_trust_list_verify_crt2);

/* Call sites read as plain GnuTLS. Function-like, so typeof(gnutls_x) above still names the real function,
 * and a use of a function as a value (not mapped) fails to link instead of pulling GnuTLS in. */
#define gnutls_alert_send(...) sym_gnutls_alert_send(__VA_ARGS__)
#define gnutls_alert_send_appropriate(...) sym_gnutls_alert_send_appropriate(__VA_ARGS__)
#define gnutls_alpn_get_selected_protocol(...) sym_gnutls_alpn_get_selected_protocol(__VA_ARGS__)
#define gnutls_alpn_set_protocols(...) sym_gnutls_alpn_set_protocols(__VA_ARGS__)
#define gnutls_bye(...) sym_gnutls_bye(__VA_ARGS__)
#define gnutls_certificate_allocate_credentials(...) sym_gnutls_certificate_allocate_credentials(__VA_ARGS__)
#define gnutls_certificate_free_credentials(...) sym_gnutls_certificate_free_credentials(__VA_ARGS__)
#define gnutls_certificate_get_peers(...) sym_gnutls_certificate_get_peers(__VA_ARGS__)
#define gnutls_certificate_server_set_request(...) sym_gnutls_certificate_server_set_request(__VA_ARGS__)
#define gnutls_certificate_set_retrieve_function2(...) sym_gnutls_certificate_set_retrieve_function2(__VA_ARGS__)
#define gnutls_certificate_verification_status_print(...) sym_gnutls_certificate_verification_status_print(__VA_ARGS__)
#define gnutls_credentials_set(...) sym_gnutls_credentials_set(__VA_ARGS__)
#define gnutls_deinit(...) sym_gnutls_deinit(__VA_ARGS__)
#define gnutls_error_is_fatal(...) sym_gnutls_error_is_fatal(__VA_ARGS__)
#define gnutls_handshake(...) sym_gnutls_handshake(__VA_ARGS__)
#define gnutls_handshake_set_timeout(...) sym_gnutls_handshake_set_timeout(__VA_ARGS__)
#define gnutls_init(...) sym_gnutls_init(__VA_ARGS__)
#define gnutls_ocsp_resp_check_crt(...) sym_gnutls_ocsp_resp_check_crt(__VA_ARGS__)
#define gnutls_ocsp_resp_deinit(...) sym_gnutls_ocsp_resp_deinit(__VA_ARGS__)
#define gnutls_ocsp_resp_get_single(...) sym_gnutls_ocsp_resp_get_single(__VA_ARGS__)
#define gnutls_ocsp_resp_import(...) sym_gnutls_ocsp_resp_import(__VA_ARGS__)
#define gnutls_ocsp_resp_init(...) sym_gnutls_ocsp_resp_init(__VA_ARGS__)
#define gnutls_ocsp_resp_verify(...) sym_gnutls_ocsp_resp_verify(__VA_ARGS__)
#define gnutls_ocsp_resp_verify_direct(...) sym_gnutls_ocsp_resp_verify_direct(__VA_ARGS__)
#define gnutls_ocsp_status_request_get2(...) sym_gnutls_ocsp_status_request_get2(__VA_ARGS__)
#define gnutls_pcert_deinit(...) sym_gnutls_pcert_deinit(__VA_ARGS__)
#define gnutls_pcert_import_x509_list(...) sym_gnutls_pcert_import_x509_list(__VA_ARGS__)
#define gnutls_pk_bits_to_sec_param(...) sym_gnutls_pk_bits_to_sec_param(__VA_ARGS__)
#define gnutls_pk_get_name(...) sym_gnutls_pk_get_name(__VA_ARGS__)
#define gnutls_priority_deinit(...) sym_gnutls_priority_deinit(__VA_ARGS__)
#define gnutls_priority_init(...) sym_gnutls_priority_init(__VA_ARGS__)
#define gnutls_priority_set(...) sym_gnutls_priority_set(__VA_ARGS__)
#define gnutls_privkey_deinit(...) sym_gnutls_privkey_deinit(__VA_ARGS__)
#define gnutls_privkey_import_x509_raw(...) sym_gnutls_privkey_import_x509_raw(__VA_ARGS__)
#define gnutls_privkey_init(...) sym_gnutls_privkey_init(__VA_ARGS__)
#define gnutls_protocol_get_name(...) sym_gnutls_protocol_get_name(__VA_ARGS__)
#define gnutls_protocol_get_version(...) sym_gnutls_protocol_get_version(__VA_ARGS__)
#define gnutls_pubkey_deinit(...) sym_gnutls_pubkey_deinit(__VA_ARGS__)
#define gnutls_pubkey_get_key_id(...) sym_gnutls_pubkey_get_key_id(__VA_ARGS__)
#define gnutls_pubkey_import_privkey(...) sym_gnutls_pubkey_import_privkey(__VA_ARGS__)
#define gnutls_pubkey_init(...) sym_gnutls_pubkey_init(__VA_ARGS__)
#define gnutls_record_recv(...) sym_gnutls_record_recv(__VA_ARGS__)
#define gnutls_record_send(...) sym_gnutls_record_send(__VA_ARGS__)
#define gnutls_sec_param_to_pk_bits(...) sym_gnutls_sec_param_to_pk_bits(__VA_ARGS__)
#define gnutls_server_name_get(...) sym_gnutls_server_name_get(__VA_ARGS__)
#define gnutls_session_get_ptr(...) sym_gnutls_session_get_ptr(__VA_ARGS__)
#define gnutls_session_set_ptr(...) sym_gnutls_session_set_ptr(__VA_ARGS__)
#define gnutls_sign_get_name(...) sym_gnutls_sign_get_name(__VA_ARGS__)
#define gnutls_sign_is_secure2(...) sym_gnutls_sign_is_secure2(__VA_ARGS__)
#define gnutls_strerror(...) sym_gnutls_strerror(__VA_ARGS__)
#define gnutls_transport_set_errno(...) sym_gnutls_transport_set_errno(__VA_ARGS__)
#define gnutls_transport_set_ptr(...) sym_gnutls_transport_set_ptr(__VA_ARGS__)
#define gnutls_transport_set_pull_function(...) sym_gnutls_transport_set_pull_function(__VA_ARGS__)
#define gnutls_transport_set_pull_timeout_function(...) sym_gnutls_transport_set_pull_timeout_function(__VA_ARGS__)
#define gnutls_transport_set_push_function(...) sym_gnutls_transport_set_push_function(__VA_ARGS__)
#define gnutls_x509_crt_check_issuer(...) sym_gnutls_x509_crt_check_issuer(__VA_ARGS__)
#define gnutls_x509_crt_deinit(...) sym_gnutls_x509_crt_deinit(__VA_ARGS__)
#define gnutls_x509_crt_get_activation_time(...) sym_gnutls_x509_crt_get_activation_time(__VA_ARGS__)
#define gnutls_x509_crt_get_dn2(...) sym_gnutls_x509_crt_get_dn2(__VA_ARGS__)
#define gnutls_x509_crt_get_expiration_time(...) sym_gnutls_x509_crt_get_expiration_time(__VA_ARGS__)
#define gnutls_x509_crt_get_pk_algorithm(...) sym_gnutls_x509_crt_get_pk_algorithm(__VA_ARGS__)
#define gnutls_x509_crt_get_signature_algorithm(...) sym_gnutls_x509_crt_get_signature_algorithm(__VA_ARGS__)
#define gnutls_x509_crt_get_tlsfeatures(...) sym_gnutls_x509_crt_get_tlsfeatures(__VA_ARGS__)
#define gnutls_x509_crt_import(...) sym_gnutls_x509_crt_import(__VA_ARGS__)
#define gnutls_x509_crt_init(...) sym_gnutls_x509_crt_init(__VA_ARGS__)
#define gnutls_x509_crt_list_import2(...) sym_gnutls_x509_crt_list_import2(__VA_ARGS__)
#define gnutls_x509_tlsfeatures_deinit(...) sym_gnutls_x509_tlsfeatures_deinit(__VA_ARGS__)
#define gnutls_x509_tlsfeatures_get(...) sym_gnutls_x509_tlsfeatures_get(__VA_ARGS__)
#define gnutls_x509_tlsfeatures_init(...) sym_gnutls_x509_tlsfeatures_init(__VA_ARGS__)
#define gnutls_x509_trust_list_add_trust_file(...) sym_gnutls_x509_trust_list_add_trust_file(__VA_ARGS__)
#define gnutls_x509_trust_list_deinit(...) sym_gnutls_x509_trust_list_deinit(__VA_ARGS__)
#define gnutls_x509_trust_list_get_issuer(...) sym_gnutls_x509_trust_list_get_issuer(__VA_ARGS__)
#define gnutls_x509_trust_list_init(...) sym_gnutls_x509_trust_list_init(__VA_ARGS__)
#define gnutls_x509_trust_list_verify_crt2(...) sym_gnutls_x509_trust_list_verify_crt2(__VA_ARGS__)
/* gnutls_free is a variable (a pointer to GnuTLS' deallocator), and gnutls.h's macro of that name also
 * clears the pointer freed. */
#undef gnutls_free
#define gnutls_free(a) ((*sym_gnutls_free)((void *) (a)), (a) = NULL)

/* Loads GnuTLS (whose constructor runs its global initialisation), once. On failure (logged once) every
 * later call returns the same error and gnutls_dl_failure() says why. */
int dlopen_gnutls(void);
bool gnutls_dl_loaded(void);
/* "libgnutls.so.30 cannot be loaded: ...; the TLS listener is unavailable", or NULL. */
const char *gnutls_dl_failure(void);
