/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * vfs_async_brl: wake blocked byte-range locks when a POSIX holder lets go.
 *
 * With "posix locking = yes" smbd maps every Windows lock to a POSIX (OFD)
 * lock.  When a process outside smbd holds a conflicting POSIX lock,
 * brl_lock_windows_default() answers NT_STATUS_LOCK_NOT_GRANTED with the
 * blocker unknown (smblctx UINT64_MAX), and smbd_smb2_lock_try() then
 * retries a blocking request on a timer: 200 ms, 400 ms, ... up to 2 s
 * between tries ("lock spin time").  A client waits up to 2 s for a range
 * that was freed long before.
 *
 * This module keeps that answer exactly as it is, so non-blocking
 * requests still fail at once and blocking ones keep smbd's own watch and
 * timeout, and in addition starts a thread (modules/lib/asvfs_lockwait)
 * that blocks in F_OFD_SETLKW on a description of its own for the range.
 * When the range is free the thread drops it again at once and the event
 * loop calls share_mode_wakeup_waiters(): smbd's share_mode_watch_send()
 * of the waiting request fires and it retries now instead of at its next
 * poll.  The call chain, as read in Samba 4.17 source3/smbd/smb2_lock.c:
 *
 *   smbd_smb2_lock_try()
 *     smbd_do_locks_try() -> do_lock() -> brl_lock()
 *       -> SMB_VFS_BRL_LOCK_WINDOWS -> async_brl_lock_windows()
 *            NEXT: LOCK_NOT_GRANTED, smblctx UINT64_MAX
 *            start (or keep) the wait for brl_req_guid()
 *     !blocking: fail with LOCK_NOT_GRANTED; the request's memory, which
 *                owns our wait, is freed: the thread is interrupted
 *     blocking:  share_mode_watch_send(lck) + endtime (the poll)
 *   async_brl_wait_done() -> share_mode_wakeup_waiters(file_id)
 *     -> the watch fires -> smbd_smb2_lock_retry() -> smbd_smb2_lock_try()
 *
 * NT_STATUS_RETRY is not used for that: smbd waits for such a decision
 * even for non-blocking requests, and the module cannot tell which one it
 * has.  Only "async_brl:decision = async" (below) answers it, for as long
 * as a POSIX lock is being taken on a thread, bounded by a timer.
 *
 * The wait lives on brl_req_mem_ctx() (the request's lock array; freeing
 * it is smbd's only cancel signal: SMB2 cancel, close, logoff, the SMB1
 * timeout) and is found again on retries by brl_req_guid(), which
 * includes the channel.  A close drops the file's locks without
 * brl_unlock_windows, so close_fn ends the file's waits too, and a tree
 * disconnect all of its connection's.  The thread never holds a lock for
 * longer than fcntl(F_UNLCK) takes and its description is closed when the
 * wait ends: the POSIX locks in the kernel stay exactly the ones
 * posix.c took for smbd.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#include "includes.h"
#include "system/filesys.h"
#include "smbd/smbd.h"
#include "smbd/globals.h"
#include "locking/share_mode_lock.h"
#include "../librpc/gen_ndr/misc.h"

#include "asvfs_lockwait.h"
#include "asvfs_module.h"
#include "asvfs_procfd.h"
#include "asvfs_samba_version.h"

static int vfs_async_brl_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_brl_debug_level

#define MODULE "async_brl"

struct async_brl_wait;
struct async_brl_decision;
struct async_brl_call;

/* Where a lock's POSIX fcntl() runs: async_brl:decision. */
enum async_brl_decision_mode {
	ASYNC_BRL_DECIDE_SYNC,		/* smbd's own, on the event loop */
	ASYNC_BRL_DECIDE_ASYNC,		/* on a thread; smbd retries */
};

struct async_brl_config {
	bool wake;		/* async_brl:wake */
	unsigned max_waits;	/* async_brl:max waits, per process */
	enum async_brl_decision_mode decision;	/* async_brl:decision */
	uint32_t decision_timeout_msec;	/* async_brl:decision timeout */
	struct async_brl_wait *waits;
	struct async_brl_decision *decisions;
	struct async_brl_call *call;	/* the brl_lock_windows running now */
	/* what this connection did, logged at level 5 on disconnect */
	uint64_t n_lock, n_granted, n_posix_conflict, n_wait, n_woken;
	uint64_t n_cancelled, n_fallback, n_errors, n_unlock;
	uint64_t n_decisions, n_decision_timeouts, n_guarded, n_undone;
};

/*
 * Threads (waits and decisions) of all connections of this smbd process,
 * to bound them.
 */
static unsigned async_brl_waits_in_process;

/* One waiting thread for one lock request, on the request's memory. */
struct async_brl_wait {
	struct async_brl_wait *prev, *next;
	struct async_brl_config *config;
	struct GUID req_guid;
	struct files_struct *fsp;
	struct file_id id;
	struct tevent_req *subreq;	/* NULL once the range was free */
};

