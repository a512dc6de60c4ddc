/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests of the engine on a real tevent loop and a real io_uring,
 * against temporary files and pipes.
 */
#define _GNU_SOURCE	/* O_PATH */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <talloc.h>
#include <tevent.h>
#include <time.h>
#include <unistd.h>

#include "asvfs_engine.h"
#include "deny_io_uring.h"

/*
 * The watchdog of a wait that without the behaviour tested never ends:
 * far above anything a busy machine adds, so no verdict depends on load.
 */
#define WATCHDOG_SECS 60

struct fixture {
	struct tevent_context *ev;
	struct asvfs_engine *engine;
	char path[64];
	int fd;
};

static const struct asvfs_engine_config test_config = { .entries = 32 };

static int setup(void **state)
{
	struct fixture *f = talloc_zero(NULL, struct fixture);
	bool first = false;
	int err = 0;

	f->ev = tevent_context_init(f);
	assert_non_null(f->ev);
	f->engine = asvfs_engine_get(f->ev, &test_config, &err, &first);
	if (f->engine == NULL) {
		print_message("io_uring unavailable: %s\n", strerror(err));
		talloc_free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "/tmp/asvfs-engine-XXXXXX");
	f->fd = mkstemp(f->path);
	assert_true(f->fd >= 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	asvfs_engine_shutdown();
	close(f->fd);
	unlink(f->path);
	talloc_free(f);
	return 0;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e = NULL;
	int n = 0;

	while ((e = readdir(d)) != NULL) {
		n++;
	}
	closedir(d);
	return n;
}

/* Run the loop until req is done (or fail after 10 s). */
static void wait_req(struct tevent_context *ev, struct tevent_req *req)
{
	time_t end = time(NULL) + 10;

	while (tevent_req_is_in_progress(req)) {
		assert_true(time(NULL) < end);
		assert_int_equal(tevent_loop_once(ev), 0);
	}
}

static void reads_and_writes_round_trip(void **state)
{
	struct fixture *f = *state;
	size_t n = 1024 * 1024 + 17;
	uint8_t *out = talloc_size(f, n);
	uint8_t *in = talloc_zero_size(f, n);
	struct tevent_req *req = NULL;
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		out[i] = (uint8_t)(i * 7 + 3);
	}
	req = asvfs_pwrite_send(f, f->ev, f->engine, f->fd, out, n, 4096);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pwrite_recv(req, &err), n);
	TALLOC_FREE(req);

	req = asvfs_fsync_send(f, f->ev, f->engine, f->fd);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_fsync_recv(req, &err), 0);
	TALLOC_FREE(req);

	req = asvfs_pread_send(f, f->ev, f->engine, f->fd, in, n, 4096);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), n);
	assert_memory_equal(in, out, n);
	TALLOC_FREE(req);
}

static void requests_of_one_turn_share_one_submit(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *reqs[64];
	char bufs[64][512];
	uint64_t calls, submitted;
	int i, err;

	assert_int_equal(pwrite(f->fd, "x", 1, 64 * 512), 1);
	calls = asvfs_engine_stats()->submit_calls;
	submitted = asvfs_engine_stats()->op[ASVFS_OP_PREAD].submitted;
	for (i = 0; i < 64; i++) {
		reqs[i] = asvfs_pread_send(f, f->ev, f->engine, f->fd,
					   bufs[i], sizeof(bufs[i]), i * 512);
		assert_non_null(reqs[i]);
	}
	for (i = 0; i < 64; i++) {
		wait_req(f->ev, reqs[i]);
		assert_int_equal(asvfs_pread_recv(reqs[i], &err), 512);
	}
	assert_int_equal(asvfs_engine_stats()->op[ASVFS_OP_PREAD].submitted -
			 submitted, 64);
	/* 64 requests, 32 queue entries: two enters, not 64 */
	assert_true(asvfs_engine_stats()->submit_calls - calls <= 2);
}

