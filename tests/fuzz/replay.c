/* Replays a libFuzzer corpus (files or directories given as arguments) through LLVMFuzzerTestOneInput. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shared/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, unsigned *count) {
        char *d = NULL;
        size_t n;
        int r = read_full_file(path, 64U << 20, &d, &n);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", path, strerror(-r));
                return r;
        }
        LLVMFuzzerTestOneInput((const uint8_t *) d, n);
        free(d);
        (*count)++;
        return 0;
}

int main(int argc, char *argv[]) {
        unsigned count = 0;
        int failed = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;
                if (stat(argv[i], &st) < 0) {
                        fprintf(stderr, "%s: missing corpus\n", argv[i]);
                        return EXIT_FAILURE;
                }
                if (!S_ISDIR(st.st_mode)) {
                        failed |= run_file(argv[i], &count) < 0;
                        continue;
                }
                DIR *dir = opendir(argv[i]);
                if (!dir)
                        return EXIT_FAILURE;
                struct dirent *de;
                while ((de = readdir(dir))) {
                        char p[4096];
                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(p, sizeof p, "%s/%s", argv[i], de->d_name);
                        failed |= run_file(p, &count) < 0;
                }
                closedir(dir);
        }
        printf("replayed %u inputs\n", count);
        if (count == 0) {
                fprintf(stderr, "empty corpus\n");
                return EXIT_FAILURE;
        }
        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
