/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the engine shared by all modules of one smbd process.
 *
 * Life of an operation:
 *
 *   asvfs_pread_send()            caller's turn of the tevent loop
 *     op_start() -> engine->backlog, schedule the submit immediate
 *   engine_submit_handler()       next turn: every op queued meanwhile
 *     backlog -> SQEs -> one io_uring_submit() -> engine->inflight
 *   engine_reap_handler()         ring fd readable
 *     CQEs in batches -> op_complete() -> continue short I/O, or
 *     copy out and tevent_req_done()
 *
 * The caller may free its request at any point.  Before submission the op
 * just goes away; after it the op is orphaned: it stays on the inflight
 * list with its dup()ed fd (or fixed-file slot) and bounce buffer until
 * the kernel reports it, and an IORING_OP_ASYNC_CANCEL asks the kernel to
 * hurry.  A read or write uses the caller's buffer instead, so freeing
 * it waits for the kernel (engine_wait_orphan()).
 */
#include "asvfs_engine.h"
#include "asvfs_bufcache.h"
#include "asvfs_personality.h"
#include "asvfs_process.h"
#include "asvfs_procfd.h"
#include "asvfs_uring_probe.h"
#include "lib/util/dlinklist.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

#define ASVFS_REAP_BATCH 64
/* Fixed-file slots for data I/O in flight; past them ops dup the fd. */
#define ASVFS_FIXED_FILES 1024
#define ASVFS_SHUTDOWN_WAIT_MS 10000
#define ASVFS_SUBMIT_RETRY_USEC 1000

struct asvfs_op;

/*
 * What differs between the kinds of op, so that queueing, submission and
 * reaping never look at the kind (as each request of Samba's
 * vfs_io_uring.c carries its own completion function).
 */
struct asvfs_op_ops {
	int opcode;			/* probed before an op is asked for */
	bool data;			/* fd-based I/O: a fixed slot may do */
	bool retries;			/* EAGAIN/EINTR resubmitted, bounded */
	bool result_is_fd;		/* an orphan's result must be closed */
	void (*prep)(struct asvfs_op *op, struct io_uring_sqe *sqe);
	/* a result >= 0 for a caller who still waits */
	void (*complete)(struct asvfs_op *op, int32_t res);
};

struct asvfs_op {
	struct asvfs_op *prev, *next;
	struct asvfs_engine *engine;
	enum asvfs_op_kind kind;	/* the counters' index */
	const struct asvfs_op_ops *ops;
	struct tevent_req *req;		/* NULL once orphaned */
	int fd;				/* our dup(): valid until completion */
	int slot;			/* or the file in a fixed slot, or -1 */
	bool always_async;		/* IOSQE_ASYNC: the file's holder says
					   it cannot do non-blocking I/O */
	uint8_t *buf;			/* what the kernel reads or fills */
	bool buf_is_callers;		/* direct: buf is the caller's memory */
	bool *completed;		/* set when an orphan's CQE arrives */
	size_t len;
	size_t done;
	off_t offset;
	char *path;			/* openat, getxattr: owned by the op */
	char *name;			/* getxattr */
	int flags;
	mode_t mode;
	int personality;		/* 0: the ring creator's credentials */
	bool holds_personality;		/* until freed: the id must stay */
	struct asvfs_op **list;		/* the engine list it is on, or NULL */
	unsigned retries;		/* EAGAIN/EINTR in a row */
};

struct asvfs_engine {
	struct tevent_context *ev;
	pid_t pid;
	struct io_uring ring;
	struct tevent_fd *fde;
	struct tevent_immediate *submit_im;
	struct tevent_timer *retry_te;	/* a refused submission, again */
	bool submit_scheduled;
	bool sq_unsubmitted;		/* SQEs the kernel refused for now */
	struct asvfs_op *backlog;	/* waiting for a free SQE */
	struct asvfs_op *inflight;	/* owned by the kernel */
	struct asvfs_uring_support support;
	struct asvfs_personality_cache *personalities;
	struct asvfs_bufcache *buffers;
	unsigned *free_slots;		/* fixed-file slots, as a stack */
	unsigned n_free_slots;
	unsigned *slot_refs;		/* ops using a slot, +1 if held */
	struct asvfs_file_slot **held;	/* by fd: slots callers hold */
	unsigned n_held;		/* room in held */
	unsigned workers;		/* io-wq's bound for blocking work */
	void *ev_sentinel;		/* freed with ev: we must go first */
};

struct asvfs_file_slot {
	struct asvfs_engine *engine;	/* NULL once the engine is gone */
	int fd;
	int slot;
	bool always_async;		/* see asvfs_file_slot_set_always_async */
};

static struct asvfs_engine *the_engine;
static bool atexit_registered;	/* inherited across fork, as is atexit */
static int setup_errno;
static pid_t setup_errno_pid;
static struct asvfs_engine_stats stats;
static unsigned refused_submits;	/* asvfs_engine_refuse_submits() */
static int refused_submit_err;

/*
 * An op is on one list at a time: waiting for an SQE (backlog), owned by
 * the kernel (inflight), or none.
 */
static void op_move_to(struct asvfs_op *op, struct asvfs_op **list)
{
	if (op->list != NULL) {
		DLIST_REMOVE(*op->list, op);
	}
	op->list = list;
	if (list != NULL) {
		DLIST_ADD_END(*list, op);
	}
}

static bool op_in_kernel(const struct asvfs_op *op)
{
	return op->list == &op->engine->inflight;
}

const char *asvfs_op_kind_name(enum asvfs_op_kind kind)
{
	switch (kind) {
	case ASVFS_OP_PREAD:
		return "pread";
	case ASVFS_OP_PWRITE:
		return "pwrite";
	case ASVFS_OP_FSYNC:
		return "fsync";
	case ASVFS_OP_OPENAT:
		return "openat";
	case ASVFS_OP_GETXATTR:
		return "getxattr";
	case ASVFS_OP_KIND_COUNT:
		break;
	}
	return "?";
}

const struct asvfs_engine_stats *asvfs_engine_stats(void)
{
	return &stats;
}

