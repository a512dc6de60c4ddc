/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: one piece of blocking work on a thread of its own,
 * reported back to a tevent loop through one eventfd per event context.
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
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "asvfs_threadjob.h"
#include "asvfs_process.h"

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
 * of the rest when it is freed itself; the last one to go frees.  The
 * thread's reference to the rest goes with the report, to the loop.
 */
struct threadjob_shared {
	void (*work)(void *payload);
	void (*free_fn)(void *payload);
	void *payload;
	struct asvfs_threadjob_kind *kind;
	struct threadjob_hub *hub;
	struct asvfs_threadjob *job;	/* the loop's: only the loop looks */
	struct threadjob_shared *next;	/* in the hub's queue */
	pthread_t thread;
	pthread_mutex_t mutex;	/* with cond: asvfs_threadjob_wait() */
	pthread_cond_t cond;
	atomic_bool finished;	/* work() returned */
	atomic_int payload_refs;
	atomic_int refs;
};

/*
 * The reports of one event context's threads: a queue and the eventfd
 * that says it is not empty.  Malloc'ed too, with a reference for the
 * event context and one for each thread, so that a thread that reports
 * after the event context went finds it gone rather than freed.
 *
 * One eventfd per event context, not tevent's threaded immediates
 * (tevent_threaded_schedule_immediate): an immediate runs before any fd
 * event of the same loop turn, so a report would overtake a client's
 * socket that became readable before it (a disconnect, say), where a
 * descriptor is served in the order the kernel saw them ready.
 */
struct threadjob_hub {
	int efd;
	pthread_mutex_t mutex;	/* guards queue and loop_gone */
	struct threadjob_shared *queue;	/* newest first */
	bool loop_gone;
	atomic_int refs;
};

/*
 * The loop side of a hub, a talloc child of its event context and the
 * parent of its jobs.  It goes with its last job, so that an idle
 * process holds no descriptor of ours.  A child of fork() inherits it
 * with the parent's eventfd: it leaves that alone (a read would take the
 * parent's wake-up) and makes a hub of its own.
 */
struct threadjob_link {
	struct threadjob_link *next;	/* threadjob_links */
	pid_t pid;			/* whose hub */
	struct tevent_context *ev;
	struct tevent_fd *fde;
	struct threadjob_hub *hub;
	unsigned jobs;
	bool going;
};

/* The links of this process's event contexts (loop threads only). */
static struct threadjob_link *threadjob_links;

/* The loop side, a talloc child of its event context's link. */
struct asvfs_threadjob {
	struct threadjob_link *link;
	struct threadjob_shared *shared;
	void (*done)(void *private_data);	/* NULL: detached */
	void *private_data;
	bool holds_payload;
	bool reported;
};

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

static void threadjob_hub_unref(struct threadjob_hub *hub)
{
	if (atomic_fetch_sub(&hub->refs, 1) != 1) {
		return;
	}
	close(hub->efd);
	pthread_mutex_destroy(&hub->mutex);
	free(hub);
}

/* The hub's queue, oldest first; 0 or more reports. */
static struct threadjob_shared *threadjob_hub_take(struct threadjob_hub *hub)
{
	struct threadjob_shared *s = NULL, *next = NULL, *fifo = NULL;

	pthread_mutex_lock(&hub->mutex);
	s = hub->queue;
	hub->queue = NULL;
	pthread_mutex_unlock(&hub->mutex);
	for (; s != NULL; s = next) {
		next = s->next;
		s->next = fifo;
		fifo = s;
	}
	return fifo;
}

static void threadjob_reported(struct threadjob_shared *s)
{
	struct asvfs_threadjob *job = s->job;
	void (*done)(void *private_data) = job->done;

	job->reported = true;
	if (done != NULL) {
		done(job->private_data);
	}
	TALLOC_FREE(job);	/* and the payload, unless the thread has it */
	threadjob_shared_unref(s);	/* the thread's, from the queue */
}

static void threadjob_link_ready(struct tevent_context *ev,
				 struct tevent_fd *fde, uint16_t flags,
				 void *private_data)
{
	struct threadjob_link *link = talloc_get_type_abort(
		private_data, struct threadjob_link);
	struct threadjob_shared *s = NULL, *next = NULL;
	uint64_t n;

	if (link->pid != asvfs_process_id()) {
		TALLOC_FREE(link->fde);		/* the parent's */
		return;
	}
	if (read(link->hub->efd, &n, sizeof(n)) != sizeof(n)) {
		return;		/* spurious */
	}
	for (s = threadjob_hub_take(link->hub); s != NULL; s = next) {
		next = s->next;
		threadjob_reported(s);
	}
}

