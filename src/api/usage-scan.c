/* Usage scanning: the token counts and served model an upstream reports, from a JSON body or an SSE stream. */
#include "api/usage-scan.h"
#include "shared/util.h"

enum {
        LINE_START,
        LINE_FIELD,
        LINE_DATA_FIRST,
        LINE_DATA,
        LINE_SKIP,
};

enum {
        JSON_VALUE,
        JSON_OBJ_FIRST,                 /* after '{': a key or '}' */
        JSON_OBJ_KEY,                   /* after ',' in an object: a key */
        JSON_COLON,
        JSON_AFTER,                     /* after a value: ',' or the container's end */
        JSON_ARR_FIRST,                 /* after '[': a value or ']' */
        JSON_STRING,
        JSON_ESCAPE,
        JSON_HEX,
        JSON_NUMBER,
        JSON_LITERAL,
        JSON_DONE,
        JSON_ERROR,
};

enum {
        STRING_KEY,
        STRING_CAPTURE,
        STRING_SKIP,
};

/* Key ids: the vocabulary of the paths we look for. */
enum {
        K_OTHER,
        K_ARRAY,
        K_MODEL,
        K_USAGE,
        K_MESSAGE,
        K_RESPONSE,
        K_PROMPT_TOKENS,
        K_COMPLETION_TOKENS,
        K_INPUT_TOKENS,
        K_OUTPUT_TOKENS,
        K_PROMPT_DETAILS,
        K_INPUT_DETAILS,
        K_CACHED_TOKENS,
        K_CACHE_READ,
        K_CACHE_WRITE,
};

/* Every key of every response is looked up here: the length rules out nearly all before a compare. */
#define KEY(s, id) { s, sizeof(s) - 1, id }
static const struct {
        const char *name;
        uint8_t len;
        uint8_t id;
} key_table[] = {
        KEY("model", K_MODEL),
        KEY("usage", K_USAGE),
        KEY("message", K_MESSAGE),
        KEY("response", K_RESPONSE),
        KEY("prompt_tokens", K_PROMPT_TOKENS),
        KEY("completion_tokens", K_COMPLETION_TOKENS),
        KEY("input_tokens", K_INPUT_TOKENS),
        KEY("output_tokens", K_OUTPUT_TOKENS),
        KEY("prompt_tokens_details", K_PROMPT_DETAILS),
        KEY("input_tokens_details", K_INPUT_DETAILS),
        KEY("cached_tokens", K_CACHED_TOKENS),
        KEY("cache_read_input_tokens", K_CACHE_READ),
        KEY("cache_creation_input_tokens", K_CACHE_WRITE),
};
#undef KEY

/* Counts beyond this are not believed (and could not be summed safely). */
#define USAGE_VALUE_MAX (UINT64_C(1) << 50)

