/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the latency-estimate policy of a module's mode auto.
 *
 * A module measures the storage with the operations it does
 * synchronously and asks the policy whether the next one should go
 * asynchronous.  One policy for every module, so that "async threshold
 * usec" means the same in each:
 *
 * - the estimate is the mean of the first ASVFS_ESTIMATE_WEIGHT samples,
 *   then a moving average in which each new sample weighs
 *   1/ASVFS_ESTIMATE_WEIGHT.  Averaging into a zero instead would make a
 *   slow storage look fast for its first operations;
 * - a sample counts at most cap_nsec, so that one outlier (smbd preempted
 *   on a busy machine) moves a settled estimate by at most cap_nsec / 8;
 * - asynchronous above the threshold, and once asynchronous, until the
 *   estimate falls to half of it, so that an estimate near the threshold
 *   does not flap;
 * - while the storage is slow, a synchronous operation measures it again
 *   at most every ASVFS_ESTIMATE_REMEASURE_NSEC (each costs a round
 *   trip); every operation measures until the estimate has its first
 *   samples, and a fast sample asks for the next measurement at once, so
 *   that a storage that became fast is noticed quickly.
 *
 * A module that can time its asynchronous operations too (from the
 * submission to the completion it sees) starts with
 * asvfs_estimate_init_async() instead: nothing known is taken as slow, so
 * that no operation blocks the connection to find out, and while
 * asynchronous, the completions measure and no operation goes
 * synchronous for it.  A completion's time also holds the wait for a
 * kernel worker and for the main loop, which only ever makes a storage
 * look slower than it is: the least of each ASVFS_ESTIMATE_ASYNC_BATCH
 * completions counts as one sample, so that a fast storage on a busy
 * smbd is still seen as fast.
 *
 * Times are nanoseconds of the caller's monotonic clock; the library
 * reads no clock, so that the tests can give it any time they like.
 */
#ifndef ASVFS_ESTIMATE_H
#define ASVFS_ESTIMATE_H

#include <stdbool.h>
#include <stdint.h>

#define ASVFS_ESTIMATE_WEIGHT 8

/* Asynchronous completions: the least of this many is one sample. */
#define ASVFS_ESTIMATE_ASYNC_BATCH 4

/* While slow, a measurement at most this often. */
#define ASVFS_ESTIMATE_REMEASURE_NSEC (1000ULL * 1000 * 1000)

struct asvfs_estimate {
	uint64_t nsec;		/* 0 before the first sample */
	unsigned samples;	/* counted up to ASVFS_ESTIMATE_WEIGHT */
	/* the policy, from asvfs_estimate_init() */
	uint64_t threshold_nsec;	/* asynchronous above this */
	uint64_t fast_nsec;		/* a sample at most this is fast */
	uint64_t cap_nsec;		/* a sample counts at most this */
	/* when the last slow sample was taken; 0: the next one is due */
	uint64_t slow_at_nsec;
	/* asvfs_estimate_want_async()'s last answer, for hysteresis */
	bool async;
	/* asvfs_estimate_init_async(): completions teach it too */
	bool learns_async;
	unsigned batch_n;	/* completions in the batch so far */
	uint64_t batch_min_nsec;	/* the least of them */
};

/*
 * A policy asynchronous above threshold_nsec, whose samples count at
 * most cap_nsec (0: no cap).  A sample is fast at most threshold_nsec;
 * a module with a second threshold on the same estimate may raise
 * e->fast_nsec to the larger one.
 */
void asvfs_estimate_init(struct asvfs_estimate *e, uint64_t threshold_nsec,
			 uint64_t cap_nsec);

/*
 * The same policy for a module that also reports its asynchronous
 * operations' times: asynchronous until they say the storage is fast.
 */
void asvfs_estimate_init_async(struct asvfs_estimate *e,
			       uint64_t threshold_nsec, uint64_t cap_nsec);

/* Add a synchronous operation's time, taken at now_nsec. */
void asvfs_estimate_add(struct asvfs_estimate *e, uint64_t sample_nsec,
			uint64_t now_nsec);

/*
 * Add an asynchronous operation's time from its submission to its
 * completion, seen at now_nsec (asvfs_estimate_init_async() only).
 */
void asvfs_estimate_add_async(struct asvfs_estimate *e, uint64_t sample_nsec,
			      uint64_t now_nsec);

/* Whether it has had its first ASVFS_ESTIMATE_WEIGHT samples. */
bool asvfs_estimate_settled(const struct asvfs_estimate *e);

/* Whether the next operation should go synchronous to measure. */
bool asvfs_estimate_measure_due(const struct asvfs_estimate *e,
				uint64_t now_nsec);

/*
 * Whether the estimate is above threshold_nsec, or, when it was above
 * last time (was_above), above half of it.
 */
bool asvfs_estimate_above(const struct asvfs_estimate *e,
			  uint64_t threshold_nsec, bool was_above);

/*
 * Whether the operation starting at now_nsec should go asynchronous:
 * the estimate is above the threshold (with hysteresis) and no
 * measurement is due.  After asvfs_estimate_init_async(): before the
 * first sample, or while above the threshold (with hysteresis).
 */
bool asvfs_estimate_want_async(struct asvfs_estimate *e, uint64_t now_nsec);

#endif
