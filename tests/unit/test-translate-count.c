/* Unit tests for the count_tokens estimate: pinned sample estimates and their error, images, PDFs, requests. */
#include "test-translate-util.h"

/* The samples, their estimate (pinned), and their o200k_base count (gpt-tokenizer 4.0.0), as measured for
 * the table in count-tokens.c. */
static const struct {
        const char *name;
        uint64_t estimate, o200k;
} samples[] = {
        { "count/english-license.txt", 1370, 1286 },
        { "count/c-source.txt", 1420, 1349 },
        { "count/markdown.txt", 1630, 1706 },
        { "count/json-lockfile.txt", 1146, 1317 },
        { "count/german.txt", 1538, 1560 },
        { "count/chinese.txt", 1102, 1083 },
};

TEST(sample_estimates_are_pinned_and_within_15_percent) {
        for (size_t i = 0; i < ELEMENTSOF(samples); i++) {
                _cleanup_free_ char *s = NULL;
                uint64_t e;
                size_t n;
                double err;

                s = fixture(samples[i].name, &n);
                ASSERT_NOT_NULL(s);
                e = estimate_text_tokens(s, n);
                err = (double) e / (double) samples[i].o200k - 1;
                printf("     %-28s estimate %5" PRIu64 "  o200k %5" PRIu64 "  %+5.1f%%\n", samples[i].name, e,
                       samples[i].o200k, 100 * err);
                ASSERT_EQ(e, samples[i].estimate);
                ASSERT_TRUE(err > -0.15 && err < 0.15);
        }
}

TEST(text_estimates) {
        ASSERT_EQ(estimate_text_tokens("", 0), 0);
        ASSERT_EQ(estimate_text_tokens("Hello", 5), 1);
        ASSERT_EQ(estimate_text_tokens("Hello, world", 12), 3);
        ASSERT_EQ(estimate_text_tokens("sd_event_source", 15), 3);
        ASSERT_EQ(estimate_text_tokens("12345678", 8), 3);
        ASSERT_EQ(estimate_text_tokens("\xe4\xbd\xa0\xe5\xa5\xbd", 6), 2);   /* two CJK characters: 1.6 */
        /* Bytes that are not UTF-8 are counted, not trusted. */
        ASSERT_TRUE(estimate_text_tokens("\xff\xfe\xfd", 3) > 0);
}

/* The per-byte table (count-tokens.c) must count as the character-by-character classification did: these
 * figures are that first version's, on inputs where a fast path could go astray (overlong forms that decode
 * to ASCII punctuation or vowels, cut sequences, runs ending at multibyte characters, lone spaces and
 * symbols joining the next run). */
