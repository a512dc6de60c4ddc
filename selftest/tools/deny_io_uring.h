/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Test helper: make io_uring_setup(2) fail with err in this process and
 * its children, as docker's default seccomp profile (EPERM) or a kernel
 * without io_uring (ENOSYS) would.  Returns 0 or -1 with errno.
 */
#ifndef ASVFS_DENY_IO_URING_H
#define ASVFS_DENY_IO_URING_H

int asvfs_deny_io_uring(int err);

/* The same for any system call number (e.g. __NR_unshare). */
int asvfs_deny_syscall(int nr, int err);

#endif
