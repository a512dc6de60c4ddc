/*
 * vfs_async_open: client opens that may block go through io_uring while
 * smbd serves the connection's other requests.
 *
 * smbd 4.17 has two ways to defer an open from openat_fn, and they are
 * not interchangeable:
 *
 * - EINPROGRESS (NT_STATUS_MORE_PROCESSING_REQUIRED) defers the request
 *   until someone calls schedule_deferred_open_message_smb(); the replay
 *   assumes the file did not exist, a 20 s timer kills the process
 *   (exit_server) if no replay comes, and the client cannot cancel.  It
 *   only fits a create of a missing file (O_CREAT|O_EXCL).
 * - EINTR (NT_STATUS_RETRY) makes smbd retry the whole open about once a
 *   second for up to a minute, cancellable, with a fresh path walk and
 *   access check each time; schedule_deferred_open_message_smb() makes the
 *   retry immediate.  It fits the reopen of an existing file through
 *   /proc/self/fd/<pathref fd>.
 *
 * Both start the same open in the engine (IORING_OP_OPENAT with the
 * caller's credentials as a personality, relative to a dup() of the fd
 * smbd would have used) and remember it as "pending", keyed by the SMB2
 * channel and message id of the request that asked.  When it completes,
 * the request is replayed at once; the replay's openat_fn gets the fd
 * only when the channel, mid, name, flags, mode and the object's device
 * and inode all match.  Anything else gets nothing from us.
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
#include "lib/util/tevent_unix.h"

#include "asvfs_creds.h"
#include "asvfs_engine.h"
#include "asvfs_smbconf.h"
#include "asvfs_samba_version.h"
#include "asvfs_worker.h"

static int vfs_async_open_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_open_debug_level

#define MODULE "async_open"

#define PROC_FD_PREFIX "/proc/self/fd/"

/*
 * A completed open whose replay never comes (the client went away between
 * completion and replay) is dropped after this long.
 */
#define ASYNC_OPEN_UNCLAIMED_SEC 30

/*
 * Flags that differ between a create and its replay: smbd adds O_EXCL
 * for a name it believes free, and O_NOFOLLOW by name but not through
 * /proc/self/fd.
 */
#define ASYNC_OPEN_REPLAY_FLAGS (O_CREAT | O_EXCL | O_NOFOLLOW)

enum async_open_mode { AO_OFF, AO_CREATES, AO_ALL, AO_AUTO };

/* Who runs an asynchronous open. */
enum async_open_backend { AO_BACKEND_AUTO, AO_BACKEND_URING,
			  AO_BACKEND_THREADS };

/* What each kind of open did, logged at level 5 on disconnect. */
struct async_open_counters {
	uint64_t creates;	/* started with the EINPROGRESS hook */
	uint64_t existing;	/* started with the EINTR hook */
	uint64_t handed;	/* fds given to their replay */
	uint64_t failed;	/* errors given to their replay */
	uint64_t mismatched;	/* replays that did not match: dropped */
	uint64_t sync_again;	/* failed asynchronously: run synchronously */
	uint64_t timeouts;	/* answered with the timeout status */
	uint64_t abandoned;	/* completed with nobody to take the fd */
	uint64_t next;		/* passed to the next module synchronously */
	uint64_t threads;	/* of the started ones: on worker threads */
	uint64_t discarded;	/* creates for nobody, to be removed again */
};

struct async_open_pending;

struct async_open_config {
	enum async_open_mode mode;
	enum async_open_backend backend;
	uint64_t timeout_msec;
	uint64_t threshold_nsec;	/* auto: asynchronous above this */
	uint64_t estimate_nsec;		/* auto: synchronous open time */
	uint64_t calls;
	struct asvfs_engine_config engine;
	struct async_open_counters n;
};

struct async_open_pending {
	struct async_open_pending *prev, *next;
	struct async_open_config *config;
	struct smbXsrv_client *client;
	struct tevent_context *ev;
	/* which request: one message id per channel */
	uint64_t channel_id;
	uint64_t mid;
	/* what it asked for */
	bool create;
	bool worker;		/* on a worker thread, not io_uring */
	char *name;		/* the share-relative name smbd gave the fsp */
	int flags;		/* without ASYNC_OPEN_REPLAY_FLAGS */
	mode_t mode;
	dev_t dev;		/* existing files: the object smbd checked */
	ino_t ino;
	/* creates: to remove a file made for nobody (see async_open_discard) */
	int dirfd;		/* a dup() of the directory's fd */
	char *at_name;		/* the name relative to it */
	struct asvfs_creds creds;	/* the creator's */
	/* what it got */
	struct tevent_req *subreq;	/* NULL once completed */
	struct tevent_timer *te;	/* timeout, then unclaimed */
	int fd;
	int err;
	bool done;
	bool timed_out;
	bool rerun;		/* the next attempt goes synchronously */
	bool listed;
};

/*
 * The pending opens of every tree connect of this process, so that the
 * removal of a file made for nobody can see who else is opening it.
 */
