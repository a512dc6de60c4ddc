/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: path-based work runs with the credentials of the caller at
 * the time of the request, never with the ring creator's (root, as smbd's
 * connect) or with the identity current at completion.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
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
#include <sys/wait.h>
#include <sys/xattr.h>
#include <talloc.h>
#include <tevent.h>
#include <time.h>
#include <unistd.h>

#include "asvfs_engine.h"
#include "asvfs_personality.h"

#define NOBODY 65534
#define OTHER 65533

static char dir[64];

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (readdir(d) != NULL) {
		n++;
	}
	closedir(d);
	return n;
}

static int make_dir(void **state)
{
	char path[128];
	int fd;

	if (geteuid() != 0) {
		print_message("needs root to switch credentials\n");
		return -1;
	}
	snprintf(dir, sizeof(dir), "/tmp/asvfs-pers-XXXXXX");
	assert_non_null(mkdtemp(dir));
	assert_int_equal(chmod(dir, 0755), 0);
	snprintf(path, sizeof(path), "%s/secret", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(setxattr(path, "user.test", "hidden", 6, 0), 0);
	snprintf(path, sizeof(path), "%s/public", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(setxattr(path, "user.test", "visible", 7, 0), 0);
	return 0;
}

static int remove_dir(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/*
 * What the test records of its identity, as smbd keeps current_user:
 * become() and become_root() update it with the kernel's, the cases of a
 * lying record set it alone.  Read only where record_reader() is
 * installed.
 */
static gid_t recorded_groups[1];
static struct asvfs_creds_record recorded = { .groups = recorded_groups };

static void record(uid_t uid, gid_t gid, int ngroups)
{
	recorded.uid = uid;
	recorded.gid = gid;
	recorded.ngroups = ngroups;
	recorded_groups[0] = gid;
}

static void record_reader(struct asvfs_creds_record *rec)
{
	*rec = recorded;
}

/* Impersonate like smbd: effective ids only, root stays saved. */
static void become(uid_t uid, gid_t gid)
{
	gid_t groups[1] = { gid };

	assert_int_equal(seteuid(0), 0);
	assert_int_equal(setgroups(1, groups), 0);
	assert_int_equal(setegid(gid), 0);
	assert_int_equal(seteuid(uid), 0);
	record(uid, gid, 1);
}

static void become_root(void)
{
	assert_int_equal(seteuid(0), 0);
	assert_int_equal(setegid(0), 0);
	assert_int_equal(setgroups(0, NULL), 0);
	record(0, 0, 0);
}

static int open_result(struct tevent_context *ev, struct tevent_req *req,
		       int *err)
{
	time_t end = time(NULL) + 10;

	while (tevent_req_is_in_progress(req)) {
		if (time(NULL) > end) {
			return -2;
		}
		tevent_loop_once(ev);
	}
	return asvfs_openat_recv(req, err);
}

/* Each case runs in a child: credentials and the engine stay there. */
static void in_child(void (*fn)(void))
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

#define CHECK(cond, code) do { if (!(cond)) { _exit(code); } } while (0)

static struct asvfs_engine *child_engine(struct tevent_context *ev,
					 unsigned personalities)
{
	struct asvfs_engine_config config = {
		.entries = 16, .personalities = personalities,
	};
	bool first;
	int err;

	return asvfs_engine_get(ev, &config, &err, &first);
}

static void refusal_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 8);
	struct tevent_req *req = NULL;
	int dirfd, fd, err = 0;

	CHECK(engine != NULL, 10);	/* ring created as root */
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dirfd >= 0, 11);

	become(NOBODY, NOBODY);
	req = asvfs_openat_send(ev, ev, engine, dirfd, "secret", O_RDONLY, 0);
	become_root();		/* completion runs as someone else */
	fd = open_result(ev, req, &err);
	CHECK(fd == -1 && err == EACCES, 12);

	become(NOBODY, NOBODY);
	req = asvfs_openat_send(ev, ev, engine, dirfd, "public", O_RDONLY, 0);
	become_root();
	fd = open_result(ev, req, &err);
	CHECK(fd >= 0, 13);
	close(fd);

	become(NOBODY, NOBODY);
	req = asvfs_openat_send(ev, ev, engine, dirfd, "new",
				O_CREAT | O_WRONLY | O_EXCL, 0644);
	become_root();
	fd = open_result(ev, req, &err);
	CHECK(fd == -1 && err == EACCES, 14);	/* dir is root's 0755 */

	req = asvfs_openat_send(ev, ev, engine, dirfd, "secret", O_RDONLY, 0);
	fd = open_result(ev, req, &err);
	CHECK(fd >= 0, 15);	/* root may */
	close(fd);
}

