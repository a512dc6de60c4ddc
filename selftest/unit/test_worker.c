/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: worker threads open and unlink with the credentials they
 * were given, never the process's, and leave nothing behind when their
 * request goes first.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <talloc.h>
#include <tevent.h>

#include "asvfs_worker.h"

#define NOBODY 65534

struct fixture {
	char dir[64];
	int dirfd;
	TALLOC_CTX *mem;
	struct tevent_context *ev;
	struct asvfs_creds nobody;
};

static int setup(void **state)
{
	struct fixture *f = NULL;

	*state = NULL;
	if (geteuid() != 0) {
		return 0;	/* each test skips: see fixture() */
	}
	f = calloc(1, sizeof(*f));

	strcpy(f->dir, "/tmp/asvfs-worker-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY);
	assert_true(f->dirfd >= 0);
	f->mem = talloc_new(NULL);
	f->ev = tevent_context_init(f->mem);
	assert_non_null(f->ev);
	f->nobody = (struct asvfs_creds) { .uid = NOBODY, .gid = NOBODY };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	if (f == NULL) {
		return 0;
	}
	talloc_free(f->mem);
	close(f->dirfd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* The test's fixture; without root (other users' credentials) it skips. */
static struct fixture *fixture(void **state)
{
	if (*state == NULL) {
		print_message("needs root (other users' credentials)\n");
		skip();
	}
	return *state;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)) != NULL) {
		n += e->d_name[0] != '.';
	}
	closedir(d);
	return n - 1;		/* opendir's own */
}

/*
 * The end of a wait for something that must come: a deadline far above
 * anything a busy machine adds (counted sleeps there take longer than
 * they say), so no verdict depends on load.
 */
#define WAIT_SECS 60

static bool before_deadline(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec - start->tv_sec < WAIT_SECS;
}

static void tick(struct tevent_context *ev, struct tevent_timer *te,
		 struct timeval now, void *private_data)
{
}

/*
 * Until every thread is gone and the loop heard their reports: then the
 * event context's eventfd, there only while jobs are out, is gone too.
 */
static void wait_workers_gone(struct fixture *f)
{
	struct timespec pause = { .tv_nsec = 1000 * 1000 };
	struct timespec start;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (asvfs_worker_running() > 0 && before_deadline(&start)) {
		nanosleep(&pause, NULL);
	}
	assert_int_equal(asvfs_worker_running(), 0);
	for (i = 0; i < 2; i++) {
		/* the tick keeps the loop from sleeping for good */
		TALLOC_CTX *tmp = talloc_new(f->mem);

		tevent_add_timer(f->ev, tmp, tevent_timeval_current_ofs(0, 1000),
				 tick, NULL);
		tevent_loop_once(f->ev);
		talloc_free(tmp);
	}
}

static void mkfile(struct fixture *f, const char *name, mode_t mode)
{
	int fd = openat(f->dirfd, name, O_CREAT | O_WRONLY, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "data", 4), 4);
	close(fd);
	assert_int_equal(fchmodat(f->dirfd, name, mode, 0), 0);
}

static int run_open(struct fixture *f, struct tevent_req *req, int *err)
{
	assert_non_null(req);
	assert_true(tevent_req_poll(req, f->ev));
	return asvfs_worker_open_recv(req, err);
}

static void open_runs_with_given_credentials(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	int err = 0, fd;

	/* the directory lets anyone in: only the file's mode refuses */
	assert_int_equal(fchmod(f->dirfd, 0755), 0);
	mkfile(f, "private", 0600);
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "private",
				       O_RDONLY, 0, &f->nobody);
	fd = run_open(f, req, &err);
	assert_int_equal(fd, -1);
	assert_int_equal(err, EACCES);
	/* ... while the calling thread is still root and may open it */
	assert_int_equal(geteuid(), 0);
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "private",
				       O_RDONLY, 0, NULL);
	fd = run_open(f, req, &err);
	assert_true(fd >= 0);
	close(fd);
}

#define GROUP_ONLY 4242

/* A file only a supplementary group may read. */
static void groups_are_the_given_ones(void **state)
{
	struct fixture *f = fixture(state);
	struct asvfs_creds member = f->nobody;
	gid_t only = GROUP_ONLY;
	struct tevent_req *req = NULL;
	int err = 0, fd;

	assert_int_equal(fchmod(f->dirfd, 0755), 0);
	mkfile(f, "grp", 0040);
	assert_int_equal(fchownat(f->dirfd, "grp", 0, GROUP_ONLY, 0), 0);
	member.ngroups = 1;
	member.groups = &only;
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "grp",
				       O_RDONLY, 0, &member);
	fd = run_open(f, req, &err);
	assert_true(fd >= 0);
	close(fd);
	/* without the group: refused, although root's groups include 0 */
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "grp",
				       O_RDONLY, 0, &f->nobody);
	fd = run_open(f, req, &err);
	assert_int_equal(fd, -1);
	assert_int_equal(err, EACCES);
}

