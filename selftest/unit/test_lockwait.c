/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: a lockwait thread wakes its loop when another file
 * description lets go of a range, and never outlives its request.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <dirent.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>
#include <tevent.h>

#include "asvfs_lockwait.h"

/*
 * How long an outcome that must come is waited for: no verdict may
 * depend on the machine's load, and what these tests rule out (a thread
 * that never wakes, a free that waits for the holder) never comes.
 */
#define WAIT_MS 60000

struct fixture {
	char path[64];
	int holder;		/* the "other process": a description of its own */
	TALLOC_CTX *mem;
	struct tevent_context *ev;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	strcpy(f->path, "/tmp/asvfs-lockwait-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	close(fd);
	f->holder = open(f->path, O_RDWR);
	assert_true(f->holder >= 0);
	f->mem = talloc_new(NULL);
	f->ev = tevent_context_init(f->mem);
	assert_non_null(f->ev);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	talloc_free(f->mem);
	close(f->holder);
	unlink(f->path);
	free(f);
	return 0;
}

static int hold(int fd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET,
			    .l_start = start, .l_len = len };

	return fcntl(fd, F_OFD_SETLK, &fl);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void tick(struct tevent_context *ev, struct tevent_timer *t,
		 struct timeval now, void *private_data)
{
}

/*
 * One turn of the loop, with a tick so that it never sleeps for good;
 * tevent frees a fired timer itself, so it lives on a context of its own.
 */
static void loop_turn(struct fixture *f)
{
	TALLOC_CTX *tmp = talloc_new(f->mem);

	tevent_add_timer(f->ev, tmp, tevent_timeval_current_ofs(0, 5000),
			 tick, NULL);
	tevent_loop_once(f->ev);
	talloc_free(tmp);
}

/* Run the loop until req is done or ms have passed. */
static bool loop_until_done(struct fixture *f, struct tevent_req *req,
			    int ms)
{
	double end = now_ms() + ms;

	while (tevent_req_is_in_progress(req) && now_ms() < end) {
		loop_turn(f);
	}
	return !tevent_req_is_in_progress(req);
}

static struct tevent_req *wait_on(struct fixture *f, bool write,
				  off_t start, off_t len)
{
	int fd = open(f->path, O_RDWR);

	assert_true(fd >= 0);
	return asvfs_lockwait_send(f->mem, f->ev, fd, write, start, len);
}

static void free_range_completes_at_once(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = wait_on(f, true, 0, 100);

	assert_non_null(req);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), 0);
}

/*
 * How many threads of this process have a first line in
 * /proc/self/task/<tid>/<file> for which matches() is true.
 */
static int count_threads(const char *file, bool (*matches)(const char *line))
{
	char path[300], line[256];
	struct dirent *e = NULL;
	DIR *d = opendir("/proc/self/task");
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		FILE *f = NULL;

		if (e->d_name[0] == '.') {
			continue;
		}
		snprintf(path, sizeof(path), "/proc/self/task/%s/%s",
			 e->d_name, file);
		f = fopen(path, "r");
		if (f == NULL) {
			continue;	/* the thread has exited */
		}
		if (fgets(line, sizeof(line), f) != NULL && matches(line)) {
			n++;
		}
		fclose(f);
	}
	closedir(d);
	return n;
}

static bool in_setlkw(const char *syscall_line)
{
	long nr;
	unsigned long fd, cmd;

	return sscanf(syscall_line, "%ld 0x%lx 0x%lx", &nr, &fd, &cmd) == 3 &&
	       nr == SYS_fcntl && cmd == F_OFD_SETLKW;
}

/*
 * Threads of this process that are blocked in fcntl(F_OFD_SETLKW): a
 * wait the kernel ends when the range is free, not a poll.
 */
static int threads_blocked_in_setlkw(void)
{
	return count_threads("syscall", in_setlkw);
}

static void wakes_when_the_holder_releases_and_leaves_nothing_locked(
	void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	double end;

	assert_int_equal(hold(f->holder, F_WRLCK, 10, 10), 0);
	req = wait_on(f, true, 0, 100);
	assert_non_null(req);
	assert_false(loop_until_done(f, req, 100));
	/*
	 * A wake-up, not a poll: the thread sleeps in the kernel's wait
	 * for the range until the holder lets go, and then the loop hears
	 * of it (a missed wake-up never completes).
	 */
	end = now_ms() + WAIT_MS;
	while (threads_blocked_in_setlkw() != 1 && now_ms() < end) {
		(void)loop_until_done(f, req, 10);
	}
	assert_int_equal(threads_blocked_in_setlkw(), 1);
	assert_true(tevent_req_is_in_progress(req));
	assert_int_equal(hold(f->holder, F_UNLCK, 10, 10), 0);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), 0);
	talloc_free(req);
	/* the waiter took and dropped the range: the holder gets it back */
	assert_int_equal(hold(f->holder, F_WRLCK, 0, 100), 0);
}

