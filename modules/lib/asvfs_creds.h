/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the credentials of the requesting user, captured and
 * taken on by one thread.
 *
 * Copyright (C) samba-async-vfs authors
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * smbd impersonates a user by changing the real and effective ids of its
 * main thread, with raw syscalls; the saved uid stays 0.  Work that runs
 * later or elsewhere (an io_uring personality, a worker thread) must carry the
 * credentials of the moment it was asked for: capture them then.
 *
 * A worker thread takes them on with raw syscalls, which in Linux change
 * the calling thread only; glibc's wrappers would change every thread of
 * the process (smbd's main thread included) through a signal.
 */
#ifndef ASVFS_CREDS_H
#define ASVFS_CREDS_H

#include <stdbool.h>
#include <sys/types.h>
#include <talloc.h>

struct asvfs_creds {
	uid_t uid;		/* effective */
	gid_t gid;		/* effective */
	int ngroups;
	gid_t *groups;		/* sorted; any number up to NGROUPS_MAX */
};

/*
 * The calling thread's credentials: 0 or -errno.  c->groups is a talloc
 * array on mem_ctx; one that c holds from an earlier call is reused when
 * it has room (c must be zeroed before the first call).
 */
int asvfs_creds_current(TALLOC_CTX *mem_ctx, struct asvfs_creds *c);

/*
 * Credentials as a process records them for itself (smbd: its
 * current_user, which set_sec_ctx() updates in the same step as the
 * system calls that take them on).  groups: the recorder's memory, in
 * any order.
 */
struct asvfs_creds_record {
	uid_t uid;
	gid_t gid;
	int ngroups;
	const gid_t *groups;
};

/* Fills rec with the calling thread's credentials as recorded. */
typedef void (*asvfs_creds_reader_fn)(struct asvfs_creds_record *rec);

/*
 * c from a record, groups sorted as asvfs_creds_current() sorts them:
 * 0 or -errno.  c->groups is reused as there.  No system call.
 */
int asvfs_creds_from_record(TALLOC_CTX *mem_ctx,
			    const struct asvfs_creds_record *rec,
			    struct asvfs_creds *c);

bool asvfs_creds_equal(const struct asvfs_creds *a,
		       const struct asvfs_creds *b);

/*
 * Make c the credentials of the calling thread only: 0 or an errno.  One
 * of the thread's uids must be 0 (smbd's saved uid is) unless it already
 * has exactly c.  Meant for threads that end with their work; it uses no
 * talloc, which is not thread-safe.
 */
int asvfs_creds_become_thread(const struct asvfs_creds *c);

#endif
