/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: parsing and validation of <module>:<option> values.
 *
 * lp_parm_*() does not validate what an admin wrote; these helpers do.
 * They are pure (no Samba state) so that they can be unit tested, and
 * report a one-line reason the caller logs through its debug class.
 */
#ifndef ASVFS_OPTIONS_H
#define ASVFS_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct asvfs_enum_value {
	const char *name;
	int value;
};

/*
 * Parse a decimal unsigned integer in [min, max].  Leading/trailing blanks
 * are allowed; signs, trailing garbage, empty strings and overflow are not.
 * On failure *result is untouched and errbuf holds the reason.
 */
bool asvfs_parse_uint64(const char *str, uint64_t min, uint64_t max,
			uint64_t *result, char *errbuf, size_t errlen);

/*
 * Parse a size in bytes with an optional K, M, G or T suffix (powers of
 * 1024, either case), as smb.conf writes sizes, e.g. "64M", in
 * [min, max].  Same refusals as asvfs_parse_uint64(), and a product that
 * overflows.
 */
bool asvfs_parse_size(const char *str, uint64_t min, uint64_t max,
		      uint64_t *result, char *errbuf, size_t errlen);

/* Parse a boolean the way smb.conf spells them (yes/no, true/false, 1/0,
 * on/off), case-insensitively. */
bool asvfs_parse_bool(const char *str, bool *result,
		      char *errbuf, size_t errlen);

/* Parse one of the names in a NULL-terminated table, case-insensitively. */
bool asvfs_parse_enum(const char *str, const struct asvfs_enum_value *table,
		      int *result, char *errbuf, size_t errlen);

#endif