static void reader_does_not_wait_for_a_reader(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;

	assert_int_equal(hold(f->holder, F_RDLCK, 0, 0), 0);
	req = wait_on(f, false, 0, 100);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), 0);
	talloc_free(req);
	/* a writer does wait for it */
	req = wait_on(f, true, 50, 1);
	assert_false(loop_until_done(f, req, 50));
	talloc_free(req);
}

static void freeing_in_flight_interrupts_the_thread(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	double t0;
	int i;

	assert_int_equal(hold(f->holder, F_WRLCK, 0, 0), 0);
	for (i = 0; i < 20; i++) {
		req = wait_on(f, i % 2, 0, 10);
		assert_non_null(req);
		if (i % 4 == 0) {
			/* also right after the start, before fcntl blocks */
			(void)loop_until_done(f, req, 10);
		}
		/*
		 * The free returns while the holder still holds: it never
		 * waits for the range, which would take forever (the bound
		 * only keeps a hang from hanging the test run).
		 */
		t0 = now_ms();
		talloc_free(req);
		assert_true(now_ms() - t0 < WAIT_MS);
	}
	/* the holder still holds: nobody stole or dropped its lock */
	{
		int other = open(f->path, O_RDWR);

		assert_int_equal(hold(other, F_RDLCK, 0, 1), -1);
		close(other);
	}
}

static bool is_lockwait_thread(const char *comm)
{
	return strncmp(comm, ASVFS_LOCKWAIT_THREAD,
		       strlen(ASVFS_LOCKWAIT_THREAD)) == 0;
}

static int lockwait_threads(void)
{
	return count_threads("comm", is_lockwait_thread);
}

/* Stragglers are signalled from the loop until they are gone. */
static void loop_until_no_thread(struct fixture *f)
{
	double end = now_ms() + WAIT_MS;

	while (lockwait_threads() > 0 && now_ms() < end) {
		loop_turn(f);
	}
	assert_int_equal(lockwait_threads(), 0);
}

static void freed_waits_leave_no_thread_behind(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	int i;

	/*
	 * The waits the test before interrupted may still be on their way
	 * out (seen under ASan on a loaded machine): count from none.
	 */
	loop_until_no_thread(f);
	/* freed at once, often before the thread even ran */
	assert_int_equal(hold(f->holder, F_WRLCK, 0, 0), 0);
	for (i = 0; i < 50; i++) {
		req = wait_on(f, true, 0, 10);
		assert_non_null(req);
		talloc_free(req);
	}
	loop_until_no_thread(f);
}

static void endtime_gives_etimedout(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;

	assert_int_equal(hold(f->holder, F_WRLCK, 0, 0), 0);
	req = wait_on(f, true, 0, 10);
	assert_true(tevent_req_set_endtime(req, f->ev,
					   tevent_timeval_current_ofs(0,
								      50000)));
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), ETIMEDOUT);
	talloc_free(req);
}

static void bad_fd_fails_cleanly(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	int fd = open(f->path, O_RDONLY);

	/* a write lock on a read-only description: EBADF, not a hang */
	req = asvfs_lockwait_send(f->mem, f->ev, fd, true, 0, 10);
	assert_non_null(req);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), EBADF);
}

static void take_keeps_the_lock_for_the_owners_description(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *req = NULL;
	int owner = open(f->path, O_RDWR);

	/* a conflict is an answer, not a wait */
	assert_int_equal(hold(f->holder, F_WRLCK, 0, 10), 0);
	req = asvfs_locktake_send(f->mem, f->ev, dup(owner), true, 5, 10);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), EAGAIN);
	talloc_free(req);

	/* free: taken through a dup, still held after the dup is closed */
	req = asvfs_locktake_send(f->mem, f->ev, dup(owner), true, 20, 10);
	assert_true(loop_until_done(f, req, WAIT_MS));
	assert_int_equal(asvfs_lockwait_recv(req), 0);
	talloc_free(req);
	assert_int_equal(hold(f->holder, F_RDLCK, 25, 1), -1);
	assert_int_equal(hold(owner, F_WRLCK, 25, 1), 0);	/* its own */
	close(owner);
	assert_int_equal(hold(f->holder, F_WRLCK, 20, 10), 0);
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)) != NULL) {
		n += e->d_name[0] != '.';
	}
	closedir(d);
	return n - 1;		/* opendir's own */
}

