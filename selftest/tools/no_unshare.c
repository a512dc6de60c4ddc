/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * no_unshare: run a command where unshare(2) fails with EPERM, as in
 * container runtimes whose seccomp profile refuses it.  smbd then finds
 * no per-thread cwd support and turns "smbd async dosmode" off for every
 * share, whatever module is loaded.
 *
 * Usage: no_unshare COMMAND [ARGS...]
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "deny_io_uring.h"

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: no_unshare COMMAND [ARGS...]\n");
		return 2;
	}
	if (asvfs_deny_syscall(__NR_unshare, EPERM) != 0) {
		fprintf(stderr, "no_unshare: seccomp: %s\n", strerror(errno));
		return 1;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "no_unshare: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
