/* gate: entry point of the daemon and its command line. */
#include "core/cli.h"

int main(int argc, char *argv[]) {
        return cli_main(argc, argv);
}
