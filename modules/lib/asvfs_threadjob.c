/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: one piece of blocking work on a thread of its own,
 * reported back to a tevent loop through a threaded immediate.
 *
 * Copyright (C) samba-async-vfs authors
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>

#include "asvfs_threadjob.h"

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

bool asvfs_threadjob_available(struct asvfs_threadjob_kind *kind)
{
	return kind->max == 0 || atomic_load(&kind->running) < kind->max;
}

/*
 * What the thread and the loop share.  Plain malloc, not talloc: talloc
 * is not thread-safe.  Two references each, the thread's and the job's:
 * the job lets go of the payload when its requester does (detach), and
 * of the rest when it is freed itself; the last one to go frees.
 */
struct threadjob_shared {
	void (*work)(void *payload);
	void (*free_fn)(void *payload);
	void *payload;
	struct asvfs_threadjob_kind *kind;
	/* the loop's objects, which the thread only hands to tevent */
	struct tevent_threaded_context *tctx;
	struct tevent_immediate *im;
	struct asvfs_threadjob *job;
	pthread_t thread;
	pthread_mutex_t mutex;	/* with cond: asvfs_threadjob_wait() */
	pthread_cond_t cond;
	atomic_bool finished;	/* work() returned */
	atomic_bool let_go;	/* the thread is done with tctx and im */
	atomic_int payload_refs;
	atomic_int refs;
};

/* The loop side, a talloc child of the event context. */
struct asvfs_threadjob {
	struct threadjob_shared *shared;
	void (*done)(void *private_data);	/* NULL: detached */
	void *private_data;
	bool holds_payload;
	bool started;
	bool reported;
};

/*
 * Where the threaded context and immediate of a job go whose event
 * context went before its thread reported: the thread still reads the
 * immediate and takes the context's mutex, finds the event context gone
 * and drops the report.  Left for the process to end (a few hundred
 * bytes a thread, reachable, and only where an event context goes with
 * threads still out: at exit, in tests).
 */
static TALLOC_CTX *threadjob_leftovers;

static void threadjob_payload_unref(struct threadjob_shared *s)
{
	if (atomic_fetch_sub(&s->payload_refs, 1) == 1) {
		s->free_fn(s->payload);
	}
}

/* The loop side's reference to the payload goes. */
static void threadjob_let_go_of_payload(struct asvfs_threadjob *job)
{
	if (job->holds_payload) {
		job->holds_payload = false;
		threadjob_payload_unref(job->shared);
	}
}

static void threadjob_shared_unref(struct threadjob_shared *s)
{
	if (atomic_fetch_sub(&s->refs, 1) != 1) {
		return;
	}
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mutex);
	free(s);
}

static void threadjob_reported(struct tevent_context *ev,
			       struct tevent_immediate *im,
			       void *private_data)
{
	struct asvfs_threadjob *job = talloc_get_type_abort(
		private_data, struct asvfs_threadjob);
	void (*done)(void *private_data) = job->done;

	job->reported = true;
	if (done != NULL) {
		done(job->private_data);
	}
	TALLOC_FREE(job);	/* and the payload, unless the thread has it */
}

static void *threadjob_thread(void *arg)
{
	struct threadjob_shared *s = arg;
	struct asvfs_threadjob_kind *kind = s->kind;

	s->work(s->payload);
	pthread_mutex_lock(&s->mutex);
	atomic_store(&s->finished, true);
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mutex);
	/* a requester gone already: its descriptors close now */
	threadjob_payload_unref(s);
	/* does nothing once the event context is gone */
	tevent_threaded_schedule_immediate(s->tctx, s->im, threadjob_reported,
					   s->job);
	atomic_store(&s->let_go, true);
	threadjob_shared_unref(s);
	/* last: tests wait for it to know the thread let go of everything */
	atomic_fetch_sub(&kind->running, 1);
	return NULL;
}

static int threadjob_destructor(struct asvfs_threadjob *job)
{
	struct threadjob_shared *s = job->shared;

	if (job->started && !job->reported) {
		/*
		 * Only with the event context, whose own destructor has
		 * already told the threaded context that it is gone.  The
		 * immediate may sit in that context's list of scheduled
		 * ones, which went with it: tevent's guard against freeing
		 * it scheduled no longer applies.
		 */
		talloc_set_destructor(s->im, NULL);
		if (!atomic_load(&s->let_go)) {
			if (threadjob_leftovers == NULL) {
				threadjob_leftovers = talloc_named_const(
					NULL, 0, "asvfs_threadjob leftovers");
			}
			(void)talloc_steal(threadjob_leftovers, s->tctx);
			(void)talloc_steal(threadjob_leftovers, s->im);
		}
	}
	threadjob_let_go_of_payload(job);
	threadjob_shared_unref(s);
	return 0;
}

