/* The differential check of gate's JSON reader and writer against jansson, shared by fuzz-json and test-json. */
#pragma once

#include <stddef.h>

/* Parses s with json_loadb() and json_read() under flags (0 or JSON_DECODE_ANY) and compares: same verdict,
 * and for accepted text json_equal() trees whose four dumps (each tree by each writer) are the same bytes.
 * Returns 1 when both accept, 0 when both reject, -1 (after printing why to stderr) when they differ. */
int json_diff_parse(const char *s, size_t n, size_t flags);

/* Dumps the string s (any bytes, made with json_stringn_nocheck()) inside an array with both writers:
 * both fail, or both write the same bytes. Returns 0, or -1 after printing why. */
int json_diff_string(const char *s, size_t n);

/* Reads s with json_read_max() and with json_read_keep() and a fixed nested filter, both at max_values:
 * the same verdict, and for accepted text the kept tree equals the full one with what the filter does not
 * name deleted. 1 when both accept, 0 when both refuse (or memory ran out), -1 after printing why. */
int json_diff_keep(const char *s, size_t n, size_t flags, size_t max_values);
