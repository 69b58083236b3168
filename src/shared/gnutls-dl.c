/* gnutls-dl: GnuTLS, loaded for a TLS listener or to check upstream certificates; include this, never <gnutls/gnutls.h>. */
#include "shared/gnutls-dl.h"

DLSYM_FUNCTION(gnutls_alert_send);
DLSYM_FUNCTION(gnutls_alert_send_appropriate);
DLSYM_FUNCTION(gnutls_alpn_get_selected_protocol);
DLSYM_FUNCTION(gnutls_alpn_set_protocols);
DLSYM_FUNCTION(gnutls_bye);
DLSYM_FUNCTION(gnutls_certificate_allocate_credentials);
DLSYM_FUNCTION(gnutls_certificate_free_credentials);
DLSYM_FUNCTION(gnutls_certificate_get_peers);
DLSYM_FUNCTION(gnutls_certificate_server_set_request);
DLSYM_FUNCTION(gnutls_certificate_set_retrieve_function2);
DLSYM_FUNCTION(gnutls_certificate_verification_status_print);
DLSYM_FUNCTION(gnutls_credentials_set);
DLSYM_FUNCTION(gnutls_deinit);
DLSYM_FUNCTION(gnutls_error_is_fatal);
DLSYM_FUNCTION(gnutls_free);
DLSYM_FUNCTION(gnutls_handshake);
DLSYM_FUNCTION(gnutls_handshake_set_timeout);
DLSYM_FUNCTION(gnutls_init);
DLSYM_FUNCTION(gnutls_ocsp_resp_check_crt);
DLSYM_FUNCTION(gnutls_ocsp_resp_deinit);
DLSYM_FUNCTION(gnutls_ocsp_resp_get_single);
DLSYM_FUNCTION(gnutls_ocsp_resp_import);
DLSYM_FUNCTION(gnutls_ocsp_resp_init);
DLSYM_FUNCTION(gnutls_ocsp_resp_verify);
DLSYM_FUNCTION(gnutls_ocsp_resp_verify_direct);
DLSYM_FUNCTION(gnutls_ocsp_status_request_get2);
DLSYM_FUNCTION(gnutls_pcert_deinit);
DLSYM_FUNCTION(gnutls_pcert_import_x509_list);
DLSYM_FUNCTION(gnutls_priority_deinit);
DLSYM_FUNCTION(gnutls_priority_init);
DLSYM_FUNCTION(gnutls_priority_set);
DLSYM_FUNCTION(gnutls_privkey_deinit);
DLSYM_FUNCTION(gnutls_privkey_import_x509_raw);
DLSYM_FUNCTION(gnutls_privkey_init);
DLSYM_FUNCTION(gnutls_protocol_get_name);
DLSYM_FUNCTION(gnutls_protocol_get_version);
DLSYM_FUNCTION(gnutls_pubkey_deinit);
DLSYM_FUNCTION(gnutls_pubkey_get_key_id);
DLSYM_FUNCTION(gnutls_pubkey_import_privkey);
DLSYM_FUNCTION(gnutls_pubkey_init);
DLSYM_FUNCTION(gnutls_record_recv);
DLSYM_FUNCTION(gnutls_record_send);
DLSYM_FUNCTION(gnutls_server_name_get);
DLSYM_FUNCTION(gnutls_session_get_ptr);
DLSYM_FUNCTION(gnutls_session_set_ptr);
DLSYM_FUNCTION(gnutls_strerror);
DLSYM_FUNCTION(gnutls_transport_set_errno);
DLSYM_FUNCTION(gnutls_transport_set_ptr);
DLSYM_FUNCTION(gnutls_transport_set_pull_function);
DLSYM_FUNCTION(gnutls_transport_set_pull_timeout_function);
DLSYM_FUNCTION(gnutls_transport_set_push_function);
DLSYM_FUNCTION(gnutls_x509_crt_deinit);
DLSYM_FUNCTION(gnutls_x509_crt_get_activation_time);
DLSYM_FUNCTION(gnutls_x509_crt_get_dn2);
DLSYM_FUNCTION(gnutls_x509_crt_get_expiration_time);
DLSYM_FUNCTION(gnutls_x509_crt_get_tlsfeatures);
DLSYM_FUNCTION(gnutls_x509_crt_import);
DLSYM_FUNCTION(gnutls_x509_crt_init);
DLSYM_FUNCTION(gnutls_x509_crt_list_import2);
DLSYM_FUNCTION(gnutls_x509_tlsfeatures_deinit);
DLSYM_FUNCTION(gnutls_x509_tlsfeatures_get);
DLSYM_FUNCTION(gnutls_x509_tlsfeatures_init);
DLSYM_FUNCTION(gnutls_x509_trust_list_add_trust_file);
DLSYM_FUNCTION(gnutls_x509_trust_list_deinit);
DLSYM_FUNCTION(gnutls_x509_trust_list_init);
DLSYM_FUNCTION(gnutls_x509_trust_list_verify_crt2);

