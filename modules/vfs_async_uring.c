/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * vfs_async_uring: pread, pwrite and fsync through io_uring.
 *
 * Beyond Samba's in-tree vfs_io_uring: one ring per smbd process shared by
 * all shares and modules (the engine in modules/lib), submissions batched
 * per loop turn, requests freed in flight cancelled one by one instead of
 * tearing the ring down, short I/O continued, and a share that still
 * connects where io_uring is refused (seccomp, kernel.io_uring_disabled):
 * every call then goes to the next module.
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
#include "lib/util/tevent_unix.h"
#include "lib/util/sys_rw.h"
#include "smbprofile.h"

#include "asvfs_engine.h"
#include "asvfs_module.h"
#include "asvfs_uring_probe.h"
#include "asvfs_samba_version.h"

static int vfs_async_uring_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_uring_debug_level

#define MODULE "async_uring"

/* async_uring:always async */
enum async_uring_always_async {
	ASYNC_URING_ALWAYS_ASYNC_AUTO,
	ASYNC_URING_ALWAYS_ASYNC_YES,
	ASYNC_URING_ALWAYS_ASYNC_NO,
};

static const struct asvfs_enum_value async_uring_always_async_values[] = {
	{ "auto", ASYNC_URING_ALWAYS_ASYNC_AUTO },
	{ "yes", ASYNC_URING_ALWAYS_ASYNC_YES },
	{ "no", ASYNC_URING_ALWAYS_ASYNC_NO },
	{ NULL, 0 },
};

struct async_uring_config {
	struct asvfs_engine_config engine;
	enum async_uring_always_async always_async;
};

/*
 * For async_uring:fallback = no: an admin who wants to know that a share
 * runs without io_uring gets a refused connect and this line instead.
 */
static bool async_uring_usable(const char *service)
{
	struct asvfs_uring_support support;
	char desc[256];

	if (asvfs_uring_probe(&support) &&
	    asvfs_uring_supports_data_path(&support)) {
		return true;
	}
	DBG_ERR(MODULE ": refusing to connect [%s]: %s and "
		MODULE ":fallback = no\n", service,
		asvfs_uring_describe(&support, desc, sizeof(desc)));
	return false;
}

static int async_uring_connect(vfs_handle_struct *handle,
			       const char *service, const char *user)
{
	struct async_uring_config *config = NULL;
	int snum = SNUM(handle->conn);
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	config = talloc_zero(handle->conn, struct async_uring_config);
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	/*
	 * The ring is per process, its settings [global] options.  Nothing
	 * is set up here (connect runs as root, and before the first
	 * request we do not know the event context).
	 */
	asvfs_conf_engine(snum, &config->engine);
	config->always_async = asvfs_conf_enum(
		snum, MODULE, "always async", async_uring_always_async_values,
		ASYNC_URING_ALWAYS_ASYNC_AUTO);
	if (!asvfs_conf_bool(snum, MODULE, "fallback", true) &&
	    !async_uring_usable(service)) {
		TALLOC_FREE(config);
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOSYS;
		return -1;
	}
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct async_uring_config, return -1);
	return 0;
}

static void async_uring_log_counters(void)
{
	const struct asvfs_engine_stats *s = asvfs_engine_stats();
	int k;

	for (k = 0; k < ASVFS_OP_KIND_COUNT; k++) {
		const struct asvfs_op_counters *c = &s->op[k];

		DBG_INFO(MODULE " counters %s: submitted=%" PRIu64
			 " completed=%" PRIu64 " short=%" PRIu64
			 " resubmitted=%" PRIu64 " cancelled=%" PRIu64
			 " fallback=%" PRIu64 " errors=%" PRIu64 "\n",
			 asvfs_op_kind_name(k), c->submitted, c->completed,
			 c->short_io, c->resubmitted, c->cancelled,
			 c->fallback, c->errors);
	}
	DBG_INFO(MODULE " counters ring: submit_calls=%" PRIu64
		 " submit_retries=%" PRIu64 " reaps=%" PRIu64
		 " inflight=%" PRIu64 " slot_registrations=%" PRIu64
		 " data_dups=%" PRIu64 " always_async=%" PRIu64 "\n",
		 s->submit_calls, s->submit_retries, s->reaps, s->inflight,
		 s->slot_registrations, s->data_dups, s->always_async);
}

