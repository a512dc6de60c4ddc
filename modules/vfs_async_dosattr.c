/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * vfs_async_dosattr: DOS attributes for directory listings, without a
 * thread hand-off per entry and also for the synchronous listing.
 *
 * Two paths, both reading the user.DOSATTRIB xattr through the engine's
 * io_uring (IORING_OP_GETXATTR on /proc/self/fd/<pathref fd>, with the
 * requester's credentials as a personality) and decoding it with smbd's
 * own parse_dos_attribute_blob():
 *
 * - get_dos_attributes_send/recv, used by "smbd async dosmode = yes":
 *   the fan-out of one QUERY_DIRECTORY goes to the kernel in one
 *   submission, bounded by async_dosattr:max inflight because smbd only
 *   bounds what it queues on its own thread pool;
 *
 * - the prefetch, for the listing smbd does synchronously (its default,
 *   and what it falls back to when it cannot use per-thread cwds): when
 *   readdir_fn is called we read the next entries ahead, start their
 *   getxattrs together, and answer fget_dos_attributes_fn from them when
 *   the object smbd asks about is the one we read (device, inode) and is
 *   unchanged since (ctime).  Entries are opened O_PATH|O_NOFOLLOW, so a
 *   symlink is never followed; telldir/seekdir/rewind_dir see the
 *   positions of the entries handed out, not of the read-ahead.  The
 *   read-ahead of all streams of a process is bounded by
 *   async_dosattr:prefetch memory, and freed when a listing ends.
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
#include "lib/util/tevent_ntstatus.h"
#include "lib/pthreadpool/pthreadpool_tevent.h"

#include <dlfcn.h>

#include "asvfs_attrcache.h"
#include "asvfs_engine.h"
#include "asvfs_estimate.h"
#include "asvfs_worker.h"
#include "asvfs_module.h"
#include "asvfs_readahead.h"
#include "asvfs_samba_version.h"

static int vfs_async_dosattr_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_dosattr_debug_level

#define MODULE "async_dosattr"

#if ASVFS_DOSATTR_VALUE_MAX != FSTRING_LEN
#error "ASVFS_DOSATTR_VALUE_MAX must be fget_ea_dos_attribute()'s fstring"
#endif

enum async_dosattr_prefetch {
	ASYNC_DOSATTR_PREFETCH_NO,
	ASYNC_DOSATTR_PREFETCH_YES,
	ASYNC_DOSATTR_PREFETCH_AUTO,
};

/* of get_dos_attributes_send */
enum async_dosattr_mode {
	ASYNC_DOSATTR_MODE_AUTO,
	ASYNC_DOSATTR_MODE_ASYNC,
	ASYNC_DOSATTR_MODE_SYNC,
};

/* Directory streams are found by their DIR * in this many chains. */
#define ASYNC_DOSATTR_DIR_BUCKETS 256

struct async_dosattr_dir;

/* What a connection did, logged at level 5 on disconnect. */
struct async_dosattr_counters {
	uint64_t async, sync, queued, next;	/* get_dos_attributes_send */
	uint64_t steered;			/* smbd async dosmode set */
	uint64_t fills, prefetched, names;	/* the read-ahead */
	uint64_t cached, cached_names;		/* ... from the cache */
	uint64_t hits, misses;			/* fget_dos_attributes */
	uint64_t seeks, seek_drops;
	uint64_t reader_changes;
	uint64_t over_budget;			/* prefetch memory */
};

struct async_dosattr_config {
	bool usable;		/* our decoding is exactly smbd's here */
	bool prefetch_usable;	/* no module below reads directories */
	bool names_usable;	/* ... and smbd asks for EA names */
	uint64_t max_inflight;
	enum async_dosattr_mode mode;
	uint64_t async_threshold_nsec;	/* auto: asynchronous above this */
	enum async_dosattr_prefetch prefetch;
	unsigned window;
	uint64_t threshold_nsec;	/* auto: prefetch above this */
	uint64_t prefetch_memory;	/* the process's read-ahead, at most */
	struct asvfs_estimate estimate;	/* synchronous getxattr time */
	int snum;
	connection_struct *conn;
	uint64_t min_age_nsec;		/* ctime granularity guard */
	unsigned cache_entries;
	struct asvfs_attrcache *cache;	/* NULL: no cache */
	struct security_unix_token *cache_reader;	/* whose reads */
	struct asvfs_engine_config engine;
	/* every stream of a client's listing, by its DIR * */
	struct async_dosattr_dir *by_dirp[ASYNC_DOSATTR_DIR_BUCKETS];
	struct async_dosattr_dir *last_read;	/* smbd read an entry of */
	struct async_dosattr_counters n;
};

/* --- who read it ---------------------------------------------------------- */

/*
 * What was read ahead or cached answers only the user it was read for.
 * The kernel lists trusted.* names only to CAP_SYS_ADMIN (smbd runs
 * "admin users" as root), so the EA names, and with them smbd's EaSize,
 * depend on the reader.  Over SMB2 a tree connect has one session; over
 * SMB1 several sessions (vuids) may share one, and smbd switches the
 * credentials for each request.
 */
static bool async_dosattr_reader_is_current(
	const struct security_unix_token *r, connection_struct *conn)
{
	const struct security_unix_token *now = get_current_utok(conn);

	return r != NULL && now != NULL && r->uid == now->uid &&
	       r->gid == now->gid && r->ngroups == now->ngroups &&
	       (r->ngroups == 0 ||
		memcmp(r->groups, now->groups,
		       r->ngroups * sizeof(r->groups[0])) == 0);
}

/* Make the current user the reader; false (no reader) without memory. */
static bool async_dosattr_reader_take(TALLOC_CTX *mem_ctx,
				      struct security_unix_token **r,
				      connection_struct *conn)
{
	const struct security_unix_token *now = get_current_utok(conn);

	TALLOC_FREE(*r);
	if (now != NULL) {
		*r = copy_unix_token(mem_ctx, now);
	}
	return *r != NULL;
}

/* --- options ------------------------------------------------------------- */

static const struct asvfs_enum_value async_dosattr_prefetch_modes[] = {
	{ "auto", ASYNC_DOSATTR_PREFETCH_AUTO },
	{ "yes", ASYNC_DOSATTR_PREFETCH_YES },
	{ "no", ASYNC_DOSATTR_PREFETCH_NO },
	{ "true", ASYNC_DOSATTR_PREFETCH_YES },
	{ "false", ASYNC_DOSATTR_PREFETCH_NO },
	{ NULL, 0 },
};

static const struct asvfs_enum_value async_dosattr_modes[] = {
	{ "auto", ASYNC_DOSATTR_MODE_AUTO },
	{ "async", ASYNC_DOSATTR_MODE_ASYNC },
	{ "sync", ASYNC_DOSATTR_MODE_SYNC },
	{ NULL, 0 },
};

/*
 * One estimate serves both thresholds.  A sample counts at most twice
 * the larger threshold: one slow answer (smbd preempted on a busy
 * machine) moves a settled fast estimate by a quarter of the larger
 * threshold, which switches nothing; on slow storage every answer is
 * slow.  A sample under either threshold is fast.
 */
static void async_dosattr_estimate_init(struct async_dosattr_config *c)
{
	uint64_t larger = MAX(c->async_threshold_nsec, c->threshold_nsec);

	asvfs_estimate_init(&c->estimate, c->async_threshold_nsec,
			    MAX(2 * larger, 1000));
	c->estimate.fast_nsec = larger;
}

static void async_dosattr_parse_options(struct async_dosattr_config *c,
					int snum)
{
	c->max_inflight = asvfs_conf_uint(snum, MODULE, "max inflight", 4096,
					  1, 65536);
	c->mode = asvfs_conf_enum(snum, MODULE, "mode", async_dosattr_modes,
				  ASYNC_DOSATTR_MODE_AUTO);
	c->async_threshold_nsec = asvfs_conf_uint(snum, MODULE,
						  "async threshold usec", 50,
						  0, 10000000) * 1000;
	c->prefetch = asvfs_conf_enum(snum, MODULE, "prefetch",
				      async_dosattr_prefetch_modes,
				      ASYNC_DOSATTR_PREFETCH_AUTO);
	c->window = asvfs_conf_uint(snum, MODULE, "prefetch window", 64,
				    2, 1024);
	c->threshold_nsec = asvfs_conf_uint(snum, MODULE,
					    "prefetch threshold usec", 100,
					    0, 10000000) * 1000;
	c->min_age_nsec = asvfs_conf_uint(snum, MODULE,
					  "ctime granularity msec", 1000,
					  0, 3600000) * 1000000;
	c->cache_entries = asvfs_conf_uint(snum, MODULE, "cache entries", 0,
					   0, 1048576);
	c->prefetch_memory = asvfs_conf_size(snum, MODULE, "prefetch memory",
					     64ULL << 20, 0, 1ULL << 40);
	async_dosattr_estimate_init(c);
	asvfs_conf_engine(snum, &c->engine);
}

/*
 * Our sibling modules below us (async_xattr, async_uring) read the same
 * file system; any other module that reads xattrs, DOS attributes or
 * directories itself (xattr_tdb, a cluster file system's module) must not
 * be bypassed.  A handle has no name: its function table's library does.
 */
static bool async_dosattr_is_sibling(const struct vfs_fn_pointers *fns)
{
	Dl_info info;
	const char *base = NULL;

	if (dladdr(fns, &info) == 0 || info.dli_fname == NULL) {
		return false;
	}
	base = strrchr(info.dli_fname, '/');
	base = (base != NULL) ? base + 1 : info.dli_fname;
	return strncmp(base, "async_", strlen("async_")) == 0;
}

static bool async_dosattr_reads_attributes(const struct vfs_fn_pointers *f)
{
	return !async_dosattr_is_sibling(f) &&
	       (f->get_dos_attributes_send_fn != NULL ||
		f->fget_dos_attributes_fn != NULL ||
		f->fgetxattr_fn != NULL || f->flistxattr_fn != NULL ||
		f->getxattrat_send_fn != NULL);
}

static bool async_dosattr_reads_dirs(const struct vfs_fn_pointers *f)
{
	return !async_dosattr_is_sibling(f) &&
	       (f->readdir_fn != NULL ||
#if ASVFS_HAVE_SEEKDIR
		f->seekdir_fn != NULL || f->telldir_fn != NULL ||
#endif
		f->rewind_dir_fn != NULL);
}

/*
 * Our answers are smbd's only where vfs_default would give them: DOS
 * attributes stored in the xattr, no DMAPI offline flag to merge, and no
 * module below us with its own idea of DOS attributes or directories.
 */
static void async_dosattr_check_usable(vfs_handle_struct *handle,
				       struct async_dosattr_config *c,
				       const char *service)
{
	int snum = SNUM(handle->conn);

	c->usable = lp_store_dos_attributes(snum) && !lp_dmapi_support(snum);
	if (!c->usable) {
		DBG_NOTICE(MODULE ": [%s]: no \"store dos attributes\" or "
			   "\"dmapi support\" on: passing everything on\n",
			   service);
		return;
	}
	if (asvfs_lower_module(handle, async_dosattr_reads_attributes)) {
		DBG_WARNING(MODULE ": [%s]: a module after " MODULE " reads "
			    "xattrs or DOS attributes itself: passing "
			    "everything on\n", service);
		c->usable = false;
		return;
	}
	c->prefetch_usable =
		c->prefetch != ASYNC_DOSATTR_PREFETCH_NO &&
		c->prefetch_memory > 0 &&
		!asvfs_lower_module(handle, async_dosattr_reads_dirs);
	/* smbd lists each entry's EA names for its EaSize */
	c->names_usable = c->prefetch_usable && lp_ea_support(snum);
}

/*
 * Where smbd lists asynchronously it asks get_dos_attributes_send, not
 * fget_dos_attributes, for the entries: prefetching those is wasted.  This
 * is smbd's own test (smb2_query_directory.c), made once the process has
 * checked for per-thread cwds.
 */
static bool async_dosattr_smbd_lists_async(vfs_handle_struct *handle)
{
	struct smbd_server_connection *sconn = handle->conn->sconn;

	/* SMB1's TRANS2 listing is synchronous whatever the parameter says */
	return asvfs_using_smb2(sconn) &&
	       lp_smbd_async_dosmode(SNUM(handle->conn)) &&
	       pthreadpool_tevent_max_threads(sconn->pool) > 0 &&
	       per_thread_cwd_supported();
}

static int async_dosattr_connect(vfs_handle_struct *handle,
				 const char *service, const char *user)
{
	struct async_dosattr_config *config = NULL;
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	config = talloc_zero(handle->conn, struct async_dosattr_config);
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	config->snum = SNUM(handle->conn);
	config->conn = handle->conn;
	async_dosattr_parse_options(config, SNUM(handle->conn));
	async_dosattr_check_usable(handle, config, service);
	if (config->prefetch_usable && config->cache_entries > 0 &&
	    config->min_age_nsec == 0) {
		/* a change in the tick of the read would keep its ctime */
		DBG_WARNING(MODULE ": [%s]: cache entries needs a ctime "
			    "granularity msec above 0: no cache\n", service);
	} else if (config->prefetch_usable) {
		/* per tree connect: over SMB2, one session's reads */
		config->cache = asvfs_attrcache_new(config,
						    config->cache_entries);
	}
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct async_dosattr_config, return -1);
	return 0;
}