void asvfs_engine_count_fallback(enum asvfs_op_kind kind)
{
	if (kind < ASVFS_OP_KIND_COUNT) {
		stats.op[kind].fallback++;
	}
}

bool asvfs_engine_op_supported(struct asvfs_engine *engine, int opcode)
{
	return asvfs_uring_op_supported(&engine->support, opcode);
}

static const struct asvfs_op_ops op_ops[ASVFS_OP_KIND_COUNT];

bool asvfs_engine_supports(struct asvfs_engine *engine,
			   enum asvfs_op_kind kind)
{
	if (kind >= ASVFS_OP_KIND_COUNT) {
		return false;
	}
	return asvfs_engine_op_supported(engine, op_ops[kind].opcode);
}

/* --- operations ------------------------------------------------------ */

/*
 * An op holds its personality id from capture until it is freed, so that
 * the cache never unregisters an id a queued, resubmitted or SQPOLL-read
 * SQE still names (a later registration may be given the same number).
 */
static void op_hold_personality(struct asvfs_op *op)
{
	if (op->personality != 0 && !op->holds_personality) {
		asvfs_personality_hold(op->engine->personalities,
				       op->personality);
		op->holds_personality = true;
	}
}

static void op_release_personality(struct asvfs_op *op)
{
	if (op->holds_personality) {
		asvfs_personality_release(op->engine->personalities,
					  op->personality);
		op->holds_personality = false;
	}
}

/* Path-based ops name their object through our dup's number instead. */
static bool op_is_data(enum asvfs_op_kind kind)
{
	return op_ops[kind].data;
}

/*
 * The kernel holds the file of a fixed slot from registration on, so the
 * caller may close or reuse its descriptor number, as with a dup().
 * Unlike a dup() it is let go without close(2): on FUSE every close sends
 * a FLUSH to the file system (a round trip per read there), and a close
 * drops the process's POSIX locks on the file.
 */
static int engine_register_slot(struct asvfs_engine *engine, int fd)
{
	unsigned slot;

	if (engine->n_free_slots == 0) {
		return -1;
	}
	slot = engine->free_slots[engine->n_free_slots - 1];
	if (io_uring_register_files_update(&engine->ring, slot, &fd, 1) != 1) {
		return -1;
	}
	engine->n_free_slots--;
	engine->slot_refs[slot] = 1;
	stats.slot_registrations++;
	return slot;
}

static void engine_unref_slot(struct asvfs_engine *engine, int slot)
{
	int none = -1;

	if (--engine->slot_refs[slot] > 0) {
		return;
	}
	/* a child of fork() must not touch its parent's ring */
	if (engine->pid == asvfs_process_id() &&
	    io_uring_register_files_update(&engine->ring, slot, &none,
					   1) == 1) {
		engine->free_slots[engine->n_free_slots++] = slot;
	}			/* else the slot stays taken: never reused */
}

/* The slot a caller holds for fd, taken by one more op; or a new one. */
static bool op_take_slot(struct asvfs_op *op, int fd)
{
	struct asvfs_engine *engine = op->engine;

	if (fd >= 0 && (unsigned)fd < engine->n_held &&
	    engine->held[fd] != NULL) {
		op->slot = engine->held[fd]->slot;
		op->always_async = engine->held[fd]->always_async;
		engine->slot_refs[op->slot]++;
		return true;
	}
	op->slot = engine_register_slot(engine, fd);
	return op->slot >= 0;
}

bool asvfs_engine_has_free_slot(const struct asvfs_engine *engine)
{
	return engine->n_free_slots > 0;
}

static void op_release_slot(struct asvfs_op *op)
{
	if (op->slot < 0) {
		return;
	}
	engine_unref_slot(op->engine, op->slot);
	op->slot = -1;
}

static int file_slot_destructor(struct asvfs_file_slot *h)
{
	struct asvfs_engine *engine = h->engine;

	if (engine == NULL) {
		return 0;
	}
	engine->held[h->fd] = NULL;
	engine_unref_slot(engine, h->slot);
	return 0;
}

static bool engine_grow_held(struct asvfs_engine *engine, int fd)
{
	struct asvfs_file_slot **held = NULL;
	unsigned n = MAX((unsigned)fd + 1, engine->n_held * 2);

	held = talloc_realloc(engine, engine->held, struct asvfs_file_slot *,
			      n);
	if (held == NULL) {
		return false;
	}
	memset(held + engine->n_held, 0,
	       (n - engine->n_held) * sizeof(*held));
	engine->held = held;
	engine->n_held = n;
	return true;
}

struct asvfs_file_slot *asvfs_file_slot_get(TALLOC_CTX *mem_ctx,
					    struct asvfs_engine *engine,
					    int fd)
{
	struct asvfs_file_slot *h = NULL;

	if (fd < 0 || engine->pid != asvfs_process_id() ||
	    ((unsigned)fd < engine->n_held && engine->held[fd] != NULL) ||
	    ((unsigned)fd >= engine->n_held && !engine_grow_held(engine, fd))) {
		return NULL;
	}
	h = talloc_zero(mem_ctx, struct asvfs_file_slot);
	if (h == NULL) {
		return NULL;
	}
	h->slot = engine_register_slot(engine, fd);
	if (h->slot < 0) {
		talloc_free(h);
		return NULL;
	}
	h->engine = engine;
	h->fd = fd;
	engine->held[fd] = h;
	talloc_set_destructor(h, file_slot_destructor);
	return h;
}

int asvfs_file_slot_fd(const struct asvfs_file_slot *h)
{
	return h->engine != NULL ? h->fd : -1;
}

void asvfs_file_slot_set_always_async(struct asvfs_file_slot *h,
				      bool always_async)
{
	h->always_async = always_async;
}

static void op_set_file(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	if (op->slot >= 0) {
		sqe->fd = op->slot;
		sqe->flags |= IOSQE_FIXED_FILE;
	}
	if (op->always_async) {
		sqe->flags |= IOSQE_ASYNC;
		stats.always_async++;
	}
}

struct asvfs_io_state {
	struct asvfs_op *op;
	struct asvfs_fd_guard *fd_guard;	/* openat: until received */
	void *user_buf;			/* getxattr: where the value goes */
	ssize_t result;
	int err;
};

