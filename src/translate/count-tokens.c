/* count_tokens for upstreams that have none: an estimate from character classes, said to be one.
 *
 * The upstream behind a translated count_tokens is an OpenAI-style model, so the estimate aims at the
 * o200k tokenizer (GPT-4o and later): without a vocabulary (megabytes) a count can only be approximated.
 * Text is read as runs of one character class, each run costing what BPE vocabularies typically spend on
 * it (tenths of a token, summed, then rounded):
 *
 *   ASCII letters        a word of 1-4 letters 1 token, 5-8 letters 1.1, longer 1.1 + 0.22 per letter
 *   ... with < 20% vowels  (6+ letters: hashes, base64, ids) 0.7 per letter
 *   digits               1 token per 3
 *   spaces, tabs         1 token per 16
 *   newlines             1 token per 2
 *   ASCII punctuation    1 token for a run of 1 or 2, 1.4 for 3, 0.5 per symbol beyond
 *   CJK, kana, hangul    0.8 per character
 *   other non-ASCII      0.6 per character
 *   A lone space, or a lone symbol before letters, joins the next run ("the", "_event", "/util").
 *
 * Measured on tests/fixtures/translate/count/ (6 KB samples), against o200k_base and cl100k_base
 * (gpt-tokenizer 4.0.0) and the Claude tokenizer (@anthropic-ai/tokenizer 0.0.4, Claude 2 era);
 * error = estimate / count - 1:
 *
 *   sample                    estimate   o200k           cl100k          claude
 *   English prose (GPL-3)     1370       1286  +6.5%     1287  +6.4%     1291  +6.1%
 *   C source                  1420       1349  +5.3%     1347  +5.4%     1557  -8.8%
 *   Markdown (mock README)    1630       1706  -4.5%     1700  -4.1%     1857 -12.2%
 *   JSON (package-lock)       1146       1317 -13.0%     1342 -14.6%     1363 -15.9%
 *   German prose              1538       1560  -1.4%     1791 -14.1%     2085 -26.2%
 *   Chinese prose             1102       1083  +1.8%     1343 -17.9%     1374 -19.8%
 *
 * So within about 15% of o200k on these; older vocabularies spend more on non-English text.
 * tests/unit/test-translate-count.c pins these estimates.
 *
 * Requests add 3 tokens per message and 1 per block (role and structure markers), 346 when tools are
 * present (the tool-use system prompt Anthropic documents; OpenAI's is of that size), and each tool's
 * name, description and JSON schema as text. Earlier turns' thinking is not counted (APIs drop it from
 * the context). Images: Anthropic's (width * height) / 750, at most 1600, with the size read from PNG,
 * GIF and JPEG headers (1600 when unreadable or a URL). PDF documents: 1600 per page (page objects
 * counted in the file) plus their bytes / 100. These parts are rough: the figure is for budgeting
 * context, not for billing.
 */
#include "shared/util.h"
#include "translate/json-scratch.h"
#include "translate/translate-internal.h"

/* See the table above; the measurements are repeated in the unit test that checks them. */
#define TOKENS_PER_MESSAGE 3
#define TOKENS_PER_BLOCK 1
#define TOKENS_TOOLS_PROMPT 346
#define TOKENS_IMAGE_MAX 1600
#define TOKENS_PDF_PAGE 1600

typedef enum CharClass {
        CC_NONE,
        CC_LETTER,
        CC_RANDOM,                      /* letters with almost no vowels: ids, hashes, base64 */
        CC_DIGIT,
        CC_SPACE,
        CC_NEWLINE,
        CC_PUNCT,
        CC_CJK,
        CC_OTHER,
} CharClass;

static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *len) {
        uint32_t c = s[0];
        size_t k = utf8_sequence_length(s[0]);

        if (k > n || k <= 1) {
                *len = 1;
                return c;
        }
        c &= 0x3f >> (k - 1);
        for (size_t i = 1; i < k; i++)
                c = (c << 6) | (s[i] & 0x3f);
        *len = k;
        return c;
}

static CharClass classify(uint32_t c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                return CC_LETTER;
        if (c >= '0' && c <= '9')
                return CC_DIGIT;
        if (c == ' ' || c == '\t')
                return CC_SPACE;
        if (c == '\n' || c == '\r')
                return CC_NEWLINE;
        if (c < 0x80)
                return CC_PUNCT;
        if ((c >= 0x2e80 && c <= 0x9fff) || (c >= 0xac00 && c <= 0xd7af) || (c >= 0xf900 && c <= 0xfaff) ||
            (c >= 0xff00 && c <= 0xffef) || (c >= 0x20000 && c <= 0x2fa1f))
                return CC_CJK;
        return CC_OTHER;
}

