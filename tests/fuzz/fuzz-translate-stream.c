/* fuzz-translate-stream: any upstream SSE into a stream translator; the client stream must stay valid. */
#include <stdio.h>
#include <stdlib.h>

#include "unit/test-translate-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Byte 0: the kind (bits 0-1), include_usage (bit 2), a clean end of the upstream transfer (bit 3).
 * Byte 1: where to split the rest for a second run, which must give the same output. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        StreamResult whole = {}, split = {};
        const char *end = NULL, *why;
        TranslateKind k;
        bool usage, complete;
        size_t at;

        if (size < 2)
                return 0;
        k = (TranslateKind) (data[0] & 3);
        usage = data[0] & 4;
        complete = data[0] & 8;
        at = size > 2 ? data[1] % (size - 2) : 0;
        data += 2, size -= 2;

        if (run_stream(k, (const char *) data, size, 0, usage, complete, &whole) < 0)
                return 0;
        why = validate_stream(k, whole.out, whole.len, usage, &end);
        if (why) {
                fprintf(stderr, "invalid %s client stream: %s\n%.*s\n", translate_kind_to_string(k), why,
                        (int) whole.len, whole.out);
                abort();
        }
        /* A complete client stream is reported as one, and a cut or malformed one never is. */
        if ((streq(end, "complete") && (whole.feed != 0 || whole.finish != 0)) ||
            ((whole.feed < 0 || whole.finish < 0) && !streq(end, "error"))) {
                fprintf(stderr, "stream ended '%s' but feed %d finish %d\n", end, whole.feed, whole.finish);
                abort();
        }
        if (at > 0 && run_stream_split(k, (const char *) data, size, 0, at, usage, complete, &split) >= 0) {
                if (split.len != whole.len || memcmp(split.out, whole.out, whole.len) != 0) {
                        fprintf(stderr, "split at %zu changed the output\n", at);
                        abort();
                }
                stream_result_done(&split);
        }
        stream_result_done(&whole);
        return 0;
}