static int op_destructor(struct asvfs_op *op)
{
	/*
	 * Freed under a live request only by a fork child's engine going
	 * away: the request must not point at us any more.
	 */
	if (op->req != NULL) {
		struct asvfs_io_state *state = tevent_req_data(
			op->req, struct asvfs_io_state);

		state->op = NULL;
		op->req = NULL;
	}
	if (op_in_kernel(op)) {
		stats.inflight--;
	}
	op_move_to(op, NULL);
	op_release_personality(op);
	/* Only ops the kernel is done with are ever freed (see drain). */
	if (!op->buf_is_callers) {
		asvfs_bufcache_put(op->engine->buffers, op->buf);
	}
	op->buf = NULL;
	if (op->fd >= 0) {
		close(op->fd);
		op->fd = -1;
	}
	op_release_slot(op);
	return 0;
}

static void op_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	op->ops->prep(op, sqe);
	op_set_file(op, sqe);
	sqe->personality = op->personality;
	io_uring_sqe_set_data(sqe, op);
}

static void engine_schedule_submit(struct asvfs_engine *engine);

static void op_start(struct asvfs_op *op)
{
	op_hold_personality(op);
	op_move_to(op, &op->engine->backlog);
	engine_schedule_submit(op->engine);
}

static unsigned engine_reap(struct asvfs_engine *engine);

/*
 * One turn of a blocking wait: hand over whatever is in the ring (the
 * cancel, or SQEs the kernel refused earlier, which a wait alone would
 * never submit), wait for a completion and reap.  False if the ring
 * failed.
 */
static bool engine_wait_turn(struct asvfs_engine *engine)
{
	int ret = io_uring_submit_and_wait(&engine->ring, 1);

	if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
		return false;
	}
	engine_reap(engine);
	return true;
}

/*
 * The ring refused the wait (say, its fd was closed under us).  The
 * kernel still posts completions to the mapped queue, and runs what it
 * owes this task whenever a syscall returns, so poll.  Without a bound:
 * giving up would let the kernel fill memory already reused, and a
 * synchronous read of the same file would block as long.
 */
static void engine_poll_orphan(struct asvfs_engine *engine,
			       const bool *completed)
{
	const struct timespec pause = { .tv_sec = 0, .tv_nsec = 1000000 };

	while (!*completed) {
		nanosleep(&pause, NULL);
		stats.orphan_polls++;
		engine_reap(engine);
	}
}

/*
 * The caller is freeing memory the kernel still reads or fills (a direct
 * pread/pwrite buffer): the free must not return before the kernel is
 * done.  smbd frees requests in flight only when a process shuts down
 * (assert_no_pending_aio() in close.c), so waiting here costs at most one
 * I/O's time at exit.  Other completions reaped meanwhile are handled
 * normally; their callbacks are deferred, so nothing runs re-entrantly.
 */
static void engine_wait_orphan(struct asvfs_engine *engine,
			       struct asvfs_op *op)
{
	bool completed = false;

	op->completed = &completed;
	while (!completed) {
		if (!engine_wait_turn(engine)) {
			engine_poll_orphan(engine, &completed);
		}
	}
}

/*
 * The caller freed its request.  Nothing of the caller's is referenced by
 * the op, so only the kernel's view matters: not submitted yet means we
 * can forget it; submitted means we wait for its completion.
 */
static void op_orphan(struct asvfs_op *op)
{
	struct asvfs_engine *engine = op->engine;
	struct io_uring_sqe *sqe = NULL;

	op->req = NULL;
	stats.op[op->kind].cancelled++;
	/*
	 * In a child of fork() the kernel side is the parent's: a cancel
	 * or a wait would go to the parent's ring and reap its completions.
	 */
	if (!op_in_kernel(op) || engine->pid != asvfs_process_id()) {
		talloc_free(op);	/* unlinks itself */
		return;
	}
	/* Best effort: regular file I/O may not be cancellable. */
	sqe = io_uring_get_sqe(&engine->ring);
	if (sqe != NULL) {
		io_uring_prep_cancel(sqe, op, 0);
		io_uring_sqe_set_data(sqe, NULL);
		engine_schedule_submit(engine);
	}
	if (op->buf_is_callers) {
		engine_wait_orphan(engine, op);
	}
}

/* --- tevent_req glue --------------------------------------------------- */

struct asvfs_fd_guard {
	int fd;
};

static void asvfs_io_cleanup(struct tevent_req *req,
			     enum tevent_req_state req_state)
{
	struct asvfs_io_state *state = tevent_req_data(
		req, struct asvfs_io_state);

	if (state->op != NULL) {
		state->op->req = NULL;
		op_orphan(state->op);
		state->op = NULL;
	}
}

/* Tell the waiting caller, and leave the op to the kernel as an orphan. */
static void op_fail_caller(struct asvfs_op *op, int err)
{
	struct tevent_req *req = op->req;
	struct asvfs_io_state *state = tevent_req_data(
		req, struct asvfs_io_state);

	stats.op[op->kind].completed++;
	stats.op[op->kind].errors++;
	state->op = NULL;
	op->req = NULL;
	tevent_req_error(req, err);
}

static void op_finish(struct asvfs_op *op, ssize_t result, int err)
{
	struct tevent_req *req = op->req;
	struct asvfs_io_state *state = tevent_req_data(
		req, struct asvfs_io_state);

	stats.op[op->kind].completed++;
	state->op = NULL;
	if (result < 0) {
		stats.op[op->kind].errors++;
		talloc_free(op);
		tevent_req_error(req, err);
		return;
	}
	state->result = result;
	talloc_free(op);
	tevent_req_done(req);
}

static int fd_guard_destructor(struct asvfs_fd_guard *guard)
{
	if (guard->fd != -1) {
		close(guard->fd);
	}
	return 0;
}

/*
 * An opened fd belongs to the request until its _recv: freed before that
 * (its callback is deferred, and a tree disconnect earlier in the same
 * loop turn can free it), the request closes the fd.
 */
