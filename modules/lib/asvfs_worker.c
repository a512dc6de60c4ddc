/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: path-based work on a thread of its own, with the
 * requester's credentials.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "asvfs_worker.h"
#include "asvfs_procfd.h"

static atomic_uint workers_running;

unsigned asvfs_worker_running(void)
{
	return atomic_load(&workers_running);
}

struct thread_start {
	void *(*fn)(void *);
	void *arg;
	char name[16];
};

/*
 * The thread names itself: it is detached and may be gone before
 * pthread_create() returns, and with it its pthread_t.
 */
static void *thread_trampoline(void *arg)
{
	struct thread_start start = *(struct thread_start *)arg;

	free(arg);
	/* visible in /proc/<pid>/task/<tid>/comm, for tests and ps */
	(void)prctl(PR_SET_NAME, start.name, 0, 0, 0);
	return start.fn(start.arg);
}

int asvfs_thread_start(void *(*fn)(void *), void *arg, const char *name,
		       pthread_t *thread)
{
	struct thread_start *start = NULL;
	pthread_attr_t attr;
	sigset_t all, old;
	int ret;

	start = calloc(1, sizeof(*start));
	if (start == NULL) {
		return ENOMEM;
	}
	start->fn = fn;
	start->arg = arg;
	snprintf(start->name, sizeof(start->name), "%s", name);
	ret = pthread_attr_init(&attr);
	if (ret != 0) {
		free(start);
		return ret;
	}
	/* nobody joins: whoever finishes last cleans up */
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(thread, &attr, thread_trampoline, start);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (ret != 0) {
		free(start);
	}
	return ret;
}

enum worker_kind { WORKER_OPEN, WORKER_UNLINK, WORKER_NAMES };

/*
 * What the thread and the loop share.  Plain malloc, not talloc: the
 * thread may outlive the request, and talloc is not thread-safe.  Two
 * references, the thread's and the request's; the last one to go closes
 * the descriptors (an opened fd nobody took among them) and frees it.
 */
struct worker_job {
	enum worker_kind kind;
	int dirfd;		/* our dup, or AT_FDCWD */
	char *path;
	int flags;
	mode_t mode;
	dev_t dev;		/* unlink: the object to remove */
	ino_t ino;
	struct asvfs_creds creds;
	unsigned n_fds;		/* names: the objects, ours to close */
	int *fds;
	struct asvfs_names *names;	/* until the loop takes them */
	int efd;
	int result;		/* open: the fd until the loop takes it */
	int err;
	atomic_int refs;
};

struct asvfs_worker_state {
	struct worker_job *job;
	struct tevent_fd *fde;
	int result;
	int err;
	struct asvfs_names *names;	/* malloc'ed by the job */
	unsigned n_names;
};

static void worker_job_unref(struct worker_job *job)
{
	if (atomic_fetch_sub(&job->refs, 1) != 1) {
		return;
	}
	if (job->kind == WORKER_OPEN && job->result != -1) {
		close(job->result);	/* opened for a request that went */
	}
	if (job->dirfd != -1) {
		close(job->dirfd);
	}
	while (job->n_fds > 0) {
		close(job->fds[--job->n_fds]);
	}
	free(job->fds);
	free(job->names);
	free(job->creds.groups);
	if (job->efd != -1) {
		close(job->efd);
	}
	free(job->path);
	free(job);
}

static int worker_unlink(struct worker_job *job)
{
	struct stat st;

	if (fstatat(job->dirfd, job->path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
		return errno;
	}
	if (st.st_dev != job->dev || st.st_ino != job->ino) {
		return ESTALE;
	}
	return unlinkat(job->dirfd, job->path, 0) == 0 ? 0 : errno;
}

static void worker_names(struct worker_job *job)
{
	struct asvfs_proc_fd_path path;
	unsigned i;

	for (i = 0; i < job->n_fds; i++) {
		struct asvfs_names *r = &job->names[i];

		r->len = listxattr(asvfs_proc_fd_path(job->fds[i], &path),
				   r->list, sizeof(r->list));
		r->err = (r->len == -1) ? errno : 0;
	}
}

static void *worker_thread(void *arg)
{
	struct worker_job *job = arg;
	uint64_t one = 1;
	ssize_t n;
	int err;

	err = asvfs_creds_become_thread(&job->creds);
	if (err == 0 && job->kind == WORKER_OPEN) {
		job->result = openat(job->dirfd, job->path, job->flags,
				     job->mode);
		err = job->result == -1 ? errno : 0;
	} else if (err == 0 && job->kind == WORKER_NAMES) {
		worker_names(job);
	} else if (err == 0) {
		err = worker_unlink(job);
	}
	job->err = err;
	do {
		n = write(job->efd, &one, sizeof(one));
	} while (n == -1 && errno == EINTR);
	worker_job_unref(job);
	/* last: tests wait for it to know the thread let go of everything */
	atomic_fetch_sub(&workers_running, 1);
	return NULL;
}

static void worker_done(struct tevent_context *ev, struct tevent_fd *fde,
			uint16_t flags, void *private_data)
{
	struct tevent_req *req = talloc_get_type_abort(private_data,
						       struct tevent_req);
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	struct worker_job *job = state->job;
	uint64_t v;

	if (read(job->efd, &v, sizeof(v)) != sizeof(v)) {
		return;		/* spurious: the thread has not written */
	}
	state->result = job->result;
	state->err = job->err;
	job->result = -1;	/* ours now */
	state->names = job->names;
	job->names = NULL;
	TALLOC_FREE(state->fde);
	state->job = NULL;
	worker_job_unref(job);
	if (state->err != 0) {
		tevent_req_error(req, state->err);
		return;
	}
	tevent_req_done(req);
}

/*
 * Called when the request finishes and again when it is received or
 * freed: an fd that nobody received goes then.
 */
static void worker_cleanup(struct tevent_req *req,
			   enum tevent_req_state req_state)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	TALLOC_FREE(state->fde);
	if (state->job != NULL) {
		worker_job_unref(state->job);	/* the thread closes its fd */
		state->job = NULL;
	}
	if (req_state == TEVENT_REQ_RECEIVED && state->result != -1) {
		close(state->result);
		state->result = -1;
	}
	if (req_state == TEVENT_REQ_RECEIVED) {
		free(state->names);
		state->names = NULL;
	}
}

