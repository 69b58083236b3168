/* gate: entry point of the daemon and its command line. */
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
        return cli_main(argc, argv);
}
