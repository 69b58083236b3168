/* Unit tests for jscan: the validating top-level JSON scan used to find "model" and "stream". */
#include "proxy/jscan.h"
#include "tests.h"

static const char *const keys[] = { "model", "stream" };

static int scan(const char *s, JsonSpan spans[2]) {
        return jscan_object(s, strlen(s), keys, 2, spans, NULL);
}

TEST(finds_top_level_keys_only) {
        JsonSpan sp[2];
        const char *s = "{\"messages\":[{\"model\":\"inner\",\"stream\":false}],\"model\":\"gpt-4o\",\"stream\":true}";
        char *m = NULL;

        ASSERT_OK(scan(s, sp));
        ASSERT_EQ(sp[0].type, 's');
        ASSERT_OK(jscan_string(s, &sp[0], &m));
        ASSERT_STREQ(m, "gpt-4o");
        free(m);
        ASSERT_EQ(sp[1].type, 't');
}

TEST(missing_keys) {
        JsonSpan sp[2];
        ASSERT_OK(scan("{}", sp));
        ASSERT_EQ(sp[0].type, 0);
        ASSERT_OK(scan(" { \"a\" : [1, 2.5e-3, -0, null, {\"b\": \"\\u00e9\"}] } \n", sp));
        ASSERT_EQ(sp[0].type, 0);
}

TEST(string_escapes_decoded) {
        JsonSpan sp[2];
        const char *s = "{\"model\":\"a\\\"b\\\\c\\u00e9\\ud83d\\ude00\\n\"}";
        char *m = NULL;
        ASSERT_OK(scan(s, sp));
        ASSERT_OK(jscan_string(s, &sp[0], &m));
        ASSERT_STREQ(m, "a\"b\\c\xc3\xa9\xf0\x9f\x98\x80\n");
        free(m);
        const char *z = "{\"model\":\"a\\u0000b\"}";
        ASSERT_OK(scan(z, sp));
        ASSERT_ERROR(jscan_string(z, &sp[0], &m), EINVAL);
}

TEST(malformed) {
        JsonSpan sp[2];
        const char *bad[] = { "", "{", "{\"model\"}", "{\"model\":}", "{\"a\":1,}", "{\"a\":01}", "{\"a\":1.}",
                              "{\"a\":tru}", "{\"a\":\"x}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12g4\"}", "{} x",
                              "{\"a\":[1,]}", "{\"a\":\"\x01\"}", "{'a':1}", "{\"a\" 1}", "{\"a\":-}" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                if (scan(bad[i], sp) != -EBADMSG)
                        TEST_FAIL("accepted malformed input #%zu: %s", i, bad[i]);
        ASSERT_ERROR(scan("[1,2]", sp), ENOTDIR);
        ASSERT_ERROR(scan("\"str\"", sp), ENOTDIR);
}

TEST(duplicate_wanted_key) {
        JsonSpan sp[2];
        ASSERT_ERROR(scan("{\"model\":\"a\",\"model\":\"b\"}", sp), EEXIST);
        /* Duplicates of keys we do not look at are the upstream's business. */
        ASSERT_OK(scan("{\"x\":1,\"x\":2,\"model\":\"a\"}", sp));
}

TEST(depth_limit) {
        char buf[1024] = "{\"a\":";
        size_t n = strlen(buf);
        for (int i = 0; i < 200; i++)
                buf[n++] = '[';
        for (int i = 0; i < 200; i++)
                buf[n++] = ']';
        buf[n++] = '}';
        buf[n] = 0;
        JsonSpan sp[2];
        ASSERT_ERROR(scan(buf, sp), ELOOP);
}

TEST(error_offset) {
        JsonSpan sp[2];
        size_t off = 0;
        const char *s = "{\"model\":\"x\", oops}";
        ASSERT_ERROR(jscan_object(s, strlen(s), keys, 2, sp, &off), EBADMSG);
        ASSERT_EQ(off, 14);
}
