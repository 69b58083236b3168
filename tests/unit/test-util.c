/* Unit tests for src/shared: buffers, the arena, number/size/time parsing and formatting, socket addresses, strv. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "shared/arena.h"
#include "shared/buf.h"
#include "shared/util.h"
#include "tests.h"

TEST(buf_append_consume_grow) {
        Buf b = {};
        for (int i = 0; i < 10000; i++)
                ASSERT_OK(buf_append(&b, "abcd", 4));
        ASSERT_EQ(buf_len(&b), 40000);
        buf_consume(&b, 39998);
        ASSERT_EQ(buf_len(&b), 2);
        ASSERT_TRUE(memcmp(buf_data(&b), "cd", 2) == 0);
        buf_consume(&b, 100);
        ASSERT_TRUE(buf_empty(&b));
        buf_shrink(&b, 0);
        ASSERT_NULL(b.data);
        buf_done(&b);
}

TEST(buf_printf_and_steal) {
        Buf b = {};
        size_t n;
        ASSERT_OK(buf_printf(&b, "%s=%d", "x", 42));
        buf_consume(&b, 1);
        char *s = buf_steal_str(&b, &n);
        ASSERT_STREQ(s, "=42");
        ASSERT_EQ(n, 3);
        ASSERT_TRUE(buf_empty(&b));
        free(s);
}

TEST(arena_inline_then_blocks) {
        max_align_t first[64 / sizeof(max_align_t)];
        Arena a;
        char *s, *big;

        arena_init(&a, first, sizeof first);
        /* Small strings come from the caller's block. */
        s = arena_strndup(&a, "hello, world", 5);
        ASSERT_STREQ(s, "hello");
        ASSERT_TRUE((uint8_t *) s >= (uint8_t *) first && (uint8_t *) s < (uint8_t *) first + sizeof first);
        ASSERT_NULL(a.blocks);
        /* What does not fit goes to a new block; earlier pointers stay valid. */
        big = arena_alloc(&a, 10000);
        ASSERT_NOT_NULL(big);
        memset(big, 'x', 10000);
        ASSERT_NOT_NULL(a.blocks);
        ASSERT_STREQ(s, "hello");
        /* Every allocation is aligned for any object, including after odd sizes. */
        for (size_t i = 1; i < 200; i++) {
                void *p = arena_alloc(&a, i);
                ASSERT_NOT_NULL(p);
                ASSERT_EQ((uintptr_t) p % _Alignof(max_align_t), 0);
                memset(p, 0xa5, i);
        }
        ASSERT_NULL(arena_alloc(&a, SIZE_MAX - 8));
        arena_done(&a);
        ASSERT_NULL(a.blocks);

        /* A reset frees the blocks and starts again on the caller's block. */
        arena_init(&a, first, sizeof first);
        ASSERT_NOT_NULL(arena_alloc(&a, 5000));
        ASSERT_NOT_NULL(a.blocks);
        arena_reset(&a);
        ASSERT_NULL(a.blocks);
        s = arena_strndup(&a, "again", 5);
        ASSERT_TRUE((uint8_t *) s == (uint8_t *) first);
        arena_reset(&a);
        arena_done(&a);

        /* Without a first block the first use allocates. */
        arena_init(&a, NULL, 0);
        ASSERT_STREQ(arena_strndup(&a, "abc", 3), "abc");
        arena_done(&a);
}

TEST(unhexchar_values) {
        ASSERT_EQ(unhexchar('0'), 0);
        ASSERT_EQ(unhexchar('9'), 9);
        ASSERT_EQ(unhexchar('a'), 10);
        ASSERT_EQ(unhexchar('F'), 15);
        ASSERT_EQ(unhexchar('g'), -1);
        ASSERT_EQ(unhexchar(' '), -1);
        ASSERT_EQ(unhexchar('\0'), -1);
        ASSERT_EQ(unhexchar((char) 0xc3), -1);
}

TEST(format_uint64_values) {
        char out[21];
        ASSERT_STREQ(format_uint64(0, out), "0");
        ASSERT_STREQ(format_uint64(42, out), "42");
        ASSERT_STREQ(format_uint64(UINT64_MAX, out), "18446744073709551615");
}

TEST(parse_size_values) {
        uint64_t v;
        ASSERT_OK(parse_size("32M", &v));
        ASSERT_EQ(v, 32ULL << 20);
        ASSERT_OK(parse_size("4096", &v));
        ASSERT_EQ(v, 4096);
        ASSERT_OK(parse_size("64KiB", &v));
        ASSERT_EQ(v, 65536);
        ASSERT_ERROR(parse_size("12Q", &v), EINVAL);
        ASSERT_ERROR(parse_size("", &v), EINVAL);
        ASSERT_ERROR(parse_size("-1", &v), EINVAL);
        ASSERT_ERROR(parse_size("99999999999999999999", &v), ERANGE);
        ASSERT_ERROR(parse_size("17179869184G", &v), ERANGE);
}

TEST(parse_timespan_values) {
        usec_t v;
        ASSERT_OK(parse_timespan("30s", &v));
        ASSERT_EQ(v, 30 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan("500ms", &v));
        ASSERT_EQ(v, 500 * USEC_PER_MSEC);
        ASSERT_OK(parse_timespan("2min", &v));
        ASSERT_EQ(v, 120 * USEC_PER_SEC);
        ASSERT_OK(parse_timespan("7", &v));
        ASSERT_EQ(v, 7 * USEC_PER_SEC);
        ASSERT_ERROR(parse_timespan("forever", &v), EINVAL);
        ASSERT_ERROR(parse_timespan("5 parsecs", &v), EINVAL);
}

