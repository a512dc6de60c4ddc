/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * vfs_async_xattr: SMB_VFS_GETXATTRAT_SEND without a thread hand-off.
 *
 * Samba's default reads the xattr on a pthreadpool thread that changes its
 * cwd and credentials per job: about three loop turns and a hand-off per
 * directory entry, which is why "smbd async dosmode" costs twice the
 * synchronous time on a fast disk.  This module reads it through io_uring
 * (IORING_OP_GETXATTR on /proc/self/fd/<pathref fd>, with the requester's
 * credentials as a personality), so no thread changes its cwd, and in the
 * default "auto" mode it keeps a moving estimate of getxattr latency per
 * share: while the storage answers fast it answers synchronously inside
 * _send (cheaper than any hand-off), and goes asynchronous when latency
 * rises.
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
#include "smbprofile.h"

#include "asvfs_engine.h"
#include "asvfs_estimate.h"
#include "asvfs_module.h"

static int vfs_async_xattr_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_xattr_debug_level

#define MODULE "async_xattr"

enum async_xattr_mode { AX_AUTO, AX_ASYNC, AX_SYNC };

struct async_xattr_config {
	enum async_xattr_mode mode;
	struct asvfs_estimate estimate;	/* synchronous getxattr time */
	bool lower_getxattrat;		/* a module below us implements it */
	struct asvfs_engine_config engine;
	/* what this connection did, logged at level 5 on disconnect */
	uint64_t n_sync, n_async, n_next;
};

/* --- options ------------------------------------------------------------ */

static const struct asvfs_enum_value async_xattr_modes[] = {
	{ "auto", AX_AUTO }, { "async", AX_ASYNC }, { "sync", AX_SYNC },
	{ NULL, 0 },
};

static void async_xattr_parse_options(struct async_xattr_config *config,
				      int snum)
{
	uint64_t threshold_nsec;

	config->mode = asvfs_conf_enum(snum, MODULE, "mode",
				       async_xattr_modes, AX_AUTO);
	threshold_nsec = asvfs_conf_uint(snum, MODULE, "async threshold usec",
					 50, 0, 10000000) * 1000;
	/* one preempted call moves a settled estimate by a quarter of it */
	asvfs_estimate_init(&config->estimate, threshold_nsec,
			    MAX(2 * threshold_nsec, 1000));
	asvfs_conf_engine(snum, &config->engine);
}

/*
 * A module below us that implements getxattrat itself (xattr_tdb, a
 * cluster file system's module, acl_xattr placed after us) must not be
 * bypassed: then every call goes to it.  The last handle is vfs_default,
 * whose work we do.
 */
static bool async_xattr_reads_xattrs(const struct vfs_fn_pointers *fns)
{
	return fns->getxattrat_send_fn != NULL;
}

static int async_xattr_connect(vfs_handle_struct *handle,
			       const char *service, const char *user)
{
	struct async_xattr_config *config = NULL;
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	config = talloc_zero(handle->conn, struct async_xattr_config);
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	async_xattr_parse_options(config, SNUM(handle->conn));
	config->lower_getxattrat =
		asvfs_lower_module(handle, async_xattr_reads_xattrs);
	if (config->lower_getxattrat) {
		DBG_WARNING(MODULE ": [%s]: a module after " MODULE " reads "
			    "xattrs itself; passing getxattrat to it\n",
			    service);
	}
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct async_xattr_config, return -1);
	return 0;
}

static void async_xattr_disconnect(vfs_handle_struct *handle)
{
	const struct loadparm_substitution *lp_sub =
		loadparm_s3_global_substitution();
	struct async_xattr_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_xattr_config,
				goto next);
	DBG_INFO(MODULE " counters getxattrat: share=%s sync=%" PRIu64
		 " async=%" PRIu64 " next=%" PRIu64 " estimate_usec=%" PRIu64
		 "\n", lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		 config->n_sync, config->n_async, config->n_next,
		 config->estimate.nsec / 1000);
next:
	SMB_VFS_NEXT_DISCONNECT(handle);
}

/* --- getxattrat ---------------------------------------------------------- */

struct async_xattr_state {
	struct async_xattr_config *config;
	struct timespec start;
	ssize_t size;
	uint8_t *value;
	struct vfs_aio_state aio_state;
	SMBPROFILE_BYTES_ASYNC_STATE(profile_bytes);
};

