/* Unit tests for the JSON reader and compact writer (json-read.c, json-write.c), each case against jansson. */
/* These tests dump their own trees, outside any translation (see translate-internal.h). */
#define TRANSLATE_ALLOW_JSON_DUMPS 1
#include <errno.h>
#include <jansson.h>

#include "json-diff.h"
#include "tests.h"
#include "shared/macro.h"
#include "translate/json-fast.h"

/* Both parsers agree on s, and the verdict is the expected one (1 accepted, 0 rejected). */
#define ASSERT_VERDICT(s, flags, want) ASSERT_EQ(json_diff_parse((s), strlen(s), (flags)), (want))
#define ACCEPT(s) ASSERT_VERDICT((s), 0, 1)
#define REJECT(s) ASSERT_VERDICT((s), 0, 0)

static char *dump(const json_t *j) {
        Buf b = {};
        size_t n;

        if (json_write_compact(j, &b) < 0)
                return NULL;
        return buf_steal_str(&b, &n);
}

TEST(whitespace_and_top_level) {
        ACCEPT(" \t\r\n{ \"a\" :\t[ 1 , 2 ] }\n ");
        ACCEPT("[]");
        ACCEPT("{}");
        REJECT("");
        REJECT("   ");
        REJECT("\f[]");                 /* form feed is not JSON whitespace */
        REJECT("\v[]");
        REJECT("1");
        REJECT("\"s\"");
        REJECT("null");
        ASSERT_VERDICT("1", JSON_DECODE_ANY, 1);
        ASSERT_VERDICT(" \"s\" ", JSON_DECODE_ANY, 1);
        ASSERT_VERDICT("true", JSON_DECODE_ANY, 1);
        ASSERT_VERDICT("truex", JSON_DECODE_ANY, 0);
        ASSERT_VERDICT("nul", JSON_DECODE_ANY, 0);
        ASSERT_VERDICT("", JSON_DECODE_ANY, 0);
        ASSERT_VERDICT("-", JSON_DECODE_ANY, 0);
}

TEST(trailing_garbage) {
        REJECT("{}x");
        REJECT("{} {}");
        REJECT("[1]]");
        ASSERT_EQ(json_diff_parse("{}\0", 3, 0), 0);
        REJECT("[1,]");
        REJECT("{\"a\":1,}");
        REJECT("[,1]");
        REJECT("{\"a\" 1}");
        REJECT("{1:1}");
        REJECT("[1 2]");
        REJECT("[true1]");
        REJECT("[tru]");
        REJECT("[nulll]");
        REJECT("[");
        REJECT("{\"a\":");
}

