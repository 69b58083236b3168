/* translate-bench: one client request body translated N times by translate_request(), for callgrind.
 *
 * valgrind --tool=callgrind --toggle-collect=bench_run ./build/bench/translate-bench KIND FILE N [OUT]
 * counts only the N translations (parse, translate, write and, for an Anthropic client's stream, the input
 * token estimate). KIND is messages-to-chat, chat-to-messages, responses-to-chat or responses-to-messages.
 * OUT, when given, gets the translated body (to check that a change leaves the bytes as they were).
 * bench/lib/agent_request.py writes an agent-sized body to translate. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/util.h"
#include "translate/translate.h"

/* Not static and not inlined: callgrind's --toggle-collect finds it by name. */
__attribute__((noinline)) int bench_run(TranslateKind k, const char *s, size_t n, unsigned iters,
                                        TranslatedRequest *last);
__attribute__((noinline)) int bench_run(TranslateKind k, const char *s, size_t n, unsigned iters,
                                        TranslatedRequest *last) {
        for (unsigned i = 0; i < iters; i++) {
                _cleanup_free_ char *error = NULL;
                int r;

                translated_request_done(last);
                r = translate_request(k, s, n, "upstream-model", last, &error);
                if (r < 0) {
                        fprintf(stderr, "translate_request: %s%s%s\n", strerror(-r), error ? ": " : "",
                                error ?: "");
                        return r;
                }
        }
        return 0;
}

int main(int argc, char *argv[]) {
        _cleanup_free_ char *s = NULL;
        _cleanup_(translated_request_done) TranslatedRequest t = {};
        TranslateKind k = _TRANSLATE_KIND_INVALID;
        unsigned long iters;
        char *end;
        size_t n;
        int r;

        if (argc < 4 || argc > 5) {
                fprintf(stderr, "usage: translate-bench KIND FILE N [OUT]\n");
                return 2;
        }
        for (TranslateKind i = 0; i < _TRANSLATE_KIND_MAX; i++)
                if (streq(argv[1], translate_kind_to_string(i)))
                        k = i;
        if (k < 0) {
                fprintf(stderr, "%s: not a translation kind\n", argv[1]);
                return 2;
        }
        errno = 0;
        iters = strtoul(argv[3], &end, 10);
        if (errno != 0 || *end || end == argv[3] || iters < 1 || iters > 1000000) {
                fprintf(stderr, "%s: N must be a number from 1 to 1000000\n", argv[3]);
                return 2;
        }
        r = read_full_file(argv[2], 64U << 20, &s, &n);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", argv[2], strerror(-r));
                return 1;
        }
        if (bench_run(k, s, n, (unsigned) iters, &t) < 0)
                return 1;
        if (argc == 5) {
                FILE *f = fopen(argv[4], "we");
                if (!f || fwrite(t.body, 1, t.len, f) != t.len || fclose(f) != 0) {
                        fprintf(stderr, "%s: %s\n", argv[4], strerror(errno));
                        return 1;
                }
        }
        printf("%zu bytes in, %zu bytes out, %s, input token estimate %llu\n", n, t.len,
               t.dropped ? t.dropped : "nothing dropped", (unsigned long long) t.input_tokens_estimate);
        return 0;
}
