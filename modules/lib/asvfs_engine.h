/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the engine shared by all modules of one smbd process.
 *
 * One io_uring per process, created lazily on first use after fork and
 * bound to the event context it was first asked for (smbd's main one).
 * Operations are tevent_reqs.  What the kernel uses after submission (a
 * dup() of the fd or a fixed-file slot, a path, a getxattr's bounce
 * buffer) belongs to the engine, not to the request: when the caller frees
 * a request in flight (client cancel, disconnect, shutdown) the engine
 * adopts the orphan, asks the kernel to cancel it, and drops its result.
 * The one exception is a pread/pwrite buffer, the caller's own: freeing
 * such a request waits until the kernel is done with it.  Nothing the
 * caller owns is touched after the free returns.
 *
 * The engine does not depend on Samba: modules translate its results into
 * VFS ones, and it can be unit tested on a plain tevent loop.
 */
#ifndef ASVFS_ENGINE_H
#define ASVFS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <talloc.h>
#include <tevent.h>

enum asvfs_op_kind {
	ASVFS_OP_PREAD = 0,
	ASVFS_OP_PWRITE,
	ASVFS_OP_FSYNC,
	ASVFS_OP_OPENAT,
	ASVFS_OP_GETXATTR,
	ASVFS_OP_KIND_COUNT
};

struct asvfs_op_counters {
	uint64_t submitted;	/* handed to the kernel (resubmits included) */
	uint64_t completed;	/* completed to a caller, success or error */
	uint64_t short_io;	/* completions with fewer bytes than asked */
	uint64_t resubmitted;	/* continuations of short I/O */
	uint64_t cancelled;	/* orphaned by the caller while in flight */
	uint64_t fallback;	/* passed to the next module instead */
	uint64_t errors;	/* completed to a caller with an error */
};

struct asvfs_engine_stats {
	struct asvfs_op_counters op[ASVFS_OP_KIND_COUNT];
	uint64_t submit_calls;	/* io_uring_submit() calls (enters) */
	uint64_t reaps;		/* completion batches reaped */
	uint64_t submit_retries;	/* submissions the kernel refused,
					   retried later */
	uint64_t inflight;	/* operations the kernel still owns */
	uint64_t orphan_polls;	/* 1 ms turns waiting for a freed request's
				   buffer after the ring refused a wait */
	uint64_t slot_registrations;	/* files put in fixed slots */
	uint64_t data_dups;	/* data ops without a free fixed slot: their
				   dup's close drops the process's POSIX
				   locks */
	uint64_t always_async;	/* submissions sent straight to the
				   kernel's workers (IOSQE_ASYNC) */
};

/*
 * The settings of the process's engine: the first asvfs_engine_get() of
 * a process uses them, later ones get the same engine whatever they
 * pass.  Modules fill them from the [global] async_vfs:* options
 * (asvfs_conf_engine() in asvfs_module.h), so that every module and
 * share of a process asks for the same.
 */
struct asvfs_engine_config {
	unsigned entries;	/* submission queue size */
	bool sqpoll;		/* a kernel thread polls the queue */
	unsigned personalities;	/* cached credential sets (0: 64) */
	unsigned workers;	/* kernel workers for blocking ops (0: the
				   kernel's default, min(entries, 4 per
				   CPU)) */
};

struct asvfs_engine;

/*
 * The process's engine for ev.  Returns NULL with *err set when io_uring
 * cannot be used here (ENOSYS/EPERM from seccomp or
 * kernel.io_uring_disabled, ENOMEM from RLIMIT_MEMLOCK, ...), or with
 * *err = EXDEV when ev is not the event context the engine is bound to
 * (e.g. smbd's temporary one in smb_vfs_fsync_sync()): the caller then
 * uses the next module.  A setup failure is remembered for the life of the
 * process; *first_failure tells the caller to log it once.
 */
struct asvfs_engine *asvfs_engine_get(struct tevent_context *ev,
				      const struct asvfs_engine_config *config,
				      int *err, bool *first_failure);

/*
 * How many of the engine's blocking operations (opens, xattr reads,
 * reads and writes that wait for storage) the kernel runs at once; more
 * wait in the kernel's queue, where a caller cannot see them.  What the
 * kernel reported at setup, or its default where it cannot say.
 */
unsigned asvfs_engine_workers(const struct asvfs_engine *engine);

/* Whether the kernel implements the opcode (probed at setup). */
bool asvfs_engine_op_supported(struct asvfs_engine *engine, int opcode);

/* Whether the kernel implements what the engine needs for kind. */
bool asvfs_engine_supports(struct asvfs_engine *engine,
			   enum asvfs_op_kind kind);

/*
 * Whether a data op sent now gets a fixed-file slot.  Without one it
 * works on a dup() of the fd, whose close drops the process's POSIX
 * locks on the file (smbd force process locks = yes): a caller that can
 * pass the call on to someone else should.
 */
bool asvfs_engine_has_free_slot(const struct asvfs_engine *engine);

/*
 * A fixed-file slot holding fd's file for as long as the returned object
 * lives (talloc_free() it before closing fd): data I/O on fd then uses it
 * with no registration of its own, instead of registering and releasing
 * a slot per request (two syscalls).  NULL when no slot is free, fd
 * already has one, or without memory: data I/O then takes a slot per
 * request.  Once the engine is gone the object holds nothing.
 */
struct asvfs_file_slot;
struct asvfs_file_slot *asvfs_file_slot_get(TALLOC_CTX *mem_ctx,
					    struct asvfs_engine *engine,
					    int fd);
/* The fd it was taken for, or -1 once the engine is gone. */
int asvfs_file_slot_fd(const struct asvfs_file_slot *slot);

/*
 * Data I/O on the slot's file goes straight to the kernel's workers
 * (IOSQE_ASYNC) instead of first being tried without blocking.  For files
 * whose file system cannot do non-blocking I/O at all (FUSE, tmpfs, ZFS:
 * preadv2(RWF_NOWAIT) answers EOPNOTSUPP), where that first try always
 * fails and only costs the submitter a round through the kernel.
 */
void asvfs_file_slot_set_always_async(struct asvfs_file_slot *slot,
				      bool always_async);

/* Counters of this process (also counts fallbacks without an engine). */
const struct asvfs_engine_stats *asvfs_engine_stats(void);
void asvfs_engine_count_fallback(enum asvfs_op_kind kind);
const char *asvfs_op_kind_name(enum asvfs_op_kind kind);

/*
 * Tear the process's engine down now: cancel what is in flight and wait
 * (bounded) for the kernel to let go of its memory.  Used at exit and by
 * tests; a later asvfs_engine_get() starts a fresh one.
 */
void asvfs_engine_shutdown(void);

/*
 * For tests: the next n submissions fail with err as if the kernel had
 * refused them (EAGAIN: no memory for requests; EBUSY: completion queue
 * full).  The work stays queued and is retried.
 */
void asvfs_engine_refuse_submits(unsigned n, int err);

/*
 * Whether the engine answered *subreq at once with an error, before the
 * kernel saw it: no memory, no fd for its dup, the wrong event context,
 * or no personality for the caller's credentials.  Then *subreq is freed
 * and the caller takes the path it takes without an engine (the next
 * module, or smbd's synchronous one), so that a failure of our machinery
 * never becomes an answer smbd would not give.  False for NULL: that is
 * the caller's no-memory case.
 */
bool asvfs_engine_refused(struct tevent_req **subreq);

/*
 * pread/pwrite/fsync.  The result is the number of bytes (0 for fsync) or
 * -1 with *perrno set.  A short transfer is continued until done, EOF
 * (read) or an error; an error after progress returns the progress.
 * The kernel reads (pwrite) or fills (pread) buf itself, so buf must
 * live as long as the request; freeing the request in flight waits until
 * the kernel is done with buf.
 */
struct tevent_req *asvfs_pread_send(TALLOC_CTX *mem_ctx,
				    struct tevent_context *ev,
				    struct asvfs_engine *engine,
				    int fd, void *buf, size_t n,
				    off_t offset);
ssize_t asvfs_pread_recv(struct tevent_req *req, int *perrno);

struct tevent_req *asvfs_pwrite_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int fd, const void *buf, size_t n,
				     off_t offset);
