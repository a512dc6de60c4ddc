/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: what the kernel's io_uring can do, decided at run time.
 */
#include "asvfs_uring_probe.h"

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>

static const struct {
	int opcode;
	const char *name;
} asvfs_named_ops[] = {
	{ IORING_OP_READ, "read" },
	{ IORING_OP_WRITE, "write" },
	{ IORING_OP_READV, "readv" },
	{ IORING_OP_WRITEV, "writev" },
	{ IORING_OP_FSYNC, "fsync" },
	{ IORING_OP_OPENAT, "openat" },
	{ IORING_OP_OPENAT2, "openat2" },
	{ IORING_OP_STATX, "statx" },
	{ IORING_OP_GETXATTR, "getxattr" },
	{ IORING_OP_FGETXATTR, "fgetxattr" },
	{ IORING_OP_ASYNC_CANCEL, "async_cancel" },
};

bool asvfs_uring_probe_ring(struct io_uring *ring,
			    struct asvfs_uring_support *support)
{
	struct io_uring_probe *probe = NULL;
	int op;

	memset(support, 0, sizeof(*support));
	probe = io_uring_get_probe_ring(ring);
	if (probe == NULL) {
		/* Kernels before 5.6 cannot tell: assume nothing. */
		support->setup_errno = EOPNOTSUPP;
		return false;
	}
	for (op = 0; op < ASVFS_URING_MAX_OPS && op <= probe->last_op; op++) {
		support->op[op] = io_uring_opcode_supported(probe, op);
	}
	io_uring_free_probe(probe);
	return true;
}

bool asvfs_uring_probe(struct asvfs_uring_support *support)
{
	struct io_uring ring;
	bool ok;
	int ret;

	memset(support, 0, sizeof(*support));
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0) {
		support->setup_errno = -ret;
		return false;
	}
	ok = asvfs_uring_probe_ring(&ring, support);
	io_uring_queue_exit(&ring);
	return ok;
}

bool asvfs_uring_op_supported(const struct asvfs_uring_support *support,
			      int opcode)
{
	if (support->setup_errno != 0) {
		return false;
	}
	if (opcode < 0 || opcode >= ASVFS_URING_MAX_OPS) {
		return false;
	}
	return support->op[opcode];
}

bool asvfs_uring_supports_data_path(
	const struct asvfs_uring_support *support)
{
	return asvfs_uring_op_supported(support, IORING_OP_READ) &&
	       asvfs_uring_op_supported(support, IORING_OP_WRITE) &&
	       asvfs_uring_op_supported(support, IORING_OP_FSYNC);
}

const char *asvfs_uring_describe(const struct asvfs_uring_support *support,
				 char *buf, size_t buflen)
{
	size_t used = 0;
	size_t i;

	if (support->setup_errno != 0) {
		snprintf(buf, buflen, "io_uring unavailable: %s",
			 strerror(support->setup_errno));
		return buf;
	}
	used = snprintf(buf, buflen, "io_uring:");
	for (i = 0; i < sizeof(asvfs_named_ops) / sizeof(asvfs_named_ops[0]);
	     i++) {
		if (used >= buflen) {
			break;
		}
		if (!asvfs_uring_op_supported(support,
					      asvfs_named_ops[i].opcode)) {
			continue;
		}
		used += snprintf(buf + used, buflen - used, " %s",
				 asvfs_named_ops[i].name);
	}
	return buf;
}
