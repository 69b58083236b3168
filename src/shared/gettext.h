/* gettext for what people read at the terminal (CLI messages); log messages stay untranslated. */
#pragma once

#include <libintl.h>

#define _(s) gettext(s)
#define N_(s) (s)