static void op_guard_fd(struct asvfs_op *op, int fd)
{
	struct asvfs_io_state *state = tevent_req_data(
		op->req, struct asvfs_io_state);
	struct asvfs_fd_guard *guard = NULL;

	guard = talloc(state, struct asvfs_fd_guard);
	if (guard == NULL) {
		return;		/* the fd stays the caller's to close */
	}
	guard->fd = fd;
	talloc_set_destructor(guard, fd_guard_destructor);
	state->fd_guard = guard;
}

/* Consecutive EAGAIN/EINTR answers after which the error is reported. */
#define ASVFS_MAX_RETRIES 16

/*
 * Whether an EAGAIN or EINTR is tried again.  An open never is: smbd
 * opens with O_NONBLOCK so that an open breaking a kernel oplock or lease
 * fails with EWOULDBLOCK, which open_file_ntcreate() answers by polling
 * (EINTR by a retry later); resubmitting would spin until the lease
 * holder gives in.  Other ops are, a bounded number of times in a row.
 */
static bool op_may_retry(struct asvfs_op *op)
{
	return op->ops->retries && op->retries++ < ASVFS_MAX_RETRIES;
}

/*
 * A completion for a request someone still waits for: errors and
 * retries are the same for every kind, a result is the kind's own.
 */
static void op_complete(struct asvfs_op *op, int32_t res)
{
	if ((res == -EAGAIN || res == -EINTR) && op_may_retry(op)) {
		stats.op[op->kind].resubmitted++;
		op_start(op);
		return;
	}
	if (res < 0) {
		/* an error after progress returns the progress */
		if (op->done > 0) {
			op_finish(op, op->done, 0);
			return;
		}
		op_finish(op, -1, -res);
		return;
	}
	op->ops->complete(op, res);
}

/*
 * Reads and writes: a short transfer is continued where it stopped (the
 * re-entry goes through the backlog, never recursively into the kernel)
 * until done, EOF, or a write that makes no progress.
 */
static void op_rw_complete(struct asvfs_op *op, int32_t res)
{
	op->retries = 0;
	op->done += res;
	if (op->done >= op->len) {
		op_finish(op, op->done, 0);
		return;
	}
	stats.op[op->kind].short_io++;
	if (res == 0) {
		/* EOF on read; a write that makes no progress */
		if (op->kind == ASVFS_OP_PWRITE && op->done == 0) {
			op_finish(op, -1, ENOSPC);
			return;
		}
		op_finish(op, op->done, 0);
		return;
	}
	stats.op[op->kind].resubmitted++;
	op_start(op);
}

static void op_fsync_complete(struct asvfs_op *op, int32_t res)
{
	op_finish(op, 0, 0);
}

static void op_openat_complete(struct asvfs_op *op, int32_t res)
{
	op_guard_fd(op, res);
	op_finish(op, res, 0);		/* the new fd */
}

/* The value's size; the value itself into the caller's buffer. */
static void op_getxattr_complete(struct asvfs_op *op, int32_t res)
{
	struct asvfs_io_state *state = tevent_req_data(
		op->req, struct asvfs_io_state);

	if (res > 0 && op->len > 0) {
		memcpy(state->user_buf, op->buf, MIN((size_t)res, op->len));
	}
	op_finish(op, res, 0);
}

static void op_read_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	io_uring_prep_read(sqe, op->fd, op->buf + op->done,
			   op->len - op->done, op->offset + op->done);
}

static void op_write_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	io_uring_prep_write(sqe, op->fd, op->buf + op->done,
			    op->len - op->done, op->offset + op->done);
}

static void op_fsync_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	io_uring_prep_fsync(sqe, op->fd, 0);
}

static void op_openat_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	io_uring_prep_openat(sqe, op->fd, op->path, op->flags, op->mode);
}

static void op_getxattr_prep(struct asvfs_op *op, struct io_uring_sqe *sqe)
{
	io_uring_prep_getxattr(sqe, op->name, (char *)op->buf, op->path,
			       op->len);
}

/* Each kind's part; an open is never retried (see op_may_retry()). */
static const struct asvfs_op_ops op_ops[ASVFS_OP_KIND_COUNT] = {
	[ASVFS_OP_PREAD] = {
		.opcode = IORING_OP_READ, .data = true, .retries = true,
		.prep = op_read_prep, .complete = op_rw_complete,
	},
	[ASVFS_OP_PWRITE] = {
		.opcode = IORING_OP_WRITE, .data = true, .retries = true,
		.prep = op_write_prep, .complete = op_rw_complete,
	},
	[ASVFS_OP_FSYNC] = {
		.opcode = IORING_OP_FSYNC, .data = true, .retries = true,
		.prep = op_fsync_prep, .complete = op_fsync_complete,
	},
	[ASVFS_OP_OPENAT] = {
		.opcode = IORING_OP_OPENAT, .result_is_fd = true,
		.prep = op_openat_prep, .complete = op_openat_complete,
	},
	[ASVFS_OP_GETXATTR] = {
		.opcode = IORING_OP_GETXATTR, .retries = true,
		.prep = op_getxattr_prep, .complete = op_getxattr_complete,
	},
};

/* --- the ring on the event loop ---------------------------------------- */

/* io_uring_submit(), unless a test asked for refusals. */
static int engine_kernel_submit(struct asvfs_engine *engine)
{
	stats.submit_calls++;
	if (refused_submits > 0) {
		refused_submits--;
		return -refused_submit_err;
	}
	return io_uring_submit(&engine->ring);
}

void asvfs_engine_refuse_submits(unsigned n, int err)
{
	refused_submits = n;
	refused_submit_err = err;
}

static void engine_submit(struct asvfs_engine *engine);

static void engine_retry_handler(struct tevent_context *ev,
				 struct tevent_timer *te,
				 struct timeval now, void *private_data)
{
	struct asvfs_engine *engine = talloc_get_type_abort(
		private_data, struct asvfs_engine);

	engine->retry_te = NULL;
	engine_submit(engine);
}

/*
 * The kernel refused work for now (no memory for requests, a full
 * completion queue).  A reap retries it, but with nothing of ours in the
 * kernel no completion will come, so a timer retries it too.
 */