/*
 * The job's own copy of creds, or of the caller's now: malloc'ed, since
 * the thread frees it and talloc is not thread-safe.  0 or an errno.
 */
static int worker_job_take_creds(struct worker_job *job,
				 const struct asvfs_creds *creds)
{
	struct asvfs_creds now = { .ngroups = 0 };
	TALLOC_CTX *tmp = NULL;
	int ret = 0;

	if (creds == NULL) {
		tmp = talloc_new(NULL);
		if (tmp == NULL) {
			return ENOMEM;
		}
		ret = -asvfs_creds_current(tmp, &now);
		creds = &now;
	}
	job->creds = *creds;
	job->creds.groups = malloc(((size_t)creds->ngroups + 1) *
				   sizeof(gid_t));
	if (ret == 0 && job->creds.groups == NULL) {
		ret = ENOMEM;
	}
	if (ret == 0 && creds->ngroups > 0) {
		memcpy(job->creds.groups, creds->groups,
		       creds->ngroups * sizeof(gid_t));
	}
	talloc_free(tmp);
	return ret;
}

/* What the job's thread will need (path NULL: no dirfd); 0 or an errno. */
static int worker_job_fill(struct worker_job *job, int dirfd,
			   const char *path, const struct asvfs_creds *creds)
{
	int err = worker_job_take_creds(job, creds);

	if (err != 0) {
		return err;
	}
	/* never the process's cwd, which smbd changes under the thread */
	if (dirfd == AT_FDCWD) {
		return EINVAL;
	}
	if (path != NULL) {
		job->dirfd = fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
		if (job->dirfd == -1) {
			return errno;
		}
		job->path = strdup(path);
		if (job->path == NULL) {
			return ENOMEM;
		}
	}
	job->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (job->efd == -1) {
		return errno;
	}
	return 0;
}

static struct worker_job *worker_job_new(enum worker_kind kind, int dirfd,
					 const char *path,
					 const struct asvfs_creds *creds)
{
	struct worker_job *job = NULL;
	int err;

	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	job->kind = kind;
	job->result = -1;
	job->efd = -1;
	job->dirfd = -1;
	atomic_store(&job->refs, 1);
	err = worker_job_fill(job, dirfd, path, creds);
	if (err != 0) {
		worker_job_unref(job);
		errno = err;
		return NULL;
	}
	return job;
}

/* Start job for a new request; the job is the request's (or gone). */
static struct tevent_req *worker_send(TALLOC_CTX *mem_ctx,
				      struct tevent_context *ev,
				      struct worker_job *job)
{
	struct tevent_req *req = NULL;
	struct asvfs_worker_state *state = NULL;
	pthread_t thread;
	int err = ENOMEM;

	req = tevent_req_create(mem_ctx, &state, struct asvfs_worker_state);
	if (req == NULL) {
		worker_job_unref(job);
		errno = ENOMEM;
		return NULL;
	}
	state->result = -1;
	state->job = job;
	tevent_req_set_cleanup_fn(req, worker_cleanup);
	state->fde = tevent_add_fd(ev, state, job->efd, TEVENT_FD_READ,
				   worker_done, req);
	if (state->fde == NULL) {
		goto fail;
	}
	if (atomic_fetch_add(&workers_running, 1) >= ASVFS_WORKER_MAX) {
		atomic_fetch_sub(&workers_running, 1);
		err = EAGAIN;
		goto fail;
	}
	atomic_store(&job->refs, 2);
	err = asvfs_thread_start(worker_thread, job, ASVFS_WORKER_THREAD,
				 &thread);
	if (err != 0) {
		atomic_store(&job->refs, 1);
		atomic_fetch_sub(&workers_running, 1);
		goto fail;
	}
	return req;
fail:
	TALLOC_FREE(req);	/* unrefs the job */
	errno = err;
	return NULL;
}