static void async_uring_disconnect(vfs_handle_struct *handle)
{
	async_uring_log_counters();
	SMB_VFS_NEXT_DISCONNECT(handle);
}

static bool async_uring_holds_slot(vfs_handle_struct *handle,
				   struct files_struct *fsp);

enum async_uring_route {
	ASYNC_URING_NEXT,	/* the next module */
	ASYNC_URING_RING,	/* the engine's io_uring */
};

/*
 * Where a pread, pwrite (at offset) or fsync goes: the one place it is
 * decided.  *engine is set for ASYNC_URING_RING.
 */
static enum async_uring_route async_uring_route(vfs_handle_struct *handle,
						struct tevent_context *ev,
						struct files_struct *fsp,
						enum asvfs_op_kind kind,
						off_t offset,
						struct asvfs_engine **engine)
{
	struct async_uring_config *config = NULL;
	unsigned flags = ASVFS_ENGINE_COUNT_FALLBACK;

	*engine = NULL;
	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_uring_config,
				return ASYNC_URING_NEXT);
	/*
	 * A POSIX-append open (Samba 4.22): the next module writes at the
	 * end of the file, as 4.22's aio_pthread does.
	 */
	if (kind == ASVFS_OP_PWRITE && ASVFS_PWRITE_IS_APPEND(offset)) {
		return ASYNC_URING_NEXT;
	}
	/*
	 * Without a free fixed-file slot only a file that holds one already
	 * may go to the ring: a dup's close would drop smbd's
	 * process-associated locks.
	 */
	if (!async_uring_holds_slot(handle, fsp)) {
		flags |= ASVFS_ENGINE_NEED_SLOT;
	}
	/*
	 * Another event context, io_uring refused, no opcode or no slot
	 * (counted as a fallback of the kind).
	 */
	*engine = asvfs_module_engine(handle, ev, MODULE, &config->engine,
				      kind, flags,
				      "passing I/O to the next module");
	if (*engine == NULL) {
		return ASYNC_URING_NEXT;
	}
	return ASYNC_URING_RING;
}

/* --- the open file in a fixed slot -------------------------------------- */

/*
 * An open file's place in the engine's fixed-file table, from its first
 * request until its close: one registration per open file instead of a
 * registration and a release (two syscalls) per request.
 */
struct async_uring_fsp {
	struct asvfs_file_slot *slot;
};

static void async_uring_fsp_destroy(void *p_data)
{
	struct async_uring_fsp *ext = p_data;

	TALLOC_FREE(ext->slot);
}

/* Whether fsp's current fd already sits in a live fixed slot of its own. */
static bool async_uring_holds_slot(vfs_handle_struct *handle,
				   struct files_struct *fsp)
{
	struct async_uring_fsp *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);

	return ext != NULL && ext->slot != NULL &&
	       asvfs_file_slot_fd(ext->slot) == fsp_get_io_fd(fsp);
}

/*
 * Whether fd's file system can do non-blocking I/O at all, asked once per
 * file system and process: preadv2(RWF_NOWAIT) answers EOPNOTSUPP where
 * it cannot (FUSE, tmpfs, ZFS), before any I/O; elsewhere it reads one
 * byte or answers EAGAIN.  A write-only fd cannot ask (a write of no
 * bytes returns before the check): unknown, treated as "can".
 */
#define ASYNC_URING_KNOWN_DEVS 16

struct async_uring_dev_verdict {
	dev_t dev;
	bool known;
	bool nonblocking;
};