static void async_dosattr_disconnect(vfs_handle_struct *handle)
{
	const struct loadparm_substitution *lp_sub =
		loadparm_s3_global_substitution();
	struct async_dosattr_config *c = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, c, struct async_dosattr_config,
				goto next);
	DBG_INFO(MODULE " counters listing: share=%s async=%" PRIu64
		  " sync=%" PRIu64
		  " queued=%" PRIu64 " next=%" PRIu64 " fills=%" PRIu64
		  " prefetched=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64
		  " seeks=%" PRIu64 " seek_drops=%" PRIu64
		  " steered=%" PRIu64 " names=%" PRIu64
		  " cached=%" PRIu64 " cached_names=%" PRIu64
		  " reader_changes=%" PRIu64 " over_budget=%" PRIu64
		  " estimate_usec=%" PRIu64 "\n",
		  lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		  c->n.async, c->n.sync, c->n.queued, c->n.next, c->n.fills,
		  c->n.prefetched, c->n.hits, c->n.misses, c->n.seeks,
		  c->n.seek_drops, c->n.steered, c->n.names, c->n.cached,
		  c->n.cached_names, c->n.reader_changes, c->n.over_budget,
		  c->estimate.nsec / 1000);
next:
	SMB_VFS_NEXT_DISCONNECT(handle);
}

/* The engine for this call; NULL: the next module answers. */
static struct asvfs_engine *async_dosattr_engine(vfs_handle_struct *handle,
						 struct async_dosattr_config *c)
{
	return asvfs_module_engine(handle, handle->conn->sconn->ev_ctx,
				   MODULE, &c->engine, ASVFS_OP_GETXATTR, 0,
				   "passing DOS attributes to the next module");
}

/* --- how fast the storage is -------------------------------------------- */

/*
 * What we set the share's "smbd async dosmode" to is noted beside it, as
 * a parametric option of the share: shared by all its tree connects in
 * this process, and gone with every reload of the share's section (smbd
 * clears a section's parametric options when it loads it again), so a
 * value a reload put there is never taken for ours.
 */
#define ASYNC_DOSATTR_STEERED "internal steered to"

/*
 * smbd decides for each QUERY_DIRECTORY, from "smbd async dosmode",
 * whether it asks for the DOS attributes asynchronously; its per-entry
 * machinery for that costs more than a fast read itself (a listing on a
 * local disk takes 1.3x-1.5x the synchronous time even when every answer
 * is given at once).  So in mode auto, where the admin turned it on, we
 * turn it off for this share in this smbd process while reads are fast,
 * and on again when they are slow.  A configuration reload puts the
 * admin's value back; the next read decides again from there.
 */