/* Until no lockwait thread is left (they let go of the eventfd last). */
static void wait_threads_gone(void)
{
	double end = now_ms() + WAIT_MS;

	while (lockwait_threads() > 0 && now_ms() < end) {
		usleep(1000);
	}
	assert_int_equal(lockwait_threads(), 0);
}

/*
 * A wait reports through its event context's one eventfd, there while
 * waits are out: in flight each holds only the description it adopted,
 * and nothing once they are done.
 */
static void waits_hold_no_descriptor_of_their_own(void **state)
{
	struct fixture *f = *state;
	struct tevent_req *reqs[4];
	int baseline, i;

	wait_threads_gone();
	baseline = count_fds();

	assert_int_equal(hold(f->holder, F_WRLCK, 0, 10), 0);
	for (i = 0; i < 4; i++) {
		reqs[i] = wait_on(f, true, 0, 10);
		assert_non_null(reqs[i]);
	}
	/* the adopted ones, and the one eventfd of all */
	assert_int_equal(count_fds(), baseline + 4 + 1);
	assert_int_equal(hold(f->holder, F_UNLCK, 0, 10), 0);
	for (i = 0; i < 4; i++) {
		assert_true(loop_until_done(f, reqs[i], WAIT_MS));
		assert_int_equal(asvfs_lockwait_recv(reqs[i]), 0);
		talloc_free(reqs[i]);
	}
	wait_threads_gone();
	assert_int_equal(count_fds(), baseline);
}

static void ignore(int sig)
{
	(void)sig;
}

/*
 * As tevent's requests do, a wait that cannot start fails through its
 * request, from the loop: here no thread could be interrupted, as the
 * signal is someone else's.  The adopted fd goes all the same.
 */
static int refused_wait_in_a_fresh_process(const char *path)
{
	TALLOC_CTX *mem = talloc_new(NULL);
	struct tevent_context *ev = tevent_context_init(mem);
	struct tevent_req *req = NULL;
	int fd = open(path, O_RDWR);
	int baseline = count_fds() - 1;	/* without fd */
	int ret = 1;

	signal(asvfs_lockwait_signal(), ignore);
	req = asvfs_lockwait_send(mem, ev, fd, true, 0, 10);
	if (req != NULL && !tevent_req_is_in_progress(req) &&
	    tevent_req_poll(req, ev) &&
	    asvfs_lockwait_recv(req) == EBUSY && count_fds() == baseline) {
		ret = 0;
	}
	talloc_free(mem);
	return ret;
}

static void refused_wait_fails_through_the_request(void **state)
{
	struct fixture *f = *state;
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		_exit(refused_wait_in_a_fresh_process(f->path));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void someone_elses_signal_is_not_stolen(void **state)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		/* a fresh process where the signal is already taken */
		signal(asvfs_lockwait_signal(), ignore);
		_exit(asvfs_lockwait_init() == EBUSY ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(asvfs_lockwait_init(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		/* first: the process must not have initialised yet */
		cmocka_unit_test_setup_teardown(
			refused_wait_fails_through_the_request, setup,
			teardown),
		cmocka_unit_test(someone_elses_signal_is_not_stolen),
		cmocka_unit_test_setup_teardown(free_range_completes_at_once,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			wakes_when_the_holder_releases_and_leaves_nothing_locked,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			reader_does_not_wait_for_a_reader, setup, teardown),
		cmocka_unit_test_setup_teardown(
			freeing_in_flight_interrupts_the_thread, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			freed_waits_leave_no_thread_behind, setup, teardown),
		cmocka_unit_test_setup_teardown(endtime_gives_etimedout,
						setup, teardown),
		cmocka_unit_test_setup_teardown(bad_fd_fails_cleanly,
						setup, teardown),
		cmocka_unit_test_setup_teardown(
			take_keeps_the_lock_for_the_owners_description,
			setup, teardown),
		cmocka_unit_test_setup_teardown(
			waits_hold_no_descriptor_of_their_own, setup,
			teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
