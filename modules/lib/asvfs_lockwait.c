/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: wait on a thread until a byte range can be locked.
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
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "asvfs_lockwait.h"
#include "asvfs_threadjob.h"

/*
 * A standard signal, not a real-time one: real-time signals are queued,
 * and tgkill() fails with EAGAIN when the queue of the thread's real uid
 * is full (seen in smbd, where threads run with the user's uid), while a
 * standard one is coalesced and always gets through.  SIGURG is ignored
 * by default and unused by Samba.  Signal numbers are process-wide, so
 * the init refuses a signal that someone else already handles.
 */
#define LOCKWAIT_SIGNAL SIGURG

static pthread_once_t lockwait_once = PTHREAD_ONCE_INIT;
static int lockwait_init_err;

int asvfs_lockwait_signal(void)
{
	return LOCKWAIT_SIGNAL;
}

static void lockwait_sig_handler(int sig)
{
	/* Only here so that a blocked fcntl() returns EINTR. */
	(void)sig;
}

static void lockwait_install(void)
{
	struct sigaction old, sa;

	if (sigaction(LOCKWAIT_SIGNAL, NULL, &old) != 0) {
		lockwait_init_err = errno;
		return;
	}
	if ((old.sa_flags & SA_SIGINFO) ||
	    (old.sa_handler != SIG_DFL &&
	     old.sa_handler != lockwait_sig_handler)) {
		lockwait_init_err = EBUSY;
		return;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = lockwait_sig_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;	/* no SA_RESTART: fcntl must see EINTR */
	if (sigaction(LOCKWAIT_SIGNAL, &sa, NULL) != 0) {
		lockwait_init_err = errno;
	}
}

int asvfs_lockwait_init(void)
{
	pthread_once(&lockwait_once, lockwait_install);
	return lockwait_init_err;
}

static struct asvfs_threadjob_kind lockwait_kind = {
	.thread_name = ASVFS_LOCKWAIT_THREAD,
};

/*
 * What the thread works on (asvfs_threadjob's payload): malloc'ed, as the
 * thread may outlive the request (see lockwait_stop()).
 */
struct lockwait_job {
	int fd;
	struct flock fl;
	bool take;		/* one F_OFD_SETLK, kept on success */
	atomic_bool cancel;	/* the request is gone or going */
	int err;
};

struct asvfs_lockwait_state {
	struct tevent_context *ev;
	struct asvfs_threadjob *thread;	/* until the thread is done */
	struct lockwait_job *job;	/* the thread's, while it runs */
};

static void lockwait_job_free(void *payload)
{
	struct lockwait_job *job = payload;

	if (job->fd != -1) {
		/* the last fd of the description: drops anything it held */
		close(job->fd);
	}
	free(job);
}

static void lockwait_work(void *payload)
{
	struct lockwait_job *job = payload;
	struct flock unlock;
	sigset_t set;
	int ret = -1;
	int err = ECANCELED;

	sigemptyset(&set);
	sigaddset(&set, LOCKWAIT_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	/*
	 * The stopper sets cancel, then signals until the work is finished
	 * (for a while): a signal that lands just before fcntl() blocks is
	 * repeated.
	 */
	while (!atomic_load(&job->cancel)) {
		ret = fcntl(job->fd, job->take ? F_OFD_SETLK : F_OFD_SETLKW,
			    &job->fl);
		if (ret == 0) {
			err = 0;
			break;
		}
		err = errno;
		if (err != EINTR) {
			break;
		}
	}
	/*
	 * A wait only wanted to know: give the range back at once.  A take
	 * that nobody is left to book (the request went away meanwhile) is
	 * given back too.
	 */
	if (ret == 0 && (!job->take || atomic_load(&job->cancel))) {
		unlock = job->fl;
		unlock.l_type = F_UNLCK;
		(void)fcntl(job->fd, F_OFD_SETLK, &unlock);
		if (job->take) {
			err = ECANCELED;
		}
	}
	/*
	 * Our fd goes before we report: once the request is done, nothing
	 * of ours keeps the description (or its locks) alive.
	 */
	close(job->fd);
	job->fd = -1;
	job->err = err;
}

/*
 * A job whose request went before its thread finished.  A signal can land
 * just before the thread blocks in fcntl() (the thread checked cancel,
 * then lost the CPU), and some file systems finish their call before they
 * look at signals (FUSE, NFS): so the loop keeps signalling it, backing
 * off to once a second, until it is done.  A talloc child of the
 * detached thread job, it goes when the thread has reported (or with the
 * event context); smbd's loop never waits for it.
 */
struct lockwait_orphan {
	struct asvfs_threadjob *thread;
	uint32_t interval_usec;
};

static void lockwait_orphan_tick(struct tevent_context *ev,
				 struct tevent_timer *te,
				 struct timeval now, void *private_data)
{
	struct lockwait_orphan *o = talloc_get_type_abort(
		private_data, struct lockwait_orphan);

	if (asvfs_threadjob_finished(o->thread)) {
		talloc_free(o);
		return;
	}
	asvfs_threadjob_signal(o->thread, LOCKWAIT_SIGNAL);
	if (o->interval_usec < 1000 * 1000) {
		o->interval_usec *= 2;
	}
	if (tevent_add_timer(ev, o, tevent_timeval_current_ofs(
				     0, o->interval_usec),
			     lockwait_orphan_tick, o) == NULL) {
		/* no memory: the thread finishes when its fcntl() does */
		talloc_free(o);
	}
}

static void lockwait_adopt_orphan(struct tevent_context *ev,
				  struct asvfs_threadjob *thread)
{
	struct lockwait_orphan *o = NULL;

	o = talloc_zero(asvfs_threadjob_detach(thread),
			struct lockwait_orphan);
	if (o == NULL) {
		return;
	}
	o->thread = thread;
	o->interval_usec = 10 * 1000;
	if (tevent_add_timer(ev, o, tevent_timeval_current_ofs(0, 10000),
			     lockwait_orphan_tick, o) == NULL) {
		talloc_free(o);
	}
}

/*
 * The request goes while its thread still runs.  Interrupt it; on local
 * file systems it returns within microseconds.  If it has not after a
 * few milliseconds, the loop keeps after it (above).
 */
static void lockwait_stop(struct asvfs_lockwait_state *state)
{
	struct asvfs_threadjob *thread = state->thread;
	struct timespec pause = { .tv_nsec = 50 * 1000 };
	long waited = 0;

	if (thread == NULL) {
		return;
	}
	atomic_store(&state->job->cancel, true);
	state->thread = NULL;
	state->job = NULL;
	while (!asvfs_threadjob_finished(thread) &&
	       waited < 2 * 1000 * 1000) {
		asvfs_threadjob_signal(thread, LOCKWAIT_SIGNAL);
		nanosleep(&pause, NULL);
		waited += pause.tv_nsec;
		pause.tv_nsec *= 2;
	}
	if (asvfs_threadjob_finished(thread)) {
		asvfs_threadjob_detach(thread);
		return;
	}
	lockwait_adopt_orphan(state->ev, thread);
}

static void lockwait_cleanup(struct tevent_req *req,
			     enum tevent_req_state req_state)
{
	struct asvfs_lockwait_state *state = tevent_req_data(
		req, struct asvfs_lockwait_state);

	/* freed, timed out or cancelled in flight */
	lockwait_stop(state);
}

static void lockwait_done(void *private_data)
{
	struct tevent_req *req = talloc_get_type_abort(private_data,
						       struct tevent_req);
	struct asvfs_lockwait_state *state = tevent_req_data(
		req, struct asvfs_lockwait_state);
	int err = state->job->err;

	state->thread = NULL;	/* it frees itself, with the job */
	state->job = NULL;
	if (err != 0) {
		tevent_req_error(req, err);
		return;
	}
	tevent_req_done(req);
}

static struct tevent_req *lockwait_send(TALLOC_CTX *mem_ctx,
					struct tevent_context *ev,
					int fd, bool write, bool take,
					off_t start, off_t len)
{
	struct tevent_req *req = NULL;
	struct asvfs_lockwait_state *state = NULL;
	struct lockwait_job *job = NULL;
	int err;

	req = tevent_req_create(mem_ctx, &state, struct asvfs_lockwait_state);
	if (req == NULL) {
		close(fd);
		return NULL;
	}
	state->ev = ev;
	err = asvfs_lockwait_init();
	if (err != 0) {
		close(fd);
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL) {
		close(fd);
		tevent_req_oom(req);
		return tevent_req_post(req, ev);
	}
	job->fd = fd;
	job->take = take;
	job->fl = (struct flock) {
		.l_type = write ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = start,
		.l_len = len,
	};
	state->job = job;
	state->thread = asvfs_threadjob_start(ev, &lockwait_kind,
					      lockwait_work, lockwait_job_free,
					      job, lockwait_done, req, &err);
	if (state->thread == NULL) {
		state->job = NULL;
		tevent_req_error(req, err);
		return tevent_req_post(req, ev);
	}
	tevent_req_set_cleanup_fn(req, lockwait_cleanup);
	return req;
}

struct tevent_req *asvfs_lockwait_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       int fd, bool write,
				       off_t start, off_t len)
{
	return lockwait_send(mem_ctx, ev, fd, write, false, start, len);
}

struct tevent_req *asvfs_locktake_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       int fd, bool write,
				       off_t start, off_t len)
{
	return lockwait_send(mem_ctx, ev, fd, write, true, start, len);
}

int asvfs_lockwait_recv(struct tevent_req *req)
{
	enum tevent_req_state req_state;
	uint64_t err = 0;
	int ret = 0;

	if (tevent_req_is_error(req, &req_state, &err)) {
		switch (req_state) {
		case TEVENT_REQ_USER_ERROR:
			ret = (int)err;
			break;
		case TEVENT_REQ_TIMED_OUT:
			ret = ETIMEDOUT;
			break;
		case TEVENT_REQ_NO_MEMORY:
			ret = ENOMEM;
			break;
		default:
			ret = EINVAL;
			break;
		}
	}
	tevent_req_received(req);
	return ret;
}