static void async_dosattr_steer_smbd(struct async_dosattr_config *c)
{
	const char *ours = NULL;
	const char *value = NULL;
	bool now, want;

	if (c->mode != ASYNC_DOSATTR_MODE_AUTO || !c->usable) {
		return;
	}
	now = lp_smbd_async_dosmode(c->snum);
	/* hysteresis: an estimate near the threshold must not flap */
	want = asvfs_estimate_above(&c->estimate, c->async_threshold_nsec,
				    now);
	if (now == want) {
		return;
	}
	ours = lp_parm_const_string(c->snum, MODULE, ASYNC_DOSATTR_STEERED,
				    NULL);
	if (!now && (ours == NULL || !strequal(ours, "no"))) {
		return;			/* the admin's choice: synchronous */
	}
	value = want ? "yes" : "no";
	if (!lp_do_parameter(c->snum, "smbd async dosmode", value)) {
		return;
	}
	/* unnoted, our "no" would be taken for the admin's: safe, if slow */
	(void)lp_do_parameter(c->snum, MODULE ":" ASYNC_DOSATTR_STEERED,
			      value);
	c->n.steered++;
	DBG_DEBUG(MODULE ": reads take about %" PRIu64 " usec: smbd lists "
		  "%s\n", c->estimate.nsec / 1000,
		  want ? "asynchronously" : "synchronously");
}

/*
 * Only synchronous reads measure the storage: an asynchronous one also
 * measures the ring and the loop (the policy: asvfs_estimate.h).
 */
static uint64_t async_dosattr_learn(struct async_dosattr_config *c,
				    const struct timespec *start)
{
	struct timespec end;
	uint64_t sample;

	clock_gettime_mono(&end);
	sample = nsec_time_diff(&end, start);
	asvfs_estimate_add(&c->estimate, sample, asvfs_mono_nsec(&end));
	async_dosattr_steer_smbd(c);
	return sample;
}

/*
 * While the storage is slow, whether a synchronous read should measure
 * it again: at most once a second, since each costs a round trip; but
 * every read until the estimate has its first samples.
 */
static bool async_dosattr_measure_due(struct async_dosattr_config *c)
{
	return asvfs_estimate_measure_due(&c->estimate, asvfs_now_nsec());
}

static bool async_dosattr_want_async(struct async_dosattr_config *c)
{
	switch (c->mode) {
	case ASYNC_DOSATTR_MODE_ASYNC:
		return true;
	case ASYNC_DOSATTR_MODE_SYNC:
		return false;
	case ASYNC_DOSATTR_MODE_AUTO:
		break;
	}
	return asvfs_estimate_want_async(&c->estimate, asvfs_now_nsec());
}

/* --- get_dos_attributes_send/recv ----------------------------------------- */

/*
 * smbd fans a listing out without a bound it can see (it counts only its
 * own thread pool's queue), so requests beyond "max inflight" per process
 * wait here, in order.
 */
struct async_dosattr_get_state;
static struct {
	uint64_t count;
	struct async_dosattr_get_state *waiting;
	struct tevent_immediate *im;
	bool scheduled;
} dosattr_inflight;

struct async_dosattr_get_state {
	struct async_dosattr_get_state *prev, *next;
	struct tevent_req *req;
	struct tevent_context *ev;
	vfs_handle_struct *handle;
	struct async_dosattr_config *config;
	struct asvfs_engine *engine;
	files_struct *dir_fsp;
	struct smb_filename *smb_fname;
	struct timespec start;
	struct vfs_aio_state aio_state;
	uint8_t value[ASVFS_DOSATTR_VALUE_MAX];
	bool waits, holds_inflight, as_root;
	uint32_t dosmode;
};

static void async_dosattr_get_xattr_done(struct tevent_req *subreq);
static void async_dosattr_get_next_done(struct tevent_req *subreq);

static void async_dosattr_release_inflight(struct async_dosattr_get_state *s);

static void async_dosattr_get_cleanup(struct tevent_req *req,
				      enum tevent_req_state req_state)
{
	struct async_dosattr_get_state *state = tevent_req_data(
		req, struct async_dosattr_get_state);

	if (state->waits) {
		DLIST_REMOVE(dosattr_inflight.waiting, state);
		state->waits = false;
	}
	async_dosattr_release_inflight(state);
}

/*
 * Ask the ring for the value.  False on no memory, which the caller
 * reports: one caller runs this as root and must let go of root first,
 * since an error may run smbd's callback at once.
 */
static bool async_dosattr_get_start(struct async_dosattr_get_state *state)
{
	struct tevent_req *subreq = NULL;
	int fd = fsp_get_pathref_fd(state->smb_fname->fsp);

	if (!state->holds_inflight) {
		state->holds_inflight = true;
		dosattr_inflight.count++;
	}
	subreq = asvfs_getxattr_send(state, state->ev, state->engine, fd,
				     SAMBA_XATTR_DOS_ATTRIB, state->value,
				     sizeof(state->value));
	if (asvfs_engine_refused(&subreq)) {
		/* not the file's answer: smbd reads it synchronously */
		async_dosattr_release_inflight(state);
		tevent_req_nterror(state->req, NT_STATUS_NOT_SUPPORTED);
		return true;
	}
	if (subreq == NULL) {
		return false;
	}
	tevent_req_set_callback(subreq, async_dosattr_get_xattr_done,
				state->req);
	return true;
}

/*
 * Waiters start from an immediate, never inside another request's
 * completion or free.  There smbd runs as whoever it impersonated last:
 * become the waiter's user again, because the ring captures the calling
 * thread's credentials.
 */
static void async_dosattr_start_waiters(struct tevent_context *ev,
					struct tevent_immediate *im,
					void *private_data)
{
	struct async_dosattr_get_state *w = NULL;

	dosattr_inflight.scheduled = false;
	while ((w = dosattr_inflight.waiting) != NULL &&
	       dosattr_inflight.count < w->config->max_inflight) {
		DLIST_REMOVE(dosattr_inflight.waiting, w);
		w->waits = false;
		if (!change_to_user_and_service_by_fsp(w->dir_fsp)) {
			tevent_req_nterror(w->req, NT_STATUS_ACCESS_DENIED);
			continue;
		}
		if (!async_dosattr_get_start(w)) {
			tevent_req_oom(w->req);
		}
	}
}

static void async_dosattr_release_inflight(struct async_dosattr_get_state *s)
{
	if (!s->holds_inflight) {
		return;
	}
	s->holds_inflight = false;
	dosattr_inflight.count--;
	if (dosattr_inflight.waiting == NULL || dosattr_inflight.scheduled) {
		return;
	}
	if (dosattr_inflight.im == NULL) {
		dosattr_inflight.im = tevent_create_immediate(NULL);
		if (dosattr_inflight.im == NULL) {
			return;		/* the next release tries again */
		}
	}
	dosattr_inflight.scheduled = true;
	tevent_schedule_immediate(dosattr_inflight.im, s->ev,
				  async_dosattr_start_waiters, NULL);
}

static struct tevent_req *async_dosattr_get_next(
	struct tevent_req *req, struct async_dosattr_get_state *state)
{
	struct tevent_req *subreq = NULL;

	state->config->n.next++;
	subreq = SMB_VFS_NEXT_GET_DOS_ATTRIBUTES_SEND(
		state, state->ev, state->handle, state->dir_fsp,
		state->smb_fname);
	if (tevent_req_nomem(subreq, req)) {
		return tevent_req_post(req, state->ev);
	}
	tevent_req_set_callback(subreq, async_dosattr_get_next_done, req);
	return req;
}