/* jansson loses one NUL byte pushed back after a number or literal; other NULs are refused. */
TEST(nul_bytes) {
        static const struct {
                const char *s;
                size_t n;
                size_t flags;
                int want;
        } cases[] = {
                { "[1\0]", sizeof("[1\0]") - 1, 0, 1 },
                { "[1.5\0,-2e3\0]", sizeof("[1.5\0,-2e3\0]") - 1, 0, 1 },
                { "{\"a\":true\0,\"b\":null\0}", sizeof("{\"a\":true\0,\"b\":null\0}") - 1, 0, 1 },
                { "2\0", sizeof("2\0") - 1, JSON_DECODE_ANY, 1 },
                { "false\0", sizeof("false\0") - 1, JSON_DECODE_ANY, 1 },
                { "[1\0\0]", sizeof("[1\0\0]") - 1, 0, 0 },
                { "[\0]", sizeof("[\0]") - 1, 0, 0 },
                { "[]\0", sizeof("[]\0") - 1, 0, 0 },
                { "[\"a\"\0]", sizeof("[\"a\"\0]") - 1, 0, 0 },
                { "[\"a\0\"]", sizeof("[\"a\0\"]") - 1, 0, 0 },
                { "\0[]", sizeof("\0[]") - 1, 0, 0 },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                ASSERT_EQ(json_diff_parse(cases[i].s, cases[i].n, cases[i].flags), cases[i].want);
}

TEST(numbers) {
        ACCEPT("[0,-0,1,-1,9223372036854775807,-9223372036854775808]");
        REJECT("[9223372036854775808]");
        REJECT("[-9223372036854775809]");
        REJECT("[99999999999999999999]");
        REJECT("[01]");
        REJECT("[-01]");
        REJECT("[+1]");
        REJECT("[1.]");
        REJECT("[.5]");
        REJECT("[1e]");
        REJECT("[1e+]");
        REJECT("[-]");
        REJECT("[0x10]");
        ACCEPT("[-0.0,0.0,1.5,-1.5e3,1E2,1e-2,1e+2,0.1,1e308,4.9e-324,1e-400,123456789012345678901234567890.0]");
        REJECT("[1e400]");
        REJECT("[-1e400]");
        ACCEPT("[100000000000000000000000000000000000000000000000000000000000000000000000000000.5]");

        json_t *j = NULL;
        ASSERT_OK(json_read("[-0,1.0]", 8, 0, &j));
        ASSERT_TRUE(json_is_integer(json_array_get(j, 0)));
        ASSERT_EQ(json_integer_value(json_array_get(j, 0)), 0);
        ASSERT_TRUE(json_is_real(json_array_get(j, 1)));
        json_decref(j);
        ASSERT_ERROR(json_read("[1e400]", 7, 0, &j), EBADMSG);
}

TEST(strings) {
        ACCEPT("[\"\",\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"]");
        ACCEPT("[\"\\u00e9\\u00E9\\u20ac\\ud83d\\ude00\\uD83D\\uDE00\"]");
        ACCEPT("[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"]");
        REJECT("[\"\\u0000\"]");
        REJECT("{\"a\\u0000\":1}");
        REJECT("[\"\\ud83d\"]");           /* lone high surrogate */
        REJECT("[\"\\ud83dx\"]");
        REJECT("[\"\\ud83d\\u0041\"]");    /* high surrogate, then not a low one */
        REJECT("[\"\\ude00\"]");           /* lone low surrogate */
        REJECT("[\"\\u12\"]");
        REJECT("[\"\\u12g4\"]");
        REJECT("[\"\\x\"]");
        REJECT("[\"\\'\"]");
        REJECT("[\"a\nb\"]");              /* raw control bytes */
        REJECT("[\"a\tb\"]");
        REJECT("[\"\x1f\"]");
        REJECT("[\"abc]");
        REJECT("[\"abc\\\"]");
        REJECT("[\"\\");
        /* Long strings go through the word-at-a-time scan; escapes late in them through the decoder. */
        ACCEPT("[\"0123456789abcdef0123456789abcdef0123456789abcdef\\n0123456789abcdef\"]");
        REJECT("[\"0123456789abcdef0123456789abcdef0123456789abcdef\x01xyz\"]");
}

TEST(utf8) {
        REJECT("[\"\x80\"]");               /* continuation byte alone */
        REJECT("[\"\xc0\xaf\"]");           /* overlong */
        REJECT("[\"\xc1\xbf\"]");
        REJECT("[\"\xe0\x80\xaf\"]");
        REJECT("[\"\xf0\x80\x80\xaf\"]");
        REJECT("[\"\xed\xa0\x80\"]");       /* encoded surrogate */
        REJECT("[\"\xf4\x90\x80\x80\"]");   /* past U+10FFFF */
        REJECT("[\"\xf5\x80\x80\x80\"]");
        REJECT("[\"\xff\"]");
        REJECT("[\"\xc3\"]");               /* truncated */
        REJECT("[\"\xe2\x82\"]");
        ACCEPT("[\"\xf4\x8f\xbf\xbf\xee\x80\x80\"]");
        REJECT("[\xc3\xa9]");               /* outside a string */
        REJECT("{}\xc3\xa9");
        ACCEPT("[\"0123456789\xc3\xa9" "0123456789\xe2\x82\xac" "0123456789\\t\xf0\x9f\x98\x80\"]");
}

TEST(depth) {
        /* jansson counts the scalar inside the arrays as a level too. */
        for (size_t depth = 2046; depth <= 2050; depth++) {
                size_t n = 0;
                _cleanup_free_ char *s = malloc(2 * depth + 2);
                ASSERT_NOT_NULL(s);
                for (size_t i = 0; i < depth; i++)
                        s[n++] = '[';
                for (size_t i = 0; i < depth; i++)
                        s[n++] = ']';
                ASSERT_EQ(json_diff_parse(s, n, 0), depth <= JSON_PARSER_MAX_DEPTH ? 1 : 0);

                n = 0;
                for (size_t i = 0; i < depth; i++)
                        s[n++] = '[';
                s[n++] = '1';
                for (size_t i = 0; i < depth; i++)
                        s[n++] = ']';
                ASSERT_EQ(json_diff_parse(s, n, 0), depth + 1 <= JSON_PARSER_MAX_DEPTH ? 1 : 0);
        }
}

/* Escaped strings longer than the reader's inline scratch buffer, as keys and as values, one after the other:
 * a decoded key must survive the value's decoding. */
TEST(long_escaped_strings) {
        _cleanup_free_ char *s = malloc(16384);
        size_t n = 0;

        ASSERT_NOT_NULL(s);
        n += (size_t) sprintf(s + n, "{\"");
        for (size_t i = 0; i < 300; i++)
                n += (size_t) sprintf(s + n, "k\\n\\u00e9");
        n += (size_t) sprintf(s + n, "\":\"");
        for (size_t i = 0; i < 400; i++)
                n += (size_t) sprintf(s + n, "v\\t\\ud83d\\ude00\xc3\xa9");
        n += (size_t) sprintf(s + n, "\",\"plain\":[\"\\\"\"]}");
        ASSERT_EQ(json_diff_parse(s, n, 0), 1);

        json_t *j = NULL;
        ASSERT_OK(json_read(s, n, 0, &j));
        ASSERT_EQ(json_object_size(j), 2);
        const char *key = json_object_iter_key(json_object_iter(j));
        ASSERT_EQ(strlen(key), 300 * 4);         /* "k\n\u00e9" decodes to 4 bytes */
        ASSERT_EQ(json_string_length(json_object_iter_value(json_object_iter(j))), 400 * 8);
        json_decref(j);
}

/* The depth limit counts objects, arrays and scalars alike, however they are mixed. */
TEST(depth_mixed) {
        for (size_t depth = 2046; depth <= 2049; depth++) {
                _cleanup_free_ char *s = malloc(8 * depth + 16);
                size_t n = 0;

                ASSERT_NOT_NULL(s);
                for (size_t i = 0; i < depth; i++)
                        n += (size_t) sprintf(s + n, i % 2 ? "[" : "{\"a\":");
                n += (size_t) sprintf(s + n, "\"x\"");
                for (size_t i = depth; i-- > 0;)
                        s[n++] = i % 2 ? ']' : '}';
                ASSERT_EQ(json_diff_parse(s, n, 0), depth + 1 <= JSON_PARSER_MAX_DEPTH ? 1 : 0);
        }
}

TEST(key_order_and_duplicates) {
        const char *s = "{\"z\":1,\"a\":{\"y\":[],\"b\":2},\"m\":3,\"a\":4,\"e\\u00e9\":5}";
        json_t *j = NULL;
        _cleanup_free_ char *d = NULL;

        ACCEPT(s);
        ASSERT_OK(json_read(s, strlen(s), 0, &j));
        d = dump(j);
        /* The last duplicate's value, in the first one's place. */
        ASSERT_STREQ(d, "{\"z\":1,\"a\":4,\"m\":3,\"e\xc3\xa9\":5}");
        json_decref(j);
}

TEST(writer_escapes_and_reals) {
        json_t *j = json_pack("[s, s#, f, f, f, f, f, f, f, I, I]", "\"\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9",
                              "a\0b", (int) 3, 1.0, -0.0, 0.1, 1e17, 1e-5, 1e300, 123456789.125,
                              (json_int_t) INT64_MIN, (json_int_t) INT64_MAX);
        _cleanup_free_ char *d = NULL;

        ASSERT_NOT_NULL(j);
        d = dump(j);
        ASSERT_STREQ(d, "[\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001F\x7f\xc3\xa9\",\"a\\u0000b\",1.0,-0.0,"
                        "0.10000000000000001,1e17,1.0000000000000001e-5,1.0000000000000001e300,123456789.125,"
                        "-9223372036854775808,9223372036854775807]");
        json_decref(j);

        /* Strings the writer must refuse, as jansson does, and the bytes it must keep. */
        ASSERT_EQ(json_diff_string("\xff", 1), 0);
        ASSERT_EQ(json_diff_string("ab\xc3", 3), 0);
        ASSERT_EQ(json_diff_string("\xed\xa0\x80", 3), 0);
        ASSERT_EQ(json_diff_string("0123456789abcdef\"0123456789abcdef\\", 34), 0);

        Buf b = {};
        json_t *bad = json_pack("[o]", json_stringn_nocheck("\xff", 1));
        ASSERT_ERROR(json_write_compact(bad, &b), EINVAL);
        ASSERT_EQ(buf_len(&b), 0);
        json_decref(bad);
        json_t *scalar = json_integer(1);
        ASSERT_ERROR(json_write_compact(scalar, &b), EINVAL);
        json_decref(scalar);
        buf_done(&b);
}

TEST(real_dump_corners) {
        /* Reals whose %.17g needs a ".0", has an exponent, or neither. */
        static const double v[] = { 0.0, 1e16, 1e17, 1.5e-4, 1e-4, 123e-310, 1.7976931348623157e308, -2.5e-7,
                                    1e21 };
        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                json_t *a = json_pack("[f]", v[i]);
                char *theirs = json_dumps(a, JSON_COMPACT);
                _cleanup_free_ char *ours = dump(a);
                ASSERT_STREQ(ours, theirs);
                free(theirs);
                json_decref(a);
        }
}

