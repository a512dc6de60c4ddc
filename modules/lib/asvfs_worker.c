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
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "asvfs_worker.h"
#include "asvfs_procfd.h"

static struct asvfs_threadjob_kind worker_kind = {
	.thread_name = ASVFS_WORKER_THREAD,
	.max = ASVFS_WORKER_MAX,
};

/* Jobs whose thread starts at the next turn of the loop (worker_send). */
static unsigned worker_starting;

unsigned asvfs_worker_running(void)
{
	return atomic_load(&worker_kind.running) + worker_starting;
}

bool asvfs_worker_available(void)
{
	return asvfs_worker_running() < ASVFS_WORKER_MAX;
}

enum worker_kind { WORKER_OPEN, WORKER_UNLINK, WORKER_NAMES };

/*
 * What the thread works on (asvfs_threadjob's payload): malloc'ed, as the
 * thread may outlive the request.  Freed by whichever side lets go last,
 * with the descriptors (an opened fd nobody took among them).
 */
struct worker_job {
	enum worker_kind kind;
	int dirfd;		/* our dup, or -1 */
	char *path;
	int flags;
	mode_t mode;
	dev_t dev;		/* unlink: the object to remove */
	ino_t ino;
	struct asvfs_creds creds;
	unsigned n_fds;		/* names: the objects, ours to close */
	int *fds;
	struct asvfs_names *names;	/* until the loop takes them */
	int result;		/* open: the fd until the loop takes it */
	int err;
};

struct asvfs_worker_state {
	struct asvfs_threadjob *thread;	/* until the thread is done */
	struct worker_job *job;		/* the thread's, while it runs */
	int result;
	int err;
	struct asvfs_names *names;	/* malloc'ed by the job */
	unsigned n_names;
	bool starting;			/* counted in worker_starting */
};

static void worker_job_free(void *payload)
{
	struct worker_job *job = payload;

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

/* On the job's thread, as the requester. */
static void worker_work(void *payload)
{
	struct worker_job *job = payload;
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
}

/* The thread is done: take its results, let go of the job. */
static void worker_take(struct asvfs_worker_state *state)
{
	struct worker_job *job = state->job;

	state->result = job->result;
	state->err = job->err;
	job->result = -1;	/* ours now */
	state->names = job->names;
	job->names = NULL;
	state->job = NULL;
	state->thread = NULL;	/* it frees itself, with the job */
}

static void worker_finish(struct tevent_req *req)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	if (state->err != 0) {
		tevent_req_error(req, state->err);
		return;
	}
	tevent_req_done(req);
}

static void worker_done(void *private_data)
{
	struct tevent_req *req = talloc_get_type_abort(private_data,
						       struct tevent_req);
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	worker_take(state);
	worker_finish(req);
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

	if (state->thread != NULL) {
		/* the job closes what the thread still opens */
		asvfs_threadjob_detach(state->thread);
		state->thread = NULL;
		state->job = NULL;
	}
	if (state->starting) {
		/* gone before its thread started: nothing ran */
		worker_starting--;
		state->starting = false;
		worker_job_free(state->job);
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
 * the job may be freed on its thread and talloc is not thread-safe.
 * 0 or an errno.
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
	return 0;
}

/*
 * A request for a new job of kind; *pjob NULL when it could not be
 * made, and the request failed (posted) already.  NULL: no memory.
 */
static struct tevent_req *worker_req_create(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    enum worker_kind kind,
					    struct worker_job **pjob)
{
	struct tevent_req *req = NULL;
	struct asvfs_worker_state *state = NULL;
	struct worker_job *job = NULL;

	*pjob = NULL;
	req = tevent_req_create(mem_ctx, &state, struct asvfs_worker_state);
	if (req == NULL) {
		return NULL;
	}
	state->result = -1;
	tevent_req_set_cleanup_fn(req, worker_cleanup);
	job = calloc(1, sizeof(*job));
	if (tevent_req_nomem(job, req)) {
		return tevent_req_post(req, ev);
	}
	job->kind = kind;
	job->result = -1;
	job->dirfd = -1;
	*pjob = job;
	return req;
}

/* Hand state->job to a thread of its own; 0 or why no thread took it. */
static int worker_start(struct tevent_req *req, struct tevent_context *ev)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	int err = 0;

	state->thread = asvfs_threadjob_start(ev, &worker_kind, worker_work,
					      worker_job_free, state->job,
					      worker_done, req, &err);
	if (state->thread == NULL) {
		state->job = NULL;	/* freed by asvfs_threadjob_start */
	}
	return state->thread == NULL ? err : 0;
}

static void worker_start_now(struct tevent_context *ev,
			     struct tevent_immediate *im, void *private_data)
{
	struct tevent_req *req = talloc_get_type_abort(private_data,
						       struct tevent_req);
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	int err;

	worker_starting--;
	state->starting = false;
	err = worker_start(req, ev);
	if (err != 0) {
		tevent_req_error(req, err);
	}
}