ssize_t asvfs_pwrite_recv(struct tevent_req *req, int *perrno);

struct tevent_req *asvfs_fsync_send(TALLOC_CTX *mem_ctx,
				    struct tevent_context *ev,
				    struct asvfs_engine *engine, int fd);
int asvfs_fsync_recv(struct tevent_req *req, int *perrno);

/*
 * openat(2) relative to dirfd (or AT_FDCWD), with the credentials of the
 * calling thread at the time of the call: they are captured as an
 * io_uring personality, so the open never runs with the ring creator's or
 * the completion's identity.  Returns the new fd, or -1 with *perrno.  If
 * the caller frees the request, an fd opened meanwhile is closed.
 */
struct tevent_req *asvfs_openat_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int dirfd, const char *path, int flags,
				     mode_t mode);
int asvfs_openat_recv(struct tevent_req *req, int *perrno);

/*
 * Reopen the object behind fd (an O_PATH fd is fine) as
 * open("/proc/self/fd/<our dup>", flags, mode) with the calling thread's
 * credentials, as smbd reopens a pathref fd.  The dup keeps the object
 * alive until completion, so the caller may close fd at once.  Returns
 * the new fd like asvfs_openat_recv(), which is its receive function.
 */
struct tevent_req *asvfs_reopen_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int fd, int flags, mode_t mode);

/*
 * getxattr(2) of the object behind fd (an O_PATH fd is fine: the lookup
 * goes through /proc/self/fd/<our dup>, which resolves to that object and
 * follows no further symlink), with the calling thread's credentials as
 * for openat.  size 0 asks for the value's size only.  Returns the size or
 * -1 with *perrno (ERANGE: value larger than size; ENODATA: none).
 */
struct tevent_req *asvfs_getxattr_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       struct asvfs_engine *engine, int fd,
				       const char *name, void *value,
				       size_t size);
ssize_t asvfs_getxattr_recv(struct tevent_req *req, int *perrno);

/*
 * For a caller that must answer synchronously from work it started
 * earlier (a prefetch): hand what is queued to the kernel now instead of
 * at the next loop turn ...
 */
void asvfs_engine_flush(struct asvfs_engine *engine);

/*
 * For a caller about to give up on req, one of this engine's requests (a
 * timeout): take what the kernel has completed meanwhile, without
 * waiting, so that a result already in the completion queue is not taken
 * for a late one when the event loop lagged behind (tevent runs every
 * due timer before it looks at fds again).  True if req has completed;
 * its callback then comes from the event loop as usual.
 */
bool asvfs_engine_completed(struct asvfs_engine *engine,
			    struct tevent_req *req);

/*
 * ... and block until req, one of this engine's requests, has completed
 * (its result is then ready for the _recv).  Completions of other
 * requests reaped meanwhile are recorded; their callbacks are deferred to
 * the event loop, so nothing runs re-entrantly.  False if the ring
 * failed; req is then still in flight.
 */
bool asvfs_engine_wait(struct asvfs_engine *engine, struct tevent_req *req);

struct asvfs_personality_stats;
const struct asvfs_personality_stats *asvfs_engine_personality_stats(
	struct asvfs_engine *engine);

#endif
