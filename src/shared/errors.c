/* Foreign error codes converted to negative errno at the library boundary, one helper per library. */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <sqlite3.h>
#include <string.h>

#include "errors.h"
#include "shared/curl-dl.h"
#include "shared/gnutls-dl.h"

int errno_from_gnutls(int e) {
        switch (e) {
        case GNUTLS_E_SUCCESS:
                return 0;
        case GNUTLS_E_AGAIN:
        case GNUTLS_E_INTERRUPTED:
                return -EAGAIN;
        case GNUTLS_E_MEMORY_ERROR:
                return -ENOMEM;
        case GNUTLS_E_FILE_ERROR:
                return -ENOENT;
        case GNUTLS_E_PREMATURE_TERMINATION:
        case GNUTLS_E_PUSH_ERROR:
        case GNUTLS_E_PULL_ERROR:
                return -ECONNRESET;
        case GNUTLS_E_CERTIFICATE_KEY_MISMATCH:
                return -EKEYREJECTED;
        case GNUTLS_E_BASE64_DECODING_ERROR:
        case GNUTLS_E_ASN1_DER_ERROR:
        case GNUTLS_E_ASN1_GENERIC_ERROR:
        case GNUTLS_E_PARSING_ERROR:
        case GNUTLS_E_BASE64_UNEXPECTED_HEADER_ERROR:
                return -EBADMSG;
        case GNUTLS_E_NO_CERTIFICATE_FOUND:
        case GNUTLS_E_UNRECOGNIZED_NAME:
                return -ENOKEY;
        case GNUTLS_E_NO_APPLICATION_PROTOCOL:
                return -ENOPROTOOPT;
        default:
                return -EPROTO;
        }
}

int errno_from_nghttp2(int e) {
        switch (e) {
        case 0:
                return 0;
        case NGHTTP2_ERR_NOMEM:
                return -ENOMEM;
        case NGHTTP2_ERR_WOULDBLOCK:
        case NGHTTP2_ERR_DEFERRED:
                return -EAGAIN;
        case NGHTTP2_ERR_STREAM_CLOSED:
        case NGHTTP2_ERR_STREAM_CLOSING:
                return -ECONNRESET;
        case NGHTTP2_ERR_FLOODED:
                return -EMSGSIZE;
        case NGHTTP2_ERR_INVALID_ARGUMENT:
                return -EINVAL;
        case NGHTTP2_ERR_EOF:
                return -EPIPE;
        default:
                return -EPROTO;
        }
}

int errno_from_sqlite(int e) {
        switch (e & 0xff) {
        case SQLITE_OK:
        case SQLITE_DONE:
        case SQLITE_ROW:
                return 0;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_READONLY:
        case SQLITE_PERM:
        case SQLITE_AUTH:
                return -EACCES;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
                return -EBADMSG;
        case SQLITE_IOERR:
                return -EIO;
        case SQLITE_CONSTRAINT:
                return -EEXIST;
        case SQLITE_TOOBIG:
                return -E2BIG;
        case SQLITE_MISUSE:
        case SQLITE_RANGE:
                return -EINVAL;
        default:
                return -EIO;
        }
}

int errno_from_curl(int e) {
        switch ((CURLcode) e) {
        case CURLE_OK:
                return 0;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2_STREAM:
                return -ECONNRESET;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
                return -EPROTO;
        case CURLE_ABORTED_BY_CALLBACK:
        case CURLE_WRITE_ERROR:
                return -ECANCELED;
        default:
                return -EIO;
        }
}

const char *gnutls_error_string(int e) {
        /* GnuTLS codes exist only once it is loaded; this guards a misuse, it is no expected path. */
        return gnutls_dl_loaded() ? gnutls_strerror(e) : "GnuTLS error (library not loaded)";
}

const char *curl_error_string(int e) {
        /* gate's own HTTP/1.1 client reports in curl's codes too, with libcurl never loaded. */
        if (curl_dl_loaded())
                return curl_easy_strerror((CURLcode) e);
        return e == CURLE_OK ? "No error" : strerror(-errno_from_curl(e));
}

const char *nghttp2_error_string(int e) {
        return nghttp2_strerror(e);
}