static void read_at_eof_returns_what_exists(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[4096] = "";
	int err;

	assert_int_equal(pwrite(f->fd, buf, 100, 0), 100);
	req = asvfs_pread_send(f, f->ev, f->engine, f->fd, buf, sizeof(buf),
			       0);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 100);
	req = asvfs_pread_send(f, f->ev, f->engine, f->fd, buf, sizeof(buf),
			       1 << 20);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 0);
}

static void errors_come_back_as_errno(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[16];
	int rdonly, err = 0;

	rdonly = open(f->path, O_RDONLY);
	assert_true(rdonly >= 0);
	req = asvfs_pwrite_send(f, f->ev, f->engine, rdonly, buf, sizeof(buf),
				0);
	close(rdonly);		/* the engine keeps its own dup() */
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pwrite_recv(req, &err), -1);
	assert_int_equal(err, EBADF);

	req = asvfs_pread_send(f, f->ev, f->engine, -1, buf, sizeof(buf), 0);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), -1);
	assert_int_equal(err, EBADF);
}

/*
 * The caller frees a read the kernel is still waiting on (a pipe with no
 * writer activity), and its buffer with it: the free cancels the read and
 * returns only once the kernel let go of the buffer; the fd is closed.
 */
static void freed_request_in_flight_is_adopted_and_cancelled(void **state)
{
	struct fixture *f = *state;
	TALLOC_CTX *caller = talloc_new(f);
	struct tevent_req *req = NULL;
	uint64_t cancelled;
	int fds_before, p[2];
	char *buf = NULL;

	assert_int_equal(pipe(p), 0);
	fds_before = count_fds();
	cancelled = asvfs_engine_stats()->op[ASVFS_OP_PREAD].cancelled;
	buf = talloc_size(caller, 4096);
	req = asvfs_pread_send(caller, f->ev, f->engine, p[0], buf, 4096, 0);
	assert_non_null(req);
	assert_int_equal(tevent_loop_once(f->ev), 0);	/* submitted */
	assert_int_equal(asvfs_engine_stats()->inflight, 1);

	talloc_free(caller);		/* request and buffer together */
	assert_int_equal(asvfs_engine_stats()->op[ASVFS_OP_PREAD].cancelled,
			 cancelled + 1);
	assert_int_equal(asvfs_engine_stats()->inflight, 0);
	assert_int_equal(write(p[1], "late", 4), 4);
	assert_int_equal(count_fds(), fds_before);
	close(p[0]);
	close(p[1]);
}

static void freed_request_before_submission_just_goes(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[64];
	int fds_before = count_fds();

	req = asvfs_pread_send(f, f->ev, f->engine, f->fd, buf, sizeof(buf),
			       0);
	talloc_free(req);
	assert_int_equal(asvfs_engine_stats()->inflight, 0);
	assert_int_equal(count_fds(), fds_before);
	/* the scheduled submission finds nothing to do */
	assert_int_equal(tevent_loop_once(f->ev), 0);
}

static void shutdown_fails_waiting_requests_cleanly(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[64];
	int p[2], err = 0;

	assert_int_equal(pipe(p), 0);
	req = asvfs_pread_send(f, f->ev, f->engine, p[0], buf, sizeof(buf),
			       0);
	assert_int_equal(tevent_loop_once(f->ev), 0);
	asvfs_engine_shutdown();
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), -1);
	assert_int_equal(err, ECANCELED);
	assert_int_equal(asvfs_engine_stats()->inflight, 0);
	close(p[0]);
	close(p[1]);
}

static void other_event_context_is_refused(void **state)
{
	struct fixture *f = *state;
	struct tevent_context *other = tevent_context_init(f);
	bool first = true;
	int err = 0;

	assert_null(asvfs_engine_get(other, &test_config, &err, &first));
	assert_int_equal(err, EXDEV);
	assert_false(first);
	assert_ptr_equal(asvfs_engine_get(f->ev, &test_config, &err, &first),
			 f->engine);
}