static bool async_uring_dev_nonblocking(dev_t dev, int fd, bool readable)
{
	static struct async_uring_dev_verdict devs[ASYNC_URING_KNOWN_DEVS];
	static unsigned next;
	struct async_uring_dev_verdict *v = NULL;
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	unsigned i;

	for (i = 0; i < ASYNC_URING_KNOWN_DEVS; i++) {
		if (devs[i].known && devs[i].dev == dev) {
			return devs[i].nonblocking;
		}
	}
	if (!readable) {
		return true;
	}
	v = &devs[next++ % ASYNC_URING_KNOWN_DEVS];
	v->dev = dev;
	v->known = true;
	v->nonblocking = !(preadv2(fd, &iov, 1, 0, RWF_NOWAIT) == -1 &&
			   errno == EOPNOTSUPP);
	DBG_INFO(MODULE ": file system %ju:%ju %s non-blocking I/O%s\n",
		 (uintmax_t)major(dev), (uintmax_t)minor(dev),
		 v->nonblocking ? "can do" : "cannot do",
		 v->nonblocking ? "" : ": reads and writes go straight to "
		 "the kernel's workers");
	return v->nonblocking;
}

static bool async_uring_wants_always_async(vfs_handle_struct *handle,
					   struct files_struct *fsp, int fd)
{
	struct async_uring_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_uring_config,
				return false);
	switch (config->always_async) {
	case ASYNC_URING_ALWAYS_ASYNC_YES:
		return true;
	case ASYNC_URING_ALWAYS_ASYNC_NO:
		return false;
	case ASYNC_URING_ALWAYS_ASYNC_AUTO:
		break;
	}
	return !async_uring_dev_nonblocking(fsp->fsp_name->st.st_ex_dev, fd,
					    fsp->fsp_flags.can_read);
}

static int async_uring_io_fd(vfs_handle_struct *handle,
			     struct asvfs_engine *engine,
			     struct files_struct *fsp)
{
	struct async_uring_fsp *ext = VFS_FETCH_FSP_EXTENSION(handle, fsp);
	int fd = fsp_get_io_fd(fsp);

	if (ext == NULL) {
		ext = VFS_ADD_FSP_EXTENSION(handle, fsp, struct async_uring_fsp,
					    async_uring_fsp_destroy);
		if (ext == NULL) {
			return fd;	/* a slot per request */
		}
	}
	if (!async_uring_holds_slot(handle, fsp)) {
		/* none yet, a new engine, or another fd for the fsp */
		TALLOC_FREE(ext->slot);
		ext->slot = asvfs_file_slot_get(NULL, engine, fd);
		if (ext->slot != NULL) {
			asvfs_file_slot_set_always_async(
				ext->slot,
				async_uring_wants_always_async(handle, fsp,
							       fd));
		}
	}
	return fd;
}

static int async_uring_close(vfs_handle_struct *handle, files_struct *fsp)
{
	/* Let the slot go before the descriptor number can name another. */
	VFS_REMOVE_FSP_EXTENSION(handle, fsp);
	return SMB_VFS_NEXT_CLOSE(handle, fsp);
}

/* --- pread / pwrite ------------------------------------------------------ */

struct async_uring_rw_state {
	/* what a pwrite needs to be retried through the next module */
	struct vfs_handle_struct *handle;
	struct tevent_context *ev;
	struct files_struct *fsp;
	const void *data;
	size_t n;
	off_t offset;

	ssize_t nbytes;
	struct timespec start;
	struct vfs_aio_state vfs_aio_state;
	SMBPROFILE_BYTES_ASYNC_STATE(profile_bytes);
};

static void async_uring_rw_finish(struct tevent_req *req, ssize_t nbytes,
				  int err)
{
	struct async_uring_rw_state *state = tevent_req_data(
		req, struct async_uring_rw_state);
	struct timespec end;

	SMBPROFILE_BYTES_ASYNC_SET_BUSY(state->profile_bytes);
	SMBPROFILE_BYTES_ASYNC_END(state->profile_bytes);
	clock_gettime_mono(&end);
	state->vfs_aio_state.duration = nsec_time_diff(&end, &state->start);
	if (nbytes < 0) {
		state->vfs_aio_state.error = err;
		tevent_req_error(req, err);
		return;
	}
	state->nbytes = nbytes;
	tevent_req_done(req);
}

