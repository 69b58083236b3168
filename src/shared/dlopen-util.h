/* dlopen-util: optional shared libraries loaded on first use, their functions resolved into sym_* pointers. */
#pragma once

#include <stdbool.h>

/* gate links neither libcurl nor GnuTLS: each pulls in a tree of libraries (libcrypto, krb5, ldap, p11-kit,
 * nettle...) that a gate serving plain-HTTP local upstreams never uses, and whose mapping and symbol binding
 * cost idle memory and start-up time. They are loaded, as systemd loads its optional libraries, when first
 * needed. The pointers are typed from the real prototypes (typeof), so calls through them are checked. */
#define DLSYM_PROTOTYPE(symbol) extern typeof(symbol) *sym_##symbol
#define DLSYM_FUNCTION(symbol) typeof(symbol) *sym_##symbol = NULL
#define DLSYM_ARG(symbol) ((void **) &sym_##symbol), #symbol

typedef struct DlLibrary {
        const char *soname;             /* the exact SONAME, e.g. "libcurl-gnutls.so.4" */
        const char *unavailable;        /* what does not work without it, for the messages */
        void *handle;                   /* non-NULL once loaded with every symbol resolved */
        int error;                      /* negative errno of the failed load, kept */
        char *message;                  /* its explanation, for logs and for clients */
} DlLibrary;

/* Loads lib->soname (RTLD_NOW | RTLD_NODELETE) and resolves the (void **pointer, const char *name) pairs
 * that follow (DLSYM_ARG), NULL-terminated. Idempotent. A failure is logged once, at error level, and
 * kept: later calls return the same error without trying again, as a broken installation does not heal
 * while the daemon runs and a retry per request would cost a path search each time. Returns 0, or
 * -ELIBACC (cannot be loaded) / -ELIBBAD (a function is missing). Not thread-safe: gate calls it from the
 * event loop's thread only (and the CLI's). */
int dl_library_open(DlLibrary *lib, ...) __attribute__((sentinel));

static inline bool dl_library_loaded(const DlLibrary *lib) {
        return lib->handle;
}