static struct async_open_pending *async_open_pending_list;

/* smbd's async open limit (source3/smbd/open.c), unpatched */
#define ASYNC_OPEN_SMBD_LIMIT_MSEC 20000

/* --- options ------------------------------------------------------------ */

static const struct asvfs_enum_value async_open_modes[] = {
	{ "creates", AO_CREATES }, { "all", AO_ALL }, { "auto", AO_AUTO },
	{ "off", AO_OFF },
	{ NULL, 0 },
};

static const struct asvfs_enum_value async_open_backends[] = {
	{ "auto", AO_BACKEND_AUTO }, { "io_uring", AO_BACKEND_URING },
	{ "threads", AO_BACKEND_THREADS },
	{ NULL, 0 },
};

static void async_open_parse_options(struct async_open_config *config,
				     int snum)
{
	config->mode = asvfs_conf_enum(snum, MODULE, "mode", async_open_modes,
				       AO_CREATES);
	config->backend = asvfs_conf_enum(snum, MODULE, "backend",
					  async_open_backends,
					  AO_BACKEND_AUTO);
	/*
	 * Milliseconds.  Unpatched smbd exits the whole process 20 s after
	 * an EINPROGRESS deferral: the maximum leaves a second of margin.
	 */
	config->timeout_msec = asvfs_conf_uint(snum, MODULE, "timeout", 10000,
					       100, 19000);
	config->threshold_nsec = asvfs_conf_uint(snum, MODULE,
						 "async threshold usec", 1000,
						 0, 10000000) * 1000;
	config->engine.entries = 256;
}

static int async_open_connect(vfs_handle_struct *handle,
			      const char *service, const char *user)
{
	struct async_open_config *config = NULL;
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}
	config = talloc_zero(handle->conn, struct async_open_config);
	if (config == NULL) {
		SMB_VFS_NEXT_DISCONNECT(handle);
		errno = ENOMEM;
		return -1;
	}
	async_open_parse_options(config, SNUM(handle->conn));
	SMB_VFS_HANDLE_SET_DATA(handle, config, NULL,
				struct async_open_config, return -1);
	return 0;
}

static void async_open_disconnect(vfs_handle_struct *handle)
{
	const struct loadparm_substitution *lp_sub =
		loadparm_s3_global_substitution();
	struct async_open_config *config = NULL;
	struct async_open_counters *n = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				goto next);
	n = &config->n;
	DBG_INFO(MODULE " counters openat: share=%s creates=%" PRIu64
		 " existing=%" PRIu64 " handed=%" PRIu64 " failed=%" PRIu64
		 " mismatched=%" PRIu64 " sync_again=%" PRIu64
		 " timeouts=%" PRIu64 " abandoned=%" PRIu64 " next=%" PRIu64
		 " threads=%" PRIu64 " discarded=%" PRIu64
		 " estimate_usec=%" PRIu64 "\n",
		 lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		 n->creates, n->existing, n->handed, n->failed,
		 n->mismatched, n->sync_again, n->timeouts, n->abandoned,
		 n->next, n->threads, n->discarded,
		 config->estimate_nsec / 1000);
next:
	/* pending opens go with the config: late fds are closed */
	SMB_VFS_NEXT_DISCONNECT(handle);
}

/* --- which request ------------------------------------------------------- */

/*
 * The SMB2 request that is opening fsp right now.  fsp_bind_smb() made
 * the request's chain_fsp point to this very fsp, so the match is exact
 * on every channel of a multichannel session, where message ids repeat.
 */
static struct smbXsrv_connection *async_open_find_channel(
	connection_struct *conn, files_struct *fsp,
	struct timeval *request_time)
{
	struct smbXsrv_connection *xconn = NULL;
	struct smbd_smb2_request *smb2req = NULL;

	if (fsp->op == NULL || conn->sconn->client == NULL) {
		return NULL;		/* an internal open: never deferred */
	}
	for (xconn = conn->sconn->client->connections; xconn != NULL;
	     xconn = xconn->next) {
		if (xconn->protocol < PROTOCOL_SMB2_02) {
			continue;	/* SMB1 replays differently */
		}
		for (smb2req = xconn->smb2.requests; smb2req != NULL;
		     smb2req = smb2req->next) {
			if (smb2req->smb1req != NULL &&
			    smb2req->smb1req->chain_fsp == fsp &&
			    smb2req->smb1req->mid == fsp->mid &&
			    smb2req->subreq != NULL &&
			    tevent_req_is_in_progress(smb2req->subreq)) {
				*request_time = smb2req->smb1req->request_time;
				return xconn;
			}
		}
	}
	return NULL;
}

/*
 * smbd defers a create only while its request is younger than 20 s
 * (schedule_async_open(): an older one gets our EINPROGRESS as its final
 * status), and its exit_server timer stays with the request if a replay
 * is deferred again.  A request that already waited (an oplock or lease
 * break, a sharing violation retry) so long that our own timeout could
 * not answer it within those 20 s is opened synchronously instead.
 */