/* The state of a new call; a request already failed for a bad range. */
static struct tevent_req *async_uring_rw_create(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev, off_t offset,
	size_t n, struct async_uring_rw_state **pstate)
{
	struct tevent_req *req = NULL;

	req = tevent_req_create(mem_ctx, pstate, struct async_uring_rw_state);
	if (req == NULL) {
		return NULL;
	}
	if (!sys_valid_io_range(offset, n)) {
		tevent_req_error(req, EINVAL);
		return tevent_req_post(req, ev);
	}
	clock_gettime_mono(&(*pstate)->start);
	return req;
}

/* req now waits for subreq (from the engine or the next module). */
static struct tevent_req *async_uring_wait_for(struct tevent_req *req,
					       struct tevent_context *ev,
					       struct tevent_req *subreq,
					       tevent_req_fn done)
{
	if (tevent_req_nomem(subreq, req)) {
		return tevent_req_post(req, ev);
	}
	tevent_req_set_callback(subreq, done, req);
	return req;
}

/*
 * The engine could not take the request (no personality for the
 * caller's credentials, no memory): the next module does it, as it does
 * without an engine.  The profile started for the ring ends unused.
 */
static bool async_uring_refused(struct tevent_req **subreq,
				enum asvfs_op_kind kind,
				struct async_uring_rw_state *state)
{
	if (!asvfs_engine_refused(subreq)) {
		return false;
	}
	DBG_DEBUG(MODULE ": the engine refused a %s: to the next module\n",
		  asvfs_op_kind_name(kind));
	asvfs_engine_count_fallback(kind);
	SMBPROFILE_BYTES_ASYNC_SET_BUSY(state->profile_bytes);
	SMBPROFILE_BYTES_ASYNC_END(state->profile_bytes);
	return true;
}

static void async_uring_pread_done(struct tevent_req *subreq);
static void async_uring_next_pread_done(struct tevent_req *subreq);

static struct tevent_req *async_uring_pread_send(
	struct vfs_handle_struct *handle, TALLOC_CTX *mem_ctx,
	struct tevent_context *ev, struct files_struct *fsp, void *data,
	size_t n, off_t offset)
{
	struct tevent_req *req = NULL, *subreq = NULL;
	struct async_uring_rw_state *state = NULL;
	struct asvfs_engine *engine = NULL;

	req = async_uring_rw_create(mem_ctx, ev, offset, n, &state);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	if (async_uring_route(handle, ev, fsp, ASVFS_OP_PREAD, offset,
			      &engine) == ASYNC_URING_NEXT) {
		subreq = SMB_VFS_NEXT_PREAD_SEND(state, ev, handle, fsp, data,
						 n, offset);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_pread_done);
	}
	SMBPROFILE_BYTES_ASYNC_START(syscall_asys_pread, profile_p,
				     state->profile_bytes, n);
	SMBPROFILE_BYTES_ASYNC_SET_IDLE(state->profile_bytes);
	subreq = asvfs_pread_send(state, ev, engine,
				  async_uring_io_fd(handle, engine, fsp), data,
				  n, offset);
	if (async_uring_refused(&subreq, ASVFS_OP_PREAD, state)) {
		subreq = SMB_VFS_NEXT_PREAD_SEND(state, ev, handle, fsp, data,
						 n, offset);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_pread_done);
	}
	return async_uring_wait_for(req, ev, subreq, async_uring_pread_done);
}

static void async_uring_pread_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	ssize_t nbytes;
	int err = 0;

	nbytes = asvfs_pread_recv(subreq, &err);
	TALLOC_FREE(subreq);
	async_uring_rw_finish(req, nbytes, err);
}

static void async_uring_next_done(struct tevent_req *req, ssize_t nbytes,
				  struct vfs_aio_state *aio_state)
{
	struct async_uring_rw_state *state = tevent_req_data(
		req, struct async_uring_rw_state);

	state->vfs_aio_state = *aio_state;
	if (nbytes < 0) {
		tevent_req_error(req, aio_state->error);
		return;
	}
	state->nbytes = nbytes;
	tevent_req_done(req);
}

static void async_uring_next_pread_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct vfs_aio_state aio_state = { 0 };
	ssize_t nbytes;

	nbytes = SMB_VFS_PREAD_RECV(subreq, &aio_state);
	TALLOC_FREE(subreq);
	async_uring_next_done(req, nbytes, &aio_state);
}