/*
 * Fast storage: smbd's own synchronous read, answered at once.  Any hand
 * off would cost more than the read.
 *
 * The read decodes a stored create time into the name of the fsp
 * (fsp->fsp_name), which is a copy of smb_fname.  smbd marshals the
 * listing entry's create time from smb_fname (fetch_dos_mode_done() in
 * smb2_query_directory.c), as an asynchronous read leaves it: without
 * the copy below a create time set over SMB is listed as the one
 * calculated from the stat.
 */
static struct tevent_req *async_dosattr_get_sync(
	struct tevent_req *req, struct async_dosattr_get_state *state)
{
	struct async_dosattr_config *config = state->config;
	struct files_struct *fsp = state->smb_fname->fsp;
	NTSTATUS status;

	config->n.sync++;
	status = SMB_VFS_NEXT_FGET_DOS_ATTRIBUTES(state->handle, fsp,
						  &state->dosmode);
	if (fsp->fsp_name != state->smb_fname) {
		/* only a create time read from the xattr is taken */
		update_stat_ex_from_saved_stat(&state->smb_fname->st,
					       &fsp->fsp_name->st);
	}
	state->aio_state.duration = async_dosattr_learn(config,
							&state->start);
	if (!tevent_req_nterror(req, status)) {
		tevent_req_done(req);
	}
	return tevent_req_post(req, state->ev);
}

enum async_dosattr_route {
	ASYNC_DOSATTR_ROUTE_NEXT,	/* the next module's send/recv */
	ASYNC_DOSATTR_ROUTE_SYNC,	/* its synchronous read, at once */
	ASYNC_DOSATTR_ROUTE_RING,	/* through the engine's ring */
};

/*
 * Where one get_dos_attributes_send goes: the only place that decides.
 * The engine is looked up, and with it created, only for the ring.
 */
static enum async_dosattr_route async_dosattr_route(
	vfs_handle_struct *handle, struct async_dosattr_config *config,
	struct tevent_context *ev, const struct smb_filename *smb_fname,
	struct asvfs_engine **engine)
{
	/* our decoding would not be smbd's on this share */
	if (!config->usable) {
		return ASYNC_DOSATTR_ROUTE_NEXT;
	}
	/*
	 * a temporary event context (smb_vfs_fsync_sync()'s kind): the
	 * engine lives on the connection's main one
	 */
	if (ev != handle->conn->sconn->ev_ctx) {
		return ASYNC_DOSATTR_ROUTE_NEXT;
	}
	/* the ring reads through the object's pathref fd */
	if (smb_fname->fsp == NULL ||
	    fsp_get_pathref_fd(smb_fname->fsp) == -1) {
		return ASYNC_DOSATTR_ROUTE_NEXT;
	}
	/* a named stream's attributes are the streams module's to find */
	if (is_named_stream(smb_fname)) {
		return ASYNC_DOSATTR_ROUTE_NEXT;
	}
	/* mode sync, or auto on fast storage or due for a measurement */
	if (!async_dosattr_want_async(config)) {
		return ASYNC_DOSATTR_ROUTE_SYNC;
	}
	/* no io_uring, or no getxattr in it, in this process */
	*engine = async_dosattr_engine(handle, config);
	if (*engine == NULL) {
		return ASYNC_DOSATTR_ROUTE_NEXT;
	}
	return ASYNC_DOSATTR_ROUTE_RING;
}

static struct tevent_req *async_dosattr_get_dos_attributes_send(
	TALLOC_CTX *mem_ctx, struct tevent_context *ev,
	struct vfs_handle_struct *handle, files_struct *dir_fsp,
	struct smb_filename *smb_fname)
{
	struct tevent_req *req = NULL;
	struct async_dosattr_get_state *state = NULL;
	struct async_dosattr_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return NULL);
	req = tevent_req_create(mem_ctx, &state,
				struct async_dosattr_get_state);
	if (req == NULL) {
		return NULL;
	}
	*state = (struct async_dosattr_get_state) {
		.req = req, .ev = ev, .handle = handle, .config = config,
		.dir_fsp = dir_fsp, .smb_fname = smb_fname,
	};
	clock_gettime_mono(&state->start);

	switch (async_dosattr_route(handle, config, ev, smb_fname,
				    &state->engine)) {
	case ASYNC_DOSATTR_ROUTE_NEXT:
		return async_dosattr_get_next(req, state);
	case ASYNC_DOSATTR_ROUTE_SYNC:
		return async_dosattr_get_sync(req, state);
	case ASYNC_DOSATTR_ROUTE_RING:
		break;
	}
	tevent_req_set_cleanup_fn(req, async_dosattr_get_cleanup);
	config->n.async++;
	if (dosattr_inflight.count >= config->max_inflight) {
		config->n.queued++;
		state->waits = true;
		DLIST_ADD_END(dosattr_inflight.waiting, state);
		return req;
	}
	if (!async_dosattr_get_start(state)) {
		tevent_req_oom(req);
	}
	if (!tevent_req_is_in_progress(req)) {
		return tevent_req_post(req, ev);
	}
	return req;
}

static void async_dosattr_get_finish(struct tevent_req *req,
				     ssize_t size)
{
	struct async_dosattr_get_state *state = tevent_req_data(
		req, struct async_dosattr_get_state);
	DATA_BLOB blob = { .data = state->value, .length = size };
	struct timespec end;
	NTSTATUS status;

	clock_gettime_mono(&end);
	state->aio_state.duration = nsec_time_diff(&end, &state->start);
	status = parse_dos_attribute_blob(state->smb_fname, blob,
					  &state->dosmode);
	if (tevent_req_nterror(req, status)) {
		return;
	}
	tevent_req_done(req);
}

/*
 * Errors of the asynchronous machinery (no fd for the engine's dup, no
 * memory, a full personality cache, a retried EAGAIN), or a value larger
 * than our buffer: not the file's answer.  smbd takes any other error as
 * "no DOS attributes" and lists the entry with none, so for these we
 * answer NT_STATUS_NOT_SUPPORTED, on which smbd reads the attributes
 * synchronously (dos_mode_at_vfs_get_dosmode_done()).
 */
static bool async_dosattr_not_the_files_error(int err)
{
	switch (err) {
	case EMFILE:
	case ENFILE:
	case ENOMEM:
	case EBUSY:
	case EAGAIN:
	case EINTR:
	case ECANCELED:
	case EXDEV:
	case ENOSYS:
	case ERANGE:
		return true;
	}
	return false;
}

static void async_dosattr_get_xattr_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct async_dosattr_get_state *state = tevent_req_data(
		req, struct async_dosattr_get_state);
	NTSTATUS status;
	ssize_t size;
	bool started;
	int err = 0;

	size = asvfs_getxattr_recv(subreq, &err);
	TALLOC_FREE(subreq);
	if (size >= 0) {
		async_dosattr_release_inflight(state);
		async_dosattr_get_finish(req, size);
		return;
	}
	state->aio_state.error = err;
	if (async_dosattr_not_the_files_error(err)) {
		async_dosattr_release_inflight(state);
		tevent_req_nterror(req, NT_STATUS_NOT_SUPPORTED);
		return;
	}
	status = map_nt_error_from_unix(err);
	if (state->as_root ||
	    !NT_STATUS_EQUAL(status, NT_STATUS_ACCESS_DENIED)) {
		async_dosattr_release_inflight(state);
		tevent_req_nterror(req, status);
		return;
	}
	/*
	 * As smbd does: DOS attributes of a file the user may not read
	 * are still listed, read as root (the inflight token stays ours).
	 */
	state->as_root = true;
	become_root();
	started = async_dosattr_get_start(state);
	unbecome_root();
	if (!started) {
		tevent_req_oom(req);
	}
}

static void async_dosattr_get_next_done(struct tevent_req *subreq)
{
	struct tevent_req *req = tevent_req_callback_data(
		subreq, struct tevent_req);
	struct async_dosattr_get_state *state = tevent_req_data(
		req, struct async_dosattr_get_state);
	NTSTATUS status;

	status = SMB_VFS_NEXT_GET_DOS_ATTRIBUTES_RECV(subreq,
						      &state->aio_state,
						      &state->dosmode);
	TALLOC_FREE(subreq);
	if (tevent_req_nterror(req, status)) {
		return;
	}
	tevent_req_done(req);
}