static void open_runs_with_the_callers_credentials(void **state)
{
	in_child(refusal_case);
}

static void caching_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 2);
	const struct asvfs_personality_stats *ps = NULL;
	const uid_t users[] = { NOBODY, NOBODY, OTHER, 0, NOBODY };
	int dirfd, i, fd, err;

	CHECK(engine != NULL, 20);
	ps = asvfs_engine_personality_stats(engine);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (i = 0; i < 5; i++) {
		struct tevent_req *req = NULL;

		become(users[i], users[i]);
		req = asvfs_openat_send(ev, ev, engine, dirfd, "public",
					O_RDONLY, 0);
		become_root();
		fd = open_result(ev, req, &err);
		CHECK(fd >= 0, 21);
		close(fd);
	}
	/* nobody, (hit), other, root evicts nobody, nobody evicts other */
	CHECK(ps->hits == 1, 22);
	CHECK(ps->registered == 4, 23);
	CHECK(ps->unregistered == 2, 24);
}

static void personalities_are_cached_and_bounded(void **state)
{
	in_child(caching_case);
}

/*
 * An open the kernel has finished, but the engine not yet reaped, when
 * its caller goes away.  Opening a FIFO for writing waits for a reader;
 * with O_CREAT io_uring always hands the open to a worker, so it is still
 * in flight after the submit's turn (an open the kernel finishes within
 * the submit is reaped in that turn), and the reader opened afterwards
 * lets the worker finish it while nobody reaps.
 */
static void orphan_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 8);
	struct tevent_req *req = NULL;
	char path[128];
	int dirfd, reader, before;
	time_t end = time(NULL) + 10;

	CHECK(engine != NULL, 30);
	snprintf(path, sizeof(path), "%s/fifo", dir);
	CHECK(mkfifo(path, 0600) == 0, 34);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	before = count_fds();
	req = asvfs_openat_send(ev, ev, engine, dirfd, "fifo",
				O_WRONLY | O_CREAT, 0600);
	tevent_loop_once(ev);		/* submitted: waits for a reader */
	CHECK(asvfs_engine_stats()->inflight == 1, 31);
	reader = open(path, O_RDONLY | O_NONBLOCK);
	CHECK(reader >= 0, 35);
	usleep(100 * 1000);		/* the worker opens, nobody reaps */
	talloc_free(req);		/* the client went away */
	while (asvfs_engine_stats()->inflight > 0 && time(NULL) < end) {
		tevent_loop_once(ev);
	}
	CHECK(asvfs_engine_stats()->inflight == 0, 32);
	close(reader);
	CHECK(count_fds() == before, 33);	/* the opened fd was closed */
}

static void orphaned_open_closes_its_fd(void **state)
{
	in_child(orphan_case);
}

static ssize_t xattr_as(struct tevent_context *ev,
			struct asvfs_engine *engine, uid_t uid, int fd,
			const char *name, char *buf, size_t size, int *err)
{
	struct tevent_req *req = NULL;
	time_t end = time(NULL) + 10;

	become(uid, uid);
	req = asvfs_getxattr_send(ev, ev, engine, fd, name, buf, size);
	become_root();
	while (tevent_req_is_in_progress(req) && time(NULL) < end) {
		tevent_loop_once(ev);
	}
	return asvfs_getxattr_recv(req, err);
}