/* classify() of a byte, and whether it is a vowel, by table: the loop below runs over every byte of the request
 * an Anthropic client streams through an OpenAI-style upstream (157 KB for an agent's turn), and with strchr()
 * and classify() per byte it was 70 instructions a byte, 2.5 ms a request. Low 4 bits: the class of an ASCII
 * byte, BYTE_NOT_ASCII for the others (their class needs the whole character); bit 4: a vowel. */
#define BYTE_NOT_ASCII 0x0fU
#define BYTE_VOWEL 0x10U
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverride-init"
static const uint8_t byte_info[256] = {
        [0x00 ... 0x7f] = CC_PUNCT,
        [0x80 ... 0xff] = BYTE_NOT_ASCII,
        ['a' ... 'z'] = CC_LETTER,
        ['A' ... 'Z'] = CC_LETTER,
        ['a'] = CC_LETTER | BYTE_VOWEL, ['e'] = CC_LETTER | BYTE_VOWEL, ['i'] = CC_LETTER | BYTE_VOWEL,
        ['o'] = CC_LETTER | BYTE_VOWEL, ['u'] = CC_LETTER | BYTE_VOWEL,
        ['A'] = CC_LETTER | BYTE_VOWEL, ['E'] = CC_LETTER | BYTE_VOWEL, ['I'] = CC_LETTER | BYTE_VOWEL,
        ['O'] = CC_LETTER | BYTE_VOWEL, ['U'] = CC_LETTER | BYTE_VOWEL,
        ['0' ... '9'] = CC_DIGIT,
        [' '] = CC_SPACE,
        ['\t'] = CC_SPACE,
        ['\n'] = CC_NEWLINE,
        ['\r'] = CC_NEWLINE,
};
#pragma GCC diagnostic pop

/* In tenths of a token. */
static uint64_t run_cost(CharClass cc, uint64_t len) {
        switch (cc) {
        case CC_LETTER: return len <= 4 ? 10 : len <= 8 ? 11 : 11 + (len - 8) * 22 / 10;
        case CC_RANDOM: return len * 7;
        case CC_DIGIT: return (len + 2) / 3 * 10;
        case CC_SPACE: return (len + 15) / 16 * 10;
        case CC_NEWLINE: return (len + 1) / 2 * 10;
        case CC_PUNCT: return len <= 2 ? 10 : len == 3 ? 14 : len * 5;
        case CC_CJK: return len * 8;
        case CC_OTHER: return len * 6;
        default: return 0;
        }
}

typedef struct Run {
        CharClass cc;
        uint64_t len;
} Run;

uint64_t estimate_text_tokens(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        Run prev = {}, cur = {};
        uint64_t total = 0, vowels = 0;

        /* Runs are costed one behind, so that a lone space or symbol can join the run after it. */
        for (size_t i = 0; i <= n;) {
                CharClass cc = CC_NONE;
                uint32_t c = 0;
                size_t k = 1;

                /* Most bytes are ASCII of the run's own class: counted here without the steps below. A
                 * non-ASCII byte never matches (BYTE_NOT_ASCII is no class). */
                if (cur.cc != CC_NONE) {
                        size_t start = i;

                        while (i < n && (byte_info[p[i]] & 0x0f) == cur.cc) {
                                vowels += byte_info[p[i]] >> 4;
                                i++;
                        }
                        cur.len += i - start;
                }
                if (i < n) {
                        if (p[i] < 0x80) {
                                c = p[i];
                                cc = byte_info[c] & 0x0f;
                        } else {
                                c = utf8_next(p + i, n - i, &k);
                                cc = classify(c);
                        }
                }
                if (cc != cur.cc || i == n) {
                        if (cur.cc == CC_LETTER && cur.len >= 6 && vowels * 5 < cur.len)
                                cur.cc = CC_RANDOM;
                        if (prev.cc != CC_NONE) {
                                bool joins = (prev.cc == CC_SPACE && prev.len == 1) ||
                                             (prev.cc == CC_PUNCT && prev.len == 1 &&
                                              (cur.cc == CC_LETTER || cur.cc == CC_RANDOM));
                                if (!joins || cur.cc == CC_NONE)
                                        total += run_cost(prev.cc, prev.len);
                        }
                        prev = cur;
                        cur = (Run){ .cc = cc };
                        vowels = 0;
                        if (i == n)
                                break;
                }
                cur.len++;
                vowels += c < 0x80 ? byte_info[c] >> 4 : 0;
                i += k;
        }
        total += run_cost(prev.cc, prev.len);
        return (total + 5) / 10;
}

/* ---- images and PDFs ---- */