static NTSTATUS async_dosattr_get_dos_attributes_recv(
	struct tevent_req *req, struct vfs_aio_state *aio_state,
	uint32_t *dosmode)
{
	struct async_dosattr_get_state *state = tevent_req_data(
		req, struct async_dosattr_get_state);
	NTSTATUS status;

	if (tevent_req_is_nterror(req, &status)) {
		tevent_req_received(req);
		return status;
	}
	*aio_state = state->aio_state;
	*dosmode = state->dosmode;
	tevent_req_received(req);
	return NT_STATUS_OK;
}

/* --- prefetch for the synchronous listing -------------------------------- */

/*
 * One directory stream of a client's listing and its readahead window
 * (asvfs_readahead.h): twice the prefetch window, so that while smbd
 * consumes one half, the other half's attributes are on their way.
 * Entries handed out stay until their room is needed, so that smbd's seek
 * back to one of them keeps the read-ahead.
 */
struct async_dosattr_dir {
	struct async_dosattr_dir *chain;	/* in its by_dirp bucket */
	struct async_dosattr_config *config;
	DIR *dirp;
	struct asvfs_readahead *ra;
	bool over_budget;		/* refused memory, not yet given it */
	unsigned probe;			/* entries to read directly */
	bool names_asked;		/* smbd wants EA names here */
	bool names_only;		/* smbd reads DOS attributes itself */
	struct security_unix_token *reader;	/* whose read-ahead */
};

/*
 * A client may hold thousands of directory handles: each readdir,
 * telldir and seekdir finds its stream in a short chain.
 */
static struct async_dosattr_dir **async_dosattr_bucket(
	struct async_dosattr_config *config, DIR *dirp)
{
	/* Fibonacci hashing: DIRs lie at a fixed stride in the heap */
	uint64_t h = (uint64_t)(uintptr_t)dirp * 0x9E3779B97F4A7C15ULL;

	return &config->by_dirp[h >> 56];
}

static void async_dosattr_readahead_free(struct async_dosattr_dir *d);

static int async_dosattr_dir_destructor(struct async_dosattr_dir *d)
{
	struct async_dosattr_dir **p = async_dosattr_bucket(d->config,
							     d->dirp);

	while (*p != d) {
		p = &(*p)->chain;
	}
	*p = d->chain;
	if (d->config->last_read == d) {
		d->config->last_read = NULL;
	}
	/* the getxattrs go before the entries they were started for */
	async_dosattr_readahead_free(d);
	return 0;
}

static struct async_dosattr_dir *async_dosattr_find_dir(
	struct async_dosattr_config *config, DIR *dirp, bool create)
{
	struct async_dosattr_dir **bucket = async_dosattr_bucket(config,
								  dirp);
	struct async_dosattr_dir *d = NULL;

	for (d = *bucket; d != NULL; d = d->chain) {
		if (d->dirp == dirp) {
			return d;
		}
	}
	if (!create) {
		return NULL;
	}
	d = talloc_zero(config, struct async_dosattr_dir);
	if (d == NULL) {
		return NULL;
	}
	d->config = config;
	d->dirp = dirp;
	/* its memory comes with a top-up */
	d->ra = asvfs_readahead_new(d, config->window);
	if (d->ra == NULL ||
	    !async_dosattr_reader_take(d, &d->reader, config->conn)) {
		TALLOC_FREE(d);
		return NULL;
	}
	d->chain = *bucket;
	*bucket = d;
	talloc_set_destructor(d, async_dosattr_dir_destructor);
	return d;
}

/* The stream is closed: its read-ahead goes with it. */
static void async_dosattr_forget_dir(struct async_dosattr_config *config,
				     DIR *dirp)
{
	struct async_dosattr_dir *d = async_dosattr_find_dir(config, dirp,
							     false);

	TALLOC_FREE(d);
}

/*
 * Another user reads the stream on (SMB1 sessions sharing a tree
 * connect): the entries read ahead stay, as readdir gave them, but what
 * was read about them answers nobody.
 */
static void async_dosattr_change_reader(struct async_dosattr_dir *d)
{
	asvfs_readahead_forget_objects(d->ra);
	d->config->n.reader_changes++;
	/* without memory no reader: its reads then answer nobody */
	(void)async_dosattr_reader_take(d, &d->reader, d->config->conn);
}

enum async_dosattr_step {
	ASYNC_DOSATTR_STEP_DIRECT,
	ASYNC_DOSATTR_STEP_PREFETCH,
	ASYNC_DOSATTR_STEP_PROBE,
};

/* Entries read directly when the prefetch measures the storage again. */
#define ASYNC_DOSATTR_PROBE_ENTRIES 4

/*
 * Read ahead for the listing smbd does now: it chooses between its
 * synchronous and its asynchronous listing at each QUERY_DIRECTORY (and
 * mode auto steers that choice), so a stream opened under one may go on
 * under the other.  Reading DOS attributes ahead for an asynchronous
 * listing would read each of them twice.  False: nothing to read ahead.
 */
static bool async_dosattr_follow_smbd(vfs_handle_struct *handle,
				      struct async_dosattr_dir *d)
{
	d->names_only = async_dosattr_smbd_lists_async(handle);
	return !d->names_only || d->config->names_usable;
}

/*
 * How a stream reads on when little is left of its read-ahead: the only
 * place that decides.  The prefetch pays where the storage is slow: in
 * auto mode by the measured time of synchronous getxattrs.  While it
 * prefetches, a top-up at most once a second becomes a probe instead: a
 * few entries read directly, which measure the storage again (on slow
 * storage each costs a synchronous round trip).
 */
static enum async_dosattr_step async_dosattr_next_step(
	vfs_handle_struct *handle, struct async_dosattr_dir *d)
{
	struct async_dosattr_config *c = d->config;
	enum async_dosattr_step step = ASYNC_DOSATTR_STEP_PREFETCH;

	if (c->prefetch != ASYNC_DOSATTR_PREFETCH_YES) {
		/* fast storage, the common case, needs no look at smbd */
		if (c->estimate.nsec <= c->threshold_nsec) {
			return ASYNC_DOSATTR_STEP_DIRECT;
		}
		if (async_dosattr_measure_due(c)) {
			step = ASYNC_DOSATTR_STEP_PROBE;
		}
	}
	/* smbd lists asynchronously, and lists no EA names here */
	if (!async_dosattr_follow_smbd(handle, d)) {
		return ASYNC_DOSATTR_STEP_DIRECT;
	}
	return step;
}

/*
 * The cache, holding only what the current user read: when another user
 * of the tree connect asks, what the last one read is forgotten.
 */
static struct asvfs_attrcache *async_dosattr_cache(
	struct async_dosattr_config *config)
{
	if (config->cache == NULL ||
	    async_dosattr_reader_is_current(config->cache_reader,
					    config->conn)) {
		return config->cache;
	}
	asvfs_attrcache_clear(config->cache);
	if (config->cache_reader != NULL) {
		config->n.reader_changes++;
	}
	if (!async_dosattr_reader_take(config, &config->cache_reader,
				       config->conn)) {
		return NULL;		/* unowned: used by nobody */
	}
	return config->cache;
}

/* The entry's value, if the cache has it for the object as noted. */
static bool async_dosattr_from_cache(struct async_dosattr_config *config,
				     struct asvfs_readahead_entry *e)
{
	struct asvfs_attrcache_read r;

	if (!asvfs_attrcache_get_value(async_dosattr_cache(config), &e->key,
				       &r)) {
		return false;
	}
	e->size = r.len;
	e->err = r.err;
	if (r.len > 0) {
		memcpy(e->value, r.data, r.len);
	}
	e->state = ASVFS_READAHEAD_CACHED;	/* as good as a read */
	config->n.cached++;
	return true;
}

static bool async_dosattr_names_from_cache(struct async_dosattr_dir *d,
					   struct asvfs_readahead_entry *e)
{
	struct async_dosattr_config *config = d->config;
	struct asvfs_attrcache_read r;

