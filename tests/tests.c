/* tests.c: the main() of every unit test binary: runs the registered TEST()s and reports. */
#include "tests.h"

TestCase test_cases[TEST_MAX];
unsigned test_count;
unsigned test_failures;
const char *test_current;

int main(int argc, char *argv[]) {
        unsigned failed_tests = 0;

        for (unsigned i = 0; i < test_count; i++) {
                unsigned before = test_failures;

                if (argc > 1 && strcmp(argv[1], test_cases[i].name) != 0)
                        continue;
                test_current = test_cases[i].name;
                test_cases[i].func();
                if (test_failures != before) {
                        failed_tests++;
                        printf("FAIL %s\n", test_cases[i].name);
                } else
                        printf("ok   %s\n", test_cases[i].name);
        }
        return failed_tests > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