static DlLibrary gnutls_library = {
        .soname = GNUTLS_SONAME,
        .unavailable = "the TLS listener is unavailable",
};

int dlopen_gnutls(void) {
        return dl_library_open(&gnutls_library,
                               DLSYM_ARG(gnutls_alert_send),
                               DLSYM_ARG(gnutls_alert_send_appropriate),
                               DLSYM_ARG(gnutls_alpn_get_selected_protocol),
                               DLSYM_ARG(gnutls_alpn_set_protocols),
                               DLSYM_ARG(gnutls_bye),
                               DLSYM_ARG(gnutls_certificate_allocate_credentials),
                               DLSYM_ARG(gnutls_certificate_free_credentials),
                               DLSYM_ARG(gnutls_certificate_get_peers),
                               DLSYM_ARG(gnutls_certificate_server_set_request),
                               DLSYM_ARG(gnutls_certificate_set_retrieve_function2),
                               DLSYM_ARG(gnutls_certificate_verification_status_print),
                               DLSYM_ARG(gnutls_credentials_set),
                               DLSYM_ARG(gnutls_deinit),
                               DLSYM_ARG(gnutls_error_is_fatal),
                               DLSYM_ARG(gnutls_free),
                               DLSYM_ARG(gnutls_handshake),
                               DLSYM_ARG(gnutls_handshake_set_timeout),
                               DLSYM_ARG(gnutls_init),
                               DLSYM_ARG(gnutls_ocsp_resp_check_crt),
                               DLSYM_ARG(gnutls_ocsp_resp_deinit),
                               DLSYM_ARG(gnutls_ocsp_resp_get_single),
                               DLSYM_ARG(gnutls_ocsp_resp_import),
                               DLSYM_ARG(gnutls_ocsp_resp_init),
                               DLSYM_ARG(gnutls_ocsp_resp_verify),
                               DLSYM_ARG(gnutls_ocsp_resp_verify_direct),
                               DLSYM_ARG(gnutls_ocsp_status_request_get2),
                               DLSYM_ARG(gnutls_pcert_deinit),
                               DLSYM_ARG(gnutls_pcert_import_x509_list),
                               DLSYM_ARG(gnutls_priority_deinit),
                               DLSYM_ARG(gnutls_priority_init),
                               DLSYM_ARG(gnutls_priority_set),
                               DLSYM_ARG(gnutls_privkey_deinit),
                               DLSYM_ARG(gnutls_privkey_import_x509_raw),
                               DLSYM_ARG(gnutls_privkey_init),
                               DLSYM_ARG(gnutls_protocol_get_name),
                               DLSYM_ARG(gnutls_protocol_get_version),
                               DLSYM_ARG(gnutls_pubkey_deinit),
                               DLSYM_ARG(gnutls_pubkey_get_key_id),
                               DLSYM_ARG(gnutls_pubkey_import_privkey),
                               DLSYM_ARG(gnutls_pubkey_init),
                               DLSYM_ARG(gnutls_record_recv),
                               DLSYM_ARG(gnutls_record_send),
                               DLSYM_ARG(gnutls_server_name_get),
                               DLSYM_ARG(gnutls_session_get_ptr),
                               DLSYM_ARG(gnutls_session_set_ptr),
                               DLSYM_ARG(gnutls_strerror),
                               DLSYM_ARG(gnutls_transport_set_errno),
                               DLSYM_ARG(gnutls_transport_set_ptr),
                               DLSYM_ARG(gnutls_transport_set_pull_function),
                               DLSYM_ARG(gnutls_transport_set_pull_timeout_function),
                               DLSYM_ARG(gnutls_transport_set_push_function),
                               DLSYM_ARG(gnutls_x509_crt_deinit),
                               DLSYM_ARG(gnutls_x509_crt_get_activation_time),
                               DLSYM_ARG(gnutls_x509_crt_get_dn2),
                               DLSYM_ARG(gnutls_x509_crt_get_expiration_time),
                               DLSYM_ARG(gnutls_x509_crt_get_tlsfeatures),
                               DLSYM_ARG(gnutls_x509_crt_import),
                               DLSYM_ARG(gnutls_x509_crt_init),
                               DLSYM_ARG(gnutls_x509_crt_list_import2),
                               DLSYM_ARG(gnutls_x509_tlsfeatures_deinit),
                               DLSYM_ARG(gnutls_x509_tlsfeatures_get),
                               DLSYM_ARG(gnutls_x509_tlsfeatures_init),
                               DLSYM_ARG(gnutls_x509_trust_list_add_trust_file),
                               DLSYM_ARG(gnutls_x509_trust_list_deinit),
                               DLSYM_ARG(gnutls_x509_trust_list_init),
                               DLSYM_ARG(gnutls_x509_trust_list_verify_crt2),
                               NULL);
}

bool gnutls_dl_loaded(void) {
        return dl_library_loaded(&gnutls_library);
}

const char *gnutls_dl_failure(void) {
        return gnutls_library.message;
}