static ssize_t async_uring_rw_recv(struct tevent_req *req,
				   struct vfs_aio_state *vfs_aio_state)
{
	struct async_uring_rw_state *state = tevent_req_data(
		req, struct async_uring_rw_state);
	ssize_t ret = -1;

	*vfs_aio_state = state->vfs_aio_state;
	if (tevent_req_is_unix_error(req, &vfs_aio_state->error)) {
		tevent_req_received(req);
		return -1;
	}
	ret = state->nbytes;
	tevent_req_received(req);
	return ret;
}

static ssize_t async_uring_pread_recv(struct tevent_req *req,
				      struct vfs_aio_state *vfs_aio_state)
{
	return async_uring_rw_recv(req, vfs_aio_state);
}

static void async_uring_pwrite_done(struct tevent_req *subreq);
static void async_uring_next_pwrite_done(struct tevent_req *subreq);

static struct tevent_req *async_uring_pwrite_send(
	struct vfs_handle_struct *handle, TALLOC_CTX *mem_ctx,
	struct tevent_context *ev, struct files_struct *fsp,
	const void *data, size_t n, off_t offset)
{
	struct tevent_req *req = NULL, *subreq = NULL;
	struct async_uring_rw_state *state = NULL;
	struct asvfs_engine *engine = NULL;

	/* an append's offset is no position: no range to check */
	req = async_uring_rw_create(mem_ctx, ev,
				    ASVFS_PWRITE_IS_APPEND(offset) ? 0 : offset,
				    n, &state);
	if (req == NULL || !tevent_req_is_in_progress(req)) {
		return req;
	}
	if (async_uring_route(handle, ev, fsp, ASVFS_OP_PWRITE, offset,
			      &engine) == ASYNC_URING_NEXT) {
		subreq = SMB_VFS_NEXT_PWRITE_SEND(state, ev, handle, fsp, data,
						  n, offset);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_pwrite_done);
	}

	*state = (struct async_uring_rw_state) {
		.handle = handle, .ev = ev, .fsp = fsp, .data = data,
		.n = n, .offset = offset, .start = state->start,
	};
	SMBPROFILE_BYTES_ASYNC_START(syscall_asys_pwrite, profile_p,
				     state->profile_bytes, n);
	SMBPROFILE_BYTES_ASYNC_SET_IDLE(state->profile_bytes);
	subreq = asvfs_pwrite_send(state, ev, engine,
				   async_uring_io_fd(handle, engine, fsp),
				   data, n, offset);
	if (async_uring_refused(&subreq, ASVFS_OP_PWRITE, state)) {
		subreq = SMB_VFS_NEXT_PWRITE_SEND(state, ev, handle, fsp, data,
						  n, offset);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_pwrite_done);
	}
	return async_uring_wait_for(req, ev, subreq, async_uring_pwrite_done);
}

/*
 * FUSE reports a short asynchronous direct write as EIO (fs/fuse/file.c,
 * fuse_aio_complete()), where a synchronous pwrite() reports the short
 * count and smbd's default path writes the rest.  So an EIO from the ring
 * is retried once, whole, through the next module: a real I/O error fails
 * there again, a short write completes.  Rewriting the same bytes at the
 * same offset is idempotent.
 */
static void async_uring_pwrite_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct async_uring_rw_state *state = tevent_req_data(
		req, struct async_uring_rw_state);
	ssize_t nbytes;
	int err = 0;

	nbytes = asvfs_pwrite_recv(subreq, &err);
	TALLOC_FREE(subreq);
	if (nbytes >= 0 || err != EIO) {
		async_uring_rw_finish(req, nbytes, err);
		return;
	}
	DBG_DEBUG(MODULE ": pwrite of %zu bytes at %jd: EIO from io_uring, "
		  "retrying through the next module\n", state->n,
		  (intmax_t)state->offset);
	asvfs_engine_count_fallback(ASVFS_OP_PWRITE);
	SMBPROFILE_BYTES_ASYNC_SET_BUSY(state->profile_bytes);
	SMBPROFILE_BYTES_ASYNC_END(state->profile_bytes);
	subreq = SMB_VFS_NEXT_PWRITE_SEND(state, state->ev, state->handle,
					  state->fsp, state->data, state->n,
					  state->offset);
	/* Not async_uring_wait_for(): we are in a callback, never post. */
	if (tevent_req_nomem(subreq, req)) {
		return;
	}
	tevent_req_set_callback(subreq, async_uring_next_pwrite_done, req);
}

