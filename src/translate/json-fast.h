/* A fast JSON reader and compact writer over jansson's json_t: the same language and bytes as jansson's own. */
#pragma once

#include <endian.h>
#include <jansson.h>
#include <string.h>

#include "shared/buf.h"
#include "shared/macro.h"

/* Parses n bytes into a jansson value. flags is 0 or JSON_DECODE_ANY and means what it means to
 * json_loadb(): the reader accepts and rejects exactly what json_loadb(s, n, flags, ...) does and builds an
 * equal tree (same integer/real types, same key order, last duplicate key wins). -EBADMSG for text that is
 * not JSON, -ENOMEM, -EINVAL for other flags. */
int json_read(const char *s, size_t n, size_t flags, json_t **ret);
/* The same, -E2BIG once more than max_values values (scalars, arrays and objects) are read: a small
 * value costs a jansson tree about a hundred times its bytes. */
int json_read_max(const char *s, size_t n, size_t flags, size_t max_values, json_t **ret);

/* Which object members json_read_keep() makes: an array of these ended by one with key NULL. A member not
 * named is read (checked and counted as strictly) but not made; a named one's value is made whole when inner
 * is NULL, else inner applies to it (to its members if it is an object, to each element if it is an array).
 * Why: an upstream stream chunk carries members no translator reads (object, created, system_fingerprint,
 * logprobs, ...), and making them was a third of reading the chunk. */
typedef struct JsonKeep {
        const char *key;
        const struct JsonKeep *inner;
} JsonKeep;
/* json_read_max() that makes only what keep names (NULL: everything). The input is accepted or refused
 * exactly as json_read_max() would; the tree is what it would make with the unnamed members deleted. */
int json_read_keep(const char *s, size_t n, size_t flags, size_t max_values, const JsonKeep *keep,
                   json_t **ret);

/* Appends the bytes json_dump_callback(j, ..., JSON_COMPACT) would produce. -EINVAL where jansson fails too
 * (not an object or array at the top, a string that is not UTF-8) and, unlike jansson, for nesting deeper
 * than JSON_WRITE_MAX_DEPTH: that is where a tree with a cycle ends up (jansson looks for cycles with a
 * hashtable of every container), while parsed trees stop at JSON_PARSER_MAX_DEPTH. -ENOMEM. Nothing is
 * left in b on failure. */
#define JSON_WRITE_MAX_DEPTH 8192U
int json_write_compact(const json_t *j, Buf *b);
/* The same for any value, as JSON_COMPACT | JSON_ENCODE_ANY. */
int json_write_any(const json_t *j, Buf *b);
/* Appends the n bytes at s as a JSON string, quotes included, escaped as above. -EINVAL if they are not
 * UTF-8, -ENOMEM; nothing is left in b on failure. */
int json_write_string(const char *s, size_t n, Buf *b);

/* ---- shared by the reader and the writer ---- */

/* The length of the valid UTF-8 sequence at p (2 to 4, as jansson's utf8_check_full() sees it), 0 if invalid. */
static inline size_t utf8_valid(const unsigned char *p, const unsigned char *end) {
        unsigned char c = p[0];
        size_t n, avail = (size_t) (end - p);
        uint32_t v;

        if (c >= 0xc2 && c <= 0xdf) {
                n = 2;
                v = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
                n = 3;
                v = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
                n = 4;
                v = c & 0x07;
        } else
                return 0;
        if (avail < n)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (p[i] & 0x3f);
        }
        if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
                return 0;
        if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000))
                return 0;
        return n;
}

/* A mask with the top bit set in each of the 8 bytes (little-endian order) that is '"', '\\', below 0x20 or
 * above 0x7f: the bytes a string scan must stop at. The zero-byte tests can misfire only above a byte that
 * really matches, so "any" is exact and so is the lowest set bit: __builtin_ctzll(mask) / 8 is the first
 * special byte. */
static inline uint64_t word_special_mask(uint64_t x) {
        const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
        uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');

        return (((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b) | x) & high;
}

static inline bool byte_is_special(unsigned char c) {
        return c == '"' || c == '\\' || c < 0x20 || c >= 0x80;
}

/* The first byte in [p, end) that is special to a string scan, or end. */
static inline const char *string_scan(const char *p, const char *end) {
        uint64_t w, m;

        while (end - p >= 8) {
                memcpy(&w, p, 8);
                m = word_special_mask(le64toh(w));
                if (m != 0)
                        return p + (__builtin_ctzll(m) >> 3);
                p += 8;
        }
        while (p < end && !byte_is_special((unsigned char) *p))
                p++;
        return p;
}