static void engine_schedule_retry(struct asvfs_engine *engine)
{
	if (engine->retry_te != NULL) {
		return;
	}
	engine->retry_te = tevent_add_timer(
		engine->ev, engine,
		tevent_timeval_current_ofs(0, ASVFS_SUBMIT_RETRY_USEC),
		engine_retry_handler, engine);
}

static void engine_submit(struct asvfs_engine *engine)
{
	struct io_uring_sqe *sqe = NULL;
	int ret;

	while (engine->backlog != NULL) {
		struct asvfs_op *op = engine->backlog;

		sqe = io_uring_get_sqe(&engine->ring);
		if (sqe == NULL) {
			/* The queue is full: hand it over, then go on. */
			engine_kernel_submit(engine);
			sqe = io_uring_get_sqe(&engine->ring);
			if (sqe == NULL) {
				break;	/* refused: retried below */
			}
		}
		op_prep(op, sqe);
		op_move_to(op, &engine->inflight);
		stats.inflight++;
		stats.op[op->kind].submitted++;
	}
	/*
	 * -EBUSY/-EAGAIN: the completion queue is full, or the kernel has
	 * no memory for requests.  The SQEs stay in the ring; retrying from
	 * an immediate here would starve the fd event that reaps.  Without
	 * SQPOLL the kernel also stops at an SQE it cannot set up; the ones
	 * after it stay too.
	 */
	engine->sq_unsubmitted = false;
	if (io_uring_sq_ready(&engine->ring) != 0) {
		ret = engine_kernel_submit(engine);
		engine->sq_unsubmitted =
			ret < 0 ||
			(!(engine->ring.flags & IORING_SETUP_SQPOLL) &&
			 io_uring_sq_ready(&engine->ring) != 0);
	}
	if (engine->sq_unsubmitted || engine->backlog != NULL) {
		stats.submit_retries++;
		engine_schedule_retry(engine);
	}
}

/*
 * Reaped completions free room in the completion queue and may queue
 * continuations: whatever waits to be submitted goes in the next turn.
 */
static void engine_reap_and_resubmit(struct asvfs_engine *engine)
{
	engine_reap(engine);
	if (engine->backlog != NULL || engine->sq_unsubmitted) {
		engine_schedule_submit(engine);
	}
}

static void engine_submit_handler(struct tevent_context *ev,
				  struct tevent_immediate *im,
				  void *private_data)
{
	struct asvfs_engine *engine = talloc_get_type_abort(
		private_data, struct asvfs_engine);

	engine->submit_scheduled = false;
	engine_submit(engine);
	/*
	 * What the kernel finished within the submit (a read from the page
	 * cache) is in the completion queue already: reap it in this turn.
	 * Waiting for the ring fd costs another epoll_wait() and loop turn
	 * per request (measured: two per 4 KiB read from ext4's page cache,
	 * the in-tree module one).
	 */
	if (io_uring_cq_ready(&engine->ring) != 0) {
		engine_reap_and_resubmit(engine);
	}
}

/*
 * Submission waits for the next loop turn so that everything prepared in
 * this one (a directory listing's fan-out, a compound request, short-I/O
 * continuations) goes to the kernel in one io_uring_enter().
 */
static void engine_schedule_submit(struct asvfs_engine *engine)
{
	if (engine->submit_scheduled) {
		return;
	}
	engine->submit_scheduled = true;
	tevent_schedule_immediate(engine->submit_im, engine->ev,
				  engine_submit_handler, engine);
}

static void engine_handle_cqe(struct asvfs_engine *engine,
			      struct asvfs_op *op, int32_t res)
{
	if (op == NULL) {
		return;		/* the completion of a cancel request */
	}
	op_move_to(op, NULL);
	stats.inflight--;
	if (op->req == NULL) {
		/* orphan: the result goes nowhere, an opened fd is closed */
		if (op->ops->result_is_fd && res >= 0) {
			close(res);
		}
		if (op->completed != NULL) {
			*op->completed = true;
		}
		talloc_free(op);
		return;
	}
	op_complete(op, res);
}

static unsigned engine_reap(struct asvfs_engine *engine)
{
	struct io_uring_cqe *cqes[ASVFS_REAP_BATCH];
	struct {
		struct asvfs_op *op;
		int32_t res;
	} done[ASVFS_REAP_BATCH];
	unsigned n, i, total = 0;

	/*
	 * Copy the batch out before handling it: handlers queue new work
	 * and complete tevent_reqs, which must not see a half-consumed CQ.
	 */
	do {
		n = io_uring_peek_batch_cqe(&engine->ring, cqes,
					    ASVFS_REAP_BATCH);
		for (i = 0; i < n; i++) {
			done[i].op = io_uring_cqe_get_data(cqes[i]);
			done[i].res = cqes[i]->res;
		}
		io_uring_cq_advance(&engine->ring, n);
		if (n > 0) {
			stats.reaps++;
		}
		for (i = 0; i < n; i++) {
			engine_handle_cqe(engine, done[i].op, done[i].res);
		}
		total += n;
	} while (n == ASVFS_REAP_BATCH);
	return total;
}

static void engine_reap_handler(struct tevent_context *ev,
				struct tevent_fd *fde, uint16_t flags,
				void *private_data)
{
	struct asvfs_engine *engine = talloc_get_type_abort(
		private_data, struct asvfs_engine);

	engine_reap_and_resubmit(engine);
}

/* --- life cycle -------------------------------------------------------- */

/*
 * Hand everything in flight back: callers still waiting get ECANCELED,
 * and we wait (bounded) until the kernel no longer owns any buffer.
 */
