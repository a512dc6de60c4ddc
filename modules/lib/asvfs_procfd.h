/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the /proc/self/fd/<fd> name of an open descriptor.
 *
 * The kernel resolves it to the object the descriptor holds, not to a
 * path that may have changed: this is how a thread or an io_uring
 * opcode that takes a path (getxattr, listxattr, openat) reaches a file
 * smbd already holds, and how a module reopens it with access of its
 * own.  One formatter for the library and the modules (Samba's
 * sys_proc_fd_path() is for smbd's side only).
 */
#ifndef ASVFS_PROCFD_H
#define ASVFS_PROCFD_H

#include <stdio.h>

#define ASVFS_PROC_FD_PREFIX "/proc/self/fd/"

/* Room for the prefix, any int and the NUL. */
struct asvfs_proc_fd_path {
	char s[sizeof(ASVFS_PROC_FD_PREFIX) + 11];
};

/* The name of fd, in buf; returns buf->s. */
static inline const char *asvfs_proc_fd_path(int fd,
					     struct asvfs_proc_fd_path *buf)
{
	snprintf(buf->s, sizeof(buf->s), ASVFS_PROC_FD_PREFIX "%d", fd);
	return buf->s;
}

#endif