/* A write that crosses RLIMIT_FSIZE is short, then fails with EFBIG: the
 * engine continues the short part and reports the progress. */
static void short_write_is_continued_then_reports_progress(void **state)
{
	struct fixture *f = *state;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit rl = { .rlim_cur = 65536, .rlim_max = 65536 };
		struct tevent_context *ev = tevent_context_init(NULL);
		struct asvfs_engine *engine = NULL;
		struct tevent_req *req = NULL;
		const struct asvfs_op_counters *c = NULL;
		static char buf[32768];
		bool first;
		int err;
		ssize_t n;

		signal(SIGXFSZ, SIG_IGN);
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0) {
			_exit(10);
		}
		engine = asvfs_engine_get(ev, &test_config, &err, &first);
		if (engine == NULL) {
			_exit(11);
		}
		req = asvfs_pwrite_send(ev, ev, engine, f->fd, buf,
					sizeof(buf), 65536 - 1000);
		while (tevent_req_is_in_progress(req)) {
			tevent_loop_once(ev);
		}
		n = asvfs_pwrite_recv(req, &err);
		c = &asvfs_engine_stats()->op[ASVFS_OP_PWRITE];
		if (n != 1000) {
			_exit(12);
		}
		_exit((c->short_io == 1 && c->resubmitted == 1) ? 0 : 13);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* After fork the child must never use the parent's ring. */
static void child_after_fork_gets_its_own_ring(void **state)
{
	struct fixture *f = *state;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct asvfs_engine *engine = NULL;
		struct tevent_req *req = NULL;
		char buf[8] = "";
		bool first;
		int err;

		tevent_re_initialise(f->ev);
		engine = asvfs_engine_get(f->ev, &test_config, &err, &first);
		/* a fresh engine: the parent's counters were not inherited */
		if (engine == NULL || asvfs_engine_stats()->submit_calls != 0) {
			_exit(20);
		}
		if (pwrite(f->fd, "forked", 6, 0) != 6) {
			_exit(21);
		}
		req = asvfs_pread_send(f->ev, f->ev, engine, f->fd, buf, 6, 0);
		while (tevent_req_is_in_progress(req)) {
			tevent_loop_once(f->ev);
		}
		_exit(asvfs_pread_recv(req, &err) == 6 &&
		      memcmp(buf, "forked", 6) == 0 ? 0 : 22);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void refused_ring_is_reported_once(void **state)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct tevent_context *ev = tevent_context_init(NULL);
		bool first = false;
		int err = 0;

		asvfs_engine_shutdown();
		if (asvfs_deny_io_uring(EPERM) != 0) {
			_exit(30);
		}
		if (asvfs_engine_get(ev, &test_config, &err, &first) != NULL ||
		    err != EPERM || !first) {
			_exit(31);
		}
		if (asvfs_engine_get(ev, &test_config, &err, &first) != NULL ||
		    err != EPERM || first) {
			_exit(32);
		}
		asvfs_engine_count_fallback(ASVFS_OP_PREAD);
		_exit(asvfs_engine_stats()->op[ASVFS_OP_PREAD].fallback == 1 ?
		      0 : 33);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * A reopen through /proc/self/fd of our dup gives the same object even
 * when the caller closes its fd at once (smbd does, when it defers), and
 * a freed reopen leaves no fd behind.
 */
static void reopen_survives_the_callers_close(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	struct stat a, b;
	int before = count_fds();
	int pfd, fd, err = 0;

	pfd = open(f->path, O_PATH | O_CLOEXEC);
	assert_true(pfd >= 0);
	assert_int_equal(fstat(pfd, &a), 0);
	req = asvfs_reopen_send(f, f->ev, f->engine, pfd, O_RDWR, 0);
	assert_non_null(req);
	close(pfd);
	while (tevent_req_is_in_progress(req)) {
		tevent_loop_once(f->ev);
	}
	fd = asvfs_openat_recv(req, &err);
	talloc_free(req);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &b), 0);
	assert_true(a.st_dev == b.st_dev && a.st_ino == b.st_ino);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	close(fd);

	pfd = open(f->path, O_PATH | O_CLOEXEC);
	req = asvfs_reopen_send(f, f->ev, f->engine, pfd, O_RDONLY, 0);
	assert_non_null(req);
	close(pfd);
	tevent_loop_once(f->ev);	/* submitted: a free makes an orphan */
	talloc_free(req);
	while (asvfs_engine_stats()->inflight > 0) {
		tevent_loop_once(f->ev);
	}
	assert_int_equal(count_fds(), before);
}

