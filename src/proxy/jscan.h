/* jscan: a validating single-pass scan of a JSON object that finds top-level keys without building a tree. */
#pragma once

#include "shared/macro.h"

/* A value's bytes in the document: [start, end). For strings the quotes are included. */
typedef struct JsonSpan {
        size_t start;
        size_t end;
        char type;              /* 's' string, 'n' number, 'o' object, 'a' array, 't' true, 'f' false,
                                   'z' null, 0 not present */
} JsonSpan;

#define JSCAN_MAX_DEPTH 128

/* Checks that p[0..n) is one JSON object (RFC 8259 grammar; UTF-8 is not validated beyond control
 * characters in strings) and records, for each of keys, the span of its value at the top level. A key
 * given twice in the document is an error (-EEXIST), as the providers' own parsers disagree on which
 * wins. Returns 0, -EBADMSG for malformed JSON (with the byte offset in *ret_offset), -ENOTDIR when the
 * document is not an object, -ELOOP when nested deeper than JSCAN_MAX_DEPTH. */
int jscan_object(const char *p, size_t n, const char *const *keys, size_t n_keys, JsonSpan *ret_spans,
                 size_t *ret_offset);

/* Decodes a JSON string literal (span including quotes) into a NUL-terminated UTF-8 string. Embedded
 * NULs are refused (-EINVAL): names and models never contain them. */
int jscan_string(const char *p, const JsonSpan *span, char **ret);
