/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: what the kernel's io_uring can do, decided at run time.
 *
 * Features are probed, never derived from the kernel version: a ring may
 * be refused outright (kernel.io_uring_disabled, a seccomp filter in a
 * container, RLIMIT_MEMLOCK) or lack single opcodes.
 */
#ifndef ASVFS_URING_PROBE_H
#define ASVFS_URING_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#define ASVFS_URING_MAX_OPS 256

struct asvfs_uring_support {
	/* 0 when a ring could be set up, else the errno of the refusal */
	int setup_errno;
	bool op[ASVFS_URING_MAX_OPS];
};

/*
 * Probe by setting up (and tearing down) a small ring.  Returns true when
 * io_uring is usable at all; support->setup_errno says why not.
 */
bool asvfs_uring_probe(struct asvfs_uring_support *support);

/* The same, for a ring the caller already has. */
struct io_uring;
bool asvfs_uring_probe_ring(struct io_uring *ring,
			    struct asvfs_uring_support *support);

bool asvfs_uring_op_supported(const struct asvfs_uring_support *support,
			      int opcode);

/* read, write and fsync: what async_uring needs */
bool asvfs_uring_supports_data_path(
	const struct asvfs_uring_support *support);

/* A one-line summary for logs, e.g. "io_uring: read write fsync openat". */
const char *asvfs_uring_describe(const struct asvfs_uring_support *support,
				 char *buf, size_t buflen);

#endif
