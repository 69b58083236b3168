/* gate: entry point of the daemon and its command line. */
#include <malloc.h>
#include <sys/resource.h>

#include "core/cli.h"

int main(int argc, char *argv[]) {
        struct rlimit rl;

        /* Every client and every upstream transfer holds an fd: take all the hard limit allows, as
         * systemd's own daemons do (gate never calls select(), and it starts no children). */
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &rl);
        }
        /* Fixed malloc thresholds instead of glibc's dynamic ones: after one large block (a 4 MiB batch of
         * usage rows, a large request body) is freed, glibc raises its mmap threshold to that size and its
         * trim threshold to twice it, and from then on keeps up to 8 MiB of free memory per arena for good
         * (an idle gate stayed at 9 MiB of anonymous memory after a burst instead of 1). Large blocks are
         * mmap()ed and given back when freed; an arena's free top beyond 1 MiB is trimmed. */
        (void) mallopt(M_MMAP_THRESHOLD, 256 * 1024);
        (void) mallopt(M_TRIM_THRESHOLD, 1024 * 1024);
        return cli_main(argc, argv);
}
