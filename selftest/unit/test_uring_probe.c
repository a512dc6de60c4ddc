/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: io_uring support is probed at run time, and a refused ring
 * (seccomp in a container, kernel.io_uring_disabled) reads as "unavailable"
 * rather than as an error.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "asvfs_uring_probe.h"
#include "deny_io_uring.h"

static void probe_reports_basic_ops_when_ring_works(void **state)
{
	struct asvfs_uring_support s;
	char desc[256];

	if (!asvfs_uring_probe(&s)) {
		/* Not a failure of ours: say why and skip. */
		print_message("io_uring refused here (%s)\n",
			      strerror(s.setup_errno));
		skip();
	}
	assert_int_equal(s.setup_errno, 0);
	assert_true(asvfs_uring_op_supported(&s, IORING_OP_READ));
	assert_true(asvfs_uring_op_supported(&s, IORING_OP_WRITE));
	assert_true(asvfs_uring_op_supported(&s, IORING_OP_FSYNC));
	assert_false(asvfs_uring_op_supported(&s, -1));
	assert_false(asvfs_uring_op_supported(&s, ASVFS_URING_MAX_OPS));
	asvfs_uring_describe(&s, desc, sizeof(desc));
	assert_non_null(strstr(desc, "read"));
}

static void probe_reports_unavailable_under_seccomp(void **state)
{
	pid_t pid;
	int status;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct asvfs_uring_support s;
		char desc[256];

		if (asvfs_deny_io_uring(EPERM) != 0) {
			_exit(3);
		}
		if (asvfs_uring_probe(&s)) {
			_exit(1);
		}
		if (s.setup_errno != EPERM ||
		    asvfs_uring_op_supported(&s, IORING_OP_READ)) {
			_exit(2);
		}
		asvfs_uring_describe(&s, desc, sizeof(desc));
		_exit(strstr(desc, "unavailable") != NULL ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(probe_reports_basic_ops_when_ring_works),
		cmocka_unit_test(probe_reports_unavailable_under_seccomp),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