static void engine_drain(struct asvfs_engine *engine)
{
	struct asvfs_op *op = NULL;
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
	int waited_ms = 0;

	while (engine->backlog != NULL) {
		op = engine->backlog;
		if (op->req != NULL) {
			op_fail_caller(op, ECANCELED);
		}
		talloc_free(op);
	}
	for (op = engine->inflight; op != NULL; op = op->next) {
		struct io_uring_sqe *sqe = NULL;

		if (op->req != NULL) {
			op_fail_caller(op, ECANCELED);
		}
		sqe = io_uring_get_sqe(&engine->ring);
		if (sqe == NULL) {
			io_uring_submit(&engine->ring);
			sqe = io_uring_get_sqe(&engine->ring);
		}
		if (sqe != NULL) {
			io_uring_prep_cancel(sqe, op, 0);
			io_uring_sqe_set_data(sqe, NULL);
		}
	}
	io_uring_submit(&engine->ring);
	while (engine->inflight != NULL && waited_ms < ASVFS_SHUTDOWN_WAIT_MS) {
		struct io_uring_cqe *cqe = NULL;

		if (io_uring_wait_cqe_timeout(&engine->ring, &cqe, &ts) != 0) {
			waited_ms += 100;
		}
		engine_reap(engine);
	}
	/*
	 * What the kernel still owns after the wait must not be freed with
	 * the engine: leak it rather than let the kernel write into memory
	 * that has been reused.
	 */
	while (engine->inflight != NULL) {
		op = engine->inflight;
		op_move_to(op, NULL);
		talloc_set_destructor(op, NULL);
		talloc_steal(NULL, op);
	}
}

static int engine_destructor(struct asvfs_engine *engine)
{
	unsigned i;

	if (the_engine == engine) {
		the_engine = NULL;
	}
	if (engine->pid == asvfs_process_id()) {
		engine_drain(engine);
	}
	/*
	 * Left only in a child of fork(): the parent's ops, whose kernel
	 * side is the parent's.  Free them before the buffer cache they
	 * return their buffers to.
	 */
	while (engine->backlog != NULL) {
		talloc_free(engine->backlog);
	}
	while (engine->inflight != NULL) {
		talloc_free(engine->inflight);
	}
	/* The table goes with the ring: held slots are let go with it. */
	for (i = 0; i < engine->n_held; i++) {
		if (engine->held[i] != NULL) {
			engine->held[i]->engine = NULL;
		}
	}
	TALLOC_FREE(engine->buffers);
	TALLOC_FREE(engine->fde);
	TALLOC_FREE(engine->submit_im);
	TALLOC_FREE(engine->retry_te);
	if (engine->ev_sentinel != NULL) {
		talloc_set_destructor(engine->ev_sentinel, NULL);
		TALLOC_FREE(engine->ev_sentinel);
	}
	/*
	 * In a child of fork() this only drops our mapping and fd of the
	 * parent's ring; the parent's requests are untouched.
	 */
	io_uring_queue_exit(&engine->ring);
	return 0;
}

static int ev_sentinel_destructor(void *sentinel)
{
	struct asvfs_engine *engine = *(struct asvfs_engine **)sentinel;

	engine->ev_sentinel = NULL;
	talloc_free(engine);
	return 0;
}

void asvfs_engine_shutdown(void)
{
	TALLOC_FREE(the_engine);
}

/*
 * Path-based ops (getxattr, openat) always run on io_uring's kernel
 * workers (io-wq), as do reads and writes that would block; a ring gets
 * min(entries, 4 per CPU) of them by default for work on regular files.
 * On storage with a millisecond of latency per call that, not the
 * storage, bounds a listing's fan-out, and on storage with seconds per
 * open it bounds how many opens run at once: callers queue their own
 * work beyond asvfs_engine_workers().  Best effort (Linux 5.15): what
 * the kernel reports after the change is what the engine tells.
 */
static void engine_set_workers(struct asvfs_engine *engine,
			       const struct asvfs_engine_config *config,
			       unsigned sq_entries)
{
	unsigned int workers[2] = { config->workers, 0 };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);

	if (config->workers > 0) {
		(void)io_uring_register_iowq_max_workers(&engine->ring,
							 workers);
	}
	/* { 0, 0 } changes nothing and reads the limits in force */
	workers[0] = workers[1] = 0;
	if (io_uring_register_iowq_max_workers(&engine->ring, workers) == 0 &&
	    workers[0] > 0) {
		engine->workers = workers[0];
		return;
	}
	/* the kernel's own default, which it cannot tell */
	engine->workers = MIN(sq_entries, 4 * (unsigned)MAX(cpus, 1));
}

unsigned asvfs_engine_workers(const struct asvfs_engine *engine)
{
	return engine->workers;
}

/*
 * Kernels before 5.19 have no sparse registration, but take a table of
 * empty (-1) entries: without any table data I/O would dup the fd, and
 * closing the dup drops the process's POSIX locks.
 */
static int engine_register_empty_files(struct asvfs_engine *engine)
{
	int empty[ASVFS_FIXED_FILES];
	unsigned i;

	if (io_uring_register_files_sparse(&engine->ring,
					   ASVFS_FIXED_FILES) == 0) {
		return 0;
	}
	for (i = 0; i < ASVFS_FIXED_FILES; i++) {
		empty[i] = -1;
	}
	return io_uring_register_files(&engine->ring, empty,
				       ASVFS_FIXED_FILES);
}

/* Best effort: without a table, data I/O dups the fd. */
static void engine_set_fixed_files(struct asvfs_engine *engine)
{
	unsigned i;

	engine->free_slots = talloc_array(engine, unsigned,
					  ASVFS_FIXED_FILES);
	engine->slot_refs = talloc_zero_array(engine, unsigned,
					      ASVFS_FIXED_FILES);
	if (engine->free_slots == NULL || engine->slot_refs == NULL ||
	    engine_register_empty_files(engine) != 0) {
		TALLOC_FREE(engine->free_slots);
		TALLOC_FREE(engine->slot_refs);
		return;
	}
	/* Taken from the top: low slots first, as the kernel prefers. */
	for (i = 0; i < ASVFS_FIXED_FILES; i++) {
		engine->free_slots[i] = ASVFS_FIXED_FILES - 1 - i;
	}
	engine->n_free_slots = ASVFS_FIXED_FILES;
}