static struct threadjob_shared *threadjob_shared_new(
	void (*work)(void *payload), void (*free_fn)(void *payload),
	void *payload)
{
	struct threadjob_shared *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		return NULL;
	}
	if (pthread_mutex_init(&s->mutex, NULL) != 0) {
		free(s);
		return NULL;
	}
	if (pthread_cond_init(&s->cond, NULL) != 0) {
		pthread_mutex_destroy(&s->mutex);
		free(s);
		return NULL;
	}
	s->work = work;
	s->free_fn = free_fn;
	s->payload = payload;
	atomic_store(&s->payload_refs, 1);
	atomic_store(&s->refs, 1);
	return s;
}

/* Start the thread of job; 0 or an errno (the job stays unstarted). */
static int threadjob_launch(struct asvfs_threadjob *job,
			    struct asvfs_threadjob_kind *kind)
{
	struct threadjob_shared *s = job->shared;
	int ret;

	if (atomic_fetch_add(&kind->running, 1) >= kind->max &&
	    kind->max != 0) {
		atomic_fetch_sub(&kind->running, 1);
		return EAGAIN;
	}
	s->kind = kind;
	atomic_store(&s->payload_refs, 2);
	atomic_store(&s->refs, 2);
	ret = asvfs_thread_start(threadjob_thread, s, kind->thread_name,
				 &s->thread);
	if (ret != 0) {
		atomic_store(&s->payload_refs, 1);
		atomic_store(&s->refs, 1);
		atomic_fetch_sub(&kind->running, 1);
		return ret;
	}
	job->started = true;
	return 0;
}

struct asvfs_threadjob *asvfs_threadjob_start(
	struct tevent_context *ev, struct asvfs_threadjob_kind *kind,
	void (*work)(void *payload), void (*free_fn)(void *payload),
	void *payload, void (*done)(void *private_data),
	void *private_data, int *err)
{
	struct asvfs_threadjob *job = NULL;
	struct threadjob_shared *s = NULL;

	s = threadjob_shared_new(work, free_fn, payload);
	if (s == NULL) {
		free_fn(payload);
		*err = ENOMEM;
		return NULL;
	}
	job = talloc_zero(ev, struct asvfs_threadjob);
	if (job == NULL) {
		threadjob_payload_unref(s);
		threadjob_shared_unref(s);
		*err = ENOMEM;
		return NULL;
	}
	job->shared = s;
	job->holds_payload = true;
	job->done = done;
	job->private_data = private_data;
	talloc_set_destructor(job, threadjob_destructor);
	s->job = job;
	s->tctx = tevent_threaded_context_create(job, ev);
	s->im = tevent_create_immediate(job);
	if (s->tctx == NULL || s->im == NULL) {
		*err = ENOMEM;
		TALLOC_FREE(job);
		return NULL;
	}
	*err = threadjob_launch(job, kind);
	if (*err != 0) {
		TALLOC_FREE(job);
		return NULL;
	}
	return job;
}

struct asvfs_threadjob *asvfs_threadjob_detach(struct asvfs_threadjob *job)
{
	job->done = NULL;
	job->private_data = NULL;
	threadjob_let_go_of_payload(job);
	return job;
}

bool asvfs_threadjob_finished(const struct asvfs_threadjob *job)
{
	return atomic_load(&job->shared->finished);
}

void asvfs_threadjob_signal(const struct asvfs_threadjob *job, int sig)
{
	if (!asvfs_threadjob_finished(job)) {
		pthread_kill(job->shared->thread, sig);
	}
}

void asvfs_threadjob_wait(struct asvfs_threadjob *job)
{
	struct threadjob_shared *s = job->shared;

	pthread_mutex_lock(&s->mutex);
	while (!atomic_load(&s->finished)) {
		pthread_cond_wait(&s->cond, &s->mutex);
	}
	pthread_mutex_unlock(&s->mutex);
}
