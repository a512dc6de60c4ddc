/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: parsing and validation of <module>:<option> values.
 */
#include "asvfs_options.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *skip_blanks(const char *s)
{
	while (*s != '\0' && isspace((unsigned char)*s)) {
		s++;
	}
	return s;
}

static bool only_blanks(const char *s)
{
	return *skip_blanks(s) == '\0';
}

/*
 * The decimal number at the start of str (after blanks), in *v, and
 * where it ends, in *end; what names the kind of value in the reason
 * ("number", "size").  Refuses a missing value, a sign (strtoull()
 * silently takes "-1" as a huge value) and overflow.
 */
static bool parse_leading_number(const char *str, const char *what,
				 unsigned long long *v, char **end,
				 char *errbuf, size_t errlen)
{
	const char *p = NULL;

	if (str == NULL) {
		snprintf(errbuf, errlen, "no value");
		return false;
	}
	p = skip_blanks(str);
	if (!isdigit((unsigned char)*p)) {
		snprintf(errbuf, errlen, "'%s' is not a %s", str, what);
		return false;
	}
	errno = 0;
	*v = strtoull(p, end, 10);
	if (errno == ERANGE) {
		snprintf(errbuf, errlen, "'%s' is too large", str);
		return false;
	}
	return true;
}

static bool in_range(unsigned long long v, uint64_t min, uint64_t max,
		     char *errbuf, size_t errlen)
{
	if (v < min || v > max) {
		snprintf(errbuf, errlen,
			 "%llu is out of range [%llu, %llu]", v,
			 (unsigned long long)min, (unsigned long long)max);
		return false;
	}
	return true;
}

bool asvfs_parse_uint64(const char *str, uint64_t min, uint64_t max,
			uint64_t *result, char *errbuf, size_t errlen)
{
	char *end = NULL;
	unsigned long long v;

	if (!parse_leading_number(str, "number", &v, &end, errbuf, errlen)) {
		return false;
	}
	if (!only_blanks(end)) {
		snprintf(errbuf, errlen, "'%s' is not a number", str);
		return false;
	}
	if (!in_range(v, min, max, errbuf, errlen)) {
		return false;
	}
	*result = v;
	return true;
}

/* The power of 1024 a size suffix stands for; -1 if it is none. */
static int size_shift(char c)
{
	switch (c) {
	case 'k':
	case 'K':
		return 10;
	case 'm':
	case 'M':
		return 20;
	case 'g':
	case 'G':
		return 30;
	case 't':
	case 'T':
		return 40;
	}
	return -1;
}

bool asvfs_parse_size(const char *str, uint64_t min, uint64_t max,
		      uint64_t *result, char *errbuf, size_t errlen)
{
	char *end = NULL;
	unsigned long long v;
	int shift = 0;

	if (!parse_leading_number(str, "size", &v, &end, errbuf, errlen)) {
		return false;
	}
	if (*end != '\0' && size_shift(*end) != -1) {
		shift = size_shift(*end);
		end++;
	}
	if (!only_blanks(end)) {
		snprintf(errbuf, errlen, "'%s' is not a size", str);
		return false;
	}
	if (shift > 0 && v > (UINT64_MAX >> shift)) {
		snprintf(errbuf, errlen, "'%s' is too large", str);
		return false;
	}
	v <<= shift;
	if (!in_range(v, min, max, errbuf, errlen)) {
		return false;
	}
	*result = v;
	return true;
}

/* Compare a table name with a blank-padded word, ignoring case. */
static bool word_equal(const char *word, const char *name)
{
	size_t n = strlen(name);

	word = skip_blanks(word);
	if (strncasecmp(word, name, n) != 0) {
		return false;
	}
	return only_blanks(word + n);
}

bool asvfs_parse_bool(const char *str, bool *result,
		      char *errbuf, size_t errlen)
{
	static const struct asvfs_enum_value bools[] = {
		{ "yes", 1 }, { "true", 1 }, { "on", 1 }, { "1", 1 },
		{ "no", 0 }, { "false", 0 }, { "off", 0 }, { "0", 0 },
		{ NULL, 0 },
	};
	int v;

	if (!asvfs_parse_enum(str, bools, &v, errbuf, errlen)) {
		return false;
	}
	*result = (v != 0);
	return true;
}

bool asvfs_parse_enum(const char *str, const struct asvfs_enum_value *table,
		      int *result, char *errbuf, size_t errlen)
{
	const struct asvfs_enum_value *e = NULL;
	size_t used = 0;

	if (str == NULL) {
		snprintf(errbuf, errlen, "no value");
		return false;
	}
	for (e = table; e->name != NULL; e++) {
		if (word_equal(str, e->name)) {
			*result = e->value;
			return true;
		}
	}
	used = snprintf(errbuf, errlen, "'%s' is not one of:", str);
	for (e = table; e->name != NULL && used < errlen; e++) {
		used += snprintf(errbuf + used, errlen - used, " %s", e->name);
	}
	return false;
}