/* --- options ------------------------------------------------------------ */

static const struct asvfs_enum_value async_brl_decision_modes[] = {
	{ "sync", ASYNC_BRL_DECIDE_SYNC },
	{ "async", ASYNC_BRL_DECIDE_ASYNC },
	{ NULL, 0 },
};

static void async_brl_parse_options(struct async_brl_config *config,
				    int snum)
{
	config->wake = asvfs_conf_bool(snum, MODULE, "wake", true);
	config->max_waits = asvfs_conf_uint(snum, MODULE, "max waits", 256,
					    1, 65536);
	config->decision = asvfs_conf_enum(snum, MODULE, "decision",
					   async_brl_decision_modes,
					   ASYNC_BRL_DECIDE_SYNC);
	config->decision_timeout_msec = asvfs_conf_uint(
		snum, MODULE, "decision timeout", 5000, 1, 600000);
}

/*
 * The POSIX lock is taken by the next module's lock_fn: only smbd's own
 * (vfs_default) is known to be one fcntl() on the fd that a thread can
 * make just as well.
 */
static bool async_brl_takes_locks(const struct vfs_fn_pointers *fns)
{
	return fns->lock_fn != NULL;
}

static int async_brl_connect(vfs_handle_struct *handle,
			     const char *service, const char *user)
{
	struct async_brl_config *config = NULL;
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	config = talloc_zero(handle->conn, struct async_brl_config);
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	async_brl_parse_options(config, SNUM(handle->conn));
	if (config->decision == ASYNC_BRL_DECIDE_ASYNC &&
	    asvfs_lower_module(handle, async_brl_takes_locks)) {
		DBG_WARNING(MODULE ": [%s]: a module after " MODULE " takes "
			    "POSIX locks itself; lock decisions stay "
			    "synchronous\n", service);
		config->decision = ASYNC_BRL_DECIDE_SYNC;
	}
	if (config->wake && !lp_posix_locking(handle->conn->params)) {
		DBG_INFO(MODULE ": [%s]: posix locking = no, nothing to "
			 "wait for\n", service);
	}
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct async_brl_config, return -1);
	return 0;
}

static void async_brl_end_waits(struct async_brl_config *config,
				const struct files_struct *fsp);
static void async_brl_end_decisions(struct async_brl_config *config,
				    const struct files_struct *fsp);

static void async_brl_disconnect(vfs_handle_struct *handle)
{
	const struct loadparm_substitution *lp_sub =
		loadparm_s3_global_substitution();
	struct async_brl_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				goto next);
	async_brl_end_waits(config, NULL);
	async_brl_end_decisions(config, NULL);
	DBG_INFO(MODULE " counters decision: share=%s decisions=%" PRIu64
		 " timeouts=%" PRIu64 " guarded=%" PRIu64 " undone=%" PRIu64
		 "\n", lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		 config->n_decisions, config->n_decision_timeouts,
		 config->n_guarded, config->n_undone);
	DBG_INFO(MODULE " counters lock: share=%s calls=%" PRIu64
		 " granted=%" PRIu64 " posix_conflict=%" PRIu64
		 " waits=%" PRIu64 " woken=%" PRIu64 " cancelled=%" PRIu64
		 " fallback=%" PRIu64 " errors=%" PRIu64 " unlocks=%" PRIu64
		 "\n", lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		 config->n_lock, config->n_granted, config->n_posix_conflict,
		 config->n_wait, config->n_woken, config->n_cancelled,
		 config->n_fallback, config->n_errors, config->n_unlock);
next:
	SMB_VFS_NEXT_DISCONNECT(handle);
}

/* --- the wait ----------------------------------------------------------- */

static int async_brl_wait_destructor(struct async_brl_wait *w)
{
	if (w->subreq != NULL) {
		/* freed while waiting: the free interrupts and joins */
		w->config->n_cancelled++;
		TALLOC_FREE(w->subreq);
	}
	DLIST_REMOVE(w->config->waits, w);
	async_brl_waits_in_process--;
	return 0;
}

/* fsp NULL: every wait of the connection (tree disconnect). */
static void async_brl_end_waits(struct async_brl_config *config,
				const struct files_struct *fsp)
{
	struct async_brl_wait *w = NULL, *next = NULL;

	for (w = config->waits; w != NULL; w = next) {
		next = w->next;
		if (fsp == NULL || w->fsp == fsp) {
			/*
			 * The wait's memory belongs to smbd's request; only
			 * what we own goes, the request frees the rest.
			 */
			talloc_set_destructor(w, NULL);
			async_brl_wait_destructor(w);
			w->config = NULL;
			w->fsp = NULL;
		}
	}
}

static struct async_brl_wait *async_brl_find_wait(
	struct async_brl_config *config, const struct GUID *req_guid)
{
	struct async_brl_wait *w = NULL;

	for (w = config->waits; w != NULL; w = w->next) {
		/* 16 bytes without padding; GUID_equal lives in a lib we
		 * do not otherwise need */
		if (memcmp(&w->req_guid, req_guid, sizeof(*req_guid)) == 0) {
			return w;
		}
	}
	return NULL;
}

