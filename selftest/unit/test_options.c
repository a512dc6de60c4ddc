/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: option values are validated, never trusted.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "asvfs_options.h"

static void uint_accepts_values_in_range(void **state)
{
	char err[128];
	uint64_t v = 0;

	assert_true(asvfs_parse_uint64("256", 1, 4096, &v, err, sizeof(err)));
	assert_int_equal(v, 256);
	assert_true(asvfs_parse_uint64(" 1 ", 1, 4096, &v, err, sizeof(err)));
	assert_int_equal(v, 1);
	assert_true(asvfs_parse_uint64("4096", 1, 4096, &v, err,
				       sizeof(err)));
	assert_int_equal(v, 4096);
}

static void uint_refuses_garbage_and_keeps_result(void **state)
{
	const char *bad[] = { "", " ", "abc", "12abc", "-1", "+5", "0x10",
			      "1.5", "99999999999999999999999", NULL };
	char err[128];
	uint64_t v = 42;
	int i;

	for (i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		assert_false(asvfs_parse_uint64(bad[i], 0, UINT64_MAX, &v,
						err, sizeof(err)));
		assert_int_equal(v, 42);
		assert_true(strlen(err) > 0);
	}
	assert_false(asvfs_parse_uint64(NULL, 0, 10, &v, err, sizeof(err)));
}

static void uint_refuses_out_of_range_with_reason(void **state)
{
	char err[128];
	uint64_t v = 7;

	assert_false(asvfs_parse_uint64("0", 1, 4096, &v, err, sizeof(err)));
	assert_non_null(strstr(err, "out of range"));
	assert_false(asvfs_parse_uint64("4097", 1, 4096, &v, err,
					sizeof(err)));
	assert_int_equal(v, 7);
}

static void size_accepts_bytes_and_suffixes(void **state)
{
	char err[128];
	uint64_t v = 0;

	assert_true(asvfs_parse_size("4096", 0, UINT64_MAX, &v, err,
				     sizeof(err)));
	assert_int_equal(v, 4096);
	assert_true(asvfs_parse_size(" 64M ", 0, UINT64_MAX, &v, err,
				     sizeof(err)));
	assert_int_equal(v, 64ULL << 20);
	assert_true(asvfs_parse_size("3k", 0, UINT64_MAX, &v, err,
				     sizeof(err)));
	assert_int_equal(v, 3072);
	assert_true(asvfs_parse_size("2G", 0, UINT64_MAX, &v, err,
				     sizeof(err)));
	assert_int_equal(v, 2ULL << 30);
	assert_true(asvfs_parse_size("1t", 0, UINT64_MAX, &v, err,
				     sizeof(err)));
	assert_int_equal(v, 1ULL << 40);
	assert_true(asvfs_parse_size("0", 0, 10, &v, err, sizeof(err)));
	assert_int_equal(v, 0);
}

static void size_refuses_garbage_overflow_and_range(void **state)
{
	const char *bad[] = { "", " ", "M", "64MB", "64 M", "-1M", "+5",
			      "1.5G", "0x10", "5X", "16777216T",
			      "99999999999999999999999", NULL };
	char err[128];
	uint64_t v = 42;
	int i;

	for (i = 0; bad[i] != NULL; i++) {
		err[0] = '\0';
		assert_false(asvfs_parse_size(bad[i], 0, UINT64_MAX, &v, err,
					      sizeof(err)));
		assert_int_equal(v, 42);
		assert_true(strlen(err) > 0);
	}
	assert_false(asvfs_parse_size("2M", 0, 1ULL << 20, &v, err,
				      sizeof(err)));
	assert_non_null(strstr(err, "out of range"));
	assert_false(asvfs_parse_size(NULL, 0, 10, &v, err, sizeof(err)));
	assert_int_equal(v, 42);
}

/* The checks the two number parsers share give the same reasons. */
static void size_and_uint_share_their_reasons(void **state)
{
	char err[128];
	uint64_t v = 42;

	assert_false(asvfs_parse_uint64("-1", 0, 10, &v, err, sizeof(err)));
	assert_string_equal(err, "'-1' is not a number");
	assert_false(asvfs_parse_size("-1", 0, 10, &v, err, sizeof(err)));
	assert_string_equal(err, "'-1' is not a size");
	assert_false(asvfs_parse_uint64("99999999999999999999999", 0,
					UINT64_MAX, &v, err, sizeof(err)));
	assert_string_equal(err, "'99999999999999999999999' is too large");
	assert_false(asvfs_parse_size("99999999999999999999999", 0,
				      UINT64_MAX, &v, err, sizeof(err)));
	assert_string_equal(err, "'99999999999999999999999' is too large");
	assert_false(asvfs_parse_uint64("11", 0, 10, &v, err, sizeof(err)));
	assert_string_equal(err, "11 is out of range [0, 10]");
	assert_false(asvfs_parse_size("11", 0, 10, &v, err, sizeof(err)));
	assert_string_equal(err, "11 is out of range [0, 10]");
	assert_false(asvfs_parse_size(NULL, 0, 10, &v, err, sizeof(err)));
	assert_string_equal(err, "no value");
	assert_int_equal(v, 42);
}

static void bool_accepts_smb_conf_spellings(void **state)
{
	const char *yes[] = { "yes", "True", "ON", "1", " yes ", NULL };
	const char *no[] = { "no", "false", "Off", "0", NULL };
	char err[128];
	bool b;
	int i;

	for (i = 0; yes[i] != NULL; i++) {
		b = false;
		assert_true(asvfs_parse_bool(yes[i], &b, err, sizeof(err)));
		assert_true(b);
	}
	for (i = 0; no[i] != NULL; i++) {
		b = true;
		assert_true(asvfs_parse_bool(no[i], &b, err, sizeof(err)));
		assert_false(b);
	}
	assert_false(asvfs_parse_bool("yess", &b, err, sizeof(err)));
	assert_false(asvfs_parse_bool("", &b, err, sizeof(err)));
}

static void enum_names_the_choices_on_error(void **state)
{
	static const struct asvfs_enum_value modes[] = {
		{ "auto", 0 }, { "async", 1 }, { "sync", 2 }, { NULL, 0 },
	};
	char err[128];
	int v = -1;

	assert_true(asvfs_parse_enum("ASYNC", modes, &v, err, sizeof(err)));
	assert_int_equal(v, 1);
	assert_false(asvfs_parse_enum("asyn", modes, &v, err, sizeof(err)));
	assert_int_equal(v, 1);
	assert_non_null(strstr(err, "auto async sync"));
}

static void enum_error_fits_small_buffers(void **state)
{
	static const struct asvfs_enum_value modes[] = {
		{ "creates", 0 }, { "all", 1 }, { "off", 2 }, { NULL, 0 },
	};
	char err[8];
	int v;

	memset(err, 'x', sizeof(err));
	assert_false(asvfs_parse_enum("bogus-value", modes, &v, err,
				      sizeof(err)));
	assert_int_equal(err[sizeof(err) - 1], '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(uint_accepts_values_in_range),
		cmocka_unit_test(uint_refuses_garbage_and_keeps_result),
		cmocka_unit_test(uint_refuses_out_of_range_with_reason),
		cmocka_unit_test(size_accepts_bytes_and_suffixes),
		cmocka_unit_test(size_refuses_garbage_overflow_and_range),
		cmocka_unit_test(size_and_uint_share_their_reasons),
		cmocka_unit_test(bool_accepts_smb_conf_spellings),
		cmocka_unit_test(enum_names_the_choices_on_error),
		cmocka_unit_test(enum_error_fits_small_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