static struct asvfs_engine *engine_create(
	struct tevent_context *ev, const struct asvfs_engine_config *config,
	int *err)
{
	struct asvfs_engine *engine = NULL;
	struct io_uring_params params = { 0 };
	struct asvfs_engine **sentinel = NULL;
	int ret;

	engine = talloc_zero(NULL, struct asvfs_engine);
	if (engine == NULL) {
		*err = ENOMEM;
		return NULL;
	}
	if (config->sqpoll) {
		params.flags |= IORING_SETUP_SQPOLL;
		params.sq_thread_idle = 50;
	}
	ret = io_uring_queue_init_params(config->entries, &engine->ring,
					 &params);
	if (ret < 0) {
		talloc_free(engine);
		*err = -ret;
		return NULL;
	}
	engine->ev = ev;
	engine->pid = asvfs_process_id();
	talloc_set_destructor(engine, engine_destructor);
	engine_set_workers(engine, config, params.sq_entries);
	engine_set_fixed_files(engine);
	asvfs_uring_probe_ring(&engine->ring, &engine->support);
	engine->personalities = asvfs_personality_cache_new(
		engine, &engine->ring,
		config->personalities > 0 ? config->personalities : 64);
	/* Enough for a few requests in flight of smbd's largest (8 MiB). */
	engine->buffers = asvfs_bufcache_new(engine, 16, 64 * 1024 * 1024);
	engine->submit_im = tevent_create_immediate(engine);
	engine->fde = tevent_add_fd(ev, engine, engine->ring.ring_fd,
				    TEVENT_FD_READ, engine_reap_handler,
				    engine);
	sentinel = talloc(ev, struct asvfs_engine *);
	if (engine->submit_im == NULL || engine->fde == NULL ||
	    engine->personalities == NULL || engine->buffers == NULL ||
	    sentinel == NULL) {
		talloc_free(sentinel);
		talloc_free(engine);
		*err = ENOMEM;
		return NULL;
	}
	*sentinel = engine;
	engine->ev_sentinel = sentinel;
	talloc_set_destructor((void *)sentinel, ev_sentinel_destructor);
	return engine;
}

struct asvfs_engine *asvfs_engine_get(struct tevent_context *ev,
				      const struct asvfs_engine_config *config,
				      int *err, bool *first_failure)
{
	pid_t pid = asvfs_process_id();

	*first_failure = false;
	if (the_engine != NULL && the_engine->pid != pid) {
		/* Inherited across fork(): never use the parent's ring. */
		TALLOC_FREE(the_engine);
		memset(&stats, 0, sizeof(stats));
	}
	if (the_engine != NULL) {
		if (the_engine->ev != ev) {
			*err = EXDEV;
			return NULL;
		}
		return the_engine;
	}
	if (setup_errno != 0 && setup_errno_pid == pid) {
		*err = setup_errno;
		return NULL;
	}
	the_engine = engine_create(ev, config, err);
	if (the_engine != NULL && !atexit_registered) {
		/* Let the kernel finish with our buffers before exit. */
		atexit_registered = (atexit(asvfs_engine_shutdown) == 0);
	}
	if (the_engine == NULL) {
		setup_errno = *err;
		setup_errno_pid = pid;
		*first_failure = true;
	}
	return the_engine;
}

bool asvfs_engine_refused(struct tevent_req **subreq)
{
	if (*subreq == NULL || tevent_req_is_in_progress(*subreq)) {
		return false;
	}
	TALLOC_FREE(*subreq);
	return true;
}

/* --- the operations' send/recv ----------------------------------------- */

static struct tevent_req *asvfs_io_send(TALLOC_CTX *mem_ctx,
					struct tevent_context *ev,
					struct asvfs_engine *engine,
					enum asvfs_op_kind kind, int fd,
					size_t n, off_t offset)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;
	struct asvfs_op *op = NULL;

	if (kind >= ASVFS_OP_KIND_COUNT) {
		abort();	/* our own callers pass constants */
	}
	req = tevent_req_create(mem_ctx, &state, struct asvfs_io_state);
	if (req == NULL) {
		return NULL;
	}
	/* Completions never run inside the caller's stack. */
	tevent_req_defer_callback(req, ev);

	if (ev != engine->ev) {
		tevent_req_error(req, EXDEV);
		return tevent_req_post(req, ev);
	}
	op = talloc_zero(engine, struct asvfs_op);
	if (tevent_req_nomem(op, req)) {
		return tevent_req_post(req, ev);
	}
	op->fd = -1;
	op->slot = -1;
	talloc_set_destructor(op, op_destructor);
	op->engine = engine;
	op->kind = kind;
	op->ops = &op_ops[kind];
	op->len = n;
	op->offset = offset;
	if (n > 0) {
		op->buf = asvfs_bufcache_get(engine->buffers, op, n);
		if (tevent_req_nomem(op->buf, req)) {
			talloc_free(op);
			return tevent_req_post(req, ev);
		}
	}
	/* The kernel may use the fd after the caller closed its own. */
	if (!op_is_data(kind) || !op_take_slot(op, fd)) {
		op->fd = (fd == AT_FDCWD) ? AT_FDCWD :
			fcntl(fd, F_DUPFD_CLOEXEC, 0);
		stats.data_dups += op_is_data(kind) ? 1 : 0;
	}
	if (op->fd == -1 && op->slot == -1) {
		tevent_req_error(req, errno);
		talloc_free(op);
		return tevent_req_post(req, ev);
	}
	op->req = req;
	state->op = op;
	tevent_req_set_cleanup_fn(req, asvfs_io_cleanup);
	return req;
}

/*
 * Data I/O goes straight to and from the caller's buffer: no copy.  The
 * buffer stays valid because freeing the request in flight waits for the
 * kernel (engine_wait_orphan()).
 */
static void op_use_callers_buffer(struct asvfs_op *op, void *buf, size_t n)
{
	op->buf = buf;
	op->len = n;
	op->buf_is_callers = true;
}

/*
 * Every op runs with the credentials of the thread that asks for it,
 * never with root's or stale ones: capture them now.  The ring is
 * submitted later, from an immediate, under whatever identity smbd has
 * then (root after its log size check, another user after a waiter's
 * change_to_user), and with SQPOLL by the ring creator's thread.  For
 * data I/O that matters too: a write by a user clears set-id bits, is
 * charged to the user's quota and may not use reserved blocks; as root
 * it would keep, dodge and use them.
 */