static void async_brl_wait_done(struct tevent_req *subreq)
{
	struct async_brl_wait *w = tevent_req_callback_data(
		subreq, struct async_brl_wait);
	NTSTATUS status;
	int err;

	err = asvfs_lockwait_recv(subreq);
	TALLOC_FREE(subreq);
	w->subreq = NULL;
	if (err != 0) {
		/* smbd's poll is still there: it decides without us */
		w->config->n_errors++;
		DBG_DEBUG(MODULE ": waiting on %s failed: %s\n",
			  fsp_str_dbg(w->fsp), strerror(err));
		return;
	}
	w->config->n_woken++;
	/*
	 * Synchronous: it takes the file's g_lock.  In 4.17 dbwrap_watch
	 * alerts only the first waiter of the record; if we queue behind
	 * another process's lock request watch, only g_lock's 5-10 s
	 * fallback wakes us (seen with two processes woken at once).
	 */
	status = share_mode_wakeup_waiters(w->id);
	if (!NT_STATUS_IS_OK(status)) {
		w->config->n_errors++;
		DBG_DEBUG(MODULE ": share_mode_wakeup_waiters(%s): "
			  "0x%08" PRIx32 "\n", fsp_str_dbg(w->fsp),
			  NT_STATUS_V(status));
	}
}

/*
 * The range posix.c tried to lock (see posix_lock_in_range()): offsets
 * above INT64_MAX cannot be mapped, counts are cut at INT64_MAX.
 */
static bool async_brl_posix_range(const struct lock_struct *plock,
				  off_t *start, off_t *len)
{
	uint64_t max = INT64_MAX;
	uint64_t count = plock->size;

	if (plock->size == 0 || plock->start > max) {
		return false;
	}
	if (count > max - plock->start) {
		count = max - plock->start;
	}
	if (count == 0) {
		return false;
	}
	*start = (off_t)plock->start;
	*len = (off_t)count;
	return true;
}

/*
 * A description of its own for the thread, opened now, on the main
 * thread and as the user this request runs as, with the access mode of
 * smbd's fd: the thread needs no credentials at all.
 */
