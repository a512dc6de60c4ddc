/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: io_uring personalities for the requesting user.
 *
 * Path-based work (open, getxattr) must run with the credentials of the
 * user smbd impersonates for the request, not with whatever the ring's
 * creator had.  io_uring_register_personality() captures the calling
 * thread's credentials; the id goes into sqe->personality.  Registration
 * costs a syscall, so ids are cached per credential set (euid, egid and
 * the sorted supplementary groups).  The cache is bounded: the least
 * recently used id that no queued request still needs is unregistered.
 */
#ifndef ASVFS_PERSONALITY_H
#define ASVFS_PERSONALITY_H

#include <stdint.h>
#include <talloc.h>

#include "asvfs_creds.h"

struct io_uring;
struct asvfs_personality_cache;

struct asvfs_personality_stats {
	uint64_t registered;
	uint64_t unregistered;
	uint64_t hits;
	uint64_t record_mismatches;	/* record and kernel disagreed */
};

struct asvfs_personality_cache *asvfs_personality_cache_new(
	TALLOC_CTX *mem_ctx, struct io_uring *ring, unsigned max_entries);

/*
 * The id for the calling thread's current credentials: > 0, or -errno
 * (-EBUSY when every cached id is held by queued requests).
 */
int asvfs_personality_current(struct asvfs_personality_cache *cache);

/*
 * Where asvfs_personality_current() takes the key of its lookup from, in
 * every cache of the process: NULL (the default) asks the kernel, three
 * system calls per request; a reader of a record the process keeps of
 * its own identity asks none.  An id is registered, and cached under a
 * key, only when the kernel confirms the key: a record that disagrees
 * with the kernel at registration gets the kernel's credentials (what a
 * synchronous call would run with), never the record's.  A record that
 * disagrees after that is trusted: a reader's record must change in the
 * same step as the credentials it records, as smbd's does.
 */
void asvfs_personality_read_creds_from(asvfs_creds_reader_fn reader);

/* A queued request needs the id until its SQE has been submitted. */
void asvfs_personality_hold(struct asvfs_personality_cache *cache, int id);
void asvfs_personality_release(struct asvfs_personality_cache *cache,
			       int id);

const struct asvfs_personality_stats *asvfs_personality_stats(
	const struct asvfs_personality_cache *cache);

#endif
