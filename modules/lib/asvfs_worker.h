/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: path-based work on a thread of its own, with the
 * requester's credentials, where io_uring cannot do it (io_uring refused
 * by seccomp or sysctl, or an admin's choice).
 *
 * Each request runs on a fresh detached thread (asvfs_threadjob.h) that
 * takes on the credentials captured when the request was made
 * (asvfs_creds.h: raw per-thread syscalls, never the process's, any
 * number of groups) and reports to the caller's tevent loop through the
 * event context's one eventfd, with no descriptor of its own.  Threads
 * never change their working directory: paths are relative to a dup()
 * of the caller's directory fd, which the request owns.
 *
 * The caller may free a request at any time: the thread finishes on
 * memory of its own, and an fd it opened for nobody is closed.
 *
 * As tevent's requests do, a _send returns NULL only without memory;
 * every other failure finishes the request with an errno, posted to the
 * loop: EAGAIN when ASVFS_WORKER_MAX threads run already (then the
 * caller does the work synchronously, in its callback), or why the work
 * could not start.  A request that failed so is no longer in progress
 * when _send returns (a started one finishes only from the loop); a
 * caller that must decide before it sends asks asvfs_worker_available().
 *
 * Samba-free: usable and tested on a plain tevent loop.
 */
#ifndef ASVFS_WORKER_H
#define ASVFS_WORKER_H

#include <stdbool.h>
#include <sys/types.h>
#include <talloc.h>
#include <tevent.h>

#include "asvfs_creds.h"
#include "asvfs_threadjob.h"

#define ASVFS_WORKER_MAX 64

/* The name of the worker threads (comm), at most 15 characters. */
#define ASVFS_WORKER_THREAD "asvfs-worker"

/*
 * openat(dirfd, path, flags, mode) with creds (NULL: the calling
 * thread's current ones).  The caller's dirfd is untouched.  Finished
 * with asvfs_worker_open_recv().
 */
struct tevent_req *asvfs_worker_openat_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int dirfd, const char *path,
					    int flags, mode_t mode,
					    const struct asvfs_creds *creds);

/*
 * Reopen the object behind fd (an O_PATH fd is fine) as
 * open("/proc/self/fd/<our dup>", flags, mode), as smbd reopens a
 * pathref fd, with the calling thread's current credentials.
 */
struct tevent_req *asvfs_worker_reopen_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int fd, int flags, mode_t mode);

/* The new fd, or -1 with *perrno. */
int asvfs_worker_open_recv(struct tevent_req *req, int *perrno);

/*
 * Remove dirfd/name if it is still the object (dev, ino): for a file an
 * asynchronous create made that nobody took.  Runs with creds, so it
 * removes nothing the creator could not.  0, or ESTALE when name is
 * another object now, or an errno.  Finished with
 * asvfs_worker_unlink_recv().
 */
struct tevent_req *asvfs_worker_unlink_send(TALLOC_CTX *mem_ctx,
					    struct tevent_context *ev,
					    int dirfd, const char *name,
					    dev_t dev, ino_t ino,
					    const struct asvfs_creds *creds);
int asvfs_worker_unlink_recv(struct tevent_req *req);

/* The names of one object's xattrs, as listxattr(2) gave them. */
#define ASVFS_NAMES_MAX 1024
struct asvfs_names {
	ssize_t len;		/* -1: err says why (ERANGE: more than fits) */
	int err;
	char list[ASVFS_NAMES_MAX];
};

/*
 * listxattr("/proc/self/fd/<fd>") for each of n fds, one after the other
 * on one thread, with the calling thread's current credentials: what
 * smbd asks of a pathref fd, for a batch of directory entries at once.
 * The request owns the fds from here on (also when it fails, and they
 * are closed when NULL says no memory).  Results stay valid until the
 * request is freed.
 */
struct tevent_req *asvfs_worker_names_send(TALLOC_CTX *mem_ctx,
					   struct tevent_context *ev,
					   int *fds, unsigned n);
/* Result i of a finished request, or NULL (failed, not finished). */
const struct asvfs_names *asvfs_worker_names(struct tevent_req *req,
					     unsigned i);

/*
 * Block until the request's thread is done, and finish the request
 * without its event context (at once for a finished or failed one):
 * for a caller that needs the results now.  It waits on a condition
 * variable, so the thread needs no eventfd for it.
 */
void asvfs_worker_wait(struct tevent_req *req);

/* Whether a _send now gets a thread rather than EAGAIN. */
bool asvfs_worker_available(void);

/* Worker threads running now. */
unsigned asvfs_worker_running(void);

#endif