#define MANY_GROUPS 2000

/* The caller's groups, however many, are the thread's. */
static void many_groups_are_captured(void **state)
{
	struct fixture *f = fixture(state);
	gid_t *groups = calloc(MANY_GROUPS, sizeof(gid_t));
	struct tevent_req *req = NULL;
	int err = 0, fd, i;

	assert_non_null(groups);
	assert_int_equal(fchmod(f->dirfd, 0755), 0);
	mkfile(f, "manygrp", 0040);
	assert_int_equal(fchownat(f->dirfd, "manygrp", 0, GROUP_ONLY, 0), 0);
	for (i = 0; i < MANY_GROUPS - 1; i++) {
		groups[i] = 100000 + i;
	}
	groups[i] = GROUP_ONLY;
	assert_int_equal(setgroups(MANY_GROUPS, groups), 0);
	assert_int_equal(setegid(NOBODY), 0);
	assert_int_equal(seteuid(NOBODY), 0);
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "manygrp",
				       O_RDONLY, 0, NULL);
	/*
	 * Only once the job is done: glibc's seteuid() and setgroups() go
	 * to every thread of the process, the worker's too, and would
	 * change its credentials under it.
	 */
	fd = run_open(f, req, &err);
	assert_int_equal(seteuid(0), 0);
	assert_int_equal(setegid(0), 0);
	assert_int_equal(setgroups(0, NULL), 0);
	free(groups);
	assert_true(fd >= 0);
	close(fd);
}

/* Done but never received: the request's free closes the fd. */
static void unreceived_fd_is_closed(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	int baseline;

	mkfile(f, "unrecv", 0644);
	baseline = count_fds();
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "unrecv",
				       O_RDONLY, 0, NULL);
	assert_non_null(req);
	assert_true(tevent_req_poll(req, f->ev));
	wait_workers_gone(f);
	assert_int_equal(count_fds(), baseline + 1);	/* the fd, ours */
	TALLOC_FREE(req);
	assert_int_equal(count_fds(), baseline);
}

static void create_is_owned_by_given_user(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	struct stat st;
	int err = 0, fd;

	assert_int_equal(fchmod(f->dirfd, 0777), 0);
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "new",
				       O_CREAT | O_EXCL | O_RDWR, 0644,
				       &f->nobody);
	fd = run_open(f, req, &err);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_uid, NOBODY);
	assert_int_equal(st.st_gid, NOBODY);
	close(fd);
	assert_int_equal(geteuid(), 0);
	assert_int_equal(getegid(), 0);
}

/*
 * A create's thread starts at the next turn of the loop, so that nothing
 * smbd still does in the asking request meets the directory locked by it.
 */
static void create_starts_at_the_next_turn(void **state)
{
	struct fixture *f = fixture(state);
	struct timespec pause = { .tv_nsec = 100 * 1000 * 1000 };
	struct tevent_req *req = NULL;
	int err = 0, fd;

	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "later",
				       O_CREAT | O_EXCL | O_RDWR, 0644, NULL);
	assert_non_null(req);
	assert_int_equal(asvfs_worker_running(), 1);	/* counted already */
	/* time for a thread started at once to create it; none is */
	nanosleep(&pause, NULL);
	assert_int_equal(faccessat(f->dirfd, "later", F_OK, 0), -1);
	assert_int_equal(errno, ENOENT);
	fd = run_open(f, req, &err);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(faccessat(f->dirfd, "later", F_OK, 0), 0);
}

/* ... and a create freed before that turn makes nothing, holds nothing. */
static void create_freed_before_its_turn_makes_nothing(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	int baseline = count_fds();

	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "never",
				       O_CREAT | O_EXCL | O_RDWR, 0644, NULL);
	assert_non_null(req);
	TALLOC_FREE(req);	/* a cancel in the same turn */
	assert_int_equal(asvfs_worker_running(), 0);
	wait_workers_gone(f);
	assert_int_equal(faccessat(f->dirfd, "never", F_OK, 0), -1);
	assert_int_equal(count_fds(), baseline);
}