TEST(writer_cycle) {
        /* jansson refuses a tree that contains itself; so do we, by depth, without recursing forever. */
        json_t *a = json_array(), *o = json_object();
        Buf b = {};

        ASSERT_OK(json_array_append(a, o));
        ASSERT_OK(json_object_set(o, "a", a));
        ASSERT_NULL(json_dumps(a, JSON_COMPACT));
        ASSERT_ERROR(json_write_compact(a, &b), EINVAL);
        ASSERT_EQ(buf_len(&b), 0);
        json_object_clear(o);
        json_decref(o);
        json_decref(a);
        buf_done(&b);
}

TEST(write_string) {
        /* One string on its own: the bytes jansson dumps for it (JSON_ENCODE_ANY), appended after what is
         * there, and nothing appended when it is not UTF-8. */
        static const struct {
                const char *s;
                size_t n;
        } v[] = {
                { "", 0 },
                { " tok17", 6 },
                { "{\"location\":\"Paris\",\"n\":3}", 27 },
                { "\"\\/\b\f\n\r\t\x01\x1f\x7f", 12 },
                { "caf\xc3\xa9 \xf0\x9f\x98\x80 \xe4\xb8\xad", 15 },
                { "a\0b", 3 },
                { "0123456789abcdef0123456789abcdef\"", 33 },
        };
        Buf b = {};

        for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
                json_t *j = json_stringn(v[i].s, v[i].n);
                char *theirs = json_dumps(j, JSON_ENCODE_ANY);

                ASSERT_NOT_NULL(theirs);
                buf_clear(&b);
                ASSERT_OK(buf_append_str(&b, "x"));
                ASSERT_OK(json_write_string(v[i].s, v[i].n, &b));
                ASSERT_EQ(buf_len(&b), 1 + strlen(theirs));
                ASSERT_TRUE(memcmp(buf_data(&b) + 1, theirs, strlen(theirs)) == 0);
                free(theirs);
                json_decref(j);
        }
        buf_clear(&b);
        ASSERT_OK(buf_append_str(&b, "x"));
        ASSERT_ERROR(json_write_string("ok\xff", 3, &b), EINVAL);
        ASSERT_EQ(buf_len(&b), 1);
        ASSERT_ERROR(json_write_string("\xc3", 1, &b), EINVAL);
        ASSERT_EQ(buf_len(&b), 1);
        buf_done(&b);
}