static void async_uring_next_pwrite_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct vfs_aio_state aio_state = { 0 };
	ssize_t nbytes;

	nbytes = SMB_VFS_PWRITE_RECV(subreq, &aio_state);
	TALLOC_FREE(subreq);
	async_uring_next_done(req, nbytes, &aio_state);
}

static ssize_t async_uring_pwrite_recv(struct tevent_req *req,
				       struct vfs_aio_state *vfs_aio_state)
{
	return async_uring_rw_recv(req, vfs_aio_state);
}

/* --- fsync --------------------------------------------------------------- */

static void async_uring_fsync_done(struct tevent_req *subreq);
static void async_uring_next_fsync_done(struct tevent_req *subreq);

/*
 * smb_vfs_fsync_sync() runs this on a temporary event context:
 * async_uring_route() sends such calls to the next module, which
 * completes them there.
 */
static struct tevent_req *async_uring_fsync_send(
	struct vfs_handle_struct *handle, TALLOC_CTX *mem_ctx,
	struct tevent_context *ev, struct files_struct *fsp)
{
	struct tevent_req *req = NULL, *subreq = NULL;
	struct async_uring_rw_state *state = NULL;
	struct asvfs_engine *engine = NULL;

	req = async_uring_rw_create(mem_ctx, ev, 0, 0, &state);
	if (req == NULL) {
		return NULL;
	}
	if (async_uring_route(handle, ev, fsp, ASVFS_OP_FSYNC, 0,
			      &engine) == ASYNC_URING_NEXT) {
		subreq = SMB_VFS_NEXT_FSYNC_SEND(state, ev, handle, fsp);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_fsync_done);
	}
	SMBPROFILE_BYTES_ASYNC_START(syscall_asys_fsync, profile_p,
				     state->profile_bytes, 0);
	SMBPROFILE_BYTES_ASYNC_SET_IDLE(state->profile_bytes);
	subreq = asvfs_fsync_send(state, ev, engine,
				  async_uring_io_fd(handle, engine, fsp));
	if (async_uring_refused(&subreq, ASVFS_OP_FSYNC, state)) {
		subreq = SMB_VFS_NEXT_FSYNC_SEND(state, ev, handle, fsp);
		return async_uring_wait_for(req, ev, subreq,
					    async_uring_next_fsync_done);
	}
	return async_uring_wait_for(req, ev, subreq, async_uring_fsync_done);
}

static void async_uring_fsync_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	int ret, err = 0;

	ret = asvfs_fsync_recv(subreq, &err);
	TALLOC_FREE(subreq);
	async_uring_rw_finish(req, ret, err);
}

static void async_uring_next_fsync_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct vfs_aio_state aio_state = { 0 };
	int ret;

	ret = SMB_VFS_FSYNC_RECV(subreq, &aio_state);
	TALLOC_FREE(subreq);
	async_uring_next_done(req, ret, &aio_state);
}

static int async_uring_fsync_recv(struct tevent_req *req,
				  struct vfs_aio_state *vfs_aio_state)
{
	return async_uring_rw_recv(req, vfs_aio_state) < 0 ? -1 : 0;
}

static struct vfs_fn_pointers vfs_async_uring_fns = {
	.connect_fn = async_uring_connect,
	.disconnect_fn = async_uring_disconnect,
	.close_fn = async_uring_close,
	.pread_send_fn = async_uring_pread_send,
	.pread_recv_fn = async_uring_pread_recv,
	.pwrite_send_fn = async_uring_pwrite_send,
	.pwrite_recv_fn = async_uring_pwrite_recv,
	.fsync_send_fn = async_uring_fsync_send,
	.fsync_recv_fn = async_uring_fsync_recv,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_uring_fns,
				     &vfs_async_uring_debug_level);
}