static int b64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+' || c == '-')
                return 62;
        if (c == '/' || c == '_')
                return 63;
        return -1;
}

typedef struct B64 {
        uint32_t acc;
        unsigned bits;
} B64;

/* Decodes base64 (skipping what is not base64) into out, at most max bytes; *consumed says how far in s. */
static size_t b64_decode(B64 *d, const char *s, size_t n, uint8_t *out, size_t max, size_t *consumed) {
        size_t i, o = 0;

        for (i = 0; i < n && o < max; i++) {
                int v = b64_value(s[i]);
                if (v < 0)
                        continue;
                d->acc = (d->acc << 6) | (uint32_t) v;
                d->bits += 6;
                if (d->bits >= 8) {
                        d->bits -= 8;
                        out[o++] = (uint8_t) (d->acc >> d->bits);
                }
        }
        if (consumed)
                *consumed = i;
        return o;
}

static uint64_t image_tokens(uint64_t w, uint64_t h) {
        uint64_t t;

        if (w == 0 || h == 0)
                return TOKENS_IMAGE_MAX;
        t = w * h / 750;
        return MIN(MAX(t, (uint64_t) 1), (uint64_t) TOKENS_IMAGE_MAX);
}

#define IMAGE_HEAD_MAX (64U << 10)

static uint64_t estimate_image_base64(const char *data, size_t n) {
        _cleanup_free_ uint8_t *head = malloc(IMAGE_HEAD_MAX);
        B64 d = {};
        size_t k;

        if (!head)
                return TOKENS_IMAGE_MAX;
        k = b64_decode(&d, data, n, head, IMAGE_HEAD_MAX, NULL);
        if (k >= 24 && memcmp(head, "\x89PNG", 4) == 0)
                return image_tokens(
                        (uint64_t) head[16] << 24 | (uint64_t) head[17] << 16 | head[18] << 8 | head[19],
                        (uint64_t) head[20] << 24 | (uint64_t) head[21] << 16 | head[22] << 8 | head[23]);
        if (k >= 10 && memcmp(head, "GIF8", 4) == 0)
                return image_tokens(head[6] | head[7] << 8, head[8] | head[9] << 8);
        if (k >= 4 && head[0] == 0xff && head[1] == 0xd8) {
                /* JPEG: walk the segments to a start-of-frame marker. */
                size_t i = 2;
                while (i + 9 < k && head[i] == 0xff) {
                        uint8_t m = head[i + 1];
                        size_t seg = (size_t) head[i + 2] << 8 | head[i + 3];
                        if (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc)
                                return image_tokens(head[i + 7] << 8 | head[i + 8],
                                                    head[i + 5] << 8 | head[i + 6]);
                        i += 2 + seg;
                }
        }
        return TOKENS_IMAGE_MAX;
}

static size_t match_page(const uint8_t *p, size_t avail) {
        static const char a[] = "/Type/Page", b[] = "/Type /Page";

        if (avail > (sizeof a - 1) && memcmp(p, a, (sizeof a - 1)) == 0 && p[(sizeof a - 1)] != 's')
                return 1;
        if (avail > (sizeof b - 1) && memcmp(p, b, (sizeof b - 1)) == 0 && p[(sizeof b - 1)] != 's')
                return 1;
        return 0;
}

#define PDF_OVERLAP 16U
#define PDF_CHUNK 4096U

static uint64_t estimate_pdf_base64(const char *data, size_t n) {
        uint8_t buf[PDF_OVERLAP + PDF_CHUNK];
        uint64_t pages = 0, bytes = 0;
        size_t keep = 0, off = 0;
        B64 d = {};

        /* Count page objects ("/Type /Page", not "/Pages"), a chunk at a time; a match may straddle two
         * chunks, so the last bytes of one are looked at again with the next. */
        for (;;) {
                size_t used, k, total, limit;
                bool last;

                k = b64_decode(&d, data + off, n - off, buf + keep, PDF_CHUNK, &used);
                off += used;
                bytes += k;
                total = keep + k;
                last = off >= n;
                limit = last ? total : total > PDF_OVERLAP ? total - PDF_OVERLAP : 0;
                for (size_t i = 0; i < limit; i++)
                        pages += match_page(buf + i, total - i);
                if (last)
                        break;
                keep = total - limit;
                memmove(buf, buf + limit, keep);
        }
        return MAX(pages, (uint64_t) 1) * TOKENS_PDF_PAGE + bytes / 100;
}

/* ---- requests ---- */

static uint64_t estimate_json_text(const json_t *v) {
        _cleanup_free_ char *s = NULL;

        if (!v)
                return 0;
        if (json_is_string(v))
                return estimate_text_tokens(json_string_value(v), json_string_length(v));
        s = json_dump_any(v);
        return s ? estimate_text_tokens(s, strlen(s)) : 0;
}