static bool async_open_in_time(struct async_open_config *config,
			       const struct timeval *request_time)
{
	struct timeval now = timeval_current();
	int64_t age_usec = usec_time_diff(&now, request_time);

	return age_usec + (int64_t)config->timeout_msec * 1000 <
	       (int64_t)ASYNC_OPEN_SMBD_LIMIT_MSEC * 1000;
}

static struct smbXsrv_connection *async_open_channel_by_id(
	struct smbXsrv_client *client, uint64_t channel_id)
{
	struct smbXsrv_connection *xconn = NULL;

	for (xconn = client->connections; xconn != NULL; xconn = xconn->next) {
		if (xconn->channel_id == channel_id) {
			return xconn;
		}
	}
	return NULL;
}

/* Replay the request now; false if it is gone (cancel, disconnect). */
static bool async_open_replay(struct async_open_pending *p)
{
	struct smbXsrv_connection *xconn = NULL;

	xconn = async_open_channel_by_id(p->client, p->channel_id);
	if (xconn == NULL) {
		return false;
	}
	return schedule_deferred_open_message_smb(xconn, p->mid);
}

static struct async_open_pending *async_open_lookup(
	struct async_open_config *config, uint64_t channel_id, uint64_t mid)
{
	struct async_open_pending *p = NULL;

	for (p = async_open_pending_list; p != NULL; p = p->next) {
		if (p->config == config && p->channel_id == channel_id &&
		    p->mid == mid) {
			return p;
		}
	}
	return NULL;
}

/* --- the pending open ----------------------------------------------------- */

static void async_open_unlist(struct async_open_pending *p)
{
	if (p->listed) {
		DLIST_REMOVE(async_open_pending_list, p);
		p->listed = false;
	}
}

/* --- a create nobody took ------------------------------------------------ */

/*
 * A file our create made for a request that is gone (cancel, disconnect,
 * logoff, or answered at its timeout) never got smbd's post-create steps
 * (inherited ACL, DOS attributes, share mode entry) and was never
 * reported to anyone as created: it must not stay.  It is removed as its
 * creator, and only while the name is still that object, on a worker
 * thread: completions run under whatever user smbd impersonated last.
 * The reaper outlives the share (a tree disconnect frees the config).
 */
struct async_open_reaper {
	struct tevent_context *ev;
	int fd;			/* the created object: its inode stays ours */
	int dirfd;
	char *at_name;
	struct asvfs_creds creds;
	bool worker;
};

static int async_open_reaper_destructor(struct async_open_reaper *r)
{
	if (r->fd != -1) {
		close(r->fd);
	}
	if (r->dirfd != -1) {
		close(r->dirfd);
	}
	return 0;
}

static void async_open_removed(struct tevent_req *req)
{
	struct async_open_reaper *r = tevent_req_callback_data(
		req, struct async_open_reaper);
	int err = asvfs_worker_unlink_recv(req);

	if (err == 0) {
		DBG_INFO(MODULE ": removed %s, created for a request that "
			 "went\n", r->at_name);
	} else {
		DBG_NOTICE(MODULE ": left %s, created for a request that "
			   "went: %s\n", r->at_name, strerror(err));
	}
	talloc_free(r);
}

/*
 * Whether the object is somebody's now: open through smbd in any process
 * (its share mode record, default file ids), or being opened by an
 * asynchronous open of an existing file here, whose share mode entry
 * comes only after the open.  Such a file stays.
 */
static bool async_open_in_use(const struct stat *st)
{
	struct file_id id = { .devid = st->st_dev, .inode = st->st_ino };
	struct share_mode_lock *lck = NULL;
	struct async_open_pending *p = NULL;

	for (p = async_open_pending_list; p != NULL; p = p->next) {
		if (!p->create && p->dev == st->st_dev &&
		    p->ino == st->st_ino) {
			return true;
		}
	}
	lck = fetch_share_mode_unlocked(talloc_tos(), id);
	if (lck == NULL) {
		return false;
	}
	TALLOC_FREE(lck);
	return true;
}

/*
 * Remove the file behind fd if it is still at its name and nobody has
 * it; r keeps fd until then, so that its inode cannot be reused.
 */
static void async_open_reap_fd(struct async_open_reaper *r, int fd)
{
	struct tevent_req *req = NULL;
	struct stat st;

	r->fd = fd;
	if (fstat(fd, &st) != 0) {
		talloc_free(r);
		return;
	}
	if (async_open_in_use(&st)) {
		DBG_NOTICE(MODULE ": left %s, created for a request that "
			   "went: someone else opened it\n", r->at_name);
		talloc_free(r);
		return;
	}
	req = asvfs_worker_unlink_send(r, r->ev, r->dirfd, r->at_name,
				       st.st_dev, st.st_ino, &r->creds);
	if (req == NULL) {
		DBG_WARNING(MODULE ": cannot remove %s, created for a "
			    "request that went\n", r->at_name);
		talloc_free(r);
		return;
	}
	tevent_req_set_callback(req, async_open_removed, r);
}