/* Whether another process sees a write lock on the whole of path. */
static bool other_process_sees_lock(const char *path)
{
	pid_t pid = fork();
	int status = 0;

	assert_true(pid >= 0);
	if (pid == 0) {
		struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		int fd = open(path, O_RDWR);

		_exit(fd >= 0 && fcntl(fd, F_GETLK, &fl) == 0 &&
		      fl.l_type == F_WRLCK ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/*
 * A close(2) of any descriptor of a file drops the process's POSIX locks
 * on it (smbd takes those with "smbd force process locks"): data I/O
 * must never close a descriptor of the caller's file.
 */
/*
 * A child of fork() that frees a request it inherited while the parent's
 * kernel side still has it must neither cancel nor wait on the parent's
 * ring (the read below only ends when the parent writes, after the child
 * exited), and the parent's read must still complete.
 */
static void child_frees_the_parents_request_in_flight(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[8] = "";
	int err, status, p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	req = asvfs_pread_send(f, f->ev, f->engine, p[0], buf, 4, 0);
	assert_non_null(req);
	assert_int_equal(tevent_loop_once(f->ev), 0);	/* submitted */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		alarm(WATCHDOG_SECS);	/* a wait on the parent's ring
					 * never ends */
		talloc_free(req);
		_exit(asvfs_engine_stats()->inflight == 0 ? 0 : 23);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(write(p[1], "mine", 4), 4);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 4);
	assert_memory_equal(buf, "mine", 4);
	TALLOC_FREE(req);
	close(p[0]);
	close(p[1]);
}

/*
 * More data ops than there are fixed slots, some failing and some freed
 * in flight: every slot comes back, so none of them dups (a dup's close
 * would drop the lock).
 */
static void slots_come_back_after_errors_and_cancels(void **state)
{
	struct fixture *f = *state;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	uint64_t dups = asvfs_engine_stats()->data_dups;
	struct tevent_req *req = NULL;
	char buf[16] = "";
	int err, i, p[2];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(f->fd, F_SETLK, &fl), 0);
	for (i = 0; i < 1100; i++) {
		bool cancel = (i % 3 == 1);
		int fd = (i % 3 == 0) ? f->fd : (cancel ? p[0] : p[1]);

		/* reads from a pipe's write end fail with EBADF */
		req = asvfs_pread_send(f, f->ev, f->engine, fd, buf, 4, 0);
		assert_non_null(req);
		if (cancel) {
			assert_int_equal(tevent_loop_once(f->ev), 0);
			TALLOC_FREE(req);
			continue;
		}
		wait_req(f->ev, req);
		assert_int_equal(asvfs_pread_recv(req, &err) < 0, i % 3 == 2);
		TALLOC_FREE(req);
	}
	assert_true(asvfs_engine_stats()->data_dups == dups);
	assert_true(other_process_sees_lock(f->path));
	close(p[0]);
	close(p[1]);
}

/*
 * Past 1024 data requests in flight there is no fixed-file slot left:
 * vfs_async_uring asks first and passes such calls to the next module,
 * so no dup (whose close drops POSIX locks) is ever made for it.
 */
static void free_slots_are_reported_and_come_back(void **state)
{
	enum { N = 1024 };
	struct fixture *f = *state;
	struct tevent_req **reqs = talloc_array(f, struct tevent_req *, N);
	char *buf = talloc_zero_array(f, char, N);
	int i, err = 0;

	assert_non_null(reqs);
	assert_non_null(buf);
	assert_true(asvfs_engine_has_free_slot(f->engine));
	for (i = 0; i < N; i++) {
		reqs[i] = asvfs_pread_send(reqs, f->ev, f->engine, f->fd,
					   buf + i, 1, 0);
		assert_non_null(reqs[i]);
	}
	assert_false(asvfs_engine_has_free_slot(f->engine));
	for (i = 0; i < N; i++) {
		wait_req(f->ev, reqs[i]);
		assert_true(asvfs_pread_recv(reqs[i], &err) >= 0);
	}
	talloc_free(reqs);
	assert_true(asvfs_engine_has_free_slot(f->engine));
	talloc_free(buf);
}

static void data_io_keeps_the_processs_posix_locks(void **state)
{
	struct fixture *f = *state;
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	struct tevent_req *req = NULL;
	char buf[16] = "locked";
	int err;

	assert_int_equal(fcntl(f->fd, F_SETLK, &fl), 0);
	assert_true(other_process_sees_lock(f->path));
	req = asvfs_pwrite_send(f, f->ev, f->engine, f->fd, buf, 6, 0);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pwrite_recv(req, &err), 6);
	TALLOC_FREE(req);
	req = asvfs_fsync_send(f, f->ev, f->engine, f->fd);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_fsync_recv(req, &err), 0);
	TALLOC_FREE(req);
	req = asvfs_pread_send(f, f->ev, f->engine, f->fd, buf, 6, 0);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 6);
	TALLOC_FREE(req);
	assert_true(other_process_sees_lock(f->path));
}

