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
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "asvfs_lockwait.h"

/*
 * Not SIGRTMIN+n: Samba uses the low real-time signals (leases, notify).
 * Signal numbers are process-wide, so the init refuses a signal that
 * someone else already handles instead of stealing it.
 */
#define LOCKWAIT_SIGNAL (SIGRTMAX - 5)

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

/* What the thread and the loop share; the loop joins before freeing it. */
struct lockwait_job {
	int fd;
	int efd;
	struct flock fl;
	bool take;		/* one F_OFD_SETLK, kept on success */
	pthread_t thread;
	atomic_bool cancel;
	atomic_bool finished;
	int err;
};

struct asvfs_lockwait_state {
	struct lockwait_job job;
	struct tevent_fd *fde;
	bool running;		/* a thread exists and is not joined */
};

static void *lockwait_thread(void *arg)
{
	struct lockwait_job *job = arg;
	struct flock unlock;
	sigset_t set;
	uint64_t one = 1;
	int ret = -1;
	int err = ECANCELED;
	ssize_t n;

	sigemptyset(&set);
	sigaddset(&set, LOCKWAIT_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	/*
	 * The stopper sets cancel, then signals until finished is set: a
	 * signal that lands just before fcntl() blocks is repeated.
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
	if (ret == 0 && !job->take) {
		/* We only wanted to know: give the range back at once. */
		unlock = job->fl;
		unlock.l_type = F_UNLCK;
		(void)fcntl(job->fd, F_OFD_SETLK, &unlock);
	}
	job->err = err;
	atomic_store(&job->finished, true);
	do {
		n = write(job->efd, &one, sizeof(one));
	} while (n == -1 && errno == EINTR);
	return NULL;
}

static void lockwait_stop(struct asvfs_lockwait_state *state)
{
	struct lockwait_job *job = &state->job;
	struct timespec pause = { .tv_nsec = 100 * 1000 };

	if (!state->running) {
		return;
	}
	atomic_store(&job->cancel, true);
	while (!atomic_load(&job->finished)) {
		pthread_kill(job->thread, LOCKWAIT_SIGNAL);
		nanosleep(&pause, NULL);
	}
	pthread_join(job->thread, NULL);
	state->running = false;
}

static void lockwait_cleanup(struct tevent_req *req,
			     enum tevent_req_state req_state)
{
	struct asvfs_lockwait_state *state = tevent_req_data(
		req, struct asvfs_lockwait_state);

	/* freed, timed out or cancelled in flight: no thread may outlive */
	lockwait_stop(state);
	TALLOC_FREE(state->fde);
	if (state->job.efd != -1) {
		close(state->job.efd);
		state->job.efd = -1;
	}
	if (state->job.fd != -1) {
		/* the last fd of the description: drops anything it held */
		close(state->job.fd);
		state->job.fd = -1;
	}
}

static void lockwait_done(struct tevent_context *ev, struct tevent_fd *fde,
			  uint16_t flags, void *private_data)
{
	struct tevent_req *req = talloc_get_type_abort(private_data,
						       struct tevent_req);
	struct asvfs_lockwait_state *state = tevent_req_data(
		req, struct asvfs_lockwait_state);
	uint64_t v;
	ssize_t n;

	n = read(state->job.efd, &v, sizeof(v));
	(void)n;
	if (!atomic_load(&state->job.finished)) {
		return;
	}
	pthread_join(state->job.thread, NULL);
	state->running = false;
	TALLOC_FREE(state->fde);
	if (state->job.err != 0) {
		tevent_req_error(req, state->job.err);
		return;
	}
	tevent_req_done(req);
}

static int lockwait_start_thread(struct lockwait_job *job)
{
	sigset_t all, old;
	int ret;

	/*
	 * Process-directed signals (SIGTERM, SIGCHLD, ...) must keep going
	 * to smbd's main thread: the worker starts with all blocked and
	 * unblocks only its own interrupt.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = pthread_create(&job->thread, NULL, lockwait_thread, job);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret == 0) {
		/* visible in /proc/<pid>/task/<tid>/comm, for tests and ps */
		(void)pthread_setname_np(job->thread, ASVFS_LOCKWAIT_THREAD);
	}
	return ret;
}

static struct tevent_req *lockwait_send(TALLOC_CTX *mem_ctx,
					struct tevent_context *ev,
					int fd, bool write, bool take,
					off_t start, off_t len)
{
	struct tevent_req *req = NULL;
	struct asvfs_lockwait_state *state = NULL;
	int err;

	err = asvfs_lockwait_init();
	if (err != 0) {
		close(fd);
		errno = err;
		return NULL;
	}
	req = tevent_req_create(mem_ctx, &state, struct asvfs_lockwait_state);
	if (req == NULL) {
		close(fd);
		errno = ENOMEM;
		return NULL;
	}
	state->job.fd = fd;
	state->job.efd = -1;
	state->job.take = take;
	state->job.fl = (struct flock) {
		.l_type = write ? F_WRLCK : F_RDLCK,
		.l_whence = SEEK_SET,
		.l_start = start,
		.l_len = len,
	};
	tevent_req_set_cleanup_fn(req, lockwait_cleanup);

	state->job.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (state->job.efd == -1) {
		goto fail;
	}
	state->fde = tevent_add_fd(ev, state, state->job.efd, TEVENT_FD_READ,
				   lockwait_done, req);
	if (state->fde == NULL) {
		errno = ENOMEM;
		goto fail;
	}
	err = lockwait_start_thread(&state->job);
	if (err != 0) {
		errno = err;
		goto fail;
	}
	state->running = true;
	return req;
fail:
	err = errno;
	TALLOC_FREE(req);
	errno = err;
	return NULL;
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