static bool is_ws(char c) {
        return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void json_reset(UsageScanner *s) {
        s->state = JSON_VALUE;
        s->depth = 0;
        memset(s->arrays, 0, sizeof s->arrays);
        memset(s->path, 0, sizeof s->path);
}

void usage_scanner_init(UsageScanner *s, Dialect dialect, bool sse) {
        *s = (UsageScanner) {
                .dialect = dialect,
                .sse = sse,
                .line = LINE_START,
        };
        json_reset(s);
}

static bool top_is_array(const UsageScanner *s) {
        unsigned d = s->depth - 1u;
        return s->depth > 0 && (s->arrays[d / 64] >> (d % 64)) & 1;
}

/* The depth (1 or 2) of the "usage" object the current path is in, 0 if none. */
static unsigned usage_base(const UsageScanner *s) {
        uint8_t outer = s->dialect == DIALECT_ANTHROPIC ? K_MESSAGE : K_RESPONSE;

        if (s->depth >= 2 && s->path[0] == K_USAGE)
                return 1;
        if (s->depth >= 3 && s->path[0] == outer && s->path[1] == K_USAGE)
                return 2;
        return 0;
}

static UsageField current_field(const UsageScanner *s) {
        unsigned base = usage_base(s);
        uint8_t k;

        if (base == 0 || s->depth > 4)
                return _USAGE_FIELD_INVALID;
        k = s->path[s->depth - 1];

        if (s->depth == base + 1) {
                if (s->dialect == DIALECT_ANTHROPIC)
                        switch (k) {
                        case K_INPUT_TOKENS:
                                return USAGE_FIELD_INPUT;
                        case K_OUTPUT_TOKENS:
                                return USAGE_FIELD_OUTPUT;
                        case K_CACHE_READ:
                                return USAGE_FIELD_CACHE_READ;
                        case K_CACHE_WRITE:
                                return USAGE_FIELD_CACHE_WRITE;
                        }
                else
                        switch (k) {
                        case K_PROMPT_TOKENS:
                                return USAGE_FIELD_PROMPT;
                        case K_COMPLETION_TOKENS:
                                return USAGE_FIELD_COMPLETION;
                        case K_INPUT_TOKENS:
                                return USAGE_FIELD_INPUT;
                        case K_OUTPUT_TOKENS:
                                return USAGE_FIELD_OUTPUT;
                        }
        } else if (s->depth == base + 2 && s->dialect == DIALECT_OPENAI && k == K_CACHED_TOKENS &&
                   (s->path[base] == K_PROMPT_DETAILS || s->path[base] == K_INPUT_DETAILS))
                return USAGE_FIELD_CACHED;
        return _USAGE_FIELD_INVALID;
}

static bool at_model(const UsageScanner *s) {
        uint8_t outer = s->dialect == DIALECT_ANTHROPIC ? K_MESSAGE : K_RESPONSE;

        if (s->model[0])
                return false;           /* the first one counts */
        if (s->depth == 1)
                return s->path[0] == K_MODEL;
        return s->depth == 2 && s->path[0] == outer && s->path[1] == K_MODEL;
}

static void number_done(UsageScanner *s) {
        UsageField f = current_field(s);
        uint64_t v = 0;

        if (f < 0 || s->num_len == 0 || s->num_len > sizeof s->num)
                return;
        /* Integers, and integral floats some servers send ("12.0"); a sign or an exponent is not a count. */
        for (unsigned i = 0; i < s->num_len; i++) {
                char c = s->num[i];
                if (c == '.')
                        break;
                if (c < '0' || c > '9')
                        return;
                v = v * 10 + (uint64_t) (c - '0');
                if (v > USAGE_VALUE_MAX)
                        return;
        }
        s->values[f] = MAX(s->values[f], v);
        s->seen |= 1U << f;
}

static void utf8_sanitize(char *p) {
        unsigned char *u = (unsigned char *) p;

        while (*u) {
                unsigned n = *u < 0x80 ? 1 : (*u & 0xe0) == 0xc0 && *u >= 0xc2 ? 2 : (*u & 0xf0) == 0xe0 ? 3 :
                                (*u & 0xf8) == 0xf0 && *u <= 0xf4 ? 4 : 0;
                unsigned i;

                for (i = 1; n > 0 && i < n; i++)
                        if ((u[i] & 0xc0) != 0x80)
                                break;
                if (n == 0 || i < n) {
                        *u++ = '?';
                        continue;
                }
                u += n;
        }
}

static void string_done(UsageScanner *s) {
        if (s->string_kind == STRING_KEY) {
                uint8_t id = K_OTHER;

                if (!s->key_overflow) {
                        s->key[s->key_len] = 0;
                        for (size_t i = 0; i < ELEMENTSOF(key_table); i++)
                                if (key_table[i].len == s->key_len &&
                                    memcmp(s->key, key_table[i].name, s->key_len) == 0) {
                                        id = key_table[i].id;
                                        break;
                                }
                }
                if (s->depth >= 1 && s->depth <= ELEMENTSOF(s->path))
                        s->path[s->depth - 1] = id;
                s->state = JSON_COLON;
                return;
        }

        if (s->string_kind == STRING_CAPTURE && s->capture_len > 0) {
                size_t n = s->capture_len;

                /* A cut name ends at a character boundary: drop a last character that was cut. */
                if (s->model_overflow) {
                        size_t i = n - 1;
                        unsigned char lead;

                        while (i > 0 && ((unsigned char) s->capture[i] & 0xc0) == 0x80)
                                i--;
                        lead = (unsigned char) s->capture[i];
                        if (i + (lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1) > n)
                                n = i;
                }
                memcpy(s->model, s->capture, n);
                s->model[n] = 0;
                utf8_sanitize(s->model);
        }
        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
}

static void string_append(UsageScanner *s, const char *p, size_t n) {
        switch (s->string_kind) {
        case STRING_KEY:
                if (s->key_len + n >= sizeof s->key)
                        s->key_overflow = true;
                else {
                        memcpy(s->key + s->key_len, p, n);
                        s->key_len += (uint8_t) n;
                }
                break;
        case STRING_CAPTURE:
                for (size_t i = 0; i < n; i++) {
                        if (s->capture_len + 1u >= sizeof s->capture) {
                                s->model_overflow = true;
                                break;
                        }
                        s->capture[s->capture_len++] = p[i];
                }
                break;
        }
}

static void codepoint_append(UsageScanner *s, uint32_t cp) {
        char b[4];
        size_t n;

        if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                cp = 0xfffd;
        if (cp < 0x80) {
                b[0] = (char) cp;
                n = 1;
        } else if (cp < 0x800) {
                b[0] = (char) (0xc0 | cp >> 6);
                b[1] = (char) (0x80 | (cp & 0x3f));
                n = 2;
        } else if (cp < 0x10000) {
                b[0] = (char) (0xe0 | cp >> 12);
                b[1] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[2] = (char) (0x80 | (cp & 0x3f));
                n = 3;
        } else {
                b[0] = (char) (0xf0 | cp >> 18);
                b[1] = (char) (0x80 | ((cp >> 12) & 0x3f));
                b[2] = (char) (0x80 | ((cp >> 6) & 0x3f));
                b[3] = (char) (0x80 | (cp & 0x3f));
                n = 4;
        }
        string_append(s, b, n);
}

/* A high surrogate not followed by a low one stands for nothing: it becomes U+FFFD. */
static void surrogate_flush(UsageScanner *s) {
        if (s->high_surrogate) {
                s->high_surrogate = 0;
                codepoint_append(s, 0xfffd);
        }
}

static void string_begin(UsageScanner *s, uint8_t kind) {
        s->string_kind = kind;
        s->key_len = 0;
        s->key_overflow = false;
        s->capture_len = 0;
        s->model_overflow = false;
        s->high_surrogate = 0;
        s->state = JSON_STRING;
}

static void push(UsageScanner *s, bool array) {
        unsigned d;

        if (s->depth >= USAGE_SCAN_MAX_DEPTH) {
                s->state = JSON_ERROR;
                return;
        }
        d = s->depth++;
        if (array)
                s->arrays[d / 64] |= UINT64_C(1) << (d % 64);
        else
                s->arrays[d / 64] &= ~(UINT64_C(1) << (d % 64));
        if (s->depth <= ELEMENTSOF(s->path))
                s->path[s->depth - 1] = array ? K_ARRAY : K_OTHER;
        s->state = array ? JSON_ARR_FIRST : JSON_OBJ_FIRST;
}

static void pop(UsageScanner *s, bool array) {
        if (s->depth == 0 || top_is_array(s) != array) {
                s->state = JSON_ERROR;
                return;
        }
        s->depth--;
        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
}

static void value_begin(UsageScanner *s, char c) {
        switch (c) {
        case '{':
                push(s, false);
                break;
        case '[':
                push(s, true);
                break;
        case '"':
                string_begin(s, at_model(s) ? STRING_CAPTURE : STRING_SKIP);
                break;
        case 't':
        case 'f':
        case 'n':
                s->lit[0] = c;
                s->lit_pos = 1;
                s->state = JSON_LITERAL;
                break;
        case '-':
        case '0' ... '9':
                s->num[0] = c;
                s->num_len = 1;
                s->state = JSON_NUMBER;
                break;
        default:
                s->state = JSON_ERROR;
        }
}

static void json_byte(UsageScanner *s, char c) {
        for (;;)
                switch (s->state) {
                case JSON_VALUE:
                        if (!is_ws(c))
                                value_begin(s, c);
                        return;

                case JSON_ARR_FIRST:
                        if (is_ws(c))
                                return;
                        if (c == ']')
                                pop(s, true);
                        else
                                value_begin(s, c);
                        return;

                case JSON_OBJ_FIRST:
                case JSON_OBJ_KEY:
                        if (is_ws(c))
                                return;
                        if (c == '"')
                                string_begin(s, STRING_KEY);
                        else if (c == '}' && s->state == JSON_OBJ_FIRST)
                                pop(s, false);
                        else
                                s->state = JSON_ERROR;
                        return;

                case JSON_COLON:
                        if (c == ':')
                                s->state = JSON_VALUE;
                        else if (!is_ws(c))
                                s->state = JSON_ERROR;
                        return;

                case JSON_AFTER:
                        if (is_ws(c))
                                return;
                        if (c == ',')
                                s->state = top_is_array(s) ? JSON_VALUE : JSON_OBJ_KEY;
                        else if (c == '}' || c == ']')
                                pop(s, c == ']');
                        else
                                s->state = JSON_ERROR;
                        return;

                case JSON_STRING:
                        if (c == '\\') {
                                s->state = JSON_ESCAPE;
                                return;
                        }
                        surrogate_flush(s);
                        if (c == '"')
                                string_done(s);
                        else if ((unsigned char) c < 0x20)
                                s->state = JSON_ERROR;
                        else
                                string_append(s, &c, 1);
                        return;

                case JSON_ESCAPE: {
                        static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
                        const char *e;

                        if (c == 'u') {
                                s->hex = 0;
                                s->hex_count = 0;
                                s->state = JSON_HEX;
                                return;
                        }
                        surrogate_flush(s);
                        e = c ? strchr(from, c) : NULL;
                        if (!e) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        string_append(s, to + (e - from), 1);
                        s->state = JSON_STRING;
                        return;
                }

                case JSON_HEX: {
                        int v = unhexchar(c);

                        if (v < 0) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        s->hex = s->hex << 4 | (uint32_t) v;
                        if (++s->hex_count < 4)
                                return;
                        s->state = JSON_STRING;
                        if (s->hex >= 0xd800 && s->hex <= 0xdbff) {
                                surrogate_flush(s);
                                s->high_surrogate = s->hex;
                        } else if (s->hex >= 0xdc00 && s->hex <= 0xdfff && s->high_surrogate) {
                                uint32_t cp = 0x10000 + ((s->high_surrogate - 0xd800) << 10) + (s->hex - 0xdc00);
                                s->high_surrogate = 0;
                                codepoint_append(s, cp);
                        } else {
                                surrogate_flush(s);
                                codepoint_append(s, s->hex);
                        }
                        return;
                }

                case JSON_NUMBER:
                        if ((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') {
                                if (s->num_len < sizeof s->num)
                                        s->num[s->num_len] = c;
                                if (s->num_len <= sizeof s->num)
                                        s->num_len++;
                                return;
                        }
                        number_done(s);
                        s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
                        continue;       /* c ends the number and belongs to what follows */

                case JSON_LITERAL: {
                        const char *lit = s->lit[0] == 't' ? "true" : s->lit[0] == 'f' ? "false" : "null";

                        if (c != lit[s->lit_pos]) {
                                s->state = JSON_ERROR;
                                return;
                        }
                        if (lit[++s->lit_pos] == 0)
                                s->state = s->depth == 0 ? JSON_DONE : JSON_AFTER;
                        return;
                }

                case JSON_DONE:
                        if (!is_ws(c))
                                s->state = JSON_ERROR;
                        return;

                case JSON_ERROR:
                default:
                        return;
                }
}

/* Inside a string, everything up to a quote, a backslash or a control character is plain content:
 * taken as a run instead of byte by byte (strings are most of a response's bytes). Returns the run's
 * length, 0 when the next byte needs the state machine. */
static size_t string_run(UsageScanner *s, const char *p, size_t n) {
        const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
        size_t k = 0;

        /* Eight bytes at a time while none of them is special: (x - 1) & ~x has a byte's high bit set
         * where that byte of x is 0 (for the quote and the backslash after an xor), and x - 0x20 where
         * it is below 0x20. Exact as to whether any byte matched, which is all that is asked. */
        while (n - k >= 8) {
                uint64_t w, q, b;

                memcpy(&w, p + k, 8);
                q = w ^ (ones * '"');
                b = w ^ (ones * '\\');
                if ((((q - ones) & ~q) | ((b - ones) & ~b) | ((w - ones * 0x20) & ~w)) & highs)
                        break;
                k += 8;
        }
        while (k < n) {
                unsigned char c = (unsigned char) p[k];
                if (c == '"' || c == '\\' || c < 0x20)
                        break;
                k++;
        }
        if (k > 0) {
                surrogate_flush(s);
                string_append(s, p, k);
        }
        return k;
}

/* The states where whitespace means nothing: pretty-printed bodies are largely indentation. */
static bool skips_ws(const UsageScanner *s) {
        switch (s->state) {
        case JSON_VALUE:
        case JSON_ARR_FIRST:
        case JSON_OBJ_FIRST:
        case JSON_OBJ_KEY:
        case JSON_COLON:
        case JSON_AFTER:
        case JSON_DONE:
                return true;
        default:
                return false;
        }
}

static void sse_byte(UsageScanner *s, char c) {
        bool eol = c == '\n' || c == '\r';

        /* CR LF is one line end. */
        if (s->after_cr) {
                s->after_cr = false;
                if (c == '\n')
                        return;
        }
        if (c == '\r')
                s->after_cr = true;

        switch (s->line) {
        case LINE_START:
                if (eol) {
                        /* A blank line ends the event, and with it the JSON document. */
                        json_reset(s);
                        return;
                }
                if (c == ':') {
                        s->line = LINE_SKIP;
                        return;
                }
                s->field_len = 0;
                s->line = LINE_FIELD;
                __attribute__((fallthrough));
        case LINE_FIELD:
                if (eol)
                        s->line = LINE_START;
                else if (c == ':')
                        s->line = s->field_len == 4 && memcmp(s->field, "data", 4) == 0 ? LINE_DATA_FIRST :
                                                                                            LINE_SKIP;
                else if (s->field_len < sizeof s->field)
                        s->field[s->field_len++] = c;
                else
                        s->field_len = sizeof s->field + 1;
                return;
        case LINE_DATA_FIRST:
                s->line = LINE_DATA;
                if (c == ' ')
                        return;
                __attribute__((fallthrough));
        case LINE_DATA:
                if (eol) {
                        /* The lines of one event's data are joined with "\n", which JSON reads as blank. */
                        json_byte(s, '\n');
                        s->line = LINE_START;
                } else
                        json_byte(s, c);
                return;
        case LINE_SKIP:
        default:
                if (eol)
                        s->line = LINE_START;
                return;
        }
}

void usage_scanner_feed(UsageScanner *s, const void *p, size_t n) {
        const char *c = p;

        if (!s || !p)
                return;
        if (s->sse)
                for (size_t i = 0; i < n;) {
                        /* A run ends at CR or LF, so line handling stays with sse_byte(). */
                        if (s->line == LINE_DATA && !s->after_cr) {
                                size_t k = 0;

                                if (s->state == JSON_STRING)
                                        k = string_run(s, c + i, n - i);
                                else if (skips_ws(s))
                                        while (i + k < n && (c[i + k] == ' ' || c[i + k] == '\t'))
                                                k++;
                                if (k > 0) {
                                        i += k;
                                        continue;
                                }
                        }
                        sse_byte(s, c[i++]);
                }
        else
                for (size_t i = 0; i < n;) {
                        if (s->state == JSON_ERROR)
                                return;
                        if (s->state == JSON_STRING) {
                                size_t k = string_run(s, c + i, n - i);
                                if (k > 0) {
                                        i += k;
                                        continue;
                                }
                        } else if (is_ws(c[i]) && skips_ws(s)) {
                                while (++i < n && is_ws(c[i]))
                                        ;
                                continue;
                        }
                        json_byte(s, c[i++]);
                }
}

void usage_scanner_result(const UsageScanner *s, Usage *ret) {
        const uint64_t *v = s->values;
        Usage u = {};

#define SEEN(f) ((s->seen >> (f)) & 1)
        if (s->dialect == DIALECT_ANTHROPIC) {
                u.input_tokens = v[USAGE_FIELD_INPUT];
                u.output_tokens = v[USAGE_FIELD_OUTPUT];
                u.cache_read_tokens = v[USAGE_FIELD_CACHE_READ];
                u.cache_write_tokens = v[USAGE_FIELD_CACHE_WRITE];
        } else {
                /* Chat Completions say prompt/completion, Responses input/output; both include cached. */
                uint64_t in = SEEN(USAGE_FIELD_PROMPT) ? v[USAGE_FIELD_PROMPT] : v[USAGE_FIELD_INPUT];
                uint64_t cached = MIN(v[USAGE_FIELD_CACHED], in);

                u.input_tokens = in - cached;
                u.cache_read_tokens = cached;
                u.output_tokens = SEEN(USAGE_FIELD_COMPLETION) ? v[USAGE_FIELD_COMPLETION] :
                                                                 v[USAGE_FIELD_OUTPUT];
        }
#undef SEEN
        u.found = s->seen != 0;
        memcpy(u.model, s->model, sizeof u.model);
        *ret = u;
}

int usage_from_json(Dialect dialect, const void *body, size_t len, Usage *ret) {
        UsageScanner s;

        if (!ret || (!body && len > 0))
                return -EINVAL;
        usage_scanner_init(&s, dialect, false);
        usage_scanner_feed(&s, body ?: "", len);
        if (s.state != JSON_DONE)
                return -EBADMSG;
        usage_scanner_result(&s, ret);
        return 0;
}