	if (!asvfs_attrcache_get_names(async_dosattr_cache(config), &e->key,
				       &r) ||
	    r.len < 0) {
		return false;
	}
	if (r.len > 0) {
		memcpy(asvfs_readahead_names_of(d->ra, e), r.data, r.len);
	}
	e->names_len = r.len;
	e->names = ASVFS_READAHEAD_NAMES_CACHED;
	config->n.cached_names++;
	return true;
}

/*
 * Open the entry without following a symlink, note what it is, and ask
 * the ring for its attribute (or take it from the cache).  Symlinks, and
 * objects changed too recently for their ctime to tell a later change
 * apart, are left to smbd.
 * Returns the entry's O_PATH fd when its attribute is on the way, else -1.
 */
static int async_dosattr_fetch(vfs_handle_struct *handle,
			       struct async_dosattr_dir *d,
			       struct asvfs_engine *engine, int dirfd,
			       struct asvfs_readahead_entry *e)
{
	struct tevent_context *ev = handle->conn->sconn->ev_ctx;
	struct timespec now;
	struct stat st;
	int fd;

	if (ISDOT(e->de.d_name) || ISDOTDOT(e->de.d_name) ||
	    e->de.d_type == DT_LNK) {
		return -1;
	}
	fd = openat(dirfd, e->de.d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1) {
		return -1;
	}
	if (fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) {
		close(fd);
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	if (nsec_time_diff(&now, &st.st_ctim) <
	    (int64_t)d->config->min_age_nsec) {
		close(fd);
		return -1;
	}
	e->state = ASVFS_READAHEAD_NOTED;
	e->key = (struct asvfs_attrcache_key) {
		.dev = st.st_dev, .ino = st.st_ino, .ctime = st.st_ctim,
		.size = st.st_size,
	};
	if (d->names_only || async_dosattr_from_cache(d->config, e)) {
		return fd;
	}
	/* the engine keeps its own dup */
	e->subreq = asvfs_getxattr_send(d->ra, ev, engine, fd,
					SAMBA_XATTR_DOS_ATTRIB, e->value,
					sizeof(e->value));
	if (asvfs_engine_refused(&e->subreq)) {
		return fd;	/* not fetched: smbd reads it itself */
	}
	if (e->subreq == NULL) {
		close(fd);
		return -1;
	}
	e->state = ASVFS_READAHEAD_FETCHING;
	d->config->n.prefetched++;
	return fd;
}

/*
 * smbd lists each entry's EA names (for its EaSize) right after its DOS
 * attributes: list the names of a top-up's entries on one thread while
 * smbd works through the entries before them (one thread for the whole
 * top-up: smaller batches cost more CPU for the same listing).  Takes
 * the fds.
 */
static void async_dosattr_fetch_names(struct async_dosattr_dir *d,
				      struct tevent_context *ev, int *fds,
				      struct asvfs_readahead_entry **entries,
				      unsigned n)
{
	struct asvfs_readahead_batch *b = NULL;
	unsigned i;

	if (!asvfs_worker_available()) {
		goto none;	/* smbd lists them itself */
	}
	/* one that fails has no names to hand out: smbd lists them */
	b = asvfs_readahead_batch_new(d->ra);
	if (b == NULL) {
		goto none;
	}
	b->subreq = asvfs_worker_names_send(b, ev, fds, n);
	if (b->subreq == NULL) {
		TALLOC_FREE(b);
		return;		/* the fds went with it */
	}
	asvfs_readahead_batch_start(d->ra, b, entries, n);
	return;
none:
	for (i = 0; i < n; i++) {
		close(fds[i]);
	}
}

/*
 * The memory of the readahead windows of all directory streams of this
 * process (one client connection), over all its shares: each window
 * takes 2 * window entries of about 0.6 KiB, and 1 KiB more an entry
 * where smbd lists EA names, so a client holding many listed directories
 * open would pin a window for each.
 */
static struct {
	uint64_t bytes;
	bool logged;
} dosattr_readahead_memory;

/*
 * Whether a window of this size fits the share's "prefetch memory"; a
 * stream refused one lists without read-ahead until windows are freed.
 * The first refusal of the process is logged at level 1.
 */
static bool async_dosattr_readahead_fits(struct async_dosattr_dir *d,
					 size_t bytes)
{
	struct async_dosattr_config *c = d->config;

	if (dosattr_readahead_memory.bytes + bytes <= c->prefetch_memory) {
		d->over_budget = false;
		return true;
	}
	if (d->over_budget) {
		return false;		/* said for this stream already */
	}
	d->over_budget = true;
	c->n.over_budget++;
	if (!dosattr_readahead_memory.logged) {
		dosattr_readahead_memory.logged = true;
		DBG_WARNING(MODULE ": prefetch memory of %" PRIu64 " bytes "
			    "in use: more directories are listed without "
			    "prefetch (async_dosattr:prefetch memory = %"
			    PRIu64 ")\n", dosattr_readahead_memory.bytes,
			    c->prefetch_memory);
	} else {
		DBG_DEBUG(MODULE ": prefetch memory of %" PRIu64 " bytes "
			  "in use: a directory is listed without prefetch\n",
			  dosattr_readahead_memory.bytes);
	}
	return false;
}

/*
 * The window's entries, and their EA names where smbd lists them; false:
 * no memory, or none left in the budget.
 */
static bool async_dosattr_readahead_alloc(struct async_dosattr_dir *d)
{
	size_t names_max = d->config->names_usable ? ASVFS_NAMES_MAX : 0;
	size_t bytes = asvfs_readahead_bytes(d->ra, names_max);

	if (!async_dosattr_readahead_fits(d, bytes)) {
		return false;
	}
	if (!asvfs_readahead_alloc(d->ra, names_max)) {
		return false;
	}
	dosattr_readahead_memory.bytes += bytes;
	return true;
}

/* Forget what was read ahead, and give its memory back. */
static void async_dosattr_readahead_free(struct async_dosattr_dir *d)
{
	dosattr_readahead_memory.bytes -= asvfs_readahead_free(d->ra);
}

/*
 * Read ahead until a window's worth waits, and fetch those together.
 * The entries (about 0.6 KiB each, 1.6 KiB with EA names) are allocated
 * here, not at the open: on fast storage a stream never prefetches and
 * never needs them.
 * Returns false, with nothing read, without memory for them.
 */
static bool async_dosattr_top_up(vfs_handle_struct *handle,
				 struct files_struct *dirfsp,
				 struct async_dosattr_dir *d)
{
	struct asvfs_readahead *ra = d->ra;
	struct asvfs_engine *engine = NULL;
	int dirfd = fsp_get_pathref_fd(dirfsp);
	unsigned window = d->config->window;
	struct asvfs_readahead_entry *named[window];
	int fds[window];
	unsigned n = 0;