static void reopen_outlives_callers_fd(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	struct stat a, b;
	int err = 0, pathfd, fd;

	mkfile(f, "re", 0644);
	pathfd = openat(f->dirfd, "re", O_PATH | O_NOFOLLOW);
	assert_true(pathfd >= 0);
	assert_int_equal(fstat(pathfd, &a), 0);
	req = asvfs_worker_reopen_send(f->mem, f->ev, pathfd, O_RDWR, 0);
	close(pathfd);		/* as smbd does when it defers the open */
	fd = run_open(f, req, &err);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &b), 0);
	assert_int_equal(a.st_ino, b.st_ino);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDWR);
	close(fd);
}

/* A writer for the FIFO the worker blocks on, once it is waiting. */
static int fifo_writer(struct fixture *f, const char *name)
{
	struct timespec pause = { .tv_nsec = 1000 * 1000 };
	struct timespec start;
	int fd = -1;

	clock_gettime(CLOCK_MONOTONIC, &start);
	while (fd == -1 && before_deadline(&start)) {
		fd = openat(f->dirfd, name, O_WRONLY | O_NONBLOCK);
		if (fd == -1) {
			assert_int_equal(errno, ENXIO);	/* no reader yet */
			nanosleep(&pause, NULL);
		}
	}
	assert_true(fd >= 0);
	return fd;
}

static void freed_request_leaves_no_fd(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	int baseline, w;

	assert_int_equal(mkfifoat(f->dirfd, "fifo", 0666), 0);
	baseline = count_fds();
	req = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "fifo",
				       O_RDONLY, 0, NULL);
	assert_non_null(req);
	TALLOC_FREE(req);	/* a client cancel while the open blocks */
	w = fifo_writer(f, "fifo");
	wait_workers_gone(f);
	close(w);
	assert_int_equal(count_fds(), baseline);
}

struct open_result {
	bool called;
	int fd;
	int err;
};

static void note_open(struct tevent_req *req)
{
	struct open_result *r = tevent_req_callback_data_void(req);

	r->fd = asvfs_worker_open_recv(req, &r->err);
	r->called = true;
	TALLOC_FREE(req);
}

static void too_many_workers_say_eagain(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *reqs[ASVFS_WORKER_MAX];
	struct tevent_req *extra = NULL;
	int baseline, i, w, err = 0;

	assert_int_equal(mkfifoat(f->dirfd, "many", 0666), 0);
	baseline = count_fds();
	for (i = 0; i < ASVFS_WORKER_MAX; i++) {
		reqs[i] = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd,
						   "many", O_RDONLY, 0, NULL);
		assert_non_null(reqs[i]);
	}
	assert_false(asvfs_worker_available());
	extra = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "many",
					 O_RDONLY, 0, NULL);
	assert_non_null(extra);
	/* refused at once */
	assert_false(tevent_req_is_in_progress(extra));
	assert_int_equal(run_open(f, extra, &err), -1);
	assert_int_equal(err, EAGAIN);
	w = fifo_writer(f, "many");
	for (i = 0; i < ASVFS_WORKER_MAX; i++) {
		int fd = run_open(f, reqs[i], &err);

		assert_true(fd >= 0);
		close(fd);
	}
	close(w);
	wait_workers_gone(f);
	assert_int_equal(count_fds(), baseline);
}

/*
 * As tevent's requests do, a worker that cannot start fails through its
 * request: EAGAIN reaches the caller's callback from the loop, where it
 * falls back to the synchronous call.
 */
static void eagain_comes_through_the_callback(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *reqs[ASVFS_WORKER_MAX];
	struct open_result r = { .fd = -2 };
	struct tevent_req *extra = NULL;
	int i, w, err = 0;

	assert_int_equal(mkfifoat(f->dirfd, "full", 0666), 0);
	for (i = 0; i < ASVFS_WORKER_MAX; i++) {
		reqs[i] = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd,
						   "full", O_RDONLY, 0, NULL);
		assert_non_null(reqs[i]);
	}
	extra = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd, "full",
					 O_RDONLY | O_NONBLOCK, 0, NULL);
	assert_non_null(extra);
	tevent_req_set_callback(extra, note_open, &r);
	assert_false(r.called);		/* never from inside _send */
	while (!r.called) {
		assert_int_equal(tevent_loop_once(f->ev), 0);
	}
	assert_int_equal(r.fd, -1);
	assert_int_equal(r.err, EAGAIN);
	/* the caller's fallback: the same open, synchronously */
	r.fd = openat(f->dirfd, "full", O_RDONLY | O_NONBLOCK);
	assert_true(r.fd >= 0);
	close(r.fd);
	w = fifo_writer(f, "full");
	for (i = 0; i < ASVFS_WORKER_MAX; i++) {
		int fd = run_open(f, reqs[i], &err);

		assert_true(fd >= 0);
		close(fd);
	}
	close(w);
	wait_workers_gone(f);
	assert_true(asvfs_worker_available());
}