/* The caller's number may name another file before submission. */
static void read_follows_the_file_not_the_number(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char buf[8] = { 0 };
	int fd, other, err;

	assert_int_equal(pwrite(f->fd, "first", 5, 0), 5);
	fd = open(f->path, O_RDONLY);
	assert_true(fd >= 0);
	req = asvfs_pread_send(f, f->ev, f->engine, fd, buf, 5, 0);
	assert_non_null(req);
	close(fd);
	other = open("/proc/self/comm", O_RDONLY);
	assert_int_equal(other, fd);	/* the number is reused */
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 5);
	assert_memory_equal(buf, "first", 5);
	TALLOC_FREE(req);
	close(other);
}

/*
 * smbd opens with O_NONBLOCK so that an open breaking a kernel lease
 * fails at once with EWOULDBLOCK and smbd polls for the open: the engine
 * must hand that back, not resubmit until the lease holder gives in (the
 * kernel waits lease-break-time, 45 s by default, for it).
 */
static void open_breaking_a_lease_reports_ewouldblock(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	char path[64];
	uint64_t resubmitted =
		asvfs_engine_stats()->op[ASVFS_OP_OPENAT].resubmitted;
	int lfd, dirfd, fd, err = 0;

	snprintf(path, sizeof(path), "/tmp/asvfs-lease-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);		/* a read lease needs no writer open */
	signal(SIGIO, SIG_IGN);	/* the break notice */
	lfd = open(path, O_RDONLY);
	assert_true(lfd >= 0);
	if (fcntl(lfd, F_SETLEASE, F_RDLCK) != 0) {
		print_message("no leases on /tmp: %s\n", strerror(errno));
		close(lfd);
		unlink(path);
		skip();
	}
	dirfd = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd >= 0);
	req = asvfs_openat_send(f, f->ev, f->engine, dirfd,
				strrchr(path, '/') + 1, O_RDWR | O_NONBLOCK,
				0);
	assert_non_null(req);
	wait_req(f->ev, req);
	fd = asvfs_openat_recv(req, &err);
	assert_int_equal(fd, -1);
	assert_int_equal(err, EWOULDBLOCK);
	talloc_free(req);
	assert_int_equal(asvfs_engine_stats()->op[ASVFS_OP_OPENAT].resubmitted,
			 resubmitted);
	close(dirfd);
	fcntl(lfd, F_SETLEASE, F_UNLCK);
	close(lfd);
	signal(SIGIO, SIG_DFL);
	unlink(path);
}

