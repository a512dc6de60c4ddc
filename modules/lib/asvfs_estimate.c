/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the latency-estimate policy of a module's mode auto.
 */
#include "asvfs_estimate.h"

void asvfs_estimate_init(struct asvfs_estimate *e, uint64_t threshold_nsec,
			 uint64_t cap_nsec)
{
	*e = (struct asvfs_estimate) {
		.threshold_nsec = threshold_nsec,
		.fast_nsec = threshold_nsec,
		.cap_nsec = cap_nsec,
	};
}

void asvfs_estimate_init_async(struct asvfs_estimate *e,
			       uint64_t threshold_nsec, uint64_t cap_nsec)
{
	asvfs_estimate_init(e, threshold_nsec, cap_nsec);
	e->learns_async = true;
	e->async = true;
}

void asvfs_estimate_add(struct asvfs_estimate *e, uint64_t sample_nsec,
			uint64_t now_nsec)
{
	/* fast or slow by the time it took, not by what it counts as */
	e->slow_at_nsec = (sample_nsec <= e->fast_nsec) ? 0 : now_nsec;
	if (e->cap_nsec != 0 && sample_nsec > e->cap_nsec) {
		sample_nsec = e->cap_nsec;
	}
	if (e->samples < ASVFS_ESTIMATE_WEIGHT) {
		e->samples++;
	}
	e->nsec = (e->nsec * (e->samples - 1) + sample_nsec) / e->samples;
}

void asvfs_estimate_add_async(struct asvfs_estimate *e, uint64_t sample_nsec,
			      uint64_t now_nsec)
{
	if (e->batch_n == 0 || sample_nsec < e->batch_min_nsec) {
		e->batch_min_nsec = sample_nsec;
	}
	e->batch_n++;
	if (e->batch_n < ASVFS_ESTIMATE_ASYNC_BATCH) {
		return;
	}
	e->batch_n = 0;
	asvfs_estimate_add(e, e->batch_min_nsec, now_nsec);
}

bool asvfs_estimate_settled(const struct asvfs_estimate *e)
{
	return e->samples >= ASVFS_ESTIMATE_WEIGHT;
}

bool asvfs_estimate_measure_due(const struct asvfs_estimate *e,
				uint64_t now_nsec)
{
	if (!asvfs_estimate_settled(e) || e->slow_at_nsec == 0) {
		return true;
	}
	/* a clock before the last sample is taken as no time at all */
	return now_nsec >= e->slow_at_nsec &&
	       now_nsec - e->slow_at_nsec >= ASVFS_ESTIMATE_REMEASURE_NSEC;
}

bool asvfs_estimate_above(const struct asvfs_estimate *e,
			  uint64_t threshold_nsec, bool was_above)
{
	return e->nsec > (was_above ? threshold_nsec / 2 : threshold_nsec);
}

bool asvfs_estimate_want_async(struct asvfs_estimate *e, uint64_t now_nsec)
{
	if (e->learns_async) {
		if (e->samples > 0) {
			e->async = asvfs_estimate_above(e, e->threshold_nsec,
							e->async);
		}
		return e->async;
	}
	e->async = asvfs_estimate_above(e, e->threshold_nsec, e->async);
	return e->async && !asvfs_estimate_measure_due(e, now_nsec);
}