static int async_open_recv_fd(struct tevent_req *subreq, bool worker,
			      int *err)
{
	return worker ? asvfs_worker_open_recv(subreq, err) :
			asvfs_openat_recv(subreq, err);
}

static void async_open_reaped(struct tevent_req *subreq)
{
	struct async_open_reaper *r = tevent_req_callback_data(
		subreq, struct async_open_reaper);
	int err = 0;
	int fd = async_open_recv_fd(subreq, r->worker, &err);

	TALLOC_FREE(subreq);
	if (fd == -1) {
		talloc_free(r);		/* it created nothing */
		return;
	}
	async_open_reap_fd(r, fd);
}

static void async_open_discard(struct async_open_pending *p)
{
	struct async_open_reaper *r = NULL;

	if (!p->create || p->dirfd == -1 ||
	    (p->fd == -1 && p->subreq == NULL)) {
		return;
	}
	r = talloc_zero(NULL, struct async_open_reaper);
	if (r == NULL) {
		return;		/* the fd is closed, the file stays */
	}
	r->ev = p->ev;
	r->fd = -1;
	r->dirfd = p->dirfd;
	p->dirfd = -1;
	r->at_name = talloc_move(r, &p->at_name);
	r->creds = p->creds;
	talloc_steal(r, r->creds.groups);	/* p goes */
	r->worker = p->worker;
	talloc_set_destructor(r, async_open_reaper_destructor);
	p->config->n.discarded++;
	if (p->fd != -1) {
		async_open_reap_fd(r, p->fd);
		p->fd = -1;
		return;
	}
	talloc_steal(r, p->subreq);
	tevent_req_set_callback(p->subreq, async_open_reaped, r);
	p->subreq = NULL;
}

/*
 * Freeing a pending open frees its open request, whose late fd the
 * engine or worker closes, or hands a create's to the reaper; a
 * completed fd nobody took is closed here.
 */
static int async_open_pending_destructor(struct async_open_pending *p)
{
	async_open_unlist(p);
	async_open_discard(p);
	if (p->fd != -1) {
		close(p->fd);
		p->fd = -1;
	}
	if (p->dirfd != -1) {
		close(p->dirfd);
		p->dirfd = -1;
	}
	return 0;
}

static void async_open_unclaimed(struct tevent_context *ev,
				 struct tevent_timer *te,
				 struct timeval now, void *private_data)
{
	struct async_open_pending *p = talloc_get_type_abort(
		private_data, struct async_open_pending);

	DBG_NOTICE(MODULE ": nobody replayed mid %" PRIu64 " for %s: "
		   "dropping its open\n", p->mid, p->name);
	p->config->n.abandoned++;
	TALLOC_FREE(p);
}

static void async_open_timeout(struct tevent_context *ev,
			       struct tevent_timer *te,
			       struct timeval now, void *private_data)
{
	struct async_open_pending *p = talloc_get_type_abort(
		private_data, struct async_open_pending);

	p->te = NULL;
	p->timed_out = true;
	DBG_WARNING(MODULE ": open of %s (mid %" PRIu64 ") still pending "
		    "after %" PRIu64 " ms: failing the request\n", p->name,
		    p->mid, p->config->timeout_msec);
	if (!async_open_replay(p)) {
		p->config->n.abandoned++;
		TALLOC_FREE(p);
	}
}

static void async_open_done(struct tevent_req *subreq)
{
	struct async_open_pending *p = tevent_req_callback_data(
		subreq, struct async_open_pending);

	p->fd = async_open_recv_fd(subreq, p->worker, &p->err);
	TALLOC_FREE(subreq);
	p->subreq = NULL;
	p->done = true;
	DBG_DEBUG(MODULE ": %s of %s for mid %" PRIu64 ": fd %d, %s\n",
		  p->create ? "create" : "open", p->name, p->mid, p->fd,
		  p->fd == -1 ? strerror(p->err) : "ok");
	TALLOC_FREE(p->te);

	if (!p->listed) {
		/* the request was answered at its timeout: a late fd */
		TALLOC_FREE(p);
		return;
	}
	if (!p->timed_out && !async_open_replay(p)) {
		DBG_INFO(MODULE ": mid %" PRIu64 " for %s is gone: closing "
			 "its open\n", p->mid, p->name);
		p->config->n.abandoned++;
		TALLOC_FREE(p);
		return;
	}
	/*
	 * The replay is scheduled (now, or at the timeout); should it end
	 * before it reaches openat (an error earlier in smbd), the fd must
	 * not wait for the tree disconnect.
	 */
	p->te = tevent_add_timer(p->ev, p,
				 timeval_current_ofs(ASYNC_OPEN_UNCLAIMED_SEC,
						     0),
				 async_open_unclaimed, p);
	if (p->te == NULL) {
		/* without the timer the conn's teardown still frees it */
		DBG_WARNING(MODULE ": no memory for a timer\n");
	}
}

