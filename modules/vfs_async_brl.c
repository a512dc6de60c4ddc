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
 * NT_STATUS_RETRY is not used: smbd waits for such a decision even for
 * non-blocking requests, and the module cannot tell which one it has.
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
#include "asvfs_smbconf.h"

static int vfs_async_brl_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_brl_debug_level

#define MODULE "async_brl"

struct async_brl_wait;

struct async_brl_config {
	bool wake;		/* async_brl:wake */
	unsigned max_waits;	/* async_brl:max waits, per process */
	struct async_brl_wait *waits;
	/* what this connection did, logged at level 5 on disconnect */
	uint64_t n_lock, n_granted, n_posix_conflict, n_wait, n_woken;
	uint64_t n_cancelled, n_fallback, n_errors, n_unlock;
};

/* Waits of all connections of this smbd process, to bound the threads. */
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

static void async_brl_parse_options(struct async_brl_config *config,
				    int snum)
{
	config->wake = asvfs_conf_bool(snum, MODULE, "wake", true);
	config->max_waits = asvfs_conf_uint(snum, MODULE, "max waits", 256,
					    1, 65536);
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

static void async_brl_disconnect(vfs_handle_struct *handle)
{
	const struct loadparm_substitution *lp_sub =
		loadparm_s3_global_substitution();
	struct async_brl_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_brl_config,
				goto next);
	async_brl_end_waits(config, NULL);
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
	char path[64];
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
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, (flags & O_ACCMODE) | O_CLOEXEC | O_NOCTTY |
			  O_NONBLOCK);
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
		 * "smbd:force process locks": closing any descriptor of
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
		static bool logged;
		int lvl = logged ? DBGLVL_DEBUG : DBGLVL_WARNING;

		logged = true;
		DBG_PREFIX(lvl, (MODULE ": no lock waiting thread (%s): "
				 "smbd polls for POSIX lock holders\n",
				 strerror(errno)));
		config->n_fallback++;
		TALLOC_FREE(w);
		return;
	}
	tevent_req_set_callback(w->subreq, async_brl_wait_done, w);
	config->n_wait++;
	DBG_DEBUG(MODULE ": waiting for %s %" PRIu64 "/%" PRIu64 " of %s\n",
		  write ? "write" : "read", plock->start, plock->size,
		  fsp_str_dbg(fsp));
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
	status = SMB_VFS_NEXT_BRL_LOCK_WINDOWS(handle, br_lck, plock);
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
next:
	return SMB_VFS_NEXT_CLOSE(handle, fsp);
}

static struct vfs_fn_pointers vfs_async_brl_fns = {
	.connect_fn = async_brl_connect,
	.disconnect_fn = async_brl_disconnect,
	.close_fn = async_brl_close,
	.brl_lock_windows_fn = async_brl_lock_windows,
	.brl_unlock_windows_fn = async_brl_unlock_windows,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	NTSTATUS status;

	status = smb_register_vfs(SMB_VFS_INTERFACE_VERSION, MODULE,
				  &vfs_async_brl_fns);
	if (!NT_STATUS_IS_OK(status)) {
		return status;
	}
	vfs_async_brl_debug_level = debug_add_class(MODULE);
	if (vfs_async_brl_debug_level == -1) {
		vfs_async_brl_debug_level = DBGC_VFS;
	}
	return NT_STATUS_OK;
}
