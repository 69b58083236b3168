/* Fuzz target: jscan over arbitrary bytes, and decoding whatever string spans it reports. */
#include <stdint.h>
#include <stdlib.h>

#include "proxy/jscan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const keys[] = { "model", "stream", "messages" };
        JsonSpan sp[3];
        size_t off;

        if (jscan_object((const char *) data, size, keys, 3, sp, &off) < 0)
                return 0;
        for (size_t i = 0; i < 3; i++) {
                char *s = NULL;
                if (sp[i].type == 's' && jscan_string((const char *) data, &sp[i], &s) >= 0)
                        free(s);
        }
        return 0;
}