static struct asvfs_engine *async_open_engine(vfs_handle_struct *handle,
					      struct async_open_config *c)
{
	return asvfs_module_engine(handle, MODULE, &c->engine,
				   ASVFS_OP_OPENAT,
				   c->backend == AO_BACKEND_AUTO ?
				   "opens go to worker threads" :
				   "opens stay synchronous");
}

/*
 * The reopen smbd does for an existing file: open("/proc/self/fd/<pathref
 * fd>") relative to the connection's cwd fsp.
 */
static bool async_open_is_reopen(vfs_handle_struct *handle,
				 const struct files_struct *dirfsp,
				 const struct smb_filename *smb_fname,
				 files_struct *fsp)
{
	return dirfsp == handle->conn->cwd_fsp &&
	       strncmp(smb_fname->base_name, PROC_FD_PREFIX,
		       strlen(PROC_FD_PREFIX)) == 0 &&
	       fsp_get_pathref_fd(fsp) != -1;
}

/*
 * What a create needs to remove its file again should nobody take it:
 * the directory, the name in it and the creator's credentials.
 */
static bool async_open_note_creator(struct async_open_pending *p,
				    const struct files_struct *dirfsp,
				    const struct smb_filename *smb_fname)
{
	p->at_name = talloc_strdup(p, smb_fname->base_name);
	if (p->at_name == NULL || asvfs_creds_current(p, &p->creds) != 0) {
		return false;
	}
	p->dirfd = fcntl(fsp_get_pathref_fd(dirfsp), F_DUPFD_CLOEXEC, 0);
	return p->dirfd != -1;
}

/*
 * The open itself, on io_uring or a worker thread as async_open:backend
 * says.  Both keep a dup() of the fd and a copy of the name until it
 * completes, and run it with the caller's credentials of now.
 */
static struct tevent_req *async_open_send_open(
	struct async_open_pending *p, vfs_handle_struct *handle,
	struct async_open_config *config, const struct files_struct *dirfsp,
	const struct smb_filename *smb_fname, files_struct *fsp,
	const struct vfs_open_how *how)
{
	struct asvfs_engine *engine = NULL;

	if (config->backend != AO_BACKEND_THREADS) {
		engine = async_open_engine(handle, config);
		if (engine == NULL && config->backend == AO_BACKEND_URING) {
			return NULL;
		}
	}
	p->worker = engine == NULL;
	if (p->create && engine != NULL) {
		return asvfs_openat_send(p, p->ev, engine,
					 fsp_get_pathref_fd(dirfsp),
					 smb_fname->base_name, how->flags,
					 how->mode);
	}
	if (p->create) {
		return asvfs_worker_openat_send(p, p->ev,
						fsp_get_pathref_fd(dirfsp),
						smb_fname->base_name,
						how->flags, how->mode,
						&p->creds);
	}
	if (engine != NULL) {
		return asvfs_reopen_send(p, p->ev, engine,
					 fsp_get_pathref_fd(fsp), how->flags,
					 how->mode);
	}
	return asvfs_worker_reopen_send(p, p->ev, fsp_get_pathref_fd(fsp),
					how->flags, how->mode);
}

static bool async_open_start(vfs_handle_struct *handle,
			     struct async_open_config *config,
			     struct smbXsrv_connection *xconn,
			     const struct files_struct *dirfsp,
			     const struct smb_filename *smb_fname,
			     files_struct *fsp,
			     const struct vfs_open_how *how, bool create,
			     const struct stat *object)
{
	struct tevent_context *ev = handle->conn->sconn->ev_ctx;
	struct async_open_pending *p = NULL;

	p = talloc_zero(config, struct async_open_pending);
	if (p == NULL) {
		return false;
	}
	*p = (struct async_open_pending) {
		.config = config, .client = xconn->client, .ev = ev,
		.channel_id = xconn->channel_id, .mid = fsp->mid,
		.create = create,
		.flags = how->flags & ~ASYNC_OPEN_REPLAY_FLAGS,
		.mode = how->mode, .fd = -1, .dirfd = -1,
	};
	talloc_set_destructor(p, async_open_pending_destructor);
	p->name = talloc_strdup(p, fsp->fsp_name->base_name);
	if (p->name == NULL ||
	    (create && !async_open_note_creator(p, dirfsp, smb_fname))) {
		TALLOC_FREE(p);
		return false;
	}
	if (object != NULL) {
		p->dev = object->st_dev;
		p->ino = object->st_ino;
	}
	p->subreq = async_open_send_open(p, handle, config, dirfsp, smb_fname,
					 fsp, how);
	/* refused at once (say, no personality): smbd opens it itself */
	if (p->subreq == NULL || asvfs_engine_refused(&p->subreq)) {
		TALLOC_FREE(p);
		return false;
	}
	if (p->worker) {
		config->n.threads++;
	}
	tevent_req_set_callback(p->subreq, async_open_done, p);
	p->te = tevent_add_timer(ev, p,
				 timeval_current_ofs_msec(config->timeout_msec),
				 async_open_timeout, p);
	if (p->te == NULL) {
		TALLOC_FREE(p);
		return false;
	}
	DLIST_ADD(async_open_pending_list, p);
	p->listed = true;
	DBG_DEBUG(MODULE ": %s of %s started for mid %" PRIu64 " on "
		  "channel %" PRIu64 "\n", create ? "create" : "open",
		  p->name, p->mid, p->channel_id);
	return true;
}

