/*
 * samba-async-vfs: the credentials of the requesting user, captured and
 * taken on by one thread.
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

/* Samba users rarely have more; more makes a capture fail (EINVAL). */
#define ASVFS_CREDS_MAX_GROUPS 256

struct asvfs_creds {
	uid_t uid;		/* effective */
	gid_t gid;		/* effective */
	int ngroups;
	gid_t groups[ASVFS_CREDS_MAX_GROUPS];	/* sorted */
};

/* The calling thread's credentials: 0 or -errno. */
int asvfs_creds_current(struct asvfs_creds *c);

bool asvfs_creds_equal(const struct asvfs_creds *a,
		       const struct asvfs_creds *b);

/*
 * Make c the credentials of the calling thread only: 0 or an errno.  One
 * of the thread's uids must be 0 (smbd's saved uid is) unless it already
 * has exactly c.  Meant for threads that end with their work.
 */
int asvfs_creds_become_thread(const struct asvfs_creds *c);

#endif