static void getxattr_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 8);
	char path[128], buf[64];
	int secret, public, err = 0;

	CHECK(engine != NULL, 40);
	snprintf(path, sizeof(path), "%s/secret", dir);
	secret = open(path, O_PATH);		/* a pathref fd, as smbd's */
	snprintf(path, sizeof(path), "%s/public", dir);
	public = open(path, O_PATH);
	CHECK(secret >= 0 && public >= 0, 41);

	CHECK(xattr_as(ev, engine, NOBODY, secret, "user.test", buf,
		       sizeof(buf), &err) == -1 && err == EACCES, 42);
	memset(buf, 0, sizeof(buf));
	CHECK(xattr_as(ev, engine, NOBODY, public, "user.test", buf,
		       sizeof(buf), &err) == 7, 43);
	CHECK(memcmp(buf, "visible", 7) == 0, 44);
	CHECK(xattr_as(ev, engine, NOBODY, public, "user.test", NULL, 0,
		       &err) == 7, 45);		/* size only */
	CHECK(xattr_as(ev, engine, NOBODY, public, "user.test", buf, 3,
		       &err) == -1 && err == ERANGE, 46);
	CHECK(xattr_as(ev, engine, NOBODY, public, "user.none", buf,
		       sizeof(buf), &err) == -1 && err == ENODATA, 47);
	CHECK(xattr_as(ev, engine, 0, secret, "user.test", buf, sizeof(buf),
		       &err) == 6, 48);		/* root may */
}

static void getxattr_runs_with_the_callers_credentials(void **state)
{
	in_child(getxattr_case);
}

/*
 * A write as a user clears the set-id bits (the kernel keeps them only
 * for CAP_FSETID): so it must run as that user, not as whoever smbd is
 * when the ring is submitted (root here, as after smbd's log size check).
 */
static void write_as_user(bool sqpoll)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine_config config = {
		.entries = 16, .personalities = 8, .sqpoll = sqpoll,
	};
	struct asvfs_engine *engine = NULL;
	bool first;
	struct tevent_req *req = NULL;
	char path[128];
	struct stat st;
	int fd, err = 0;
	time_t end = time(NULL) + 10;

	engine = asvfs_engine_get(ev, &config, &err, &first);
	CHECK(engine != NULL, 50);
	snprintf(path, sizeof(path), "%s/setid", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	CHECK(fd >= 0, 51);
	CHECK(fchown(fd, OTHER, OTHER) == 0 && fchmod(fd, 04777) == 0, 52);

	become(NOBODY, NOBODY);
	req = asvfs_pwrite_send(ev, ev, engine, fd, "x", 1, 0);
	become_root();		/* submitted from the loop, as root */
	while (tevent_req_is_in_progress(req) && time(NULL) < end) {
		tevent_loop_once(ev);
	}
	CHECK(asvfs_pwrite_recv(req, &err) == 1, 53);
	CHECK(fstat(fd, &st) == 0, 54);
	CHECK((st.st_mode & S_ISUID) == 0, 55);
	close(fd);
	unlink(path);
}

static void write_case(void)
{
	write_as_user(false);
}

/* The kernel's polling thread submits with the ring creator's identity. */
static void sqpoll_write_case(void)
{
	write_as_user(true);
}

static void write_runs_with_the_callers_credentials(void **state)
{
	in_child(write_case);
}

static void sqpoll_write_runs_with_the_callers_credentials(void **state)
{
	in_child(sqpoll_write_case);
}

#define MANY_GROUPS 2000
#define GROUP_ONLY 4242

