/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a latency estimate for a module's mode auto.
 *
 * A module measures the storage with the operations it does
 * synchronously and decides from the estimate whether the next one
 * should go asynchronous.  The estimate is the mean of the first
 * ASVFS_ESTIMATE_WEIGHT samples, then a moving average in which each new
 * sample weighs 1/ASVFS_ESTIMATE_WEIGHT.  Averaging into a zero instead
 * would make a slow storage look fast for its first reads.
 */
#ifndef ASVFS_ESTIMATE_H
#define ASVFS_ESTIMATE_H

#include <stdbool.h>
#include <stdint.h>

#define ASVFS_ESTIMATE_WEIGHT 8

struct asvfs_estimate {
	uint64_t nsec;		/* 0 before the first sample */
	unsigned samples;	/* counted up to ASVFS_ESTIMATE_WEIGHT */
};

/*
 * Add a sample, counted as at most cap_nsec (0: no cap), so that one
 * outlier moves a settled estimate by at most cap_nsec / 8.
 */
void asvfs_estimate_add(struct asvfs_estimate *e, uint64_t sample_nsec,
			uint64_t cap_nsec);

/* Whether it has had its first ASVFS_ESTIMATE_WEIGHT samples. */
bool asvfs_estimate_settled(const struct asvfs_estimate *e);

#endif
