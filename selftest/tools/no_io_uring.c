/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * no_io_uring: run a command where io_uring_setup(2) fails with EPERM, as
 * under docker's default seccomp profile, to test that modules fall back
 * to the next module instead of failing.
 *
 * Usage: no_io_uring [--enosys] COMMAND [ARGS...]
 *   --enosys  fail with ENOSYS (a kernel without io_uring) instead of
 *             EPERM (a seccomp profile or kernel.io_uring_disabled)
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "deny_io_uring.h"

int main(int argc, char **argv)
{
	int err = EPERM;

	if (argc > 1 && strcmp(argv[1], "--enosys") == 0) {
		err = ENOSYS;
		argv++;
		argc--;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: no_io_uring [--enosys] COMMAND "
			"[ARGS...]\n");
		return 2;
	}
	if (asvfs_deny_io_uring(err) != 0) {
		fprintf(stderr, "no_io_uring: seccomp: %s\n", strerror(errno));
		return 1;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "no_io_uring: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
