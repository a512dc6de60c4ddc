/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: one piece of blocking work on a thread of its own,
 * reported back to a tevent loop.  The mechanism under asvfs_worker and
 * asvfs_lockwait.
 *
 * The work runs on a fresh detached thread with every signal blocked.
 * When it is done the thread queues its report for the caller's event
 * context and writes that context's eventfd: one eventfd and tevent_fd
 * per event context, shared by all its jobs and there only while jobs
 * are out, so a job costs no descriptor of its own and an idle process
 * holds none.  (Not tevent's threaded immediates, which would
 * do without even that: an immediate runs before the fd events of its
 * loop turn, so a report would overtake a client's disconnect that came
 * first, which a descriptor does not.)
 *
 * Two parts, so that the thread never touches talloc memory:
 * - the payload, malloc'ed by the caller, is what the thread works on;
 *   the thread (until its work is done) and the requester each hold a
 *   reference, and free_fn runs on whichever lets go last (so it may only
 *   close and free);
 * - the job, under the event context, is the loop side.  It
 *   outlives its requester (asvfs_threadjob_detach()) until its thread
 *   has reported, so that a cancelled request never frees memory the
 *   thread still uses.  Should the event context go first (process exit,
 *   a test's teardown), the thread's report finds it gone and is dropped.
 *
 * After fork() a child has none of its parent's threads: its copies of
 * the parent's jobs never report, and go with the event context.
 *
 * Samba-free: usable and tested on a plain tevent loop.
 */
#ifndef ASVFS_THREADJOB_H
#define ASVFS_THREADJOB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <talloc.h>
#include <tevent.h>

/*
 * Start fn(arg) on a detached thread named name, with every signal
 * blocked (process-directed signals keep going to smbd's main thread).
 * 0 or an errno.
 */
int asvfs_thread_start(void *(*fn)(void *), void *arg, const char *name,
		       pthread_t *thread);

/* The threads of one user of this mechanism: their name and number. */
struct asvfs_threadjob_kind {
	const char *thread_name;	/* comm, at most 15 characters */
	unsigned max;			/* at most so many at once, or 0 */
	atomic_uint running;		/* down as each thread's last act */
};

/* Whether kind may start another thread now. */
bool asvfs_threadjob_available(struct asvfs_threadjob_kind *kind);

struct asvfs_threadjob;

/*
 * Run work(payload) on a thread of kind; done(private_data) runs on ev's
 * loop once it returned.  On success the job holds the payload (and
 * frees it with free_fn when both sides let go); on failure (*err:
 * EAGAIN for kind->max threads already running, or why the thread could
 * not start) the job is NULL and the payload was freed.
 */
struct asvfs_threadjob *asvfs_threadjob_start(
	struct tevent_context *ev, struct asvfs_threadjob_kind *kind,
	void (*work)(void *payload), void (*free_fn)(void *payload),
	void *payload, void (*done)(void *private_data),
	void *private_data, int *err);

/*
 * The requester goes: done will not be called, the payload is the
 * thread's alone (it frees it when its work is done), and the job frees
 * itself once the thread has reported.  Returns
 * the job, valid until then: a talloc parent for what has to live as
 * long as the thread (see asvfs_lockwait.c).
 */
struct asvfs_threadjob *asvfs_threadjob_detach(struct asvfs_threadjob *job);

/* Whether work() has returned (done may still be to come). */
bool asvfs_threadjob_finished(const struct asvfs_threadjob *job);

/* Send sig to the thread, unless work() has returned. */
void asvfs_threadjob_signal(const struct asvfs_threadjob *job, int sig);

/*
 * Block until work() has returned, without the loop; done is still
 * called from the loop afterwards unless the job is detached first.
 * A condition variable, no descriptor.
 */
void asvfs_threadjob_wait(struct asvfs_threadjob *job);

#endif
