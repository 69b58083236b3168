/* fuzz-translate-request: arbitrary bodies through request, response, error and count_tokens translation. */
#include <stdio.h>
#include <stdlib.h>

#include "translate/translate-internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_be_json_object(const char *what, const char *s, size_t n) {
        json_t *j = json_loadb(s, n, 0, NULL);

        if (!json_is_object(j)) {
                fprintf(stderr, "%s produced no JSON object: %.*s\n", what, (int) n, s);
                abort();
        }
        json_decref(j);
}

/* Byte 0: the kind (bits 0-1); the rest is the body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TranslatedRequest t = {};
        TranslateKind k;
        const char *body;
        char *error = NULL, *out = NULL;
        size_t n, len;
        int r;

        if (size < 1)
                return 0;
        k = (TranslateKind) (data[0] & 3);
        body = (const char *) data + 1;
        len = size - 1;

        r = translate_request(k, body, len, "upstream-model", &t, &error);
        if (r >= 0) {
                must_be_json_object("translate_request", t.body, t.len);
                if (error)
                        abort();
        } else if (r == -EINVAL && !error)
                abort();        /* a refusal always says why */
        translated_request_done(&t);
        free(error);

        if (translate_response(k, body, len, "client-model", &out, &n) >= 0)
                must_be_json_object("translate_response", out, n);
        free(out);
        out = NULL;

        if (translate_error(k, 400 + (data[0] >> 2), body, len, &out, &n) < 0)
                abort();        /* never fails but for memory */
        must_be_json_object("translate_error", out, n);
        free(out);
        out = NULL;

        if (translate_count_tokens_estimate(body, len, &out, &n) >= 0)
                must_be_json_object("translate_count_tokens_estimate", out, n);
        free(out);
        return 0;
}