TEST(errors) {
        json_t *j = NULL;
        ASSERT_ERROR(json_read("[]", 2, JSON_REJECT_DUPLICATES, &j), EINVAL);
        ASSERT_ERROR(json_read(NULL, 0, 0, &j), EBADMSG);
        ASSERT_ERROR(json_read("{\"a\":tru}", 9, 0, &j), EBADMSG);
}

TEST(value_limit) {
        json_t *j = NULL;

        /* [1,[2,3]] holds five values: the outer array, 1, the inner array, 2, 3. */
        ASSERT_OK(json_read_max("[1,[2,3]]", 9, 0, 5, &j));
        json_decref(j);
        j = NULL;
        ASSERT_ERROR(json_read_max("[1,[2,3]]", 9, 0, 4, &j), E2BIG);
        ASSERT_NULL(j);
        ASSERT_ERROR(json_read_max("{\"a\":{}}", 8, 0, 1, &j), E2BIG);
        ASSERT_OK(json_read_max("{\"a\":{}}", 8, 0, 2, &j));
        json_decref(j);
}

/* json_read_keep(): what the chat chunk filter of stream.c looks like, on inputs it must not judge otherwise
 * than json_read_max(). The fuzz target (fuzz-json) compares the two on any bytes. */
static const JsonKeep test_choice_keep[] = { { "delta" }, { "index" }, {} };
static const JsonKeep test_chunk_keep[] = { { "id" }, { "choices", test_choice_keep }, {} };