static int threadjob_link_destructor(struct threadjob_link *link)
{
	struct threadjob_link **pl = NULL;
	struct threadjob_shared *s = NULL, *next = NULL;

	link->going = true;	/* its jobs go next, not it again */
	pthread_mutex_lock(&link->hub->mutex);
	link->hub->loop_gone = true;
	pthread_mutex_unlock(&link->hub->mutex);
	/* reports nobody will hear: their jobs go with the event context */
	for (s = threadjob_hub_take(link->hub); s != NULL; s = next) {
		next = s->next;
		threadjob_shared_unref(s);
	}
	for (pl = &threadjob_links; *pl != NULL; pl = &(*pl)->next) {
		if (*pl == link) {
			*pl = link->next;
			break;
		}
	}
	threadjob_hub_unref(link->hub);
	return 0;
}

static struct threadjob_hub *threadjob_hub_new(void)
{
	struct threadjob_hub *hub = calloc(1, sizeof(*hub));

	if (hub == NULL) {
		return NULL;
	}
	hub->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (hub->efd == -1) {
		free(hub);
		return NULL;
	}
	if (pthread_mutex_init(&hub->mutex, NULL) != 0) {
		close(hub->efd);
		free(hub);
		return NULL;
	}
	atomic_store(&hub->refs, 1);
	return hub;
}

/* The link of ev, made for its first job; NULL with errno set. */
static struct threadjob_link *threadjob_link_of(struct tevent_context *ev)
{
	struct threadjob_link *link = NULL;

	for (link = threadjob_links; link != NULL; link = link->next) {
		if (link->ev == ev && link->pid == asvfs_process_id() &&
		    !link->going) {
			return link;
		}
	}
	link = talloc_zero(ev, struct threadjob_link);
	if (link == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	link->hub = threadjob_hub_new();
	if (link->hub == NULL) {
		TALLOC_FREE(link);
		return NULL;
	}
	link->ev = ev;
	link->pid = asvfs_process_id();
	link->fde = tevent_add_fd(ev, link, link->hub->efd, TEVENT_FD_READ,
				  threadjob_link_ready, link);
	if (link->fde == NULL) {
		threadjob_hub_unref(link->hub);
		TALLOC_FREE(link);
		errno = ENOMEM;
		return NULL;
	}
	link->next = threadjob_links;
	threadjob_links = link;
	talloc_set_destructor(link, threadjob_link_destructor);
	return link;
}

/* Queue s's report for the loop, unless the loop is gone. */
static void threadjob_report(struct threadjob_shared *s)
{
	struct threadjob_hub *hub = s->hub;
	uint64_t one = 1;
	bool queued = false;
	ssize_t n;

	pthread_mutex_lock(&hub->mutex);
	if (!hub->loop_gone) {
		s->next = hub->queue;
		hub->queue = s;
		queued = true;
		do {
			n = write(hub->efd, &one, sizeof(one));
		} while (n == -1 && errno == EINTR);
	}
	pthread_mutex_unlock(&hub->mutex);
	if (!queued) {
		threadjob_shared_unref(s);
	}
	threadjob_hub_unref(hub);
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
	threadjob_report(s);
	/* last: tests wait for it to know the thread let go of everything */
	atomic_fetch_sub(&kind->running, 1);
	return NULL;
}

static int threadjob_destructor(struct asvfs_threadjob *job)
{
	struct threadjob_link *link = job->link;

	threadjob_let_go_of_payload(job);
	threadjob_shared_unref(job->shared);
	if (--link->jobs == 0 && !link->going) {
		TALLOC_FREE(link);	/* its thread reported: idle */
	}
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
	atomic_fetch_add(&s->hub->refs, 1);
	ret = asvfs_thread_start(threadjob_thread, s, kind->thread_name,
				 &s->thread);
	if (ret != 0) {
		atomic_fetch_sub(&s->hub->refs, 1);	/* not the last */
		atomic_store(&s->payload_refs, 1);
		atomic_store(&s->refs, 1);
		atomic_fetch_sub(&kind->running, 1);
		return ret;
	}
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

	struct threadjob_link *link = NULL;

	s = threadjob_shared_new(work, free_fn, payload);
	link = threadjob_link_of(ev);
	if (s == NULL || link == NULL) {
		*err = s == NULL ? ENOMEM : errno;
		goto fail;
	}
	job = talloc_zero(link, struct asvfs_threadjob);
	if (job == NULL) {
		*err = ENOMEM;
		goto fail;
	}
	job->link = link;
	link->jobs++;
	job->shared = s;
	job->holds_payload = true;
	job->done = done;
	job->private_data = private_data;
	talloc_set_destructor(job, threadjob_destructor);
	s->job = job;
	s->hub = link->hub;
	*err = threadjob_launch(job, kind);
	if (*err != 0) {
		TALLOC_FREE(job);	/* with the payload, and an idle link */
		return NULL;
	}
	return job;
fail:
	if (s != NULL) {
		threadjob_payload_unref(s);
		threadjob_shared_unref(s);
	} else {
		free_fn(payload);
	}
	if (link != NULL && link->jobs == 0) {
		TALLOC_FREE(link);
	}
	return NULL;
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