static int async_brl_reopen(struct files_struct *fsp)
{
	struct asvfs_proc_fd_path path;
	int fd = fsp_get_io_fd(fsp);
	int flags;

	if (fd == -1) {
		errno = EBADF;
		return -1;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags == -1) {
		return -1;
	}
	return open(asvfs_proc_fd_path(fd, &path),
		    (flags & O_ACCMODE) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

static void async_brl_no_wait_thread(struct async_brl_config *config,
				     int err)
{
	ASVFS_LOG_ONCE(DBGLVL_WARNING, DBGLVL_DEBUG,
		       (MODULE ": no lock waiting thread (%s): smbd polls "
			"for POSIX lock holders\n", strerror(err)));
	config->n_fallback++;
}

static void async_brl_start_wait(vfs_handle_struct *handle,
				 struct async_brl_config *config,
				 struct byte_range_lock *br_lck,
				 const struct lock_struct *plock)
{
	TALLOC_CTX *req_mem_ctx = brl_req_mem_ctx(br_lck);
	const struct GUID *req_guid = brl_req_guid(br_lck);
	struct files_struct *fsp = brl_fsp(br_lck);
	struct async_brl_wait *w = NULL;
	bool write;
	off_t start, len;
	int fd;

	/*
	 * Without a request memory context brl_req_mem_ctx() is br_lck
	 * itself, freed on return: no request to wake later.
	 */
	if (req_mem_ctx == (TALLOC_CTX *)br_lck ||
	    !async_brl_posix_range(plock, &start, &len)) {
		return;
	}
	w = async_brl_find_wait(config, req_guid);
	if (w != NULL) {
		if (w->subreq != NULL) {
			return;		/* still waiting: smbd polled */
		}
		/* freed, then taken again before smbd's retry: wait again */
		TALLOC_FREE(w);
	}
	if (!fsp->fsp_flags.use_ofd_locks) {
		/*
		 * "smbd force process locks": closing any descriptor of
		 * the file would drop all of smbd's locks on it, so no
		 * description of our own may come and go.
		 */
		config->n_fallback++;
		return;
	}
	if (async_brl_waits_in_process >= config->max_waits) {
		config->n_fallback++;
		DBG_DEBUG(MODULE ": %u waits in this process: %s polls\n",
			  async_brl_waits_in_process, fsp_str_dbg(fsp));
		return;
	}
	w = talloc_zero(req_mem_ctx, struct async_brl_wait);
	if (w == NULL) {
		config->n_errors++;
		return;
	}
	*w = (struct async_brl_wait) {
		.config = config,
		.req_guid = *req_guid,
		.fsp = fsp,
		.id = fsp->file_id,
	};
	DLIST_ADD(config->waits, w);
	async_brl_waits_in_process++;
	talloc_set_destructor(w, async_brl_wait_destructor);

	/* as posix.c's map_posix_lock_type(): no write lock read-only */
	write = plock->lock_type == WRITE_LOCK && fsp->fsp_flags.can_write;
	fd = async_brl_reopen(fsp);
	if (fd == -1) {
		config->n_fallback++;
		DBG_DEBUG(MODULE ": reopening %s: %s: smbd polls\n",
			  fsp_str_dbg(fsp), strerror(errno));
		TALLOC_FREE(w);
		return;
	}
	w->subreq = asvfs_lockwait_send(w, handle->conn->sconn->ev_ctx, fd,
					write, start, len);
	if (w->subreq == NULL) {
		async_brl_no_wait_thread(config, ENOMEM);
		TALLOC_FREE(w);
		return;
	}
	if (!tevent_req_is_in_progress(w->subreq)) {
		/* refused at once: smbd's poll decides */
		async_brl_no_wait_thread(config,
					 asvfs_lockwait_recv(w->subreq));
		TALLOC_FREE(w->subreq);
		TALLOC_FREE(w);
		return;
	}
	tevent_req_set_callback(w->subreq, async_brl_wait_done, w);
	config->n_wait++;
	DBG_DEBUG(MODULE ": waiting for %s %" PRIu64 "/%" PRIu64 " of %s\n",
		  write ? "write" : "read", plock->start, plock->size,
		  fsp_str_dbg(fsp));
}

/* --- slow lock decisions: the POSIX lock taken on a thread --------------- */

/*
 * With "async_brl:decision = async" the one fcntl() that takes a Windows
 * lock's POSIX lock (posix.c, through SMB_VFS_LOCK) runs on a thread, for
 * file systems where it takes a network round trip.  The call chain:
 *
 *   async_brl_lock_windows()	config->call = this request
 *     NEXT -> brl_lock_windows_default() -> set_posix_lock_windows_flavour()
 *       -> SMB_VFS_LOCK -> async_brl_lock()
 *            no answer yet: start the thread, fail with EAGAIN
 *     NEXT gave LOCK_NOT_GRANTED: we answer NT_STATUS_RETRY, blocker 0
 *   the thread took the lock (or not): share_mode_wakeup_waiters()
 *   smbd retries -> the same chain -> async_brl_lock() hands the answer
 *     to posix.c, which books the lock as if it had taken it itself
 *
 * The thread locks through a dup() of smbd's fd: the lock belongs to
 * smbd's open file description, exactly as smbd's own fcntl() would.  A
 * lock taken that smbd does not end up booking (the request went away,
 * the answer came after async_brl:decision timeout, a Windows lock got
 * in the way on the retry) is unlocked again.  That is safe because
 * posix.c asked for a range that overlaps none of this process's locks
 * on the file, and while the decision is open, no other lock of the same
 * handle may be taken over it (they get NT_STATUS_RETRY too).
 *
 * smbd waits for a RETRY answer without a timeout, even for non-blocking
 * requests: the timer makes sure every request gets an answer in
 * bounded time.
 *
 * SMB1 remembers where a failed request blocked: smbd_smb1_do_locks_recv()
 * stores the offset of the range that gave the last failing answer
 * (RETRY included) in fsp->lock_failure_offset, and the handle's next
 * non-blocking lock that blocks on that offset waits "lock spin time"
 * and then fails FILE_LOCK_CONFLICT instead of LOCK_NOT_GRANTED at once
 * (smbd_smb1_do_locks_setup_timeout()).  Stock smbd decides each range
 * at once and moves on to the next; a request it leaves waiting blocks
 * on a range that conflicted.  A RETRY on range i of an SMB1 request that
 * is then cancelled, closed or timed out would record range i instead, a
 * range that did not conflict (raw.lock.async: cancel 2/2).  So in SMB1
 * only the request's last range is decided on a thread: its earlier
 * ranges are decided as smbd does, and a request that waits for the
 * thread and then fails has its last range recorded, the one stock smbd
 * would have failed on (had the thread's answer been a grant, stock
 * smbd would have granted the request and recorded nothing).  SMB2
 * keeps no such record (smbd_smb2_lock_try() ignores the blocker):
 * every range may go async there.
 */

enum async_brl_answer { ANSWER_PENDING, ANSWER_GRANTED, ANSWER_REFUSED };

struct async_brl_decision_ref;

/* Owned by the connection: it may outlive the request (see above). */
struct async_brl_decision {
	struct async_brl_decision *prev, *next;
	struct async_brl_config *config;
	struct async_brl_decision_ref *ref;	/* NULL: the request is gone */
	struct GUID req_guid;
	struct files_struct *fsp;
	struct file_id id;
	off_t start, len;
	int type;
	int fd;			/* a dup of smbd's fd, to undo with */
	struct tevent_req *subreq;	/* the thread, while it runs */
	struct tevent_timer *timer;
	enum async_brl_answer answer;
	int err;
	bool taken;		/* the kernel lock exists */
	bool consumed;		/* the answer went to posix.c (or away) */
	bool kept;		/* ... and posix.c booked the lock */
	bool guarding;		/* another request waits for our end */
};

/* On the request's memory: its end is the only cancel signal. */
struct async_brl_decision_ref {
	struct async_brl_decision *d;
};

/* One brl_lock_windows call of a request, on the stack. */
struct async_brl_call {
	const struct GUID *req_guid;
	TALLOC_CTX *req_mem_ctx;
	struct files_struct *fsp;
	struct async_brl_decision *d;
	bool first_done;	/* only posix.c's first range goes async */
	bool may_start;		/* this range may be decided on a thread */
	bool started;		/* a decision started in this call */
	bool guarded;		/* another request's open decision overlaps */
};

struct async_brl_wake {
	struct file_id id;
	struct tevent_immediate *im;
};

static void async_brl_wake_fn(struct tevent_context *ev,
			      struct tevent_immediate *im,
			      void *private_data)
{
	struct async_brl_wake *wake = talloc_get_type_abort(
		private_data, struct async_brl_wake);

	(void)share_mode_wakeup_waiters(wake->id);
	TALLOC_FREE(wake);
}

/*
 * Wake smbd's waiters on a file from the loop: our callers may run
 * inside smbd's locked section of that very file.
 */
static void async_brl_wake_later(struct async_brl_config *config,
				 struct tevent_context *ev,
				 struct file_id id)
{
	struct async_brl_wake *wake = talloc(config, struct async_brl_wake);

	if (wake == NULL) {
		return;
	}
	wake->id = id;
	wake->im = tevent_create_immediate(wake);
	if (wake->im == NULL) {
		TALLOC_FREE(wake);
		return;
	}
	tevent_schedule_immediate(wake->im, ev, async_brl_wake_fn, wake);
}

/* A lock the thread took that posix.c did not book goes again. */
static void async_brl_decision_undo(struct async_brl_decision *d)
{
	struct flock fl = {
		.l_type = F_UNLCK, .l_whence = SEEK_SET,
		.l_start = d->start, .l_len = d->len,
	};

	if (d->taken && !d->kept && d->fd != -1) {
		(void)fcntl(d->fd, F_OFD_SETLK, &fl);
		d->taken = false;
		d->config->n_undone++;
	}
}

static int async_brl_decision_destructor(struct async_brl_decision *d)
{
	if (d->subreq != NULL) {
		/*
		 * Only on close and disconnect: the free interrupts and
		 * joins the thread, which may have to wait for its fcntl().
		 */
		TALLOC_FREE(d->subreq);
		async_brl_waits_in_process--;
	}
	async_brl_decision_undo(d);
	if (d->fd != -1) {
		close(d->fd);
	}
	if (d->ref != NULL) {
		d->ref->d = NULL;
	}
	DLIST_REMOVE(d->config->decisions, d);
	if (d->guarding) {
		async_brl_wake_later(d->config, d->fsp->conn->sconn->ev_ctx,
				     d->id);
	}
	return 0;
}

static void async_brl_decision_maybe_free(struct async_brl_decision *d)
{
	if (d->subreq == NULL && (d->consumed || d->ref == NULL)) {
		TALLOC_FREE(d);
	}
}

static int async_brl_decision_ref_destructor(
	struct async_brl_decision_ref *ref)
{
	if (ref->d != NULL) {
		ref->d->ref = NULL;
		async_brl_decision_maybe_free(ref->d);
	}
	return 0;
}

static void async_brl_end_decisions(struct async_brl_config *config,
				    const struct files_struct *fsp)
{
	struct async_brl_decision *d = NULL, *next = NULL;

	for (d = config->decisions; d != NULL; d = next) {
		next = d->next;
		if (fsp == NULL || d->fsp == fsp) {
			TALLOC_FREE(d);
		}
	}
}

static struct async_brl_decision *async_brl_find_decision(
	struct async_brl_config *config, const struct GUID *req_guid,
	const struct files_struct *fsp)
{
	struct async_brl_decision *d = NULL;

	for (d = config->decisions; d != NULL; d = d->next) {
		/* a consumed one only guards its range until undone */
		if (d->fsp == fsp && d->ref != NULL && !d->consumed &&
		    memcmp(&d->req_guid, req_guid, sizeof(*req_guid)) == 0) {
			return d;
		}
	}
	return NULL;
}

static void async_brl_decision_answer(struct async_brl_decision *d,
				      enum async_brl_answer answer, int err)
{
	if (d->answer != ANSWER_PENDING) {
		return;
	}
	d->answer = answer;
	d->err = err;
	TALLOC_FREE(d->timer);
	async_brl_wake_later(d->config, d->fsp->conn->sconn->ev_ctx, d->id);
}

static void async_brl_decision_done(struct tevent_req *subreq)
{
	struct async_brl_decision *d = tevent_req_callback_data(
		subreq, struct async_brl_decision);
	int err;

	err = asvfs_lockwait_recv(subreq);
	TALLOC_FREE(subreq);
	d->subreq = NULL;
	async_brl_waits_in_process--;
	d->taken = (err == 0);
	async_brl_decision_answer(d, err == 0 ? ANSWER_GRANTED :
				  ANSWER_REFUSED, err);
	async_brl_decision_maybe_free(d);
}

static void async_brl_decision_timeout(struct tevent_context *ev,
				       struct tevent_timer *te,
				       struct timeval now, void *private_data)
{
	struct async_brl_decision *d = talloc_get_type_abort(
		private_data, struct async_brl_decision);

	d->timer = NULL;
	d->config->n_decision_timeouts++;
	DBG_INFO(MODULE ": no lock decision on %s within %" PRIu32 " ms: "
		 "not granted\n", fsp_str_dbg(d->fsp),
		 d->config->decision_timeout_msec);
	/* a late grant is undone when the thread comes back */
	async_brl_decision_answer(d, ANSWER_REFUSED, EAGAIN);
}

static bool async_brl_start_decision(vfs_handle_struct *handle,
				     struct async_brl_config *config,
				     struct async_brl_call *call,
				     off_t offset, off_t count, int type)
{
	struct tevent_context *ev = handle->conn->sconn->ev_ctx;
	struct files_struct *fsp = call->fsp;
	struct async_brl_decision *d = NULL;
	struct async_brl_decision_ref *ref = NULL;
	int fd = fsp_get_io_fd(fsp);
	int thread_fd;

	if (fd == -1) {
		return false;
	}
	if (async_brl_waits_in_process >= config->max_waits) {
		config->n_fallback++;
		return false;		/* smbd's own fcntl(), right now */
	}
	d = talloc_zero(config, struct async_brl_decision);
	ref = talloc_zero(call->req_mem_ctx, struct async_brl_decision_ref);
	if (d == NULL || ref == NULL) {
		TALLOC_FREE(d);
		TALLOC_FREE(ref);
		return false;
	}
	*d = (struct async_brl_decision) {
		.config = config, .ref = ref, .req_guid = *call->req_guid,
		.fsp = fsp, .id = fsp->file_id, .start = offset, .len = count,
		.type = type, .fd = fcntl(fd, F_DUPFD_CLOEXEC, 0),
	};
	ref->d = d;
	DLIST_ADD(config->decisions, d);
	talloc_set_destructor(d, async_brl_decision_destructor);
	talloc_set_destructor(ref, async_brl_decision_ref_destructor);

	d->timer = tevent_add_timer(
		ev, d, timeval_current_ofs_msec(config->decision_timeout_msec),
		async_brl_decision_timeout, d);
	thread_fd = d->fd == -1 ? -1 : fcntl(d->fd, F_DUPFD_CLOEXEC, 0);
	if (d->timer != NULL && thread_fd != -1) {
		d->subreq = asvfs_locktake_send(d, ev, thread_fd,
						type == F_WRLCK, offset, count);
	} else if (thread_fd != -1) {
		close(thread_fd);
	}
	if (d->subreq != NULL && !tevent_req_is_in_progress(d->subreq)) {
		TALLOC_FREE(d->subreq);	/* refused at once: no thread */
	}
	if (d->subreq == NULL) {
		/*
		 * No thread, nothing taken: smbd's own fcntl() decides.
		 * d first: its destructor detaches ref, whose own would
		 * free d otherwise.
		 */
		TALLOC_FREE(d);
		TALLOC_FREE(ref);
		return false;
	}
	tevent_req_set_callback(d->subreq, async_brl_decision_done, d);
	async_brl_waits_in_process++;
	call->d = d;
	config->n_decisions++;
	return true;
}

static bool async_brl_overlaps(const struct async_brl_decision *d,
			       off_t offset, off_t count)
{
	/* POSIX counts here are never 0: posix_lock_in_range() */
	return offset < d->start + d->len && d->start < offset + count;
}

/*
 * An open decision of another request on the same handle: its range is
 * in limbo (held in the kernel, not yet in brlock.tdb) until posix.c
 * books it or we undo it.  Returns the guarding decision.
 */
static struct async_brl_decision *async_brl_guard(
	struct async_brl_config *config, struct async_brl_call *call,
	const struct files_struct *fsp, off_t offset, off_t count)
{
	struct async_brl_decision *d = NULL;

	for (d = config->decisions; d != NULL; d = d->next) {
		/*
		 * The request's own answer is no guard, unless its thread
		 * is still out after the timeout: then a late grant would
		 * be undone over whatever smbd takes now.
		 */
		if (d->fsp != fsp ||
		    (call != NULL && d == call->d && d->subreq == NULL) ||
		    d->kept || !async_brl_overlaps(d, offset, count)) {
			continue;
		}
		if (d->subreq != NULL || d->taken) {
			return d;
		}
	}
	return NULL;
}

enum async_brl_route {
	ASYNC_BRL_NEXT,		/* smbd's own fcntl(), now */
	ASYNC_BRL_GUARDED,	/* another decision holds the range: EAGAIN */
	ASYNC_BRL_ANSWER,	/* the thread's answer, as if fcntl() said it */
	ASYNC_BRL_THREAD,	/* a thread takes the lock (a decision) */
};

/*
 * Where a lock_fn call goes: the one place it is decided.  *pcall is
 * the brl_lock_windows running now on fsp, if any; *pd the guarding
 * decision (ASYNC_BRL_GUARDED) or the answered one (ASYNC_BRL_ANSWER).
 */
static enum async_brl_route async_brl_route(struct async_brl_config *config,
					    files_struct *fsp, int op,
					    off_t offset, off_t count,
					    int type,
					    struct async_brl_call **pcall,
					    struct async_brl_decision **pd)
{
	struct async_brl_call *call = config->call;
	struct async_brl_decision *d = NULL;
	bool first;

	/* async_brl:decision = sync, a lock test, or an unlock. */
	if (config->decision != ASYNC_BRL_DECIDE_ASYNC || op != F_SETLK ||
	    type == F_UNLCK) {
		return ASYNC_BRL_NEXT;
	}
	if (call != NULL && call->fsp != fsp) {
		call = NULL;
	}
	*pcall = call;
	/* Another request's decision holds the range in limbo. */
	*pd = async_brl_guard(config, call, fsp, offset, count);
	if (*pd != NULL) {
		return ASYNC_BRL_GUARDED;
	}
	/* Not inside our brl_lock_windows (say, posix.c's own calls). */
	if (call == NULL) {
		return ASYNC_BRL_NEXT;
	}
	d = call->d;
	/* The thread answered for this very range. */
	if (d != NULL && !d->consumed && d->answer != ANSWER_PENDING &&
	    d->start == offset && d->len == count && d->type == type) {
		*pd = d;
		return ASYNC_BRL_ANSWER;
	}
	if (d != NULL && !d->consumed && d->answer != ANSWER_PENDING) {
		/*
		 * posix.c asks for another range than last time (the
		 * handle's other locks changed): drop the old answer before
		 * smbd's own fcntl() may overlap it.
		 */
		d->consumed = true;
		async_brl_decision_undo(d);
	}
	first = !call->first_done;
	call->first_done = true;
	/* Only the first range posix.c asks for in this call. */
	if (!first) {
		return ASYNC_BRL_NEXT;
	}
	/* The request had its decision: smbd decides the rest itself. */
	if (d != NULL) {
		return ASYNC_BRL_NEXT;
	}
	/* SMB1: only the last range of the request (see there). */
	if (!call->may_start) {
		return ASYNC_BRL_NEXT;
	}
	/* "smbd force process locks": no description of our own. */
	if (!fsp->fsp_flags.use_ofd_locks) {
		return ASYNC_BRL_NEXT;
	}
	return ASYNC_BRL_THREAD;
}

static bool async_brl_lock(vfs_handle_struct *handle, files_struct *fsp,
			   int op, off_t offset, off_t count, int type)
{
	struct async_brl_config *config = NULL;
	struct async_brl_call *call = NULL;
	struct async_brl_decision *d = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				goto next);
	switch (async_brl_route(config, fsp, op, offset, count, type, &call,
				&d)) {
	case ASYNC_BRL_NEXT:
		goto next;
	case ASYNC_BRL_GUARDED:
		config->n_guarded++;
		/*
		 * Wait (RETRY) only for an answer that its timer bounds; a
		 * thread still stuck after its timeout is a POSIX holder
		 * like any other: not granted.
		 */
		if (call != NULL && d->answer == ANSWER_PENDING) {
			call->guarded = true;
			d->guarding = true;
		}
		errno = EAGAIN;
		return false;
	case ASYNC_BRL_ANSWER:
		d->consumed = true;
		call->first_done = true;
		if (d->answer == ANSWER_GRANTED) {
			d->kept = true;
			return true;
		}
		errno = d->err;
		return false;
	case ASYNC_BRL_THREAD:
		break;
	}
	if (!async_brl_start_decision(handle, config, call, offset, count,
				      type)) {
		goto next;
	}
	call->started = true;
	errno = EAGAIN;
	return false;
next:
	return SMB_VFS_NEXT_LOCK(handle, fsp, op, offset, count, type);
}

/*
 * Whether the range of this call may be decided on a thread: in SMB1
 * only the last range of the request (see "SMB1 remembers" above).
 * smbd_do_locks_try() passes the request's lock array as the memory
 * context and each element's own req_guid.
 */
static bool async_brl_may_start(const struct async_brl_call *call)
{
	const struct smbd_lock_element *locks = NULL;
	size_t num_locks;

	if (asvfs_using_smb2(call->fsp->conn->sconn)) {
		return true;
	}
	locks = talloc_get_type(call->req_mem_ctx, struct smbd_lock_element);
	if (locks == NULL) {
		return false;	/* a caller we do not know: decide at once */
	}
	num_locks = talloc_array_length(locks);
	return num_locks > 0 &&
	       memcmp(&locks[num_locks - 1].req_guid, call->req_guid,
		      sizeof(*call->req_guid)) == 0;
}

/* brl_lock_windows with the POSIX lock decided on a thread (see above). */
static NTSTATUS async_brl_lock_windows_decide(
	struct vfs_handle_struct *handle, struct async_brl_config *config,
	struct byte_range_lock *br_lck, struct lock_struct *plock)
{
	struct async_brl_call call = {
		.req_guid = brl_req_guid(br_lck),
		.req_mem_ctx = brl_req_mem_ctx(br_lck),
		.fsp = brl_fsp(br_lck),
	};
	NTSTATUS status;

	call.may_start = async_brl_may_start(&call);

	/*
	 * Even while our thread waits for an outside holder, every retry
	 * is decided anew: the thread waits for the whole Windows range on
	 * a description of its own, so smbd's own locks of the same handle
	 * (which posix.c leaves out of the request) can keep it waiting
	 * after the outside holder has let go.
	 */
	call.d = async_brl_find_decision(config, call.req_guid, call.fsp);
	if (call.d != NULL && call.d->answer == ANSWER_PENDING) {
		/* woken by something else: still no answer */
		plock->context.smblctx = 0;
		return NT_STATUS_RETRY;
	}
	config->call = &call;
	status = SMB_VFS_NEXT_BRL_LOCK_WINDOWS(handle, br_lck, plock);
	config->call = NULL;

	if (call.started || call.guarded) {
		/*
		 * Blocker 0: we wake the request with
		 * share_mode_wakeup_waiters(), no timer needed.
		 */
		plock->context.smblctx = 0;
		return NT_STATUS_RETRY;
	}
	if (call.d != NULL) {
		/* answered (or not needed: a Windows lock got in the way) */
		call.d->consumed = true;
		async_brl_decision_maybe_free(call.d);
	}
	return status;
}

static NTSTATUS async_brl_lock_windows(struct vfs_handle_struct *handle,
				       struct byte_range_lock *br_lck,
				       struct lock_struct *plock)
{
	struct async_brl_config *config = NULL;
	struct async_brl_wait *w = NULL;
	NTSTATUS status;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				return NT_STATUS_INTERNAL_ERROR);
	config->n_lock++;
	if (config->decision != ASYNC_BRL_DECIDE_ASYNC ||
	    brl_req_mem_ctx(br_lck) == (TALLOC_CTX *)br_lck) {
		status = SMB_VFS_NEXT_BRL_LOCK_WINDOWS(handle, br_lck, plock);
	} else {
		status = async_brl_lock_windows_decide(handle, config, br_lck,
						       plock);
		if (NT_STATUS_EQUAL(status, NT_STATUS_RETRY)) {
			return status;
		}
	}
	if (!config->wake) {
		return status;
	}
	if (NT_STATUS_IS_OK(status)) {
		config->n_granted++;
		/* granted after a wait: the thread's work is over */
		w = async_brl_find_wait(config, brl_req_guid(br_lck));
		TALLOC_FREE(w);
		return status;
	}
	/* brl_lock_windows_default(): a POSIX holder, identity unknown */
	if (NT_STATUS_EQUAL(status, NT_STATUS_LOCK_NOT_GRANTED) &&
	    plock->context.smblctx == UINT64_MAX) {
		config->n_posix_conflict++;
		async_brl_start_wait(handle, config, br_lck, plock);
	}
	return status;
}