static char *read_kept(const char *s) {
        json_t *j = NULL;
        char *d;

        if (json_read_keep(s, strlen(s), 0, SIZE_MAX, test_chunk_keep, &j) < 0)
                return NULL;
        d = dump(j);
        json_decref(j);
        return d;
}

TEST(keep_makes_only_what_it_names) {
        char *d;

        d = read_kept("{\"id\":\"x\",\"object\":\"chunk\",\"created\":17,\"choices\":[{\"index\":0,"
                      "\"delta\":{\"content\":\"hi\",\"role\":null},\"logprobs\":{\"a\":[1,2]},\"finish_reason\":null},"
                      "[{\"delta\":1,\"x\":2}],3],\"usage\":null}");
        /* The delta is made whole (no inner filter); arrays inside choices are filtered element by element. */
        ASSERT_STREQ(d, "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\",\"role\":null}},"
                        "[{\"delta\":1}],3]}");
        free(d);
        /* A key spelled with an escape is the key; the last duplicate wins, kept or not. */
        d = read_kept("{\"\\u0069d\":1,\"id\":2,\"x\":3,\"x\":4,\"id\":3}");
        ASSERT_STREQ(d, "{\"id\":3}");
        free(d);
        /* A scalar where an object was filtered is made as it is. */
        d = read_kept("{\"choices\":\"none\"}");
        ASSERT_STREQ(d, "{\"choices\":\"none\"}");
        free(d);
}

TEST(keep_checks_what_it_does_not_make) {
        static const char *const bad[] = {
                "{\"object\":\"\\x\"}",                  /* a bad escape */
                "{\"object\":\"\\ud800\"}",              /* a lone surrogate */
                "{\"created\":99999999999999999999}",    /* past strtoll()'s range */
                "{\"created\":1e999}",                   /* a real that overflows */
                "{\"created\":01}",
                "{\"logprobs\":tru}",
                "{\"logprobs\":[1,]}",
                "{\"logprobs\":{\"a\" 1}}",
                "{\"logprobs\":\"\xc0\xaf\"}",           /* an overlong UTF-8 sequence */
                "{\"logprobs\":null,}",
        };
        json_t *j = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ASSERT_EQ(json_diff_keep(bad[i], strlen(bad[i]), 0, SIZE_MAX), 0);
                ASSERT_ERROR(json_read_keep(bad[i], strlen(bad[i]), 0, SIZE_MAX, test_chunk_keep, &j), EBADMSG);
        }
        /* Values not made still count, towards the cap and the depth limit. */
        ASSERT_ERROR(json_read_keep("{\"x\":[1,2,3]}", 13, 0, 4, test_chunk_keep, &j), E2BIG);
        ASSERT_OK(json_read_keep("{\"x\":[1,2,3]}", 13, 0, 5, test_chunk_keep, &j));
        ASSERT_EQ(json_object_size(j), 0U);
        json_decref(j);
        {
                size_t depth = JSON_PARSER_MAX_DEPTH + 1;
                _cleanup_free_ char *deep = malloc(depth * 2 + 16);

                ASSERT_NOT_NULL(deep);
                strcpy(deep, "{\"x\":");
                for (size_t i = 0; i < depth; i++)
                        strcat(deep, "[");
                for (size_t i = 0; i < depth; i++)
                        strcat(deep, "]");
                strcat(deep, "}");
                ASSERT_EQ(json_diff_keep(deep, strlen(deep), 0, SIZE_MAX), 0);
        }
}
