/* dlopen-util: optional shared libraries loaded on first use, their functions resolved into sym_* pointers. */
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "shared/dlopen-util.h"
#include "shared/log.h"

static int dl_library_fail(DlLibrary *lib, int error, const char *why) {
        lib->error = error;
        if (asprintf(&lib->message, "%s cannot be loaded: %s; %s", lib->soname, why, lib->unavailable) < 0)
                lib->message = NULL;
        return log_error_errno(error, "%s.", lib->message ?: lib->soname);
}

int dl_library_open(DlLibrary *lib, ...) {
        void *handle;
        va_list ap, again;
        int r = 0;

        if (lib->handle)
                return 0;
        if (lib->error < 0)
                return lib->error;

        /* RTLD_NOW: a missing symbol of its own dependencies shows here, not as a crash mid-request.
         * RTLD_NODELETE: the library stays for the life of the process, as if linked. */
        handle = dlopen(lib->soname, RTLD_NOW | RTLD_NODELETE);
        if (!handle)
                return dl_library_fail(lib, -ELIBACC, dlerror() ?: "unknown error");

        va_start(ap, lib);
        va_copy(again, ap);
        for (;;) {
                void **sym = va_arg(ap, void **);
                const char *name;

                if (!sym)
                        break;
                name = va_arg(ap, const char *);
                *sym = dlsym(handle, name);
                if (!*sym) {
                        char why[256];

                        snprintf(why, sizeof why, "it has no function %s()", name);
                        r = dl_library_fail(lib, -ELIBBAD, why);
                        break;
                }
        }
        va_end(ap);
        if (r < 0) {
                /* No half-set table: every pointer is NULL again, as before the attempt. */
                for (void **sym; (sym = va_arg(again, void **)); (void) va_arg(again, const char *))
                        *sym = NULL;
                va_end(again);
                (void) dlclose(handle);
                return r;
        }
        va_end(again);
        lib->handle = handle;
        log_debug("Loaded %s.", lib->soname);
        return 0;
}
