/* Fuzz target: the usage scanner over arbitrary bytes, checking that neither how the input is split nor the
 * SSE line prefilter ever matters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "api/usage-scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void scan(Dialect d, bool sse, bool prefilter, const uint8_t *p, size_t n, size_t stride, Usage *ret) {
        UsageScanner s;

        usage_scanner_init(&s, d, sse);
        s.no_prefilter = !prefilter;
        for (size_t i = 0; i < n; i += stride)
                usage_scanner_feed(&s, p + i, MIN(stride, n - i));
        usage_scanner_result(&s, ret);
}

static bool usage_equal(const Usage *a, const Usage *b) {
        return a->input_tokens == b->input_tokens && a->output_tokens == b->output_tokens &&
                a->cache_read_tokens == b->cache_read_tokens && a->cache_write_tokens == b->cache_write_tokens &&
                a->found == b->found && streq(a->model, b->model);
}

/* The first byte picks the dialect (bit 0), SSE or JSON (bit 1) and a chunk size (the rest); the
 * remaining bytes are the upstream's body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Usage whole, chunked, bytewise, full, full_chunked, json;
        Dialect d;
        bool sse;

        if (size < 1)
                return 0;
        d = data[0] & 1 ? DIALECT_ANTHROPIC : DIALECT_OPENAI;
        sse = data[0] & 2;

        scan(d, sse, true, data + 1, size - 1, SIZE_MAX, &whole);
        scan(d, sse, true, data + 1, size - 1, (data[0] >> 2) + 1, &chunked);
        scan(d, sse, true, data + 1, size - 1, 1, &bytewise);
        /* Every line through the full scan: the prefilter may only save work, never change an answer. */
        scan(d, sse, false, data + 1, size - 1, SIZE_MAX, &full);
        scan(d, sse, false, data + 1, size - 1, (data[0] >> 2) + 1, &full_chunked);
        if (strnlen(whole.model, sizeof whole.model) >= sizeof whole.model)
                abort();
        if (!usage_equal(&whole, &chunked) || !usage_equal(&whole, &bytewise)) {
                fprintf(stderr, "usage differs with the split\n");
                abort();
        }
        if (!usage_equal(&whole, &full) || !usage_equal(&chunked, &full_chunked)) {
                fprintf(stderr, "usage differs with the prefilter\n");
                abort();
        }

        if (usage_from_json(d, data + 1, size - 1, &json) >= 0 && !sse && !usage_equal(&json, &whole))
                abort();
        return 0;
}