/*
 * Start job for req, whose own it is (also when it cannot start): err
 * from the job's setup, or why no thread took it, fails the request.
 */
static struct tevent_req *worker_send(struct tevent_req *req,
				      struct tevent_context *ev,
				      struct worker_job *job, int err)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);

	if (err != 0) {
		worker_job_free(job);
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	state->job = job;
	err = worker_start(req, ev);
	if (err != 0) {
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	return req;
}

/*
 * worker_send() for a create, whose thread starts at the next turn of the
 * loop (as the io_uring engine submits), not while smbd is still in the
 * request that asked: smbd 4.22 walks a create's name again after our
 * first answer, and a create already on its thread would hold the
 * directory's lock in the kernel against that walk for as long as the
 * storage takes, with the whole connection waiting.
 */
static struct tevent_req *worker_send_next_turn(struct tevent_req *req,
						struct tevent_context *ev,
						struct worker_job *job,
						int err)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	struct tevent_immediate *im = NULL;

	if (err != 0) {
		worker_job_free(job);
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	im = tevent_create_immediate(state);
	if (im == NULL) {
		return worker_send(req, ev, job, 0);	/* at once, then */
	}
	state->job = job;
	state->starting = true;
	worker_starting++;
	tevent_schedule_immediate(im, ev, worker_start_now, req);
	return req;
}

struct tevent_req *asvfs_worker_openat_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int dirfd, const char *path,
					    int flags, mode_t mode,
					    const struct asvfs_creds *creds)
{
	struct worker_job *job = NULL;
	struct tevent_req *req = NULL;

	req = worker_req_create(mem_ctx, ev, WORKER_OPEN, &job);
	if (job == NULL) {
		return req;
	}
	job->flags = flags;
	job->mode = mode;
	if (flags & O_CREAT) {
		return worker_send_next_turn(
			req, ev, job, worker_job_fill(job, dirfd, path, creds));
	}
	return worker_send(req, ev, job,
			   worker_job_fill(job, dirfd, path, creds));
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
	struct tevent_req *req = NULL;
	int err;

	req = worker_req_create(mem_ctx, ev, WORKER_OPEN, &job);
	if (job == NULL) {
		return req;
	}
	job->flags = flags;
	job->mode = mode;
	/* the dup of fd is the "directory"; the path names it absolutely */
	err = worker_job_fill(job, fd, "", NULL);
	if (err == 0) {
		free(job->path);
		job->path = strdup(asvfs_proc_fd_path(job->dirfd, &path));
		err = job->path == NULL ? ENOMEM : 0;
	}
	return worker_send(req, ev, job, err);
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
	struct tevent_req *req = NULL;

	req = worker_req_create(mem_ctx, ev, WORKER_UNLINK, &job);
	if (job == NULL) {
		return req;
	}
	job->dev = dev;
	job->ino = ino;
	return worker_send(req, ev, job,
			   worker_job_fill(job, dirfd, name, creds));
}

int asvfs_worker_unlink_recv(struct tevent_req *req)
{
	int err = worker_req_errno(req);

	tevent_req_received(req);
	return err;
}

/* The names job's credentials and result slots; 0 or an errno. */
static int worker_job_fill_names(struct worker_job *job, unsigned n)
{
	int err = worker_job_take_creds(job, NULL);

	if (err != 0) {
		return err;
	}
	job->names = calloc(n, sizeof(struct asvfs_names));
	if (job->names == NULL) {
		return ENOMEM;
	}
	return 0;
}

struct tevent_req *asvfs_worker_names_send(TALLOC_CTX *mem_ctx,
					   struct tevent_context *ev,
					   int *fds, unsigned n)
{
	struct asvfs_worker_state *state = NULL;
	struct worker_job *job = NULL;
	struct tevent_req *req = NULL;
	unsigned i;

	req = worker_req_create(mem_ctx, ev, WORKER_NAMES, &job);
	if (job != NULL) {
		job->fds = calloc(n, sizeof(int));
	}
	if (job == NULL || job->fds == NULL) {
		for (i = 0; i < n; i++) {
			close(fds[i]);
		}
		if (job != NULL) {
			worker_job_free(job);
			tevent_req_oom(req);
			req = tevent_req_post(req, ev);
		}
		return req;
	}
	/* the job's now, whatever happens */
	memcpy(job->fds, fds, n * sizeof(int));
	job->n_fds = n;
	state = tevent_req_data(req, struct asvfs_worker_state);
	state->n_names = n;
	return worker_send(req, ev, job, worker_job_fill_names(job, n));
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

void asvfs_worker_wait(struct tevent_req *req)
{
	struct asvfs_worker_state *state = tevent_req_data(
		req, struct asvfs_worker_state);
	struct asvfs_threadjob *thread = state->thread;

	if (!tevent_req_is_in_progress(req) || thread == NULL) {
		return;
	}
	asvfs_threadjob_wait(thread);
	worker_take(state);
	/* finished here: the thread's report finds nobody waiting */
	asvfs_threadjob_detach(thread);
	worker_finish(req);
}
