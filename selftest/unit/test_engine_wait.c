/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests of the engine's synchronous side (asvfs_engine_flush/wait),
 * used by async_dosattr's prefetch: a caller that started requests
 * earlier collects one of them without returning to the event loop, and
 * the other completions stay deferred to the loop.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
#include <talloc.h>
#include <tevent.h>
#include <unistd.h>

#include "asvfs_engine.h"

#define NFILES 16

struct fixture {
	struct tevent_context *ev;
	struct asvfs_engine *engine;
	char dir[64];
	int fds[NFILES];
};

static const struct asvfs_engine_config test_config = { .entries = 8 };

static int setup(void **state)
{
	struct fixture *f = talloc_zero(NULL, struct fixture);
	bool first = false;
	int err = 0;
	int i;

	f->ev = tevent_context_init(f);
	f->engine = asvfs_engine_get(f->ev, &test_config, &err, &first);
	if (f->engine == NULL ||
	    !asvfs_engine_supports(f->engine, ASVFS_OP_GETXATTR)) {
		print_message("io_uring getxattr unavailable\n");
		talloc_free(f);
		return -1;
	}
	snprintf(f->dir, sizeof(f->dir), "/tmp/asvfs-wait-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	for (i = 0; i < NFILES; i++) {
		char path[128], value[16];

		snprintf(path, sizeof(path), "%s/f%d", f->dir, i);
		f->fds[i] = open(path, O_CREAT | O_RDWR, 0600);
		assert_true(f->fds[i] >= 0);
		snprintf(value, sizeof(value), "v%d", i);
		assert_int_equal(fsetxattr(f->fds[i], "user.test", value,
					   strlen(value), 0), 0);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char path[128];
	int i;

	asvfs_engine_shutdown();
	for (i = 0; i < NFILES; i++) {
		close(f->fds[i]);
		snprintf(path, sizeof(path), "%s/f%d", f->dir, i);
		unlink(path);
	}
	rmdir(f->dir);
	talloc_free(f);
	return 0;
}

static void count_callback(struct tevent_req *req)
{
	int *called = tevent_req_callback_data_void(req);

	(*called)++;
}

/*
 * More requests than the ring has entries; every other one collected in
 * reverse order without a loop turn: each has its own value, and no
 * callback ran inside the waits.  The others complete on the loop, once
 * each (a received request gets no callback).
 */
static void wait_collects_each_request(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *reqs[NFILES];
	char values[NFILES][16];
	int called = 0;
	int i;

	for (i = 0; i < NFILES; i++) {
		memset(values[i], 0, sizeof(values[i]));
		reqs[i] = asvfs_getxattr_send(f, f->ev, f->engine, f->fds[i],
					      "user.test", values[i],
					      sizeof(values[i]));
		assert_non_null(reqs[i]);
		tevent_req_set_callback(reqs[i], count_callback, &called);
	}
	asvfs_engine_flush(f->engine);
	for (i = NFILES - 1; i >= 0; i -= 2) {
		char expect[16];
		ssize_t n;
		int err = 0;

		assert_true(asvfs_engine_wait(f->engine, reqs[i]));
		n = asvfs_getxattr_recv(reqs[i], &err);
		snprintf(expect, sizeof(expect), "v%d", i);
		assert_int_equal(n, strlen(expect));
		assert_memory_equal(values[i], expect, n);
	}
	assert_int_equal(called, 0);
	while (called < NFILES / 2) {
		assert_int_equal(tevent_loop_once(f->ev), 0);
	}
	for (i = 0; i < NFILES; i += 2) {
		char expect[16];
		int err = 0;

		snprintf(expect, sizeof(expect), "v%d", i);
		assert_int_equal(asvfs_getxattr_recv(reqs[i], &err),
				 strlen(expect));
		assert_memory_equal(values[i], expect, strlen(expect));
	}
	for (i = 0; i < NFILES; i++) {
		talloc_free(reqs[i]);
	}
}

/* A request that failed before the kernel saw it is not waited for. */
static void wait_returns_for_a_failed_request(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char value[16];
	int err = 0;

	req = asvfs_getxattr_send(f, f->ev, f->engine, -1, "user.test",
				  value, sizeof(value));
	assert_non_null(req);
	assert_true(asvfs_engine_wait(f->engine, req));
	assert_int_equal(asvfs_getxattr_recv(req, &err), -1);
	assert_int_equal(err, EBADF);
	talloc_free(req);
}

/* Missing values come back as ENODATA, the error the prefetch keeps. */
static void wait_reports_enodata(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char value[16];
	int err = 0;

	req = asvfs_getxattr_send(f, f->ev, f->engine, f->fds[0],
				  "user.missing", value, sizeof(value));
	assert_true(asvfs_engine_wait(f->engine, req));
	assert_int_equal(asvfs_getxattr_recv(req, &err), -1);
	assert_int_equal(err, ENODATA);
	talloc_free(req);
}

static int count_fds(void)
{
	char path[64];
	int fd, n = 0;

	for (fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (access(path, F_OK) == 0) {
			n++;
		}
	}
	return n;
}

/*
 * An open that completed but was freed before anyone received it (its
 * callback is deferred; smbd may free the request in between) does not
 * leak the fd; a received one is the caller's.
 */
static void completed_open_freed_unreceived_is_closed(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	int before = count_fds();
	int err = 0, fd;

	req = asvfs_openat_send(f, f->ev, f->engine, AT_FDCWD, f->dir,
				O_RDONLY | O_DIRECTORY, 0);
	assert_non_null(req);
	assert_true(asvfs_engine_wait(f->engine, req));
	assert_int_equal(count_fds(), before + 1);
	talloc_free(req);
	assert_int_equal(count_fds(), before);

	req = asvfs_openat_send(f, f->ev, f->engine, AT_FDCWD, f->dir,
				O_RDONLY | O_DIRECTORY, 0);
	assert_true(asvfs_engine_wait(f->engine, req));
	fd = asvfs_openat_recv(req, &err);
	assert_true(fd >= 0);
	talloc_free(req);
	assert_int_equal(count_fds(), before + 1);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(wait_collects_each_request,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			wait_returns_for_a_failed_request, setup, teardown),
		cmocka_unit_test_setup_teardown(wait_reports_enodata,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			completed_open_freed_unreceived_is_closed, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