/* --- the replay ----------------------------------------------------------- */

static bool async_open_same_object(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return fd != -1 && fstat(fd, &st) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
}

/* The object behind our fd is still the one at dirfd/name. */
static bool async_open_at_name(int fd, const struct files_struct *dirfsp,
			       const char *name)
{
	struct stat st;

	if (fstatat(fsp_get_pathref_fd(dirfsp), name, &st,
		    AT_SYMLINK_NOFOLLOW) != 0) {
		return false;
	}
	return async_open_same_object(fd, st.st_dev, st.st_ino);
}

/*
 * Errors that say something about the asynchronous machinery (a cancel, a
 * signal to the kernel worker, memory, a full personality cache) or that
 * smbd would not map to a meaningful status, rather than about the file:
 * the request is run again synchronously instead of failing with them.
 * A refusal (EACCES, EPERM) is confirmed synchronously too before the
 * client sees it: under load on FUSE (8 clients x 16 creates in flight)
 * an io_uring create was refused now and then where the synchronous one
 * succeeds, and the cause is not understood yet.
 */
static bool async_open_infra_error(int err)
{
	switch (err) {
	case EACCES:
	case EPERM:
	case ECANCELED:
	case EINTR:
	case EAGAIN:
	case EBUSY:
	case ENOMEM:
	case EINVAL:
	case EBADF:
	case ENOSYS:
	case EOPNOTSUPP:
		return true;
	}
	return err <= 0 || err >= 512;	/* kernel-internal (ERESTARTSYS) */
}

enum async_open_verdict {
	AO_MISMATCH,	/* not what we opened: start again */
	AO_HAND,	/* give p's fd or error to this call */
	AO_BY_NAME,	/* make smbd ask again by name */
	AO_NOT_CREATED,	/* make smbd ask again with O_CREAT|O_EXCL */
	AO_SYNC_AGAIN,	/* failed asynchronously: start again, synchronously */
};

/*
 * Does this call ask for what p opened?  An existing file's replay is
 * the reopen of the same object.  A create's replay first finds the file
 * our create made and tries to reopen it through /proc/self/fd: that
 * would count as an open of an existing file (wrong create action, no
 * inheritance), so we answer EINPROGRESS, which smbd's reopen takes as
 * "no proc fds here" and falls back to opening by name, O_CREAT|O_EXCL,
 * where the fd is handed over and counted as created.  By name,
 * fd_open_atomic() first tries without O_CREAT when its (older) stat of
 * the name says the file exists, as it does now that we made it: ENOENT
 * sends it on to O_CREAT|O_EXCL, which gets the fd.  A failed create
 * answers only a name that is still free.
 */
static enum async_open_verdict async_open_matches(
	struct async_open_pending *p, vfs_handle_struct *handle,
	const struct files_struct *dirfsp,
	const struct smb_filename *smb_fname, files_struct *fsp,
	const struct vfs_open_how *how)
{
	bool reopen = async_open_is_reopen(handle, dirfsp, smb_fname, fsp);
	struct stat st;

	if (p->done && p->fd == -1 && async_open_infra_error(p->err)) {
		DBG_NOTICE(MODULE ": asynchronous %s of %s failed with %s: "
			   "running it again synchronously\n",
			   p->create ? "create" : "open", p->name,
			   strerror(p->err));
		return AO_SYNC_AGAIN;
	}
	if (!p->done || strcmp(p->name, fsp->fsp_name->base_name) != 0 ||
	    (how->flags & ~ASYNC_OPEN_REPLAY_FLAGS) != p->flags ||
	    how->mode != p->mode) {
		return AO_MISMATCH;
	}
	if (p->fd == -1 && p->create) {
		return (!reopen && p->err != EEXIST) ? AO_HAND : AO_MISMATCH;
	}
	if (!reopen) {
		if (!p->create ||
		    !async_open_at_name(p->fd, dirfsp, smb_fname->base_name)) {
			return AO_MISMATCH;
		}
		return (how->flags & O_CREAT) ? AO_HAND : AO_NOT_CREATED;
	}
	if (fstat(fsp_get_pathref_fd(fsp), &st) != 0) {
		return AO_MISMATCH;
	}
	if (p->create) {
		return async_open_same_object(p->fd, st.st_dev, st.st_ino) ?
			AO_BY_NAME : AO_MISMATCH;
	}
	/* an error (EACCES from the kernel) answers the same object too */
	if (st.st_dev != p->dev || st.st_ino != p->ino) {
		return AO_MISMATCH;
	}
	return (p->fd == -1 ||
		async_open_same_object(p->fd, st.st_dev, st.st_ino)) ?
		AO_HAND : AO_MISMATCH;
}