/*
 * Only synchronous calls teach the estimate: they measure the storage
 * alone, where an asynchronous one also measures the loop (the policy:
 * asvfs_estimate.h).
 */
static void async_xattr_learn(struct async_xattr_state *state, bool sync)
{
	struct async_xattr_config *config = state->config;
	struct timespec end;
	uint64_t sample;

	clock_gettime_mono(&end);
	sample = nsec_time_diff(&end, &state->start);
	state->aio_state.duration = sample;
	if (sync) {
		asvfs_estimate_add(&config->estimate, sample,
				   asvfs_mono_nsec(&end));
	}
}

static bool async_xattr_want_async(struct async_xattr_config *config)
{
	switch (config->mode) {
	case AX_ASYNC:
		return true;
	case AX_SYNC:
		return false;
	case AX_AUTO:
		break;
	}
	return asvfs_estimate_want_async(&config->estimate, asvfs_now_nsec());
}

static void async_xattr_finish(struct tevent_req *req, ssize_t size,
			       int err, bool sync)
{
	struct async_xattr_state *state = tevent_req_data(
		req, struct async_xattr_state);

	SMBPROFILE_BYTES_ASYNC_END(state->profile_bytes);
	async_xattr_learn(state, sync);
	if (size < 0) {
		/* an error must be one, or the request would never finish */
		state->aio_state.error = (err != 0) ? err : EIO;
		tevent_req_error(req, state->aio_state.error);
		return;
	}
	state->size = size;
	tevent_req_done(req);
}

/* The fast storage case: the answer, right now, through the chain. */
static struct tevent_req *async_xattr_do_sync(
	struct tevent_req *req, struct tevent_context *ev,
	vfs_handle_struct *handle, const struct smb_filename *smb_fname,
	const char *xattr_name)
{
	struct async_xattr_state *state = tevent_req_data(
		req, struct async_xattr_state);
	ssize_t size;

	state->config->n_sync++;
	size = SMB_VFS_NEXT_FGETXATTR(handle, smb_fname->fsp, xattr_name,
				      state->value,
				      talloc_array_length(state->value));
	async_xattr_finish(req, size, errno, true);
	return tevent_req_post(req, ev);
}

enum async_xattr_route {
	ASYNC_XATTR_NEXT,	/* the next module's asynchronous path */
	ASYNC_XATTR_SYNC,	/* answered at once, through the chain */
	ASYNC_XATTR_RING,	/* IORING_OP_GETXATTR */
};

/* Where a getxattrat goes: the one place it is decided. */
static enum async_xattr_route async_xattr_route(
	vfs_handle_struct *handle, struct tevent_context *ev,
	struct async_xattr_config *config, int fd,
	struct asvfs_engine **engine)
{
	*engine = NULL;
	/* A module below us reads xattrs itself: it is never bypassed. */
	if (config->lower_getxattrat) {
		return ASYNC_XATTR_NEXT;
	}
	/* No pathref fd to name the file by. */
	if (fd == -1) {
		return ASYNC_XATTR_NEXT;
	}
	/* Fast storage (or mode sync): cheaper than any hand-off. */
	if (!async_xattr_want_async(config)) {
		return ASYNC_XATTR_SYNC;
	}
	/* Another event context, io_uring refused, or no GETXATTR opcode. */
	*engine = asvfs_module_engine(handle, ev, MODULE, &config->engine,
				      ASVFS_OP_GETXATTR, 0,
				      "passing getxattrat to the next module");
	if (*engine == NULL) {
		return ASYNC_XATTR_NEXT;
	}
	return ASYNC_XATTR_RING;
}

static void async_xattr_ring_done(struct tevent_req *subreq);
static void async_xattr_next_done(struct tevent_req *subreq);