/*
 * A job reports through its event context's one eventfd, there while
 * jobs are out: in flight each holds nothing but the dup of its
 * directory, and nothing at all once they are done.
 */
static void jobs_hold_no_descriptor_of_their_own(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *reqs[8];
	int baseline, i, w, err = 0;

	assert_int_equal(mkfifoat(f->dirfd, "held", 0666), 0);
	baseline = count_fds();
	for (i = 0; i < 8; i++) {
		reqs[i] = asvfs_worker_openat_send(f->mem, f->ev, f->dirfd,
						   "held", O_RDONLY, 0, NULL);
		assert_non_null(reqs[i]);
	}
	/* the dups, and the one eventfd of all */
	assert_int_equal(count_fds(), baseline + 8 + 1);
	w = fifo_writer(f, "held");
	for (i = 0; i < 8; i++) {
		int fd = run_open(f, reqs[i], &err);

		assert_true(fd >= 0);
		close(fd);
	}
	close(w);
	wait_workers_gone(f);
	assert_int_equal(count_fds(), baseline);
}

static int run_unlink(struct fixture *f, const char *name, dev_t dev,
		      ino_t ino, const struct asvfs_creds *creds)
{
	struct tevent_req *req = asvfs_worker_unlink_send(
		f->mem, f->ev, f->dirfd, name, dev, ino, creds);

	assert_non_null(req);
	assert_true(tevent_req_poll(req, f->ev));
	return asvfs_worker_unlink_recv(req);
}

static void unlink_removes_only_the_same_object(void **state)
{
	struct fixture *f = fixture(state);
	struct stat st, other;

	mkfile(f, "mine", 0644);
	mkfile(f, "theirs", 0644);
	assert_int_equal(fstatat(f->dirfd, "mine", &st, 0), 0);
	assert_int_equal(fstatat(f->dirfd, "theirs", &other, 0), 0);

	/* replaced meanwhile: another object under the name stays */
	assert_int_equal(run_unlink(f, "theirs", st.st_dev, st.st_ino, NULL),
			 ESTALE);
	assert_int_equal(faccessat(f->dirfd, "theirs", F_OK, 0), 0);

	/* a user who may not write the directory removes nothing */
	assert_int_equal(fchmod(f->dirfd, 0755), 0);
	assert_int_equal(run_unlink(f, "mine", st.st_dev, st.st_ino,
				    &f->nobody), EACCES);
	assert_int_equal(faccessat(f->dirfd, "mine", F_OK, 0), 0);

	assert_int_equal(run_unlink(f, "mine", st.st_dev, st.st_ino, NULL),
			 0);
	assert_int_equal(faccessat(f->dirfd, "mine", F_OK, 0), -1);
	(void)other;
}

static int path_fd(struct fixture *f, const char *name)
{
	int fd = openat(f->dirfd, name, O_PATH | O_NOFOLLOW);

	assert_true(fd >= 0);
	return fd;
}

/* Three objects: one with an xattr, one without, and no object. */
static struct tevent_req *names_of_three(struct fixture *f)
{
	int fds[3], fd;

	mkfile(f, "two", 0600);
	mkfile(f, "none", 0600);
	fd = openat(f->dirfd, "two", O_RDONLY);
	assert_int_equal(fsetxattr(fd, "user.a", "1", 1, 0), 0);
	close(fd);
	fds[0] = path_fd(f, "two");
	fds[1] = path_fd(f, "none");
	fds[2] = 999;		/* a number that names nothing */
	assert_int_equal(fcntl(fds[2], F_GETFD), -1);
	return asvfs_worker_names_send(f->mem, f->ev, fds, 3);
}

static void names_are_listed_per_object(void **state)
{
	struct fixture *f = fixture(state);
	const struct asvfs_names *r = NULL;
	struct tevent_req *req = NULL;
	int baseline = count_fds();

	req = names_of_three(f);
	assert_non_null(req);
	assert_null(asvfs_worker_names(req, 0));	/* not finished */
	assert_true(tevent_req_poll(req, f->ev));
	r = asvfs_worker_names(req, 0);
	assert_non_null(r);
	assert_int_equal(r->len, strlen("user.a") + 1);
	assert_string_equal(r->list, "user.a");
	assert_int_equal(asvfs_worker_names(req, 1)->len, 0);
	assert_int_equal(asvfs_worker_names(req, 2)->len, -1);
	assert_int_equal(asvfs_worker_names(req, 2)->err, ENOENT);
	assert_null(asvfs_worker_names(req, 3));
	TALLOC_FREE(req);
	wait_workers_gone(f);
	assert_int_equal(count_fds(), baseline);	/* the fds were its */
}

