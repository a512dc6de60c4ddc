/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: the latency-estimate policy of mode auto starts from its
 * first samples, settles into a moving average, caps outliers, switches
 * with hysteresis and measures a slow storage again once a second; one
 * that learns from asynchronous completions too starts asynchronous and
 * never waits on a synchronous measurement while the storage is slow.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "asvfs_estimate.h"

#define USEC 1000ULL
#define SEC (1000ULL * 1000 * 1000)

/* A clock well past zero, as CLOCK_MONOTONIC is on a running machine. */
#define T0 (100 * SEC)

static void add_n(struct asvfs_estimate *e, int n, uint64_t sample,
		  uint64_t now)
{
	int i;

	for (i = 0; i < n; i++) {
		asvfs_estimate_add(e, sample, now);
	}
}

static void first_sample_is_the_estimate(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	assert_false(asvfs_estimate_settled(&e));
	asvfs_estimate_add(&e, 1000000, T0);
	/* a slow storage looks slow from its first read */
	assert_int_equal(e.nsec, 1000000);
	assert_false(asvfs_estimate_settled(&e));
}

static void first_samples_are_averaged(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	asvfs_estimate_add(&e, 200000, T0);	/* one preempted read */
	add_n(&e, ASVFS_ESTIMATE_WEIGHT - 1, 10000, T0);
	assert_true(asvfs_estimate_settled(&e));
	/* the mean, but for a few nsec of integer division on the way */
	assert_in_range(e.nsec, (200000 + 7 * 10000) / 8 - 8,
			(200000 + 7 * 10000) / 8);
}

static void settled_estimate_moves_by_an_eighth(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	add_n(&e, 100, 10000, T0);
	assert_int_equal(e.nsec, 10000);
	assert_int_equal(e.samples, ASVFS_ESTIMATE_WEIGHT);
	asvfs_estimate_add(&e, 90000, T0);
	assert_int_equal(e.nsec, 20000);
	/* and back: a fast storage is found again */
	add_n(&e, 100, 10000, T0);
	assert_in_range(e.nsec, 10000, 10010);
}

static void outlier_is_capped(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 100 * USEC, 200000);
	add_n(&e, ASVFS_ESTIMATE_WEIGHT, 10000, T0);
	asvfs_estimate_add(&e, 50000000, T0);	/* 50 ms, capped */
	assert_int_equal(e.nsec, (7 * 10000 + 200000) / 8);
	/* one preemption switches nothing */
	assert_false(asvfs_estimate_want_async(&e, T0 + SEC));

	asvfs_estimate_init(&e, 100 * USEC, 200000);
	asvfs_estimate_add(&e, 50000000, T0);
	assert_int_equal(e.nsec, 200000);
}

static void fast_storage_stays_synchronous(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 100 * USEC);
	add_n(&e, 100, 10 * USEC, T0);
	assert_false(asvfs_estimate_want_async(&e, T0));
	assert_false(asvfs_estimate_want_async(&e, T0 + 10 * SEC));
	/* every call may measure: a fast sample asks for the next at once */
	assert_true(asvfs_estimate_measure_due(&e, T0));
}

static void every_call_measures_until_settled(void **state)
{
	struct asvfs_estimate e;
	int i;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	for (i = 0; i < ASVFS_ESTIMATE_WEIGHT; i++) {
		assert_true(asvfs_estimate_measure_due(&e, T0));
		assert_false(asvfs_estimate_want_async(&e, T0));
		asvfs_estimate_add(&e, 5000 * USEC, T0);
	}
	assert_true(asvfs_estimate_settled(&e));
	/* slow and just measured: asynchronous */
	assert_false(asvfs_estimate_measure_due(&e, T0));
	assert_true(asvfs_estimate_want_async(&e, T0 + 1));
}

static void slow_storage_is_measured_once_a_second(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	add_n(&e, ASVFS_ESTIMATE_WEIGHT, 5000 * USEC, T0);
	assert_true(asvfs_estimate_want_async(&e, T0 + SEC - 1));
	assert_true(asvfs_estimate_measure_due(&e, T0 + SEC));
	assert_false(asvfs_estimate_want_async(&e, T0 + SEC));
	/* the measurement was slow again: the next second asynchronous */
	asvfs_estimate_add(&e, 5000 * USEC, T0 + SEC);
	assert_true(asvfs_estimate_want_async(&e, T0 + SEC + 1));
	/* a clock that went back is no reason to measure */
	assert_false(asvfs_estimate_measure_due(&e, T0));
}

static void became_fast_is_noticed_at_once(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 50 * USEC, 0);
	add_n(&e, ASVFS_ESTIMATE_WEIGHT, 5000 * USEC, T0);
	assert_true(asvfs_estimate_want_async(&e, T0 + 1));
	/* the once-a-second measurement is fast: measure at once again */
	asvfs_estimate_add(&e, 10 * USEC, T0 + SEC);
	assert_true(asvfs_estimate_measure_due(&e, T0 + SEC + 1));
	assert_false(asvfs_estimate_want_async(&e, T0 + SEC + 1));
}