static struct tevent_req *async_xattr_getxattrat_send(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev,
	struct vfs_handle_struct *handle, files_struct *dir_fsp,
	const struct smb_filename *smb_fname, const char *xattr_name,
	size_t alloc_hint)
{
	struct tevent_req *req = NULL, *subreq = NULL;
	struct async_xattr_state *state = NULL;
	struct async_xattr_config *config = NULL;
	struct asvfs_engine *engine = NULL;
	enum async_xattr_route route;
	int fd = -1;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_xattr_config,
				return NULL);
	req = tevent_req_create(mem_ctx, &state, struct async_xattr_state);
	if (req == NULL) {
		return NULL;
	}
	state->config = config;
	clock_gettime_mono(&state->start);
	if (smb_fname->fsp != NULL) {
		fd = fsp_get_pathref_fd(smb_fname->fsp);
	}
	route = async_xattr_route(handle, ev, config, fd, &engine);
	if (route == ASYNC_XATTR_NEXT) {
		config->n_next++;
		subreq = SMB_VFS_NEXT_GETXATTRAT_SEND(state, ev, handle,
						      dir_fsp, smb_fname,
						      xattr_name, alloc_hint);
		if (tevent_req_nomem(subreq, req)) {
			return tevent_req_post(req, ev);
		}
		tevent_req_set_callback(subreq, async_xattr_next_done, req);
		return req;
	}

	SMBPROFILE_BYTES_ASYNC_START(syscall_asys_getxattrat, profile_p,
				     state->profile_bytes, 0);
	if (alloc_hint > 0) {
		state->value = talloc_zero_array(state, uint8_t, alloc_hint);
		if (tevent_req_nomem(state->value, req)) {
			return tevent_req_post(req, ev);
		}
	}
	if (route == ASYNC_XATTR_SYNC) {
		return async_xattr_do_sync(req, ev, handle, smb_fname,
					   xattr_name);
	}
	config->n_async++;
	SMBPROFILE_BYTES_ASYNC_SET_IDLE(state->profile_bytes);
	subreq = asvfs_getxattr_send(state, ev, engine, fd, xattr_name,
				     state->value, alloc_hint);
	if (asvfs_engine_refused(&subreq)) {
		/* e.g. no personality for these credentials: smbd's way */
		config->n_async--;
		SMBPROFILE_BYTES_ASYNC_SET_BUSY(state->profile_bytes);
		return async_xattr_do_sync(req, ev, handle, smb_fname,
					   xattr_name);
	}
	if (tevent_req_nomem(subreq, req)) {
		return tevent_req_post(req, ev);
	}
	tevent_req_set_callback(subreq, async_xattr_ring_done, req);
	return req;
}

static void async_xattr_ring_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct async_xattr_state *state = tevent_req_data(
		req, struct async_xattr_state);
	ssize_t size;
	int err = 0;

	size = asvfs_getxattr_recv(subreq, &err);
	TALLOC_FREE(subreq);
	SMBPROFILE_BYTES_ASYNC_SET_BUSY(state->profile_bytes);
	async_xattr_finish(req, size, err, false);
}

static void async_xattr_next_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct async_xattr_state *state = tevent_req_data(
		req, struct async_xattr_state);

	state->size = SMB_VFS_NEXT_GETXATTRAT_RECV(subreq, &state->aio_state,
						   state, &state->value);
	TALLOC_FREE(subreq);
	if (state->size < 0) {
		tevent_req_error(req, state->aio_state.error);
		return;
	}
	tevent_req_done(req);
}

static ssize_t async_xattr_getxattrat_recv(struct tevent_req *req,
					   struct vfs_aio_state *aio_state,
					   TALLOC_CTX *mem_ctx,
					   uint8_t **xattr_value)
{
	struct async_xattr_state *state = tevent_req_data(
		req, struct async_xattr_state);
	ssize_t size;

	*aio_state = state->aio_state;
	if (tevent_req_is_unix_error(req, &aio_state->error)) {
		tevent_req_received(req);
		return -1;
	}
	size = state->size;
	if (xattr_value != NULL) {
		*xattr_value = talloc_move(mem_ctx, &state->value);
	}
	tevent_req_received(req);
	return size;
}

static struct vfs_fn_pointers vfs_async_xattr_fns = {
	.connect_fn = async_xattr_connect,
	.disconnect_fn = async_xattr_disconnect,
	.getxattrat_send_fn = async_xattr_getxattrat_send,
	.getxattrat_recv_fn = async_xattr_getxattrat_recv,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_xattr_fns,
				     &vfs_async_xattr_debug_level);
}