/*
 * The kernel refuses a submission (no memory for requests) while nothing
 * of ours is in flight: no completion will come to retry it, so the
 * engine must retry by itself.  40 reads on a 32-entry queue also refuse
 * the hand-over of a full queue.
 */
static void refused_submission_is_retried_without_a_completion(void **st)
{
	struct fixture *f = *st;
	struct tevent_req *reqs[40];
	char bufs[40][4];
	uint64_t retries = asvfs_engine_stats()->submit_retries;
	int i, err = 0;

	assert_int_equal(pwrite(f->fd, "data", 4, 0), 4);
	asvfs_engine_refuse_submits(3, EAGAIN);
	for (i = 0; i < 40; i++) {
		reqs[i] = asvfs_pread_send(f, f->ev, f->engine, f->fd,
					   bufs[i], 4, 0);
		assert_non_null(reqs[i]);
	}
	alarm(WATCHDOG_SECS);	/* without a retry the loop waits
				 * forever */
	for (i = 0; i < 40; i++) {
		wait_req(f->ev, reqs[i]);
		assert_int_equal(asvfs_pread_recv(reqs[i], &err), 4);
		assert_memory_equal(bufs[i], "data", 4);
		talloc_free(reqs[i]);
	}
	alarm(0);
	assert_true(asvfs_engine_stats()->submit_retries >= retries + 2);
	assert_int_equal(asvfs_engine_stats()->inflight, 0);
}

static int ring_fd_of_this_process(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e = NULL;
	char path[300], target[64];
	int found = -1, n = 0;

	while ((e = readdir(d)) != NULL) {
		ssize_t len;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len <= 0) {
			continue;
		}
		target[len] = '\0';
		if (strcmp(target, "anon_inode:[io_uring]") == 0) {
			found = atoi(e->d_name);
			n++;
		}
	}
	closedir(d);
	assert_int_equal(n, 1);
	return found;
}

struct late_writer {
	int fd;
	uint64_t polls;		/* orphan polls before the free */
	ssize_t written;
};

/*
 * Writes once the free is polling for the kernel's completion (the
 * engine counts each turn), so the free has surely started without it.
 */
static void *write_when_polled(void *arg)
{
	struct late_writer *w = arg;
	const struct timespec pause = { .tv_nsec = 1000 * 1000 };

	while (__atomic_load_n(&asvfs_engine_stats()->orphan_polls,
			       __ATOMIC_RELAXED) <= w->polls) {
		nanosleep(&pause, NULL);
	}
	w->written = write(w->fd, "late", 4);
	return NULL;
}

/*
 * A request is freed in flight while the ring refuses every wait (its fd
 * now names another file).  The free must still return only once the
 * kernel has filled the buffer: returning earlier would let it write
 * into memory the caller reuses.  The data is written only while the
 * free polls, whatever the machine's load.
 */