TEST(text_estimates_at_the_edges) {
        static const struct {
                const char *s;
                uint64_t want;
        } cases[] = {
                { "a\xc0\x80" "b", 2 },
                { "!!\xc0\x80", 1 },
                { "\xc1\xa1\xc1\xa5xyzqw", 1 },
                { "bcdfgh\xc1\xa1", 5 },
                { "\xe4\xb8\xad\xe6\x96\x87 text", 3 },
                { "\xf0\x9f\x98\x80\xf0\x9f\x98\x80 ok", 2 },
                { "\xff\xfe\xc3", 2 },
                { "x\xe4\xb8", 2 },
                { "caf\xc3\xa9 na\xc3\xafve", 4 },
                { " a  b\t\n\n!x", 5 },
                { "ab1234567cd/ef_gh\"i\\j", 9 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ASSERT_EQ(estimate_text_tokens(cases[i].s, strlen(cases[i].s)), cases[i].want);
}

static uint64_t count(const char *body) {
        _cleanup_free_ char *out = NULL;
        json_t *j;
        uint64_t n;
        size_t len;

        if (translate_count_tokens_estimate(body, strlen(body), &out, &len) < 0)
                return UINT64_MAX;
        j = json_loadb(out, len, 0, NULL);
        if (!json_is_true(json_object_get(j, "estimated"))) {
                json_decref(j);
                return UINT64_MAX;
        }
        n = (uint64_t) json_integer_value(json_object_get(j, "input_tokens"));
        json_decref(j);
        return n;
}

TEST(count_tokens_bodies) {
        uint64_t plain, tools;

        plain = count("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello, world\"}]}");
        ASSERT_EQ(plain, 3 + 3);
        ASSERT_EQ(
                count("{\"model\":\"m\",\"system\":\"Be brief.\",\"messages\":[{\"role\":\"user\",\"content\":"
                      "[{\"type\":\"text\",\"text\":\"Hello, world\"}]}]}"),
                3 + 1 + 3 + 3);
        tools = count(
                "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello, world\"}],\"tools\":[{"
                "\"name\":\"f\",\"input_schema\":{\"type\":\"object\"}}]}");
        ASSERT_TRUE(tools > plain + 346);
        /* Earlier thinking is not context any more. */
        ASSERT_EQ(
                count("{\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":"
                      "\"long long thoughts\",\"signature\":\"s\"}]}]}"),
                3 + 1);
        ASSERT_EQ(count("{\"messages\":{}}"), UINT64_MAX);
        ASSERT_EQ(count("nope"), UINT64_MAX);
}

TEST(images_and_pdfs) {
        /* PNG 100x100: 13; GIF 750x2: 2; JPEG 300x250: 100; unreadable or URL: 1600. */
        ASSERT_EQ(
                count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
                      "\"base64\",\"media_type\":\"image/"
                      "png\",\"data\":\"iVBORw0KGgoAAAANSUhEUgAAAGQAAABkCAIAAAA=\"}}]}]}"),
                3 + 1 + 13);
        ASSERT_EQ(
                count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
                      "\"base64\",\"media_type\":\"image/gif\",\"data\":\"R0lGODlh7gICAAAAAA==\"}}]}]}"),
                3 + 1 + 2);
        ASSERT_EQ(
                count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
                      "\"base64\",\"media_type\":\"image/jpeg\",\"data\":\"/9j/4AAQSkZJRgABAQAAAQABAAD/"
                      "wAARCAD6ASwDASIA\"}}]}]}"),
                3 + 1 + 100);
        ASSERT_EQ(
                count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":"
                      "\"url\",\"url\":\"https://example.com/a.png\"}}]}]}"),
                3 + 1 + 1600);
        /* Chat-shaped image parts are read too. */
        ASSERT_EQ(count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{"
                        "\"url\":"
                        "\"data:image/gif;base64,R0lGODlh7gICAAAAAA==\"}}]}]}"),
                  3 + 1 + 2);
        /* A PDF with three pages (and a /Pages node that is not one), 157 bytes. */
        ASSERT_EQ(count("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":{"
                        "\"type\":"
                        "\"base64\",\"media_type\":\"application/"
                        "pdf\",\"data\":\"JVBERi0xLjQKMSAwIG9iaiA8PCAvVHlwZSAvUG"
                        "FnZXMgL0tpZHMgWzIgMCBSIDMgMCBSIDQgMCBSXSA+PgoyIDAgb2JqIDw8IC9UeXBlIC9QYWdlID4+"
                        "CjMgMCBvYmogPDwvVHlwZS9"
                        "QYWdlPj4KNCAwIG9iaiA8PCAvVHlwZSAvUGFnZSAvUGFyZW50IDEgMCBSID4+CiUlRU9GCg==\"}}]}]}"),
                  3 + 1 + 3 * 1600 + 1);
}

TEST(pdf_pages_across_chunk_boundaries) {
        /* A big PDF-like body: the page objects sit at every offset relative to the decoder's chunks. */
        _cleanup_(buf_done) Buf raw = {}, body = {};
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        unsigned pages = 0;

        for (unsigned i = 0; buf_len(&raw) < 50000; i++) {
                ASSERT_OK(buf_printf(&raw, "%u 0 obj << /Type /Page >> %.*s\n", i, (int) (i % 37),
                                     "padding-padding-padding-padding-padd"));
                pages++;
        }
        ASSERT_OK(buf_append_str(
                &body, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"document\",\"source\":"
                       "{\"type\":\"base64\",\"media_type\":\"application/pdf\",\"data\":\""));
        for (size_t i = 0; i < buf_len(&raw); i += 3) {
                const uint8_t *p = buf_data(&raw) + i;
                size_t k = MIN((size_t) 3, buf_len(&raw) - i);
                uint32_t v = (uint32_t) p[0] << 16 | (k > 1 ? (uint32_t) p[1] << 8 : 0) | (k > 2 ? p[2] : 0);
                char q[4] = { b64[v >> 18], b64[(v >> 12) & 63], k > 1 ? b64[(v >> 6) & 63] : '=',
                              k > 2 ? b64[v & 63] : '=' };
                ASSERT_OK(buf_append(&body, q, 4));
        }
        ASSERT_OK(buf_append_str(&body, "\"}}]}]}"));
        ASSERT_OK(buf_append(&body, "", 1));
        ASSERT_EQ(count((const char *) buf_data(&body)), 3 + 1 + (uint64_t) pages * 1600 + buf_len(&raw) / 100);
}