static bool op_capture_caller(struct tevent_req *req,
			      struct asvfs_io_state *state)
{
	struct asvfs_op *op = state->op;
	int id = -ENOMEM;

	/* a path op without its path: the copy found no memory */
	if (op_is_data(op->kind) || op->path != NULL) {
		id = asvfs_personality_current(op->engine->personalities);
	}
	if (id < 0) {
		state->op = NULL;
		talloc_free(op);
		tevent_req_error(req, -id);
		return false;
	}
	op->personality = id;
	return true;
}

struct tevent_req *asvfs_pread_send(TALLOC_CTX *mem_ctx,
				    struct tevent_context *ev,
				    struct asvfs_engine *engine,
				    int fd, void *buf, size_t n,
				    off_t offset)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_PREAD, fd, 0,
			    offset);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	op_use_callers_buffer(state->op, buf, n);
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(state->op);
	return req;
}

struct tevent_req *asvfs_pwrite_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int fd, const void *buf, size_t n,
				     off_t offset)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_PWRITE, fd, 0,
			    offset);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	/* The kernel only reads it: no copy, and no one writes it meanwhile */
	op_use_callers_buffer(state->op, (void *)buf, n);
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(state->op);
	return req;
}

struct tevent_req *asvfs_fsync_send(TALLOC_CTX *mem_ctx,
				    struct tevent_context *ev,
				    struct asvfs_engine *engine, int fd)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_FSYNC, fd, 0, 0);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(state->op);
	return req;
}

static ssize_t asvfs_io_recv(struct tevent_req *req, int *perrno)
{
	struct asvfs_io_state *state = tevent_req_data(
		req, struct asvfs_io_state);
	enum tevent_req_state req_state;
	uint64_t err;
	ssize_t result = -1;

	if (tevent_req_is_error(req, &req_state, &err)) {
		*perrno = (req_state == TEVENT_REQ_USER_ERROR) ? (int)err :
			ENOMEM;
	} else {
		result = state->result;
		*perrno = 0;
	}
	tevent_req_received(req);
	return result;
}

ssize_t asvfs_pread_recv(struct tevent_req *req, int *perrno)
{
	return asvfs_io_recv(req, perrno);
}

ssize_t asvfs_pwrite_recv(struct tevent_req *req, int *perrno)
{
	return asvfs_io_recv(req, perrno);
}

int asvfs_fsync_recv(struct tevent_req *req, int *perrno)
{
	return asvfs_io_recv(req, perrno) == 0 ? 0 : -1;
}

struct tevent_req *asvfs_openat_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int dirfd, const char *path, int flags,
				     mode_t mode)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_OPENAT, dirfd, 0,
			    0);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	state->op->flags = flags;
	state->op->mode = mode;
	state->op->path = talloc_strdup(state->op, path);
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(state->op);
	return req;
}

/*
 * smbd opens an existing file by reopening its pathref fd through
 * /proc/self/fd/<n>, and closes that fd when the open is deferred: the
 * path names our dup, which keeps the object until completion.  The
 * magic link is the caller's path, so flags apply as smbd passes them.
 */
struct tevent_req *asvfs_reopen_send(TALLOC_CTX *mem_ctx,
				     struct tevent_context *ev,
				     struct asvfs_engine *engine,
				     int fd, int flags, mode_t mode)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;
	struct asvfs_op *op = NULL;
	struct asvfs_proc_fd_path proc;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_OPENAT, fd, 0, 0);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	op = state->op;
	op->flags = flags;
	op->mode = mode;
	op->path = talloc_strdup(op, asvfs_proc_fd_path(op->fd, &proc));
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(op);
	return req;
}

struct tevent_req *asvfs_getxattr_send(TALLOC_CTX *mem_ctx,
				       struct tevent_context *ev,
				       struct asvfs_engine *engine, int fd,
				       const char *name, void *value,
				       size_t size)
{
	struct tevent_req *req = NULL;
	struct asvfs_io_state *state = NULL;
	struct asvfs_op *op = NULL;
	struct asvfs_proc_fd_path proc;

	req = asvfs_io_send(mem_ctx, ev, engine, ASVFS_OP_GETXATTR, fd, size,
			    0);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	state = tevent_req_data(req, struct asvfs_io_state);
	state->user_buf = value;
	op = state->op;
	op->name = talloc_strdup(op, name);
	if (op->name != NULL) {
		/* our dup keeps the object; its number names it */
		op->path = talloc_strdup(op, asvfs_proc_fd_path(op->fd, &proc));
	}
	if (!op_capture_caller(req, state)) {
		return tevent_req_post(req, ev);
	}
	op_start(op);
	return req;
}

ssize_t asvfs_getxattr_recv(struct tevent_req *req, int *perrno)
{
	return asvfs_io_recv(req, perrno);
}

int asvfs_openat_recv(struct tevent_req *req, int *perrno)
{
	struct asvfs_io_state *state = tevent_req_data(
		req, struct asvfs_io_state);

	if (state->fd_guard != NULL) {
		state->fd_guard->fd = -1;	/* the caller's now */
	}
	return (int)asvfs_io_recv(req, perrno);
}

const struct asvfs_personality_stats *asvfs_engine_personality_stats(
	struct asvfs_engine *engine)
{
	return asvfs_personality_stats(engine->personalities);
}

/* --- synchronous callers ------------------------------------------------ */

void asvfs_engine_flush(struct asvfs_engine *engine)
{
	engine_submit(engine);
}

bool asvfs_engine_completed(struct asvfs_engine *engine,
			    struct tevent_req *req)
{
	if (engine->pid == asvfs_process_id()) {
		engine_reap(engine);
	}
	return !tevent_req_is_in_progress(req);
}

bool asvfs_engine_wait(struct asvfs_engine *engine, struct tevent_req *req)
{
	engine_submit(engine);
	while (tevent_req_is_in_progress(req)) {
		if (!engine_wait_turn(engine)) {
			return false;
		}
		if (engine->backlog != NULL || engine->sq_unsubmitted) {
			/* continuations queued by the reap */
			engine_submit(engine);
		}
	}
	return true;
}
