/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a latency estimate for a module's mode auto.
 */
#include "asvfs_estimate.h"

void asvfs_estimate_add(struct asvfs_estimate *e, uint64_t sample_nsec,
			uint64_t cap_nsec)
{
	if (cap_nsec != 0 && sample_nsec > cap_nsec) {
		sample_nsec = cap_nsec;
	}
	if (e->samples < ASVFS_ESTIMATE_WEIGHT) {
		e->samples++;
	}
	e->nsec = (e->nsec * (e->samples - 1) + sample_nsec) / e->samples;
}

bool asvfs_estimate_settled(const struct asvfs_estimate *e)
{
	return e->samples >= ASVFS_ESTIMATE_WEIGHT;
}
