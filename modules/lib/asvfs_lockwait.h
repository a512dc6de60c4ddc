/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: wait on a thread until a byte range can be locked.
 *
 * io_uring has no lock opcode, and a lock held by another process can
 * only be waited for by blocking in fcntl(F_OFD_SETLKW).  A lockwait
 * request runs that wait on a thread of its own, off the event loop:
 * when the range becomes free the thread takes the lock, drops it at once
 * and reports to the caller's tevent loop (asvfs_threadjob.h: the event
 * context's one eventfd, none of its own), so the caller is woken when an
 * outside holder lets go, not when it next polls.  The caller then
 * retries its real lock on its own file description.
 *
 * The fd given is adopted: it must be a file description of its own
 * (open("/proc/self/fd/N"), never a dup() of the fd whose locks matter,
 * since an OFD lock taken and dropped through a dup would drop the
 * owner's lock too).  It is closed when the request ends, so nothing
 * stays locked whatever happens.
 *
 * Freeing the request, or its endtime passing, interrupts the thread with
 * a signal (no SA_RESTART, so the fcntl returns EINTR).  On local file
 * systems it is gone before the free returns.  Otherwise (a busy machine,
 * or a file system that finishes its call before it looks at signals:
 * FUSE, NFS) the free returns after about 2 ms and the event loop keeps
 * signalling the thread until it is gone; it touches only memory and a
 * descriptor of its own.  The loop never waits for a file system.
 *
 * As tevent's requests do, a _send returns NULL only without memory;
 * every other failure finishes the request with an errno, posted to the
 * loop: EBUSY (see asvfs_lockwait_init()), EAGAIN when no thread could be
 * started, ENOMEM.  Such a request is no longer in progress when _send
 * returns (a started one finishes only from the loop), which a caller
 * that must decide at once may test.
 *
 * The thread runs no code but fcntl() on the adopted fd: no path lookup,
 * no credentials, nothing of another request.
 *
 * Samba-free: usable and tested on a plain tevent loop.
 */
#ifndef ASVFS_LOCKWAIT_H
#define ASVFS_LOCKWAIT_H

#include <stdbool.h>
#include <sys/types.h>
#include <talloc.h>
#include <tevent.h>

/*
 * Make the process ready for lockwait threads: installs a do-nothing
 * handler (without SA_RESTART) for the interrupt signal.  Returns 0, or
 * EBUSY when someone else already handles that signal (then no lockwait
 * can be interrupted and asvfs_lockwait_send()'s request fails with
 * EBUSY too).
 * Called by asvfs_lockwait_send() itself; idempotent.
 */
int asvfs_lockwait_init(void);

/* The name of the waiting threads (comm), at most 15 characters. */
#define ASVFS_LOCKWAIT_THREAD "asvfs-lockwait"

/* The signal used to interrupt waiting threads. */
int asvfs_lockwait_signal(void);

/*
 * Wait until [start, start + len) of the file behind fd could be locked
 * for reading (write == false) or writing.  len 0 means to the end of
 * the file, as in fcntl.  fd is adopted (see above), also on failure.
 */
struct tevent_req *asvfs_lockwait_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       int fd, bool write,
				       off_t start, off_t len);

/*
 * Take [start, start + len) with one non-blocking F_OFD_SETLK on a thread
 * and keep it: for file systems where even that call is slow (network,
 * cluster).  Here fd should be a dup() of the owner's fd, so that the
 * lock belongs to the owner's description; closing fd at the end leaves
 * it in place.  A take that succeeds after the request was freed is
 * given back by the thread; one that succeeded just before may stay
 * until the owner's description closes: free a take in flight only when
 * that description goes away too.  Finished with
 * asvfs_lockwait_recv(): 0 when taken, EAGAIN/EACCES on a conflict.
 */
struct tevent_req *asvfs_locktake_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       int fd, bool write,
				       off_t start, off_t len);

/* 0 when the range was free, an errno otherwise (ETIMEDOUT at endtime). */
int asvfs_lockwait_recv(struct tevent_req *req);

#endif
