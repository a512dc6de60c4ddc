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
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static int deny_io_uring(int err)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(filter) / sizeof(filter[0]),
		.filter = filter,
	};

	/* Needed for an unprivileged filter; harmless for root. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		return -1;
	}
	return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

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
	if (deny_io_uring(err) != 0) {
		fprintf(stderr, "no_io_uring: seccomp: %s\n", strerror(errno));
		return 1;
	}
	execvp(argv[1], argv + 1);
	fprintf(stderr, "no_io_uring: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