struct tevent_req *asvfs_worker_openat_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int dirfd, const char *path,
					    int flags, mode_t mode,
					    const struct asvfs_creds *creds)
{
	struct worker_job *job = NULL;

	job = worker_job_new(WORKER_OPEN, dirfd, path, creds);
	if (job == NULL) {
		return NULL;
	}
	job->flags = flags;
	job->mode = mode;
	return worker_send(mem_ctx, ev, job);
}

/*
 * smbd closes its pathref fd when the open is deferred: the path names
 * our dup, which keeps the object until the thread is done.
 */
struct tevent_req *asvfs_worker_reopen_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int fd, int flags, mode_t mode)
{
	struct worker_job *job = NULL;
	struct asvfs_proc_fd_path path;

	/* the dup of fd is the "directory"; the path names it absolutely */
	job = worker_job_new(WORKER_OPEN, fd, "", NULL);
	if (job == NULL) {
		return NULL;
	}
	free(job->path);
	job->path = strdup(asvfs_proc_fd_path(job->dirfd, &path));
	if (job->path == NULL) {
		worker_job_unref(job);
		errno = ENOMEM;
		return NULL;
	}
	job->flags = flags;
	job->mode = mode;
	return worker_send(mem_ctx, ev, job);
}

/* The request's errno, or 0 when it succeeded. */
static int worker_req_errno(struct tevent_req *req)
{
	enum tevent_req_state req_state;
	uint64_t err = 0;

	if (!tevent_req_is_error(req, &req_state, &err)) {
		return 0;
	}
	if (req_state == TEVENT_REQ_USER_ERROR) {
		return (int)err;
	}
	return req_state == TEVENT_REQ_NO_MEMORY ? ENOMEM : EINVAL;
}

int asvfs_worker_open_recv(struct tevent_req *req, int *perrno)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	int err = worker_req_errno(req);
	int fd = -1;

	if (err != 0) {
		*perrno = err;
		tevent_req_received(req);
		return -1;
	}
	fd = state->result;
	state->result = -1;
	tevent_req_received(req);
	return fd;
}

struct tevent_req *asvfs_worker_unlink_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int dirfd, const char *name,
					    dev_t dev, ino_t ino,
					    const struct asvfs_creds *creds)
{
	struct worker_job *job = NULL;

	job = worker_job_new(WORKER_UNLINK, dirfd, name, creds);
	if (job == NULL) {
		return NULL;
	}
	job->dev = dev;
	job->ino = ino;
	return worker_send(mem_ctx, ev, job);
}

int asvfs_worker_unlink_recv(struct tevent_req *req)
{
	int err = worker_req_errno(req);

	tevent_req_received(req);
	return err;
}

struct tevent_req *asvfs_worker_names_send(TALLOC_CTX *mem_ctx,
					   struct tevent_context *ev,
					   int *fds, unsigned n)
{
	struct worker_job *job = NULL;
	struct tevent_req *req = NULL;
	unsigned i;

	job = worker_job_new(WORKER_NAMES, -1, NULL, NULL);
	if (job == NULL) {
		goto fail;
	}
	job->fds = calloc(n, sizeof(int));
	job->names = calloc(n, sizeof(struct asvfs_names));
	if (job->fds == NULL || job->names == NULL) {
		worker_job_unref(job);
		errno = ENOMEM;
		goto fail;
	}
	memcpy(job->fds, fds, n * sizeof(int));
	job->n_fds = n;
	n = 0;			/* the job's now, whatever happens */
	req = worker_send(mem_ctx, ev, job);
	if (req != NULL) {
		struct asvfs_worker_state *state = tevent_req_data(
			req, struct asvfs_worker_state);

		state->n_names = job->n_fds;
	}
	return req;
fail:
	for (i = 0; i < n; i++) {
		close(fds[i]);
	}
	return NULL;
}

const struct asvfs_names *asvfs_worker_names(struct tevent_req *req,
					     unsigned i)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	if (!tevent_req_is_in_progress(req) && state->names != NULL &&
	    i < state->n_names && worker_req_errno(req) == 0) {
		return &state->names[i];
	}
	return NULL;
}

bool asvfs_worker_wait(struct tevent_req *req)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	while (tevent_req_is_in_progress(req)) {
		struct pollfd pfd = { .events = POLLIN };

		if (state->job == NULL) {
			return false;
		}
		pfd.fd = state->job->efd;
		if (poll(&pfd, 1, -1) == -1 && errno != EINTR) {
			return false;
		}
		worker_done(NULL, NULL, 0, req);
	}
	return true;
}