static void async_open_rerun_now(struct tevent_context *ev,
				 struct tevent_immediate *im,
				 void *private_data)
{
	struct async_open_pending *p = talloc_get_type_abort(
		private_data, struct async_open_pending);

	if (!async_open_replay(p)) {
		TALLOC_FREE(p);
	}
}

/*
 * The retry must not find the file our create made: remove it now, as
 * the requester (smbd impersonates them in openat), if it is still ours.
 */
static void async_open_unmake(struct async_open_pending *p)
{
	struct stat st;

	if (!p->create || p->fd == -1 || p->dirfd == -1 ||
	    fstatat(p->dirfd, p->at_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !async_open_same_object(p->fd, st.st_dev, st.st_ino) ||
	    async_open_in_use(&st)) {
		return;
	}
	if (unlinkat(p->dirfd, p->at_name, 0) != 0) {
		DBG_NOTICE(MODULE ": cannot remove %s before its retry: %s\n",
			   p->at_name, strerror(errno));
	}
	close(p->fd);
	p->fd = -1;
}

/*
 * Ask smbd to run the open again from the start, as a plain retry: a
 * fresh path walk and access check, with nothing assumed.  EINTR defers
 * it; our immediate makes the retry happen at once instead of in a
 * second.  p stays behind as a marker, so that the retry opens
 * synchronously: a request never loops through asynchronous attempts.
 */
static int async_open_rerun(struct async_open_pending *p)
{
	struct tevent_immediate *im = NULL;

	async_open_unmake(p);
	async_open_discard(p);		/* a create still in flight */
	TALLOC_FREE(p->subreq);		/* a late fd is closed for us */
	TALLOC_FREE(p->te);
	if (p->fd != -1) {
		close(p->fd);
		p->fd = -1;
	}
	p->done = true;
	p->rerun = true;
	p->te = tevent_add_timer(p->ev, p,
				 timeval_current_ofs(ASYNC_OPEN_UNCLAIMED_SEC,
						     0),
				 async_open_unclaimed, p);
	im = tevent_create_immediate(p);
	if (im != NULL) {
		tevent_schedule_immediate(im, p->ev, async_open_rerun_now, p);
	}
	/* without the immediate, smbd's own poll retries in a second */
	errno = EINTR;
	return -1;
}

/*
 * The status a request gets when its open outlives async_open:timeout:
 * ETXTBSY is NT_STATUS_SHARING_VIOLATION, the answer smbd itself gives when
 * its own deferred open waits too long, and one Windows applications
 * treat as "in use, try again".  The man page says more.
 */
#define ASYNC_OPEN_TIMEOUT_ERRNO ETXTBSY

static int async_open_answer(struct async_open_pending *p,
			     vfs_handle_struct *handle,
			     const struct files_struct *dirfsp,
			     const struct smb_filename *smb_fname,
			     files_struct *fsp,
			     const struct vfs_open_how *how)
{
	struct async_open_config *config = p->config;
	int fd;

	if (p->timed_out && !p->done) {
		/* the late fd, if it ever comes, is closed at completion */
		config->n.timeouts++;
		async_open_unlist(p);
		errno = ASYNC_OPEN_TIMEOUT_ERRNO;
		return -1;
	}
	if (!p->done) {
		/*
		 * smbd's own poll (or any replay) came first: keep waiting.
		 * Running a create again now would race the one in flight.
		 */
		errno = EINTR;
		return -1;
	}
	switch (async_open_matches(p, handle, dirfsp, smb_fname, fsp, how)) {
	case AO_HAND:
		break;
	case AO_BY_NAME:
		errno = EINPROGRESS;
		return -1;
	case AO_NOT_CREATED:
		errno = ENOENT;
		return -1;
	case AO_SYNC_AGAIN:
		config->n.sync_again++;
		return async_open_rerun(p);
	case AO_MISMATCH:
		DBG_NOTICE(MODULE ": replay of mid %" PRIu64 " for %s does "
			   "not match its open (%s, flags 0%o/0%o, %s, fd %d, "
			   "err %d): retrying from scratch\n", p->mid,
			   p->name, smb_fname->base_name, how->flags,
			   p->flags, p->done ? "done" : "pending", p->fd,
			   p->err);
		config->n.mismatched++;
		return async_open_rerun(p);
	}
	fd = p->fd;
	p->fd = -1;
	if (fd == -1) {
		config->n.failed++;
		errno = p->err;
	} else {
		config->n.handed++;
		/* what vfs_default records after its own open */
		fsp->fsp_flags.have_proc_fds = fsp->conn->have_proc_fds;
	}
	TALLOC_FREE(p);
	return fd;
}

/* --- openat --------------------------------------------------------------- */

static int async_open_next(vfs_handle_struct *handle,
			   struct async_open_config *config,
			   const struct files_struct *dirfsp,
			   const struct smb_filename *smb_fname,
			   files_struct *fsp, const struct vfs_open_how *how)
{
	config->n.next++;
	return SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp, how);
}

