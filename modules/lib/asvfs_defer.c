/*
 * samba-async-vfs: requests answered at once, completed together.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#include <stddef.h>

#include "asvfs_defer.h"

/* One deferred request: a talloc child of it, so that it goes with it. */
struct asvfs_deferred {
	struct asvfs_deferred *prev, *next;
	struct tevent_req *req;
	asvfs_defer_fn finish;
};

/*
 * What waits, per process: smbd runs the requests of a connection on one
 * event context.  A request on another one is deferred on its own.
 */
static struct {
	struct asvfs_deferred *head, *tail;
	struct tevent_immediate *im;
	struct tevent_context *ev;
	bool scheduled;
} defer_queue;

static void defer_unlink(struct asvfs_deferred *d)
{
	if (d->prev != NULL) {
		d->prev->next = d->next;
	} else {
		defer_queue.head = d->next;
	}
	if (d->next != NULL) {
		d->next->prev = d->prev;
	} else {
		defer_queue.tail = d->prev;
	}
	d->prev = d->next = NULL;
}

static int defer_destructor(struct asvfs_deferred *d)
{
	defer_unlink(d);
	return 0;
}

/*
 * Finish what waited when we fired.  A finish may free other waiting
 * requests (their destructor unlinks them) and defer new ones (appended:
 * the next turn gets those), so the head is taken afresh each time.
 */
static void defer_run(struct tevent_context *ev, struct tevent_immediate *im,
		      void *private_data)
{
	struct asvfs_deferred *last = defer_queue.tail;
	struct asvfs_deferred *d = NULL;
	bool more = true;

	defer_queue.scheduled = false;
	while (more && (d = defer_queue.head) != NULL) {
		struct tevent_req *req = d->req;
		asvfs_defer_fn finish = d->finish;

		more = (d != last);
		talloc_set_destructor(d, NULL);
		defer_unlink(d);
		talloc_free(d);
		finish(req);
	}
	if (defer_queue.head != NULL && !defer_queue.scheduled) {
		defer_queue.scheduled = true;
		tevent_schedule_immediate(defer_queue.im, defer_queue.ev,
					  defer_run, NULL);
	}
}

static bool defer_schedule(struct tevent_context *ev)
{
	if (defer_queue.im == NULL) {
		defer_queue.im = tevent_create_immediate(NULL);
		if (defer_queue.im == NULL) {
			return false;
		}
	}
	if (defer_queue.head != NULL && defer_queue.ev != ev) {
		return false;
	}
	/*
	 * An empty queue may still look scheduled on a context that was
	 * freed since (tevent drops its immediates then): schedule anew.
	 */
	if (defer_queue.head == NULL || !defer_queue.scheduled) {
		defer_queue.ev = ev;
		defer_queue.scheduled = true;
		tevent_schedule_immediate(defer_queue.im, ev, defer_run, NULL);
	}
	return true;
}

struct tevent_req *asvfs_defer_finish(struct tevent_req *req,
				      struct tevent_context *ev,
				      asvfs_defer_fn finish)
{
	struct asvfs_deferred *d = NULL;

	if (!defer_schedule(ev) ||
	    (d = talloc_zero(req, struct asvfs_deferred)) == NULL) {
		finish(req);
		return tevent_req_post(req, ev);
	}
	d->req = req;
	d->finish = finish;
	d->prev = defer_queue.tail;
	if (defer_queue.tail != NULL) {
		defer_queue.tail->next = d;
	} else {
		defer_queue.head = d;
	}
	defer_queue.tail = d;
	talloc_set_destructor(d, defer_destructor);
	return req;
}
