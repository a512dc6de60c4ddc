/*
 * samba-async-vfs: requests answered at once, completed together.
 *
 * A request that knows its answer inside _send must still complete from
 * the event loop (its caller sets the callback after _send returns).
 * tevent_req_post() gives every such request an immediate of its own,
 * and tevent runs one immediate per loop turn: a directory listing that
 * answers 20,000 entries at once then costs 20,000 loop turns, more than
 * the reads themselves.  Requests deferred here are finished from one
 * immediate, all that waited when it fired, in order, in one loop turn
 * (as a batch of io_uring completions would be).
 *
 * Samba-free: usable and tested on a plain tevent loop.
 */
#ifndef ASVFS_DEFER_H
#define ASVFS_DEFER_H

#include <stdbool.h>
#include <talloc.h>
#include <tevent.h>

/* Finishes req: tevent_req_done(), tevent_req_error() and the like. */
typedef void (*asvfs_defer_fn)(struct tevent_req *req);

/*
 * Call finish(req) from the loop of ev soon.  Freeing req before then
 * cancels it.  Returns req, or, when no memory was left for the
 * deferral, finishes req now and posts it (as tevent_req_post()); either
 * way the caller returns what this returns from its _send.
 */
struct tevent_req *asvfs_defer_finish(struct tevent_req *req,
				      struct tevent_context *ev,
				      asvfs_defer_fn finish);

#endif