/* smbd asks for the names inside a request: no loop turns there. */
static void names_wait_without_the_loop(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = names_of_three(f);

	assert_non_null(req);
	asvfs_worker_wait(req);
	assert_false(tevent_req_is_in_progress(req));
	assert_string_equal(asvfs_worker_names(req, 0)->list, "user.a");
	asvfs_worker_wait(req);	/* done: at once */
	TALLOC_FREE(req);
}

static void freed_names_request_leaves_no_fd(void **state)
{
	struct fixture *f = fixture(state);
	struct tevent_req *req = NULL;
	int baseline = count_fds();

	req = names_of_three(f);
	assert_non_null(req);
	TALLOC_FREE(req);	/* the listing closed its directory */
	wait_workers_gone(f);
	assert_int_equal(count_fds(), baseline);
}

/*
 * The names are listed as the thread that asked was at the time: a user
 * does not see trusted.* names, which only CAP_SYS_ADMIN may list.
 */
static struct tevent_req *names_asked_as(struct fixture *f, uid_t uid,
					 int fd)
{
	struct tevent_req *req = NULL;

	/* raw syscalls: this thread only, the saved uid stays 0 */
	assert_int_equal(syscall(SYS_setresgid, -1, (gid_t)uid, -1), 0);
	assert_int_equal(syscall(SYS_setresuid, -1, uid, -1), 0);
	req = asvfs_worker_names_send(f->mem, f->ev, &fd, 1);
	assert_int_equal(syscall(SYS_setresuid, -1, 0, -1), 0);
	assert_int_equal(syscall(SYS_setresgid, -1, 0, -1), 0);
	assert_non_null(req);
	asvfs_worker_wait(req);
	return req;
}

static void names_are_listed_as_the_requester(void **state)
{
	struct fixture *f = fixture(state);
	const struct asvfs_names *r = NULL;
	struct tevent_req *req = NULL;
	int fd;

	mkfile(f, "both", 0644);
	fd = openat(f->dirfd, "both", O_RDONLY);
	assert_int_equal(fsetxattr(fd, "user.u", "1", 1, 0), 0);
	if (fsetxattr(fd, "trusted.t", "1", 1, 0) != 0) {
		close(fd);
		print_message("no trusted.* xattrs here: %s\n",
			      strerror(errno));
		skip();
	}
	close(fd);
	req = names_asked_as(f, 0, path_fd(f, "both"));
	r = asvfs_worker_names(req, 0);
	assert_int_equal(r->len, sizeof("user.u") + sizeof("trusted.t"));
	TALLOC_FREE(req);
	req = names_asked_as(f, NOBODY, path_fd(f, "both"));
	r = asvfs_worker_names(req, 0);
	assert_int_equal(r->len, sizeof("user.u"));
	assert_string_equal(r->list, "user.u");
	TALLOC_FREE(req);
	assert_int_equal(geteuid(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			open_runs_with_given_credentials, setup, teardown),
		cmocka_unit_test_setup_teardown(
			groups_are_the_given_ones, setup, teardown),
		cmocka_unit_test_setup_teardown(
			many_groups_are_captured, setup, teardown),
		cmocka_unit_test_setup_teardown(
			unreceived_fd_is_closed, setup, teardown),
		cmocka_unit_test_setup_teardown(
			create_is_owned_by_given_user, setup, teardown),
		cmocka_unit_test_setup_teardown(
			create_starts_at_the_next_turn, setup, teardown),
		cmocka_unit_test_setup_teardown(
			create_freed_before_its_turn_makes_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			reopen_outlives_callers_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(
			freed_request_leaves_no_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(
			too_many_workers_say_eagain, setup, teardown),
		cmocka_unit_test_setup_teardown(
			eagain_comes_through_the_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(
			jobs_hold_no_descriptor_of_their_own, setup,
			teardown),
		cmocka_unit_test_setup_teardown(
			unlink_removes_only_the_same_object, setup, teardown),
		cmocka_unit_test_setup_teardown(
			names_are_listed_per_object, setup, teardown),
		cmocka_unit_test_setup_teardown(
			names_wait_without_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(
			freed_names_request_leaves_no_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(
			names_are_listed_as_the_requester, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
