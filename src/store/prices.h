/* Prices: what tokens cost per model, from the shipped price table and the configuration's overrides. */
#pragma once

#include "shared/macro.h"

struct Config;

/* Prices are integers, so that sums are exact and no locale ever parses a decimal point: a price is in
 * micro-USD per million tokens (2.50 USD/M is 2500000), a cost in nano-USD. */
#define PRICE_DECIMALS 6
#define COST_DECIMALS 9

typedef struct Price {
        char *pattern;                  /* a model name or a glob ('*', '?'), or "PROVIDER/" + either */
        uint64_t input;                 /* uncached input tokens */
        uint64_t output;
        uint64_t cache_read;
        uint64_t cache_write;
} Price;

typedef struct PriceTable {
        unsigned n_ref;
        Price *items;                   /* in order of first definition */
        size_t n_items;
} PriceTable;

int price_table_new(PriceTable **ret);
PriceTable *price_table_ref(PriceTable *t);
PriceTable *price_table_unref(PriceTable *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(PriceTable *, price_table_unref);

/* Adds the entries of a GKeyFile price table: one group per pattern with the keys input, output,
 * cache_read and cache_write (USD per million tokens). A missing cache_read or cache_write costs as
 * much as input. An entry replaces an earlier one with the same pattern. Errors give -EINVAL and a
 * message naming source, group and key in *ret_error (which may be NULL). */
int price_table_load_data(PriceTable *t, const char *source, const char *data, size_t size, char **ret_error);
int price_table_load_file(PriceTable *t, const char *path, char **ret_error);

/* Adds or replaces the entry for p->pattern (copied). */
int price_table_set(PriceTable *t, const Price *p);

/* The table the configuration asks for: [usage] price_file (the shipped DATADIR/gate/prices.conf when
 * unset; a missing shipped file is not an error, an explicitly named one is), then the [price.MODEL]
 * groups over it. */
int price_table_from_config(const struct Config *c, PriceTable **ret, char **ret_error);

/* The entry that prices model as served by provider (either may be NULL), or NULL when the model is
 * unpriced. Entries qualified with "PROVIDER/" win over plain ones, then exact names over patterns,
 * then the pattern with the most literal characters, then the earlier entry. */
const Price *price_table_lookup(const PriceTable *t, const char *provider, const char *model);

/* The cost in nano-USD of the given (normalised) token counts, rounded to the nearest nano-USD and
 * saturated at UINT64_MAX. */
uint64_t price_cost(const Price *p, uint64_t input, uint64_t output, uint64_t cache_read, uint64_t cache_write);

/* Parses a non-negative decimal amount ("2.5", "0.075", "10") into an integer scaled by 10^decimals,
 * independently of the locale. More fractional digits than decimals, signs, exponents and blanks are
 * refused (-EINVAL); -ERANGE beyond UINT64_MAX. */
int usd_parse(const char *s, unsigned decimals, uint64_t *ret);
/* Formats an amount scaled by 10^decimals with at least min_frac fractional digits and no trailing
 * zeros beyond them: (2500000, 6, 2) gives "2.50", (75000, 6, 2) "0.075". */
char *usd_format(char *buf, size_t n, uint64_t v, unsigned decimals, unsigned min_frac);
#define USD_FORMAT_MAX 32