static void freed_request_waits_for_the_kernel_when_the_ring_fails(
	void **st)
{
	struct fixture *f = *st;
	struct tevent_req *req = NULL;
	uint64_t polls = asvfs_engine_stats()->orphan_polls;
	char *buf = talloc_zero_size(f, 8);
	int p[2], ring_fd, saved, devnull;
	struct late_writer w = { .written = -1 };
	pthread_t writer;

	assert_int_equal(pipe(p), 0);
	req = asvfs_pread_send(f, f->ev, f->engine, p[0], buf, 4, 0);
	assert_non_null(req);
	assert_int_equal(tevent_loop_once(f->ev), 0);	/* submitted */
	assert_int_equal(asvfs_engine_stats()->inflight, 1);

	ring_fd = ring_fd_of_this_process();
	saved = dup(ring_fd);
	devnull = open("/dev/null", O_RDONLY);
	assert_true(saved >= 0 && devnull >= 0);
	assert_int_equal(dup2(devnull, ring_fd), ring_fd);
	close(devnull);

	w.fd = p[1];
	w.polls = polls;
	assert_int_equal(pthread_create(&writer, NULL, write_when_polled, &w),
			 0);
	alarm(WATCHDOG_SECS);
	talloc_free(req);
	alarm(0);
	assert_memory_equal(buf, "late", 4);
	assert_true(asvfs_engine_stats()->orphan_polls > polls);
	assert_int_equal(asvfs_engine_stats()->inflight, 0);

	assert_int_equal(dup2(saved, ring_fd), ring_fd);
	close(saved);
	assert_int_equal(pthread_join(writer, NULL), 0);
	assert_int_equal(w.written, 4);
	close(p[0]);
	close(p[1]);
}

/* Read n bytes at 0 through the engine, and check they are "data". */
static void read_data(struct fixture *f, int fd)
{
	struct tevent_req *req = NULL;
	char buf[4];
	int err = 0;

	req = asvfs_pread_send(f, f->ev, f->engine, fd, buf, 4, 0);
	assert_non_null(req);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 4);
	assert_memory_equal(buf, "data", 4);
	talloc_free(req);
}

/*
 * A slot held for an open file serves all its requests with one
 * registration; once let go, requests take a slot of their own again.
 */
static void held_slot_serves_requests_with_one_registration(void **st)
{
	struct fixture *f = *st;
	struct asvfs_file_slot *slot = NULL;
	uint64_t regs;
	int i;

	assert_int_equal(pwrite(f->fd, "data", 4, 0), 4);
	regs = asvfs_engine_stats()->slot_registrations;
	slot = asvfs_file_slot_get(f, f->engine, f->fd);
	assert_non_null(slot);
	assert_int_equal(asvfs_file_slot_fd(slot), f->fd);
	/* one per file: a second holder is refused */
	assert_null(asvfs_file_slot_get(f, f->engine, f->fd));
	for (i = 0; i < 10; i++) {
		read_data(f, f->fd);
	}
	assert_int_equal(asvfs_engine_stats()->slot_registrations, regs + 1);
	talloc_free(slot);
	read_data(f, f->fd);
	assert_int_equal(asvfs_engine_stats()->slot_registrations, regs + 2);
}

/*
 * The holder lets go while a request on the slot is in flight: the
 * request still completes from the same file, and the slot comes back
 * only after it (all 1024 can be taken again).
 */
static void held_slot_outlives_its_holder_while_in_use(void **st)
{
	struct fixture *f = *st;
	struct asvfs_file_slot *slot = NULL;
	struct tevent_req *req = NULL, **reqs = NULL;
	char buf[4], *one = talloc_zero_array(f, char, 1024);
	int p[2], i, err = 0;

	assert_int_equal(pipe(p), 0);
	slot = asvfs_file_slot_get(f, f->engine, p[0]);
	assert_non_null(slot);
	req = asvfs_pread_send(f, f->ev, f->engine, p[0], buf, 4, 0);
	assert_non_null(req);
	assert_int_equal(tevent_loop_once(f->ev), 0);	/* submitted */
	talloc_free(slot);
	assert_int_equal(write(p[1], "data", 4), 4);
	wait_req(f->ev, req);
	assert_int_equal(asvfs_pread_recv(req, &err), 4);
	assert_memory_equal(buf, "data", 4);
	talloc_free(req);

	reqs = talloc_array(f, struct tevent_req *, 1024);
	for (i = 0; i < 1024; i++) {
		reqs[i] = asvfs_pread_send(reqs, f->ev, f->engine, f->fd,
					   one + i, 1, 0);
		assert_non_null(reqs[i]);
	}
	assert_false(asvfs_engine_has_free_slot(f->engine));
	for (i = 0; i < 1024; i++) {
		wait_req(f->ev, reqs[i]);
	}
	talloc_free(reqs);
	assert_true(asvfs_engine_has_free_slot(f->engine));
	close(p[0]);
	close(p[1]);
}

