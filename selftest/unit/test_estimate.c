/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: the latency estimate of mode auto starts from its first
 * samples, settles into a moving average, and caps outliers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "asvfs_estimate.h"

static void first_sample_is_the_estimate(void **state)
{
	struct asvfs_estimate e = { 0 };

	assert_false(asvfs_estimate_settled(&e));
	asvfs_estimate_add(&e, 1000000, 0);
	/* a slow storage looks slow from its first read */
	assert_int_equal(e.nsec, 1000000);
	assert_false(asvfs_estimate_settled(&e));
}

static void first_samples_are_averaged(void **state)
{
	struct asvfs_estimate e = { 0 };
	int i;

	asvfs_estimate_add(&e, 200000, 0);	/* one preempted read */
	for (i = 1; i < ASVFS_ESTIMATE_WEIGHT; i++) {
		asvfs_estimate_add(&e, 10000, 0);
	}
	assert_true(asvfs_estimate_settled(&e));
	/* the mean, but for a few nsec of integer division on the way */
	assert_in_range(e.nsec, (200000 + 7 * 10000) / 8 - 8,
			(200000 + 7 * 10000) / 8);
}

static void settled_estimate_moves_by_an_eighth(void **state)
{
	struct asvfs_estimate e = { 0 };
	int i;

	for (i = 0; i < 100; i++) {
		asvfs_estimate_add(&e, 10000, 0);
	}
	assert_int_equal(e.nsec, 10000);
	assert_int_equal(e.samples, ASVFS_ESTIMATE_WEIGHT);
	asvfs_estimate_add(&e, 90000, 0);
	assert_int_equal(e.nsec, 20000);
	/* and back: a fast storage is found again */
	for (i = 0; i < 100; i++) {
		asvfs_estimate_add(&e, 10000, 0);
	}
	assert_in_range(e.nsec, 10000, 10010);
}

static void outlier_is_capped(void **state)
{
	struct asvfs_estimate e = { 0 };
	int i;

	for (i = 0; i < ASVFS_ESTIMATE_WEIGHT; i++) {
		asvfs_estimate_add(&e, 10000, 0);
	}
	asvfs_estimate_add(&e, 50000000, 200000);	/* 50 ms, capped */
	assert_int_equal(e.nsec, (7 * 10000 + 200000) / 8);

	e = (struct asvfs_estimate) { 0 };
	asvfs_estimate_add(&e, 50000000, 200000);
	assert_int_equal(e.nsec, 200000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_sample_is_the_estimate),
		cmocka_unit_test(first_samples_are_averaged),
		cmocka_unit_test(settled_estimate_moves_by_an_eighth),
		cmocka_unit_test(outlier_is_capped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
