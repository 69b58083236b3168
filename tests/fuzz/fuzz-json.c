/* Fuzz target: gate's JSON reader and writer against jansson on the same bytes (tests/json-diff.c). */
#include <stdint.h>
#include <stdlib.h>

#include "json-diff.h"
#include "translate/json-fast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *) data;

        /* Any difference is a bug in one of the two: stop here so that libFuzzer keeps the input. */
        if (json_diff_parse(s, size, 0) < 0 || json_diff_parse(s, size, JSON_DECODE_ANY) < 0)
                abort();
        /* The filtered reader against the full one; a small value cap too, for where it stops. */
        if (json_diff_keep(s, size, 0, SIZE_MAX) < 0 || json_diff_keep(s, size, JSON_DECODE_ANY, SIZE_MAX) < 0 ||
            json_diff_keep(s, size, 0, 7) < 0)
                abort();
        if (size < 4096 && json_diff_string(s, size) < 0)
                abort();
        return 0;
}