TEST(parse_bool_values) {
        ASSERT_EQ(parse_bool("true"), 1);
        ASSERT_EQ(parse_bool("no"), 0);
        ASSERT_ERROR(parse_bool("maybe"), EINVAL);
}

TEST(socket_addresses) {
        struct sockaddr_storage ss;
        socklen_t len;
        char buf[64];

        ASSERT_OK(parse_socket_address("127.0.0.1:31145", &ss, &len));
        ASSERT_EQ(ss.ss_family, AF_INET);
        format_socket_address((struct sockaddr *) &ss, len, buf, sizeof buf);
        ASSERT_STREQ(buf, "127.0.0.1:31145");
        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &ss));

        ASSERT_OK(parse_socket_address("[::1]:80", &ss, &len));
        ASSERT_EQ(ss.ss_family, AF_INET6);
        ASSERT_TRUE(sockaddr_is_loopback((struct sockaddr *) &ss));
        format_socket_address((struct sockaddr *) &ss, len, buf, sizeof buf);
        ASSERT_STREQ(buf, "[::1]:80");

        ASSERT_OK(parse_socket_address("*:4919", &ss, &len));
        ASSERT_EQ(ss.ss_family, AF_INET6);
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &ss));
        ASSERT_OK(parse_socket_address("4919", &ss, &len));
        ASSERT_OK(parse_socket_address("10.1.2.3:1", &ss, &len));
        ASSERT_FALSE(sockaddr_is_loopback((struct sockaddr *) &ss));

        ASSERT_ERROR(parse_socket_address("::1:80", &ss, &len), EINVAL);
        ASSERT_ERROR(parse_socket_address("127.0.0.1:70000", &ss, &len), EINVAL);
        ASSERT_ERROR(parse_socket_address("example.org:80", &ss, &len), EINVAL);
        ASSERT_ERROR(parse_socket_address("[::1]80", &ss, &len), EINVAL);
        ASSERT_ERROR(parse_socket_address("", &ss, &len), EINVAL);
}

TEST(strv_helpers) {
        char **l = NULL;
        size_t n = 0;
        ASSERT_OK(strv_extend(&l, &n, "a"));
        ASSERT_OK(strv_extend(&l, &n, "b"));
        ASSERT_EQ(strv_length(l), 2);
        char *other[] = { "a", "b", NULL };
        char *shorter[] = { "a", NULL };
        ASSERT_TRUE(strv_equal(l, other));
        ASSERT_FALSE(strv_equal(l, shorter));
        ASSERT_TRUE(strv_equal(NULL, NULL));
        strv_free(l);
}

TEST(read_full_file_limits) {
        char path[] = "/tmp/gate-test-XXXXXX";
        int fd = mkstemp(path);
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(write(fd, "hello", 5), 5);
        close(fd);
        char *d;
        size_t n;
        ASSERT_OK(read_full_file(path, 100, &d, &n));
        ASSERT_STREQ(d, "hello");
        free(d);
        ASSERT_ERROR(read_full_file(path, 3, &d, &n), EFBIG);
        unlink(path);
        ASSERT_ERROR(read_full_file(path, 3, &d, &n), ENOENT);
}

/* The reference below is snprintf() cut short on purpose. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

TEST(ipv4_addresses_format_as_inet_ntop_and_snprintf_would) {
        static const uint8_t octets[] = { 0, 1, 9, 10, 99, 100, 127, 199, 200, 255 };
        static const uint16_t ports[] = { 0, 1, 9, 10, 80, 443, 31145, 65535 };
        struct sockaddr_in a = { .sin_family = AF_INET };
        char got[64], want[64], h[INET_ADDRSTRLEN];

        for (size_t i = 0; i < ELEMENTSOF(octets); i++)
                for (size_t j = 0; j < ELEMENTSOF(ports); j++) {
                        uint8_t *b = (uint8_t *) &a.sin_addr;
                        int n_got, n_want;

                        b[0] = octets[i];
                        b[1] = octets[(i + 3) % ELEMENTSOF(octets)];
                        b[2] = octets[(i + 5) % ELEMENTSOF(octets)];
                        b[3] = octets[(i + j) % ELEMENTSOF(octets)];
                        a.sin_port = htons(ports[j]);
                        ASSERT_NOT_NULL(inet_ntop(AF_INET, &a.sin_addr, h, sizeof h));
                        n_want = snprintf(want, sizeof want, "%s:%u", h, ports[j]);
                        n_got = format_socket_address((struct sockaddr *) &a, sizeof a, got, sizeof got);
                        ASSERT_STREQ(got, want);
                        ASSERT_EQ(n_got, n_want);
                        /* Cut short as snprintf() cuts: the length it would have had, and a terminated prefix. */
                        for (size_t n = 0; n <= 6; n++) {
                                char small[8] = "xxxxxxx", ref[8] = "xxxxxxx";
                                ASSERT_EQ(format_socket_address((struct sockaddr *) &a, sizeof a, small, n), n_want);
                                (void) snprintf(ref, n, "%s:%u", h, ports[j]);
                                ASSERT_TRUE(memcmp(small, ref, sizeof small) == 0);
                        }
                }
}
