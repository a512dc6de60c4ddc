/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: path-based work on a thread of its own, with the
 * requester's credentials, where io_uring cannot do it (io_uring refused
 * by seccomp or sysctl, or an admin's choice).
 *
 * Each request runs on a fresh detached thread that takes on the
 * credentials captured when the request was made (asvfs_creds.h: raw
 * per-thread syscalls, never the process's) and reports through an
 * eventfd on the caller's tevent context.  Threads never change their
 * working directory: paths are relative to a dup() of the caller's
 * directory fd, which the request owns.
 *
 * The caller may free a request at any time: the thread finishes on
 * memory of its own, and an fd it opened for nobody is closed.  At most
 * ASVFS_WORKER_MAX threads run at once; beyond that a _send fails with
 * EAGAIN and the caller does the work synchronously.
 *
 * Samba-free: usable and tested on a plain tevent loop.
 */
#ifndef ASVFS_WORKER_H
#define ASVFS_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <talloc.h>
#include <tevent.h>

#include "asvfs_creds.h"

#define ASVFS_WORKER_MAX 64

/* The name of the worker threads (comm), at most 15 characters. */
#define ASVFS_WORKER_THREAD "asvfs-worker"

/*
 * Start fn(arg) on a detached thread named name, with every signal
 * blocked (process-directed signals keep going to smbd's main thread).
 * 0 or an errno.
 */
int asvfs_thread_start(void *(*fn)(void *), void *arg, const char *name,
		       pthread_t *thread);

/*
 * openat(dirfd, path, flags, mode) with creds (NULL: the calling
 * thread's current ones).  Returns NULL with errno set (EAGAIN: too many
 * threads) when the work cannot be started; the caller's dirfd is
 * untouched either way.  Finished with asvfs_worker_open_recv().
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
 * The request owns the fds from here on (also when it cannot start:
 * NULL with errno set).  Results stay valid until the request is freed.
 */
struct tevent_req *asvfs_worker_names_send(TALLOC_CTX *mem_ctx,
					   struct tevent_context *ev,
					   int *fds, unsigned n);
/* Result i of a finished request, or NULL (failed, not finished). */
const struct asvfs_names *asvfs_worker_names(struct tevent_req *req,
					     unsigned i);

/*
 * Block until the request's thread is done, and finish the request
 * without its event context; false if it cannot be waited for.
 */
bool asvfs_worker_wait(struct tevent_req *req);

/* Worker threads running now (for tests). */
unsigned asvfs_worker_running(void);

#endif