/*
 * A held slot marked always-async sends its file's data ops with
 * IOSQE_ASYNC (counted), and they still complete with the data; unmarked
 * again, the next ones are tried without blocking first.
 */
static void always_async_slot_sends_straight_to_the_workers(void **st)
{
	struct fixture *f = *st;
	struct asvfs_file_slot *slot = NULL;
	uint64_t before;

	assert_int_equal(pwrite(f->fd, "data", 4, 0), 4);
	slot = asvfs_file_slot_get(f, f->engine, f->fd);
	assert_non_null(slot);
	before = asvfs_engine_stats()->always_async;
	read_data(f, f->fd);
	assert_int_equal(asvfs_engine_stats()->always_async, before);
	asvfs_file_slot_set_always_async(slot, true);
	read_data(f, f->fd);
	read_data(f, f->fd);
	assert_int_equal(asvfs_engine_stats()->always_async, before + 2);
	asvfs_file_slot_set_always_async(slot, false);
	read_data(f, f->fd);
	assert_int_equal(asvfs_engine_stats()->always_async, before + 2);
	talloc_free(slot);
}

/* The engine goes away first: the holder then holds nothing. */
static void held_slot_outlived_by_its_holder(void **st)
{
	struct fixture *f = *st;
	struct asvfs_file_slot *slot = NULL;

	slot = asvfs_file_slot_get(f, f->engine, f->fd);
	assert_non_null(slot);
	asvfs_engine_shutdown();
	assert_int_equal(asvfs_file_slot_fd(slot), -1);
	talloc_free(slot);
}

/*
 * The bound on blocking work in flight that async_open queues against:
 * the kernel's default without a setting, and the setting once given.
 */
static void worker_limit_is_reported(void **state)
{
	struct fixture *f = *state;
	struct asvfs_engine_config config = test_config;
	struct asvfs_engine *engine = NULL;
	bool first = false;
	int err = 0;

	/* the kernel's default: min(entries, 4 per CPU) */
	assert_true(asvfs_engine_workers(f->engine) > 0);
	assert_true(asvfs_engine_workers(f->engine) <= test_config.entries);

	asvfs_engine_shutdown();
	config.workers = 100;
	engine = asvfs_engine_get(f->ev, &config, &err, &first);
	assert_non_null(engine);
	assert_int_equal(asvfs_engine_workers(engine), 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(reads_and_writes_round_trip),
		T(requests_of_one_turn_share_one_submit),
		T(read_at_eof_returns_what_exists),
		T(errors_come_back_as_errno),
		T(freed_request_in_flight_is_adopted_and_cancelled),
		T(freed_request_before_submission_just_goes),
		T(shutdown_fails_waiting_requests_cleanly),
		T(other_event_context_is_refused),
		T(short_write_is_continued_then_reports_progress),
		T(child_after_fork_gets_its_own_ring),
		T(child_frees_the_parents_request_in_flight),
		T(slots_come_back_after_errors_and_cancels),
		T(reopen_survives_the_callers_close),
		T(data_io_keeps_the_processs_posix_locks),
		T(read_follows_the_file_not_the_number),
		T(open_breaking_a_lease_reports_ewouldblock),
		T(free_slots_are_reported_and_come_back),
		T(refused_submission_is_retried_without_a_completion),
		T(freed_request_waits_for_the_kernel_when_the_ring_fails),
		T(held_slot_serves_requests_with_one_registration),
		T(held_slot_outlives_its_holder_while_in_use),
		T(held_slot_outlived_by_its_holder),
		T(always_async_slot_sends_straight_to_the_workers),
		T(worker_limit_is_reported),
		cmocka_unit_test(refused_ring_is_reported_once),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
