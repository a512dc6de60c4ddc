/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: which process this is, without a system call.
 *
 * The engine, its thread jobs and the modules ask on every request
 * whether they still run in the process that made their ring, thread or
 * log line: smbd forks a child per connection, and what a child
 * inherits (a ring, an eventfd) is the parent's.  glibc's getpid() is a
 * system call on every call; the answer changes only in a fork's child.
 */
#ifndef ASVFS_PROCESS_H
#define ASVFS_PROCESS_H

#include <sys/types.h>

/* getpid(), read once per process and again in each fork()'s child. */
pid_t asvfs_process_id(void);

#endif