/* A user in more groups than any fixed buffer would hold. */
static void groups_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 8);
	struct tevent_req *req = NULL;
	gid_t *groups = calloc(MANY_GROUPS, sizeof(gid_t));
	char path[128];
	int dirfd, fd, i, err = 0;

	CHECK(engine != NULL && groups != NULL, 60);
	snprintf(path, sizeof(path), "%s/grp", dir);
	fd = open(path, O_CREAT | O_WRONLY, 0040);
	CHECK(fd >= 0 && fchown(fd, 0, GROUP_ONLY) == 0 &&
	      fchmod(fd, 0040) == 0, 61);
	close(fd);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (i = 0; i < MANY_GROUPS - 1; i++) {
		groups[i] = 100000 + i;
	}
	groups[i] = GROUP_ONLY;		/* the last one counts */
	CHECK(setgroups(MANY_GROUPS, groups) == 0, 62);
	CHECK(setegid(NOBODY) == 0 && seteuid(NOBODY) == 0, 63);
	req = asvfs_openat_send(ev, ev, engine, dirfd, "grp", O_RDONLY, 0);
	become_root();
	fd = open_result(ev, req, &err);
	CHECK(fd >= 0, 64);
	close(fd);

	/* and without that group the same open is refused */
	become(NOBODY, NOBODY);
	req = asvfs_openat_send(ev, ev, engine, dirfd, "grp", O_RDONLY, 0);
	become_root();
	fd = open_result(ev, req, &err);
	CHECK(fd == -1 && err == EACCES, 65);
	unlink(path);
}

static void users_in_many_groups_keep_them(void **state)
{
	in_child(groups_case);
}

/*
 * With a faithful record (smbd's current_user) the cache asks the kernel
 * nothing per request, and every verdict and count stays the kernel's.
 */
static void recorded_refusal_case(void)
{
	become_root();
	asvfs_personality_read_creds_from(record_reader);
	refusal_case();
}

static void recorded_caching_case(void)
{
	become_root();
	asvfs_personality_read_creds_from(record_reader);
	caching_case();
}

static void a_faithful_record_keeps_the_kernels_verdicts(void **state)
{
	in_child(recorded_refusal_case);
	in_child(recorded_caching_case);
}

static int open_secret(struct tevent_context *ev, struct asvfs_engine *engine,
		       int dirfd, int *err)
{
	struct tevent_req *req = NULL;
	int fd;

	req = asvfs_openat_send(ev, ev, engine, dirfd, "secret", O_RDONLY, 0);
	become_root();
	fd = open_result(ev, req, err);
	if (fd >= 0) {
		close(fd);
	}
	return fd;
}

/*
 * A record that says root while the kernel says nobody gets nobody's
 * personality, and nothing is ever cached under the lying key: root's
 * own request later registers root afresh.
 */
static void lying_case(void)
{
	struct tevent_context *ev = tevent_context_init(NULL);
	struct asvfs_engine *engine = child_engine(ev, 8);
	const struct asvfs_personality_stats *ps = NULL;
	int dirfd, i, err = 0;

	become_root();
	asvfs_personality_read_creds_from(record_reader);
	CHECK(engine != NULL, 70);
	ps = asvfs_engine_personality_stats(engine);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(dirfd >= 0, 71);
	for (i = 0; i < 2; i++) {
		become(NOBODY, NOBODY);
		record(0, 0, 0);
		CHECK(open_secret(ev, engine, dirfd, &err) == -1 &&
		      err == EACCES, 72);
	}
	CHECK(ps->record_mismatches == 2 && ps->registered == 1, 73);
	/* the record again the kernel's: root, registered as root */
	CHECK(open_secret(ev, engine, dirfd, &err) >= 0, 74);
	CHECK(ps->record_mismatches == 2 && ps->registered == 2, 75);
}

static void a_record_the_kernel_denies_is_never_cached(void **state)
{
	in_child(lying_case);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(open_runs_with_the_callers_credentials),
		cmocka_unit_test(personalities_are_cached_and_bounded),
		cmocka_unit_test(orphaned_open_closes_its_fd),
		cmocka_unit_test(getxattr_runs_with_the_callers_credentials),
		cmocka_unit_test(write_runs_with_the_callers_credentials),
		cmocka_unit_test(sqpoll_write_runs_with_the_callers_credentials),
		cmocka_unit_test(users_in_many_groups_keep_them),
		cmocka_unit_test(a_faithful_record_keeps_the_kernels_verdicts),
		cmocka_unit_test(a_record_the_kernel_denies_is_never_cached),
	};

	return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