static void switching_has_hysteresis(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 100 * USEC, 0);
	/* settled at 80 usec, slow samples: below the threshold */
	add_n(&e, ASVFS_ESTIMATE_WEIGHT, 80 * USEC, T0);
	e.fast_nsec = 10 * USEC;	/* so that no measurement is due */
	add_n(&e, 1, 80 * USEC, T0);
	assert_false(asvfs_estimate_want_async(&e, T0 + 1));
	/* above it: asynchronous */
	e.nsec = 101 * USEC;
	assert_true(asvfs_estimate_want_async(&e, T0 + 1));
	/* back under it but above half: still asynchronous */
	e.nsec = 60 * USEC;
	assert_true(asvfs_estimate_want_async(&e, T0 + 1));
	/* under half: synchronous, and then the full threshold again */
	e.nsec = 49 * USEC;
	assert_false(asvfs_estimate_want_async(&e, T0 + 1));
	e.nsec = 60 * USEC;
	assert_false(asvfs_estimate_want_async(&e, T0 + 1));
}

static void above_with_and_without_hysteresis(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init(&e, 0, 0);
	e.nsec = 60;
	assert_false(asvfs_estimate_above(&e, 100, false));
	assert_true(asvfs_estimate_above(&e, 100, true));
	assert_true(asvfs_estimate_above(&e, 50, false));
	/* threshold 0: asynchronous from the first non-zero estimate */
	assert_true(asvfs_estimate_above(&e, 0, false));
}

static void add_async_n(struct asvfs_estimate *e, int n, uint64_t sample,
			uint64_t now)
{
	int i;

	for (i = 0; i < n; i++) {
		asvfs_estimate_add_async(e, sample, now);
	}
}

static void async_learner_starts_asynchronous(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init_async(&e, 1000 * USEC, 2000 * USEC);
	/* nothing known: no operation blocks to find out */
	assert_true(asvfs_estimate_want_async(&e, T0));
	assert_true(asvfs_estimate_want_async(&e, T0 + 10 * SEC));
	assert_int_equal(e.samples, 0);
}

static void async_batch_counts_its_least(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init_async(&e, 1000 * USEC, 0);
	asvfs_estimate_add_async(&e, 900 * USEC, T0);	/* waited in a queue */
	asvfs_estimate_add_async(&e, 80 * USEC, T0);
	asvfs_estimate_add_async(&e, 700 * USEC, T0);
	assert_int_equal(e.samples, 0);
	asvfs_estimate_add_async(&e, 300 * USEC, T0);
	assert_int_equal(e.samples, 1);
	assert_int_equal(e.nsec, 80 * USEC);
	/* the next batch starts afresh */
	add_async_n(&e, ASVFS_ESTIMATE_ASYNC_BATCH, 120 * USEC, T0);
	assert_int_equal(e.samples, 2);
	assert_int_equal(e.nsec, 100 * USEC);
}

static void fast_completions_switch_to_synchronous(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init_async(&e, 1000 * USEC, 2000 * USEC);
	add_async_n(&e, ASVFS_ESTIMATE_ASYNC_BATCH - 1, 100 * USEC, T0);
	assert_true(asvfs_estimate_want_async(&e, T0));
	asvfs_estimate_add_async(&e, 100 * USEC, T0);
	assert_false(asvfs_estimate_want_async(&e, T0 + 1));
	/* and synchronous samples take it back when the storage slows */
	add_n(&e, ASVFS_ESTIMATE_WEIGHT, 5000 * USEC, T0 + 2);
	assert_true(asvfs_estimate_want_async(&e, T0 + 3));
}

static void slow_learner_never_measures_synchronously(void **state)
{
	struct asvfs_estimate e;
	uint64_t now = T0;
	int i;

	asvfs_estimate_init_async(&e, 1000 * USEC, 2000 * USEC);
	/* 500 ms creates, one every 2 s: each one asynchronous */
	for (i = 0; i < 40; i++) {
		assert_true(asvfs_estimate_want_async(&e, now));
		asvfs_estimate_add_async(&e, 500 * 1000 * USEC, now);
		now += 2 * SEC;
	}
	assert_true(asvfs_estimate_settled(&e));
	assert_int_equal(e.nsec, 2000 * USEC);		/* capped */
	/* back to fast: it takes batches to fall under half the threshold */
	add_async_n(&e, ASVFS_ESTIMATE_ASYNC_BATCH, 100 * USEC, now);
	assert_true(asvfs_estimate_want_async(&e, now));
	add_async_n(&e, 20 * ASVFS_ESTIMATE_ASYNC_BATCH, 100 * USEC, now);
	assert_false(asvfs_estimate_want_async(&e, now));
}

static void threshold_zero_learner_stays_asynchronous(void **state)
{
	struct asvfs_estimate e;

	asvfs_estimate_init_async(&e, 0, 1000);
	add_async_n(&e, 10 * ASVFS_ESTIMATE_ASYNC_BATCH, 10 * USEC, T0);
	assert_true(asvfs_estimate_want_async(&e, T0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(first_sample_is_the_estimate),
		cmocka_unit_test(first_samples_are_averaged),
		cmocka_unit_test(settled_estimate_moves_by_an_eighth),
		cmocka_unit_test(outlier_is_capped),
		cmocka_unit_test(fast_storage_stays_synchronous),
		cmocka_unit_test(every_call_measures_until_settled),
		cmocka_unit_test(slow_storage_is_measured_once_a_second),
		cmocka_unit_test(became_fast_is_noticed_at_once),
		cmocka_unit_test(switching_has_hysteresis),
		cmocka_unit_test(above_with_and_without_hysteresis),
		cmocka_unit_test(async_learner_starts_asynchronous),
		cmocka_unit_test(async_batch_counts_its_least),
		cmocka_unit_test(fast_completions_switch_to_synchronous),
		cmocka_unit_test(slow_learner_never_measures_synchronously),
		cmocka_unit_test(threshold_zero_learner_stays_asynchronous),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