	if (ra->entries == NULL && !async_dosattr_readahead_alloc(d)) {
		return false;
	}
	if (dirfd != -1) {
		engine = async_dosattr_engine(handle, d->config);
	}
	d->config->n.fills++;
	while (asvfs_readahead_waiting(ra) < window) {
		struct asvfs_readahead_entry *e = NULL;
		struct dirent *de = NULL;
		long pos_after = 0;
		int fd;

		de = ASVFS_NEXT_READDIR(handle, dirfsp, d->dirp, NULL);
		if (de == NULL) {
			ra->eof = true;
			break;
		}
#if ASVFS_HAVE_SEEKDIR
		pos_after = SMB_VFS_NEXT_TELLDIR(handle, d->dirp);
#endif
		/* fewer than a window wait: the oldest handed out makes room */
		e = asvfs_readahead_add(ra, de, pos_after);
		if (e == NULL || engine == NULL) {
			continue;
		}
		fd = async_dosattr_fetch(handle, d, engine, dirfd, e);
		if (fd == -1) {
			continue;
		}
		if (d->names_asked && ra->names != NULL &&
		    !async_dosattr_names_from_cache(d, e)) {
			named[n] = e;
			fds[n++] = fd;
		} else {
			close(fd);
		}
	}
	if (engine != NULL) {
		asvfs_engine_flush(engine);
	}
	if (n > 0) {
		async_dosattr_fetch_names(d, handle->conn->sconn->ev_ctx, fds,
					  named, n);
	}
	return true;
}

static struct dirent *async_dosattr_readdir(vfs_handle_struct *handle,
					    struct files_struct *dirfsp,
					    DIR *dirp, SMB_STRUCT_STAT *sbuf)
{
	struct async_dosattr_config *config = NULL;
	struct async_dosattr_dir *d = NULL;
	struct dirent *de = NULL;
	unsigned waiting;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return NULL);
	d = async_dosattr_find_dir(config, dirp, false);
	if (d == NULL) {
		return ASVFS_NEXT_READDIR(handle, dirfsp, dirp, sbuf);
	}
	config->last_read = d;
	if (!async_dosattr_reader_is_current(d->reader, handle->conn)) {
		async_dosattr_change_reader(d);
	}
	waiting = asvfs_readahead_waiting(d->ra);
	if (d->probe == 0 && waiting <= config->window / 2 && !d->ra->eof) {
		switch (async_dosattr_next_step(handle, d)) {
		case ASYNC_DOSATTR_STEP_PROBE:
			d->probe = ASYNC_DOSATTR_PROBE_ENTRIES;
			break;
		case ASYNC_DOSATTR_STEP_PREFETCH:
			if (async_dosattr_top_up(handle, dirfsp, d)) {
				break;
			}
			/* no memory, or none left in the budget: directly */
			FALL_THROUGH;
		case ASYNC_DOSATTR_STEP_DIRECT:
			if (waiting == 0) {
				/* fast storage: no read-ahead, no overhead */
				async_dosattr_readahead_free(d);
				return ASVFS_NEXT_READDIR(handle, dirfsp,
							    dirp, sbuf);
			}
			break;
		}
	}
	/* a probe starts once what was read ahead is handed out */
	if (d->probe > 0 && asvfs_readahead_waiting(d->ra) == 0) {
		d->probe--;
		asvfs_readahead_drop(d->ra);
		return ASVFS_NEXT_READDIR(handle, dirfsp, dirp, sbuf);
	}
	de = asvfs_readahead_next(d->ra);
	if (de == NULL) {
		/*
		 * The end, every entry handed out and asked about (smbd
		 * asks before it reads on).  A client may keep the handle
		 * open for long (for change notify): the window's memory
		 * goes now, and smbd seeks back, if ever, through the next
		 * module.
		 */
		async_dosattr_readahead_free(d);
		d->ra->eof = true;
		return NULL;
	}
	if (sbuf != NULL) {
		/* read ahead a while ago: smbd must stat it itself */
		SET_STAT_INVALID(*sbuf);
	}
	return de;
}

#if !ASVFS_HAVE_SEEKDIR
/* Samba 4.19+: no stat buffer (smbd stats every entry itself) */
static struct dirent *async_dosattr_readdir_nostat(
	vfs_handle_struct *handle, struct files_struct *dirfsp, DIR *dirp)
{
	return async_dosattr_readdir(handle, dirfsp, dirp, NULL);
}
#else
static long async_dosattr_telldir(vfs_handle_struct *handle, DIR *dirp)
{
	struct async_dosattr_config *config = NULL;
	struct async_dosattr_dir *d = NULL;
	long pos;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return -1);
	d = async_dosattr_find_dir(config, dirp, false);
	if (d == NULL || !asvfs_readahead_tell(d->ra, &pos)) {
		return SMB_VFS_NEXT_TELLDIR(handle, dirp);
	}
	return pos;
}

/*
 * smbd seeks back one entry when a QUERY_DIRECTORY answer is full: a
 * position inside what we read ahead keeps the prefetched attributes.
 */
static void async_dosattr_seekdir(vfs_handle_struct *handle, DIR *dirp,
				  long offset)
{
	struct async_dosattr_config *config = NULL;
	struct async_dosattr_dir *d = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return);
	d = async_dosattr_find_dir(config, dirp, false);
	if (d != NULL) {
		config->n.seeks++;
		if (asvfs_readahead_seek(d->ra, offset)) {
			return;
		}
		config->n.seek_drops++;
	}
	SMB_VFS_NEXT_SEEKDIR(handle, dirp, offset);
}

#endif /* ASVFS_HAVE_SEEKDIR */

static void async_dosattr_rewind_dir(vfs_handle_struct *handle, DIR *dirp)
{
	struct async_dosattr_config *config = NULL;
	struct async_dosattr_dir *d = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return);
	d = async_dosattr_find_dir(config, dirp, false);
	if (d != NULL) {
		asvfs_readahead_drop(d->ra);
	}
	SMB_VFS_NEXT_REWINDDIR(handle, dirp);
}

/*
 * Only a client's listing (QUERY_DIRECTORY, opened with the client's
 * search mask) asks for DOS attributes afterwards.  smbd's own scans
 * (a case-insensitive name lookup on every create, rmdir, msdfs) open the
 * directory without a mask and are passed through: prefetching them
 * would read every attribute of the directory for nothing.  Where smbd
 * lists asynchronously it still lists each entry's EA names at once:
 * only those are read ahead.
 */
static DIR *async_dosattr_fdopendir(vfs_handle_struct *handle,
				    files_struct *fsp, const char *mask,
				    uint32_t attributes)
{
	struct async_dosattr_config *config = NULL;
	struct async_dosattr_dir *d = NULL;
	DIR *dirp = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return NULL);
	dirp = SMB_VFS_NEXT_FDOPENDIR(handle, fsp, mask, attributes);
	if (dirp == NULL) {
		return NULL;
	}
	/* a stream at an address we still track: the old one is gone */
	async_dosattr_forget_dir(config, dirp);
	if (mask == NULL || !config->prefetch_usable) {
		return dirp;
	}
	if (!async_dosattr_smbd_lists_async(handle)) {
		(void)async_dosattr_find_dir(config, dirp, true);
	} else if (config->names_usable) {
		d = async_dosattr_find_dir(config, dirp, true);
		if (d != NULL) {
			d->names_only = true;
		}
	}
	return dirp;
}

static int async_dosattr_closedir(vfs_handle_struct *handle, DIR *dirp)
{
	struct async_dosattr_config *config = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return -1);
	async_dosattr_forget_dir(config, dirp);
	return SMB_VFS_NEXT_CLOSEDIR(handle, dirp);
}


/*
 * The entry read ahead for this object (device, inode) that has not yet
 * given smbd its DOS attributes (names: its EA names), and its
 * directory.  smbd asks about each entry right after reading it, before
 * it reads on (in this or any other stream): only the stream read last
 * is searched, from the entry handed out last backwards.  Any other
 * object's attributes (an open, a client holding thousands of listed
 * handles) cost no search of the others.
 */
static struct asvfs_readahead_entry *async_dosattr_find_entry(
	struct async_dosattr_config *config, const SMB_STRUCT_STAT *st,
	bool names, struct async_dosattr_dir **pd)
{
	struct async_dosattr_dir *d = config->last_read;
	struct asvfs_readahead_entry *e = NULL;

	if (d == NULL || d->ra->count == 0 ||
	    !async_dosattr_reader_is_current(d->reader, config->conn)) {
		return NULL;
	}
	e = asvfs_readahead_find(d->ra, st->st_ex_dev, st->st_ex_ino, names);
	if (e != NULL) {
		*pd = d;
	}
	return e;
}

/*
 * Whether the object is unchanged since the prefetch noted it, before its
 * read: asked of the object itself now, after the read completed, and
 * through the same kind of call as then (a FUSE or NFS client may keep
 * other cached attributes for a lookup by name than for an open file).
 */