/*
 * Mode auto: an open that could go asynchronous does so while the
 * share's synchronous opens take longer than the threshold.  Only
 * synchronous opens teach the estimate (weight 1/8), and while
 * asynchronous one open in 64 stays synchronous to measure again: an
 * asynchronous open costs smbd a second pass (the replay), which only
 * pays on slow storage.
 */
static bool async_open_auto_async(struct async_open_config *config)
{
	if (config->mode != AO_AUTO) {
		return true;
	}
	config->calls++;
	return config->estimate_nsec > config->threshold_nsec &&
	       config->calls % 64 != 0;
}

static int async_open_next_measured(vfs_handle_struct *handle,
				    struct async_open_config *config,
				    const struct files_struct *dirfsp,
				    const struct smb_filename *smb_fname,
				    files_struct *fsp,
				    const struct vfs_open_how *how)
{
	struct timespec start, end;
	int fd;

	clock_gettime_mono(&start);
	fd = async_open_next(handle, config, dirfsp, smb_fname, fsp, how);
	clock_gettime_mono(&end);
	config->estimate_nsec = (config->estimate_nsec * 7 +
				 nsec_time_diff(&end, &start)) / 8;
	return fd;
}

static int async_open_openat(vfs_handle_struct *handle,
			     const struct files_struct *dirfsp,
			     const struct smb_filename *smb_fname,
			     files_struct *fsp, const struct vfs_open_how *how)
{
	struct async_open_config *config = NULL;
	struct smbXsrv_connection *xconn = NULL;
	struct async_open_pending *p = NULL;
	struct timeval request_time = { 0 };
	struct stat st;
	bool create;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				return -1);
	/*
	 * Pathref opens (O_PATH, no I/O), streams, openat2 lookups and
	 * internal opens are never deferred; neither are opens while the
	 * module is off.
	 */
	if (config->mode == AO_OFF || fsp->fsp_flags.is_pathref ||
	    ASVFS_OPEN_HOW_RESOLVE(how) != 0 ||
	    (how->flags & (O_PATH | O_DIRECTORY)) ||
	    dirfsp == NULL || fsp_is_alternate_stream(fsp) ||
	    is_named_stream(smb_fname)) {
		return SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp,
					   how);
	}
	xconn = async_open_find_channel(handle->conn, fsp, &request_time);
	if (xconn == NULL) {
		return async_open_next(handle, config, dirfsp, smb_fname, fsp,
				       how);
	}
	p = async_open_lookup(config, xconn->channel_id, fsp->mid);
	if (p != NULL && p->rerun) {
		TALLOC_FREE(p);
		return async_open_next(handle, config, dirfsp, smb_fname, fsp,
				       how);
	}
	if (p != NULL) {
		return async_open_answer(p, handle, dirfsp, smb_fname, fsp,
					 how);
	}

	if (!async_open_in_time(config, &request_time)) {
		return async_open_next(handle, config, dirfsp, smb_fname, fsp,
				       how);
	}
	create = ASVFS_REOPEN_FALLS_BACK_BY_NAME &&
		 (how->flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) &&
		 !async_open_is_reopen(handle, dirfsp, smb_fname, fsp);
	if (config->mode == AO_AUTO &&
	    (create || async_open_is_reopen(handle, dirfsp, smb_fname, fsp)) &&
	    !async_open_auto_async(config)) {
		return async_open_next_measured(handle, config, dirfsp,
						smb_fname, fsp, how);
	}
	if (create) {
		if (async_open_start(handle, config, xconn, dirfsp, smb_fname,
				     fsp, how, true, NULL)) {
			config->n.creates++;
			errno = EINPROGRESS;
			return -1;
		}
	} else if ((config->mode == AO_ALL || config->mode == AO_AUTO) &&
		   async_open_is_reopen(handle, dirfsp, smb_fname, fsp) &&
		   fstat(fsp_get_pathref_fd(fsp), &st) == 0 &&
		   S_ISREG(st.st_mode)) {
		if (async_open_start(handle, config, xconn, dirfsp, smb_fname,
				     fsp, how, false, &st)) {
			config->n.existing++;
			errno = EINTR;
			return -1;
		}
	}
	return async_open_next(handle, config, dirfsp, smb_fname, fsp, how);
}

static struct vfs_fn_pointers vfs_async_open_fns = {
	.connect_fn = async_open_connect,
	.disconnect_fn = async_open_disconnect,
	.openat_fn = async_open_openat,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_open_fns,
				     &vfs_async_open_debug_level);
}