static uint64_t estimate_block(const json_t *b);

static uint64_t estimate_content(const json_t *content) {
        const json_t *b;
        uint64_t n = 0;
        size_t i;

        if (json_is_string(content))
                return estimate_json_text(content);
        json_array_foreach(content, i, b)
                n += TOKENS_PER_BLOCK + estimate_block(b);
        return n;
}

static uint64_t estimate_block(const json_t *b) {
        const char *type = json_get_str(b, "type") ?: "";
        const json_t *source = json_object_get(b, "source");
        const char *stype = json_get_str(source, "type") ?: "";

        if (streq(type, "text") || streq(type, "input_text") || streq(type, "output_text"))
                return estimate_json_text(json_object_get(b, "text"));
        if (streq(type, "image")) {
                if (streq(stype, "base64") && json_get_str(source, "data"))
                        return estimate_image_base64(json_get_str(source, "data"),
                                                     json_string_length(json_object_get(source, "data")));
                return TOKENS_IMAGE_MAX;
        }
        if (streq(type, "image_url") || streq(type, "input_image")) {
                const json_t *iu = json_object_get(b, "image_url");
                const char *url = json_is_string(iu) ? json_string_value(iu) : json_get_str(iu, "url");
                const char *comma = url && startswith(url, "data:") ? strchr(url, ',') : NULL;
                return comma ? estimate_image_base64(comma + 1, strlen(comma + 1)) : TOKENS_IMAGE_MAX;
        }
        if (streq(type, "document")) {
                if (streq(stype, "base64") && json_get_str(source, "data"))
                        return estimate_pdf_base64(json_get_str(source, "data"),
                                                   json_string_length(json_object_get(source, "data")));
                if (streq(stype, "text"))
                        return estimate_json_text(json_object_get(source, "data"));
                if (streq(stype, "content"))
                        return estimate_content(json_object_get(source, "content"));
                return TOKENS_PDF_PAGE;
        }
        if (streq(type, "tool_use"))
                return estimate_json_text(json_object_get(b, "name")) +
                       estimate_json_text(json_object_get(b, "input"));
        if (streq(type, "tool_result"))
                return estimate_content(json_object_get(b, "content"));
        if (streq(type, "thinking") || streq(type, "redacted_thinking"))
                return 0;       /* earlier turns' thinking is not part of the context */
        return estimate_json_text(b);
}

uint64_t estimate_request_tokens(const json_t *req) {
        const json_t *msgs = json_object_get(req, "messages"), *m, *tools = json_object_get(req, "tools"), *t;
        uint64_t n = 0;
        size_t i;

        n += estimate_content(json_object_get(req, "system"));
        n += estimate_json_text(json_object_get(req, "instructions"));
        json_array_foreach(msgs, i, m) {
                n += TOKENS_PER_MESSAGE + estimate_content(json_object_get(m, "content"));
                /* Chat-shaped bodies: tool calls ride beside the content. */
                n += estimate_json_text(json_object_get(m, "tool_calls"));
        }
        if (json_is_array(json_object_get(req, "input")))
                json_array_foreach(json_object_get(req, "input"), i, m)
                        n += TOKENS_PER_MESSAGE + estimate_content(json_object_get(m, "content")) +
                             estimate_json_text(json_object_get(m, "arguments")) +
                             estimate_json_text(json_object_get(m, "output"));
        else
                n += estimate_json_text(json_object_get(req, "input"));
        if (json_array_size(tools) > 0)
                n += TOKENS_TOOLS_PROMPT;
        json_array_foreach(tools, i, t)
                n += estimate_json_text(t);
        return n;
}

static int translate_count_tokens_estimate_in_scope(const char *body, size_t len, char **ret, size_t *ret_len) {
        _cleanup_json_ json_t *in = NULL, *out = NULL;
        int r;

        r = json_parse_object(body, len, &in);
        if (r == -ENOMEM || r == -E2BIG)
                return r;
        if (r < 0 || !json_is_array(json_object_get(in, "messages")))
                return -EINVAL;
        out = json_pack("{s:I, s:b}", "input_tokens", (json_int_t) estimate_request_tokens(in), "estimated", 1);
        if (!out)
                return -ENOMEM;
        return json_dump_to_string(out, ret, ret_len);
}

int translate_count_tokens_estimate(const char *body, size_t len, char **ret, size_t *ret_len) {
        int r;

        json_scratch_begin();
        r = translate_count_tokens_estimate_in_scope(body, len, ret, ret_len);
        json_scratch_end();
        return r;
}