static bool async_dosattr_unchanged(struct files_struct *fsp,
				    const struct asvfs_readahead_entry *e)
{
	struct stat st;

	if (fstat(fsp_get_pathref_fd(fsp), &st) != 0) {
		return false;
	}
	return st.st_dev == e->key.dev && st.st_ino == e->key.ino &&
	       st.st_ctim.tv_sec == e->key.ctime.tv_sec &&
	       st.st_ctim.tv_nsec == e->key.ctime.tv_nsec &&
	       st.st_size == e->key.size;
}

/* Wait for the entry's getxattr; false if it cannot answer for smbd. */
static bool async_dosattr_collect(vfs_handle_struct *handle,
				  struct async_dosattr_config *config,
				  struct asvfs_readahead_entry *e)
{
	struct asvfs_engine *engine = async_dosattr_engine(handle, config);

	if (e->state == ASVFS_READAHEAD_FETCHING) {
		if (engine == NULL || !asvfs_engine_wait(engine, e->subreq)) {
			return false;
		}
		e->size = asvfs_getxattr_recv(e->subreq, &e->err);
		TALLOC_FREE(e->subreq);
		e->state = ASVFS_READAHEAD_FETCHED;
	}
	/* smbd retries EACCES as root: leave those to it */
	return e->size >= 0 || e->err == ENODATA;
}

static NTSTATUS async_dosattr_fget_next(vfs_handle_struct *handle,
					struct async_dosattr_config *config,
					struct files_struct *fsp,
					uint32_t *dosmode)
{
	struct timespec start;
	NTSTATUS status;

	config->n.misses++;
	clock_gettime_mono(&start);
	status = SMB_VFS_NEXT_FGET_DOS_ATTRIBUTES(handle, fsp, dosmode);
	(void)async_dosattr_learn(config, &start);
	return status;
}

static NTSTATUS async_dosattr_fget_dos_attributes(vfs_handle_struct *handle,
						  struct files_struct *fsp,
						  uint32_t *dosmode)
{
	struct async_dosattr_config *config = NULL;
	struct asvfs_readahead_entry *e = NULL;
	struct async_dosattr_dir *d = NULL;
	enum asvfs_readahead_state was;
	DATA_BLOB blob;
	bool answers;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return NT_STATUS_INTERNAL_ERROR);
	if (config->last_read != NULL && !fsp_is_alternate_stream(fsp) &&
	    VALID_STAT(fsp->fsp_name->st)) {
		e = async_dosattr_find_entry(config, &fsp->fsp_name->st,
					     false, &d);
	}
	if (e == NULL) {
		return async_dosattr_fget_next(handle, config, fsp, dosmode);
	}
	answers = async_dosattr_collect(handle, config, e) &&
		  async_dosattr_unchanged(fsp, e);
	/* asked once, whether or not it could answer */
	was = asvfs_readahead_answer(e);
	if (!answers) {
		return async_dosattr_fget_next(handle, config, fsp, dosmode);
	}
	config->n.hits++;
	if (was != ASVFS_READAHEAD_CACHED) {
		/* read after a ctime older than the granularity, still it */
		struct asvfs_attrcache_read r = {
			.len = e->size, .err = e->err, .data = e->value,
		};

		asvfs_attrcache_put_value(async_dosattr_cache(config),
					  &e->key, &r);
	}
	if (e->size < 0) {
		return map_nt_error_from_unix(e->err);
	}
	blob = data_blob_const(e->value, e->size);
	return parse_dos_attribute_blob(fsp->fsp_name, blob, dosmode);
}

static bool async_dosattr_names_ready(const struct asvfs_readahead_entry *e)
{
	return e->names == ASVFS_READAHEAD_NAMES_LISTED ||
	       e->names == ASVFS_READAHEAD_NAMES_CACHED;
}

/* Wait for the batch with e's names, and hand out all its results. */
static bool async_dosattr_collect_names(struct async_dosattr_dir *d,
					struct asvfs_readahead_entry *e)
{
	struct asvfs_readahead_batch *b = e->batch;
	unsigned k;

	if (b == NULL) {
		return async_dosattr_names_ready(e);
	}
	asvfs_worker_wait(b->subreq);
	for (k = 0; k < d->ra->count; k++) {
		struct asvfs_readahead_entry *t = asvfs_readahead_at(d->ra, k);
		const struct asvfs_names *r = NULL;

		if (t->batch != b) {
			continue;
		}
		t->batch = NULL;
		if (t->names == ASVFS_READAHEAD_NAMES_ANSWERED) {
			continue;	/* refused before the batch came */
		}
		r = asvfs_worker_names(b->subreq, t->batch_idx);
		/* errors, and lists too long to keep, are smbd's to meet */
		if (r != NULL && r->len >= 0) {
			memcpy(asvfs_readahead_names_of(d->ra, t), r->list,
			       r->len);
			t->names_len = r->len;
			t->names = ASVFS_READAHEAD_NAMES_LISTED;
		}
	}
	asvfs_readahead_batch_free(d->ra, b);
	return async_dosattr_names_ready(e);
}

/*
 * smbd's EaSize of a listed entry: from the names listed ahead, when the
 * entry is the object they were listed for and is unchanged since (any
 * xattr set or removed changes the ctime).
 */
static ssize_t async_dosattr_flistxattr(vfs_handle_struct *handle,
					struct files_struct *fsp, char *list,
					size_t size)
{
	struct async_dosattr_config *config = NULL;
	struct asvfs_readahead_entry *e = NULL;
	struct async_dosattr_dir *d = NULL;
	char *names = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_dosattr_config,
				return -1);
	if (config->last_read != NULL && !fsp_is_alternate_stream(fsp) &&
	    VALID_STAT(fsp->fsp_name->st)) {
		e = async_dosattr_find_entry(config, &fsp->fsp_name->st, true,
					     &d);
	}
	if (e == NULL) {
		return SMB_VFS_NEXT_FLISTXATTR(handle, fsp, list, size);
	}
	d->names_asked = true;
	if (!async_dosattr_collect_names(d, e) ||
	    !async_dosattr_unchanged(fsp, e)) {
		e->names = ASVFS_READAHEAD_NAMES_ANSWERED;
		return SMB_VFS_NEXT_FLISTXATTR(handle, fsp, list, size);
	}
	names = asvfs_readahead_names_of(d->ra, e);
	if (e->names != ASVFS_READAHEAD_NAMES_CACHED) {
		struct asvfs_attrcache_read r = {
			.len = e->names_len, .data = names,
		};

		asvfs_attrcache_put_names(async_dosattr_cache(config),
					  &e->key, &r);
		/* once is enough */
		e->names = ASVFS_READAHEAD_NAMES_CACHED;
	}
	if (size == 0) {
		return e->names_len;	/* the size; the list comes next */
	}
	e->names = ASVFS_READAHEAD_NAMES_ANSWERED;
	if ((size_t)e->names_len > size) {
		errno = ERANGE;
		return -1;
	}
	memcpy(list, names, e->names_len);
	config->n.names++;
	return e->names_len;
}

static struct vfs_fn_pointers vfs_async_dosattr_fns = {
	.connect_fn = async_dosattr_connect,
	.disconnect_fn = async_dosattr_disconnect,
	.get_dos_attributes_send_fn = async_dosattr_get_dos_attributes_send,
	.get_dos_attributes_recv_fn = async_dosattr_get_dos_attributes_recv,
	.fget_dos_attributes_fn = async_dosattr_fget_dos_attributes,
	.flistxattr_fn = async_dosattr_flistxattr,
	.fdopendir_fn = async_dosattr_fdopendir,
#if ASVFS_HAVE_SEEKDIR
	.readdir_fn = async_dosattr_readdir,
	.telldir_fn = async_dosattr_telldir,
	.seekdir_fn = async_dosattr_seekdir,
#else
	.readdir_fn = async_dosattr_readdir_nostat,
#endif
	.rewind_dir_fn = async_dosattr_rewind_dir,
	.closedir_fn = async_dosattr_closedir,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_dosattr_fns,
				     &vfs_async_dosattr_debug_level);
}
