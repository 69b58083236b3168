/* tests.h: the small test harness every unit test uses: TEST() registration and ASSERT_*() checks. */
#pragma once

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct TestCase {
        const char *name;
        void (*func)(void);
} TestCase;

#define TEST_MAX 256
extern TestCase test_cases[TEST_MAX];
extern unsigned test_count;
extern unsigned test_failures;
extern const char *test_current;

#define TEST(n)                                                                 \
        static void test_##n(void);                                             \
        __attribute__((constructor)) static void test_register_##n(void) {      \
                if (test_count < TEST_MAX)                                      \
                        test_cases[test_count++] = (TestCase){ #n, test_##n };  \
        }                                                                       \
        static void test_##n(void)

#define TEST_FAIL(fmt, ...)                                                             \
        do {                                                                            \
                fprintf(stderr, "%s:%d: %s: " fmt "\n", __FILE__, __LINE__, test_current, \
                        ##__VA_ARGS__);                                                 \
                test_failures++;                                                        \
                return;                                                                 \
        } while (0)

#define ASSERT_TRUE(e)                                          \
        do {                                                    \
                if (!(e))                                       \
                        TEST_FAIL("assertion failed: %s", #e);  \
        } while (0)
#define ASSERT_FALSE(e) ASSERT_TRUE(!(e))

#define ASSERT_OK(e)                                                            \
        do {                                                                    \
                long long _r = (long long) (e);                                 \
                if (_r < 0)                                                     \
                        TEST_FAIL("%s failed: %s", #e, strerror((int) -_r));    \
        } while (0)

#define ASSERT_ERROR(e, err)                                                            \
        do {                                                                            \
                long long _r = (long long) (e);                                         \
                if (_r != -(long long) (err))                                           \
                        TEST_FAIL("%s returned %lld, expected -%s", #e, _r, #err);      \
        } while (0)

#define ASSERT_EQ(a, b)                                                                         \
        do {                                                                                    \
                long long _a = (long long) (a), _b = (long long) (b);                           \
                if (_a != _b)                                                                   \
                        TEST_FAIL("%s == %s: %lld != %lld", #a, #b, _a, _b);                    \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                      \
        do {                                                                                    \
                const char *_a = (a), *_b = (b);                                                \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                          \
                        TEST_FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, _a ? _a : "(null)",     \
                                  _b ? _b : "(null)");                                          \
        } while (0)

#define ASSERT_NOT_NULL(p) ASSERT_TRUE((p) != NULL)
#define ASSERT_NULL(p) ASSERT_TRUE((p) == NULL)
#define ASSERT_CONTAINS(hay, needle)                                                            \
        do {                                                                                    \
                const char *_h = (hay), *_n = (needle);                                         \
                if (!_h || !strstr(_h, _n))                                                     \
                        TEST_FAIL("\"%s\" does not contain \"%s\"", _h ? _h : "(null)", _n);    \
        } while (0)