/*
 * An unlock wakes smbd's waiters by itself (brlock.tdb changes); nothing
 * of ours waits on it, since our threads only wait for holders outside
 * smbd.  Counted, so that the tests see the unlock passed through.
 */
static bool async_brl_unlock_windows(struct vfs_handle_struct *handle,
				     struct byte_range_lock *br_lck,
				     const struct lock_struct *plock)
{
	struct async_brl_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				return false);
	config->n_unlock++;
	return SMB_VFS_NEXT_BRL_UNLOCK_WINDOWS(handle, br_lck, plock);
}

/* A close drops the file's locks without brl_unlock_windows. */
static int async_brl_close(vfs_handle_struct *handle, files_struct *fsp)
{
	struct async_brl_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				goto next);
	async_brl_end_waits(config, fsp);
	async_brl_end_decisions(config, fsp);
next:
	return SMB_VFS_NEXT_CLOSE(handle, fsp);
}

static struct vfs_fn_pointers vfs_async_brl_fns = {
	.connect_fn = async_brl_connect,
	.disconnect_fn = async_brl_disconnect,
	.close_fn = async_brl_close,
	.lock_fn = async_brl_lock,
	.brl_lock_windows_fn = async_brl_lock_windows,
	.brl_unlock_windows_fn = async_brl_unlock_windows,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_brl_fns,
				     &vfs_async_brl_debug_level);
}
