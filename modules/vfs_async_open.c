/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * vfs_async_open: client opens that may block go through io_uring while
 * smbd serves the connection's other requests.
 *
 * smbd (4.17 and 4.22) has two ways to defer an open from openat_fn:
 *
 * - EINPROGRESS (NT_STATUS_MORE_PROCESSING_REQUIRED) defers the request
 *   until someone calls schedule_deferred_open_message_smb(); the replay
 *   assumes the file did not exist, and a 20 s timer that stays armed
 *   until the request is answered kills the whole process
 *   (exit_server("async open timeout")), whatever the replay waits for
 *   (an oplock break to another client: up to 70 s).  This module never
 *   uses it.
 * - EINTR (NT_STATUS_RETRY) makes smbd retry the whole open about once a
 *   second for up to 70 s, cancellable, with a fresh path walk and access
 *   check each time, and no exit timer; schedule_deferred_open_message_smb()
 *   makes the retry immediate.
 *
 * Both kinds of open go through EINTR:
 *
 * - An existing file is reopened through /proc/self/fd/<pathref fd>.
 * - A create makes the file under a temporary name in the same directory
 *   (".async_open-<random>-<name>"), which no client asks for.  The
 *   retry's path walk then still finds the client's name free, smbd asks
 *   for it with O_CREAT|O_EXCL exactly as on its first attempt, and only
 *   then, inside smbd's own open, the file is renamed to that name
 *   (RENAME_NOREPLACE: another create that came first wins, as it would
 *   against smbd).  Nobody can open the client's file before smbd has
 *   made its share mode entry, as with smbd's own create; a create that
 *   fails or is abandoned never shows under the client's name.
 *
 * Both start the open in the engine (IORING_OP_OPENAT with the caller's
 * credentials as a personality, or a worker thread, relative to a dup()
 * of the fd smbd would have used) and remember it as "pending", keyed by
 * the SMB2 channel and message id of the request that asked.  When it
 * completes, the request is retried at once; the retry's openat_fn gets
 * the fd only when the channel, mid, name, flags, mode and object (or
 * directory) all match.  Anything else is opened synchronously.
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
#include "locking/leases_db.h"
#include "librpc/gen_ndr/open_files.h"
#include "librpc/gen_ndr/xattr.h"
#include "libcli/security/security_descriptor.h"
#include "lib/util/tevent_unix.h"

#include <sys/random.h>

#include "asvfs_creds.h"
#include "asvfs_engine.h"
#include "asvfs_estimate.h"
#include "asvfs_module.h"
#include "asvfs_procfd.h"
#include "asvfs_samba_version.h"
#include "asvfs_worker.h"

static int vfs_async_open_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_async_open_debug_level

#define MODULE "async_open"

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
	uint64_t creates;	/* creates started */
	uint64_t existing;	/* opens of existing files started */
	uint64_t handed;	/* fds given to their replay */
	uint64_t failed;	/* errors given to their replay */
	uint64_t mismatched;	/* replays that did not match: dropped */
	uint64_t sync_again;	/* failed asynchronously: run synchronously */
	uint64_t timeouts;	/* answered with the timeout status */
	uint64_t abandoned;	/* completed with nobody to take the fd */
	uint64_t next;		/* passed to the next module synchronously */
	uint64_t threads;	/* of the started ones: on worker threads */
	uint64_t discarded;	/* creates for nobody, to be removed again */
	uint64_t queued;	/* waited for a free kernel worker or thread */
	uint64_t late;		/* waited past smbd's limit: synchronous */
	uint64_t lookups;	/* retries' name scans answered by a create */
	uint64_t memo;		/* directory security reads a create's
				 * earlier read answered */
};

struct async_open_pending;
struct async_open_memo;

struct async_open_config {
	enum async_open_mode mode;
	enum async_open_backend backend;
	uint64_t timeout_msec;
	struct asvfs_estimate estimate;	/* auto: synchronous open time */
	struct asvfs_engine_config engine;
	struct async_open_counters n;
	struct async_open_memo *memo;	/* see async_open_memo_begin */
	struct tevent_immediate *memo_end;
};

/* A talloc child of the SMB2 request a create works for: see there */
struct async_open_watch {
	struct async_open_pending *p;
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
	/*
	 * creates: where the file is made, and how to remove it should
	 * nobody take it (see async_open_discard)
	 */
	int dirfd;		/* a dup() of the directory's fd */
	char *at_name;		/* the temporary name in it */
	char *leaf;		/* the client's name in it */
	dev_t dir_dev;		/* the directory, as smbd's walk saw it */
	ino_t dir_ino;
	struct async_open_watch *watch;	/* on the request, see there */
	struct asvfs_creds creds;	/* the creator's */
	struct async_open_memo *memo;	/* its first pass's reads */
	/* for the estimate of mode auto: when, and the main thread's CPU */
	uint64_t started_nsec;
	uint64_t started_cpu_nsec;
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

static void async_open_register_exit(void);

/*
 * How long smbd keeps retrying an open that answered EINTR: twice its
 * OPLOCK_BREAK_TIMEOUT of 35 s from the request's arrival, after which
 * it answers SHARING_VIOLATION itself.  Two seconds of margin for its
 * poll, which comes once a second.
 */
#define ASYNC_OPEN_SMBD_RETRY_LIMIT_MSEC (70000 - 2000)

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
	uint64_t threshold_nsec;

	config->mode = asvfs_conf_enum(snum, MODULE, "mode", async_open_modes,
				       AO_AUTO);
	config->backend = asvfs_conf_enum(snum, MODULE, "backend",
					  async_open_backends,
					  AO_BACKEND_AUTO);
	/*
	 * Milliseconds.  The maximum keeps an answer inside smbd's 70 s
	 * retry of an open (no open is deferred with EINPROGRESS, so the
	 * 20 s exit timer of smbd's schedule_async_open() is never armed).
	 */
	config->timeout_msec = asvfs_conf_uint(snum, MODULE, "timeout", 10000,
					       100, 60000);
	threshold_nsec = asvfs_conf_uint(snum, MODULE, "async threshold usec",
					 1000, 0, 10000000) * 1000;
	/*
	 * One preempted open moves a settled estimate by a quarter of it.
	 * The asynchronous opens measure too: an open taken synchronously
	 * to find out would block the connection for as long as the
	 * storage is slow.
	 */
	asvfs_estimate_init_async(&config->estimate, threshold_nsec,
				  MAX(2 * threshold_nsec, 1000));
	asvfs_conf_engine(snum, &config->engine);
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
	async_open_register_exit();
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
		 " queued=%" PRIu64 " late=%" PRIu64 " lookups=%" PRIu64
		 " memo=%" PRIu64 " estimate_usec=%" PRIu64 "\n",
		 lp_servicename(talloc_tos(), lp_sub, SNUM(handle->conn)),
		 n->creates, n->existing, n->handed, n->failed,
		 n->mismatched, n->sync_again, n->timeouts, n->abandoned,
		 n->next, n->threads, n->discarded, n->queued, n->late,
		 n->lookups, n->memo, config->estimate.nsec / 1000);
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
	struct timeval *request_time, struct smbd_smb2_request **request)
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
				*request = smb2req;
				return xconn;
			}
		}
	}
	return NULL;
}

/*
 * Both kinds of open answer EINTR (a create too, see "the temporary
 * name"), which smbd retries until its request is 70 s old.  A request
 * that already waited (an oplock or lease break, a sharing violation
 * retry, a free worker) so long that our own timeout could not answer it
 * within that limit is opened synchronously instead.
 */
static int64_t async_open_limit_usec(void)
{
	return (int64_t)ASYNC_OPEN_SMBD_RETRY_LIMIT_MSEC * 1000;
}

static bool async_open_in_time(struct async_open_config *config,
			       const struct timeval *request_time,
			       bool create)
{
	struct timeval now = timeval_current();
	int64_t age_usec = usec_time_diff(&now, request_time);

	return age_usec + (int64_t)config->timeout_msec * 1000 <
	       async_open_limit_usec();
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

/*
 * Have smbd retry the open of request mid on channel channel_id now;
 * false if the request is gone (cancel, disconnect).  The request of a
 * pending open and of a waiter alike.
 */
static bool async_open_retry_now(struct smbXsrv_client *client,
				 uint64_t channel_id, uint64_t mid)
{
	struct smbXsrv_connection *xconn = NULL;

	xconn = async_open_channel_by_id(client, channel_id);
	if (xconn == NULL) {
		return false;
	}
	return schedule_deferred_open_message_smb(xconn, mid);
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

/* --- waiting for a free worker ------------------------------------------ */

/*
 * Overload must never turn an open that smbd would complete into an
 * error.  The kernel runs at most asvfs_engine_workers() blocking
 * operations of the process at once (threads: ASVFS_WORKER_MAX); more
 * would wait in the kernel's queue, unseen, with async_open:timeout
 * running.  So opens beyond the free workers wait here instead, and
 * their timeout starts only when they start:
 *
 *   openat (no free worker) -> async_open_waiter, EINTR
 *     smbd polls the request once a second (async_open_openat again:
 *     still no room -> EINTR again)
 *   an open of ours ends (its ticket goes) -> async_open_queue_run()
 *     -> replay the first waiters, as many as there is room for
 *   replay -> async_open_openat -> room: started as usual
 *
 * A waiter whose request gets too old to be answered within smbd's
 * limit (async_open_in_time()) is opened synchronously by the next
 * module, as smbd would have opened it in the first place; its timer
 * replays it at that moment, and drops it if the request is gone.
 * Waiters are served earliest deadline first (each must start within
 * 68 s of its request less the timeout), so fewer of them end
 * synchronous, each of which holds up the connection, and so the start
 * of every other waiter, for one open's time.
 */
struct async_open_waiter {
	struct async_open_waiter *prev, *next;
	struct async_open_config *config;
	struct smbXsrv_client *client;
	uint64_t channel_id;
	uint64_t mid;
	struct timeval deadline;	/* the last moment it can start */
	struct tevent_timer *te;	/* at the deadline */
};

/* Every tree connect's waiters: the workers are the process's. */
static struct async_open_waiter *async_open_queue;
static struct tevent_immediate *async_open_queue_im;
/* Our opens in the kernel or on a thread (their ticket lives). */
static unsigned async_open_running;

/* Free workers for config's opens now; UINT_MAX: not limited by us. */
static unsigned async_open_free_workers(struct async_open_config *config,
				      struct tevent_context *ev)
{
	struct asvfs_engine *engine = NULL;
	unsigned limit, busy;
	bool first = false;
	int err = 0;

	/*
	 * A refusal of io_uring was met, and logged, by async_open_route()
	 * before any open came here.
	 */
	if (config->backend != AO_BACKEND_THREADS) {
		engine = asvfs_engine_get(ev, &config->engine, &err, &first);
	}
	if (engine != NULL && !asvfs_engine_supports(engine, ASVFS_OP_OPENAT)) {
		engine = NULL;		/* opens go where the backend says */
	}
	if (engine != NULL) {
		limit = asvfs_engine_workers(engine);
		/* others' blocking work takes workers too */
		busy = MAX(async_open_running,
			   (unsigned)asvfs_engine_stats()->inflight);
	} else if (config->backend != AO_BACKEND_URING) {
		limit = ASVFS_WORKER_MAX;
		busy = asvfs_worker_running();
	} else {
		return UINT_MAX;	/* opens stay synchronous anyway */
	}
	return busy < limit ? limit - busy : 0;
}

static unsigned async_open_waiters_before(const struct async_open_waiter *w)
{
	const struct async_open_waiter *q = NULL;
	unsigned n = 0;

	for (q = async_open_queue; q != NULL && q != w; q = q->next) {
		n++;
	}
	return n;
}

static int async_open_waiter_destructor(struct async_open_waiter *w)
{
	DLIST_REMOVE(async_open_queue, w);
	return 0;
}

static struct async_open_waiter *async_open_waiter_lookup(
	struct async_open_config *config, uint64_t channel_id, uint64_t mid)
{
	struct async_open_waiter *w = NULL;

	for (w = async_open_queue; w != NULL; w = w->next) {
		if (w->config == config && w->channel_id == channel_id &&
		    w->mid == mid) {
			return w;
		}
	}
	return NULL;
}

static void async_open_queue_run(struct tevent_context *ev,
				 struct tevent_immediate *im,
				 void *private_data)
{
	struct async_open_waiter *w = NULL, *next = NULL;
	unsigned before = 0;

	for (w = async_open_queue; w != NULL; w = next) {
		next = w->next;
		if (before >= async_open_free_workers(w->config, ev)) {
			break;
		}
		if (!async_open_retry_now(w->client, w->channel_id,
					  w->mid)) {
			TALLOC_FREE(w);		/* cancelled, or its tree went */
			continue;
		}
		before++;
	}
}

static void async_open_queue_kick(struct tevent_context *ev)
{
	if (async_open_queue == NULL) {
		return;
	}
	if (async_open_queue_im == NULL) {
		async_open_queue_im = tevent_create_immediate(NULL);
		if (async_open_queue_im == NULL) {
			return;		/* smbd's poll comes within a second */
		}
	}
	tevent_schedule_immediate(async_open_queue_im, ev,
				  async_open_queue_run, NULL);
}

/* Held by each open of ours while it runs: a child of its request. */
struct async_open_ticket {
	struct tevent_context *ev;
};

static int async_open_ticket_destructor(struct async_open_ticket *t)
{
	async_open_running--;
	async_open_queue_kick(t->ev);
	return 0;
}

static void async_open_take_ticket(struct tevent_req *subreq,
				   struct tevent_context *ev)
{
	struct async_open_ticket *t = NULL;

	t = talloc(subreq, struct async_open_ticket);
	if (t == NULL) {
		return;		/* counted by the engine or the threads only */
	}
	t->ev = ev;
	async_open_running++;
	talloc_set_destructor(t, async_open_ticket_destructor);
}

/* Behind every waiter whose deadline is not later than w's. */
static void async_open_queue_insert(struct async_open_waiter *w)
{
	struct async_open_waiter *q = NULL, *last = NULL;

	for (q = async_open_queue; q != NULL; q = q->next) {
		if (timeval_compare(&q->deadline, &w->deadline) > 0) {
			break;
		}
		last = q;
	}
	DLIST_ADD_AFTER(async_open_queue, w, last);
}

static void async_open_waiter_deadline(struct tevent_context *ev,
				       struct tevent_timer *te,
				       struct timeval now, void *private_data)
{
	struct async_open_waiter *w = talloc_get_type_abort(
		private_data, struct async_open_waiter);

	w->te = NULL;
	/* the replay finds it too late and opens synchronously */
	if (!async_open_retry_now(w->client, w->channel_id, w->mid)) {
		TALLOC_FREE(w);
	}
}

static struct async_open_waiter *async_open_waiter_new(
	struct async_open_config *config, struct tevent_context *ev,
	struct smbXsrv_connection *xconn, uint64_t mid,
	const struct timeval *request_time, bool create)
{
	struct async_open_waiter *w = NULL;
	struct timeval deadline;

	w = talloc_zero(config, struct async_open_waiter);
	if (w == NULL) {
		return NULL;
	}
	*w = (struct async_open_waiter) {
		.config = config, .client = xconn->client,
		.channel_id = xconn->channel_id, .mid = mid,
	};
	/* positive: the timeout is below the limit */
	deadline = timeval_add(request_time, 0,
			       (uint32_t)(async_open_limit_usec() -
					  (int64_t)config->timeout_msec *
					  1000));
	w->te = tevent_add_timer(ev, w, deadline, async_open_waiter_deadline,
				 w);
	if (w->te == NULL) {
		TALLOC_FREE(w);
		return NULL;
	}
	w->deadline = deadline;
	async_open_queue_insert(w);
	talloc_set_destructor(w, async_open_waiter_destructor);
	return w;
}

/*
 * Whether this open may start now; if not, it waits (the caller answers
 * EINTR).  w is the request's waiter from an earlier pass, or NULL: a
 * new open starts only with room for it and every waiter.  Without
 * memory to wait, it starts and waits in the kernel instead.
 */
static bool async_open_admit(struct async_open_config *config,
			     struct tevent_context *ev,
			     struct smbXsrv_connection *xconn, uint64_t mid,
			     struct async_open_waiter *w,
			     const struct timeval *request_time, bool create)
{
	unsigned before = async_open_waiters_before(w);

	if (before < async_open_free_workers(config, ev)) {
		TALLOC_FREE(w);
		return true;
	}
	if (w != NULL) {
		return false;
	}
	w = async_open_waiter_new(config, ev, xconn, mid, request_time,
				  create);
	if (w == NULL) {
		return true;
	}
	config->n.queued++;
	DBG_DEBUG(MODULE ": mid %" PRIu64 " waits for a free worker (%u "
		  "waiting before it)\n", mid, before);
	return false;
}

/* --- the pending open ----------------------------------------------------- */

static void async_open_unlist(struct async_open_pending *p)
{
	if (p->listed) {
		DLIST_REMOVE(async_open_pending_list, p);
		p->listed = false;
	}
}

static bool async_open_same_object(int fd, dev_t dev, ino_t ino)
{
	struct stat st;

	return fd != -1 && fstat(fd, &st) == 0 && st.st_dev == dev &&
	       st.st_ino == ino;
}

/* --- a create nobody took ------------------------------------------------ */

/*
 * A create whose request went (answered at its timeout, cancelled, a
 * disconnect, logoff or process exit) or that smbd did not take made a
 * file under its temporary name that nobody will ask for: it is removed
 * as its creator, and only while the name is still that object, on a
 * worker thread: completions run under whatever user smbd impersonated
 * last.  The reaper outlives the share (a tree disconnect frees the
 * config).
 */
struct async_open_reaper {
	struct async_open_reaper *prev, *next;
	struct tevent_context *ev;
	int fd;			/* the created object: its inode stays ours */
	int dirfd;
	char *at_name;
	struct asvfs_creds creds;
	bool worker;
};

/* Reapers at work in this process, for async_open_at_exit */
static struct async_open_reaper *async_open_reapers;

static int async_open_reaper_destructor(struct async_open_reaper *r)
{
	DLIST_REMOVE(async_open_reapers, r);
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
 * Whether somebody has the object open: through smbd in any process (its
 * share mode record, default file ids), or in an asynchronous open of an
 * existing file here, whose share mode entry comes only after the open.
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

/* Remove the object st at r's temporary name, if it is still there. */
static void async_open_reap_object(struct async_open_reaper *r,
				   const struct stat *st)
{
	struct tevent_req *req = NULL;

	req = asvfs_worker_unlink_send(r, r->ev, r->dirfd, r->at_name,
				       st->st_dev, st->st_ino, &r->creds);
	if (req == NULL) {
		DBG_WARNING(MODULE ": cannot remove %s, created for a "
			    "request that went\n", r->at_name);
		talloc_free(r);
		return;
	}
	tevent_req_set_callback(req, async_open_removed, r);
}

/*
 * Remove the file behind fd if it is still at its temporary name; r
 * keeps fd until then, so that its inode cannot be reused.
 */
static void async_open_reap_fd(struct async_open_reaper *r, int fd)
{
	struct stat st;

	r->fd = fd;
	if (fstat(fd, &st) != 0) {
		talloc_free(r);
		return;
	}
	async_open_reap_object(r, &st);
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
	struct stat st;

	TALLOC_FREE(subreq);
	if (fd != -1) {
		async_open_reap_fd(r, fd);
		return;
	}
	/*
	 * A create that failed may still have made its file: a FUSE create
	 * interrupted in the kernel, say.  Nobody else uses the name.
	 */
	if (fstatat(r->dirfd, r->at_name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		DBG_INFO(MODULE ": create of %s failed (%s) but made it\n",
			 r->at_name, strerror(err));
		async_open_reap_object(r, &st);
		return;
	}
	DBG_DEBUG(MODULE ": create of %s for a request that went: %s\n",
		  r->at_name, strerror(err));
	talloc_free(r);		/* it created nothing */
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
	DLIST_ADD(async_open_reapers, r);
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

/* --- process exit --------------------------------------------------------- */

/*
 * How long a process exit waits, in all, for the creates it still has in
 * the kernel, to remove their temporary files.
 */
#define ASYNC_OPEN_EXIT_WAIT_MSEC 5000

static pid_t async_open_exit_pid;	/* whose lists these are */

/*
 * Remove a create's temporary file at exit.  With fd (the create
 * completed) only if the name is still that object; without (in the
 * kernel still) once the name appears, polling until end.  It runs as
 * whoever smbd is at exit (root); the name is relative to the directory
 * the create used, never a path.
 */
static void async_open_exit_remove(int dirfd, const char *name, int fd,
				   const struct timespec *end)
{
	struct timespec now;
	struct stat st;

	do {
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			if ((fd == -1 ||
			     async_open_same_object(fd, st.st_dev,
						    st.st_ino)) &&
			    unlinkat(dirfd, name, 0) == 0) {
				DBG_INFO(MODULE ": exit: removed %s\n", name);
			}
			return;
		}
		if (fd != -1) {
			return;		/* completed, and already removed */
		}
		usleep(10000);
		clock_gettime_mono(&now);
	} while (timespec_compare(&now, end) < 0);
	DBG_WARNING(MODULE ": exit: left %s, still being created\n", name);
}

/*
 * At exit (smbd calls exit() when its client goes), the tree connects
 * are gone and their creates handed to reapers, which need the event
 * loop that no longer turns: wait here, bounded, for the creates still
 * in the kernel and remove their files.  Before or after the engine's
 * own exit handler (which waits for what io_uring has in flight), the
 * name is polled until it appears.
 */
static void async_open_at_exit(void)
{
	struct async_open_reaper *r = NULL;
	struct async_open_pending *p = NULL;
	struct timespec end;

	if (getpid() != async_open_exit_pid) {
		return;		/* a fork: the lists are its parent's */
	}
	clock_gettime_mono(&end);
	end.tv_sec += ASYNC_OPEN_EXIT_WAIT_MSEC / 1000;
	for (r = async_open_reapers; r != NULL; r = r->next) {
		async_open_exit_remove(r->dirfd, r->at_name, r->fd, &end);
	}
	for (p = async_open_pending_list; p != NULL; p = p->next) {
		if (p->create && p->dirfd != -1 && p->at_name != NULL) {
			async_open_exit_remove(p->dirfd, p->at_name, p->fd,
					       &end);
		}
	}
}

static void async_open_register_exit(void)
{
	static bool registered;	/* inherited across fork, as is atexit */

	async_open_exit_pid = getpid();
	if (!registered) {
		registered = (atexit(async_open_at_exit) == 0);
	}
}

/*
 * Freeing a pending open frees its open request, whose late fd the
 * engine or worker closes, or hands a create's to the reaper; a
 * completed fd nobody took is closed here.
 */
static int async_open_pending_destructor(struct async_open_pending *p)
{
	if (p->watch != NULL) {
		p->watch->p = NULL;
		TALLOC_FREE(p->watch);
	}
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

/*
 * The open is done in the kernel, its completion not yet taken: under
 * load smbd's loop can lag behind both, and tevent runs every due timer
 * before it looks at the ring again, so without this look a burst of
 * opens completed on time would all be answered as timed out.
 */
static bool async_open_completed_meanwhile(struct async_open_pending *p)
{
	struct asvfs_engine *engine = NULL;
	bool first = false;
	int err = 0;

	if (p->worker || p->subreq == NULL) {
		return false;
	}
	engine = asvfs_engine_get(p->ev, &p->config->engine, &err, &first);
	return engine != NULL && asvfs_engine_completed(engine, p->subreq);
}

static void async_open_timeout(struct tevent_context *ev,
			       struct tevent_timer *te,
			       struct timeval now, void *private_data)
{
	struct async_open_pending *p = talloc_get_type_abort(
		private_data, struct async_open_pending);

	p->te = NULL;
	if (async_open_completed_meanwhile(p)) {
		return;		/* async_open_done() comes next */
	}
	p->timed_out = true;
	DBG_WARNING(MODULE ": open of %s (mid %" PRIu64 ") still pending "
		    "after %" PRIu64 " ms: failing the request\n", p->name,
		    p->mid, p->config->timeout_msec);
	if (!async_open_retry_now(p->client, p->channel_id, p->mid)) {
		p->config->n.abandoned++;
		TALLOC_FREE(p);
	}
}

static uint64_t async_open_thread_cpu_nsec(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) {
		return 0;
	}
	return asvfs_mono_nsec(&ts);
}

/*
 * Mode auto: an open that succeeded tells how long the storage took.  Its
 * completion is seen only when smbd's main thread gets back to its loop:
 * with 16 creates arriving at once, after the first passes of all of
 * them, so on fast storage every completion looked slow (Samba 4.22 on
 * ext4: auto stayed asynchronous).  The main thread's CPU time meanwhile
 * is time it could not have seen the completion, and is not counted.
 * What is left still holds the waits for a kernel worker and for the CPU
 * (see asvfs_estimate.h).  A failed open may have failed in the
 * machinery, not the storage.
 */
static void async_open_learn(struct async_open_pending *p)
{
	uint64_t now, busy, waited;

	if (p->config->mode != AO_AUTO || p->fd == -1) {
		return;
	}
	now = asvfs_now_nsec();
	if (now < p->started_nsec) {
		return;
	}
	busy = async_open_thread_cpu_nsec() - p->started_cpu_nsec;
	waited = now - p->started_nsec;
	waited = (busy < waited) ? waited - busy : 0;
	asvfs_estimate_add_async(&p->config->estimate, waited, now);
}

static void async_open_done(struct tevent_req *subreq)
{
	struct async_open_pending *p = tevent_req_callback_data(
		subreq, struct async_open_pending);

	p->fd = async_open_recv_fd(subreq, p->worker, &p->err);
	TALLOC_FREE(subreq);
	p->subreq = NULL;
	p->done = true;
	async_open_learn(p);
	DBG_DEBUG(MODULE ": %s of %s for mid %" PRIu64 ": fd %d, %s\n",
		  p->create ? "create" : "open", p->name, p->mid, p->fd,
		  p->fd == -1 ? strerror(p->err) : "ok");
	TALLOC_FREE(p->te);

	if (!p->listed) {
		/* the request was answered at its timeout: a late fd */
		TALLOC_FREE(p);
		return;
	}
	if (!p->timed_out &&
	    !async_open_retry_now(p->client, p->channel_id, p->mid)) {
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
	return asvfs_module_engine(handle, handle->conn->sconn->ev_ctx,
				   MODULE, &c->engine, ASVFS_OP_OPENAT, 0,
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
	       strncmp(smb_fname->base_name, ASVFS_PROC_FD_PREFIX,
		       strlen(ASVFS_PROC_FD_PREFIX)) == 0 &&
	       fsp_get_pathref_fd(fsp) != -1;
}

/*
 * The temporary name a create makes its file under: one no client asks
 * for, in the same directory (same file system, same inherited ACL), with
 * the client's name in it so that an admin (and a path filter) can tell
 * whose it is.  It starts with a dot: smbd's "hide dot files" (on by
 * default) marks it hidden in listings while it exists.
 */
static char *async_open_temp_name(TALLOC_CTX *mem_ctx, const char *name)
{
	const size_t prefix = strlen(".async_open-") + 16 + 1;
	size_t len = strlen(name);
	uint64_t r;

	if (prefix + len > NAME_MAX) {
		len = NAME_MAX - prefix;
		while (len > 0 && (name[len] & 0xC0) == 0x80) {
			len--;	/* no cut through a UTF-8 character */
		}
	}
	if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r)) {
		static uint64_t n;	/* unguessable or not, unique */

		r = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ ++n;
	}
	return talloc_asprintf(mem_ctx, ".async_open-%016" PRIx64 "-%.*s", r,
			       (int)len, name);
}

/* --- a create's reads of its directory's security ----------------------- */

/*
 * smbd checks the directory's security descriptor twice for a create
 * (check_parent_access_fsp() from open_file_ntcreate() and from
 * open_file()) and reads it once more to inherit it (inherit_new_acl()).
 * Each read is the NT ACL xattr, the POSIX ACLs, stats and an id mapping:
 * round trips to the storage on smbd's main thread.  smbd's retry of a
 * deferred create makes both checks again.
 *
 * While smbd handles a create whose name its case-insensitive walk found
 * free (the only kind this module defers), the first read of each kind
 * answers the others, and a deferred create keeps its first pass's reads
 * for its retry: the retry decides on what the first pass decided on, as
 * smbd's own create decides before the kernel creates, however long that
 * takes.  A memo ends with the turn of smbd's event loop that handles the
 * request or its retry.  It holds only successful descriptor reads and
 * reads of the NT ACL xattr, each with who read (the NT ACL is read as
 * root).
 */
struct async_open_memo_read {
	struct async_open_memo_read *prev, *next;
	uid_t uid;		/* who read */
	bool xattr;		/* the NT ACL xattr, else a descriptor */
	uint32_t security_info;	/* a descriptor's parts */
	struct security_descriptor *sd;
	int err;		/* the xattr: errno, or 0 and value */
	DATA_BLOB value;
};

struct async_open_memo {
	dev_t dev;		/* the directory of the create */
	ino_t ino;
	struct async_open_memo_read *reads;
};

static void async_open_memo_end(struct tevent_context *ev,
				struct tevent_immediate *im,
				void *private_data)
{
	struct async_open_config *config = talloc_get_type_abort(
		private_data, struct async_open_config);

	TALLOC_FREE(config->memo);
}

/*
 * A create walks dirfsp: with the reads a first pass kept (a retry), or
 * none yet.
 */
static void async_open_memo_begin(vfs_handle_struct *handle,
				  struct async_open_config *config,
				  const struct files_struct *dirfsp,
				  struct async_open_memo **kept)
{
	TALLOC_FREE(config->memo);
	if (config->memo_end == NULL) {
		config->memo_end = tevent_create_immediate(config);
		if (config->memo_end == NULL) {
			return;
		}
	}
	if (kept != NULL && *kept != NULL) {
		config->memo = talloc_move(config, kept);
	} else {
		config->memo = talloc_zero(config, struct async_open_memo);
		if (config->memo == NULL) {
			return;
		}
	}
	config->memo->dev = dirfsp->fsp_name->st.st_ex_dev;
	config->memo->ino = dirfsp->fsp_name->st.st_ex_ino;
	tevent_schedule_immediate(config->memo_end,
				  handle->conn->sconn->ev_ctx,
				  async_open_memo_end, config);
}

/* A create is deferred: its retry gets the reads of its first pass. */
static void async_open_memo_keep(struct async_open_pending *p)
{
	struct async_open_memo *memo = p->config->memo;

	if (memo != NULL && memo->dev == p->dir_dev &&
	    memo->ino == p->dir_ino) {
		p->memo = talloc_move(p, &p->config->memo);
	}
}

/* The config whose memo keeps fsp's reads, or NULL. */
static struct async_open_config *async_open_memo_for(
	vfs_handle_struct *handle, const struct files_struct *fsp)
{
	struct async_open_config *config = NULL;
	const struct stat_ex *st = &fsp->fsp_name->st;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				return NULL);
	if (config->memo == NULL || !VALID_STAT(*st) ||
	    !S_ISDIR(st->st_ex_mode) || st->st_ex_dev != config->memo->dev ||
	    st->st_ex_ino != config->memo->ino) {
		return NULL;
	}
	return config;
}

/*
 * uid: who reads now, from smbd's record of its identity
 * (get_current_uid()), which changes in the same step as the kernel's:
 * no system call per read and entry.
 */
static struct async_open_memo_read *async_open_memo_find(
	struct async_open_config *config, uid_t uid, bool xattr,
	uint32_t security_info)
{
	struct async_open_memo_read *r = NULL;

	for (r = config->memo->reads; r != NULL; r = r->next) {
		if (r->uid == uid && r->xattr == xattr &&
		    r->security_info == security_info) {
			config->n.memo++;
			return r;
		}
	}
	return NULL;
}

/* A read to keep, listed by the caller once it holds the answer. */
static struct async_open_memo_read *async_open_memo_new(
	struct async_open_memo *memo, uid_t uid, bool xattr,
	uint32_t security_info)
{
	struct async_open_memo_read *r = NULL;

	r = talloc_zero(memo, struct async_open_memo_read);
	if (r == NULL) {
		return NULL;
	}
	r->uid = uid;
	r->xattr = xattr;
	r->security_info = security_info;
	return r;
}

static NTSTATUS async_open_fget_nt_acl(vfs_handle_struct *handle,
				       files_struct *fsp,
				       uint32_t security_info,
				       TALLOC_CTX *mem_ctx,
				       struct security_descriptor **ppdesc)
{
	struct async_open_config *config = async_open_memo_for(handle, fsp);
	uid_t uid = get_current_uid(handle->conn);
	struct async_open_memo_read *r = NULL;
	NTSTATUS status;

	if (config != NULL) {
		r = async_open_memo_find(config, uid, false, security_info);
	}
	if (r != NULL) {
		*ppdesc = security_descriptor_copy(mem_ctx, r->sd);
		return *ppdesc == NULL ? NT_STATUS_NO_MEMORY : NT_STATUS_OK;
	}
	status = SMB_VFS_NEXT_FGET_NT_ACL(handle, fsp, security_info,
					  mem_ctx, ppdesc);
	if (config == NULL || !NT_STATUS_IS_OK(status)) {
		return status;
	}
	r = async_open_memo_new(config->memo, uid, false, security_info);
	if (r != NULL) {
		r->sd = security_descriptor_copy(r, *ppdesc);
		if (r->sd == NULL) {
			TALLOC_FREE(r);
		} else {
			DLIST_ADD(config->memo->reads, r);
		}
	}
	return status;
}

/* An answer as fgetxattr(2) gives it: size 0 asks for the length. */
static ssize_t async_open_memo_xattr(const struct async_open_memo_read *r,
				     void *value, size_t size)
{
	if (r->err != 0) {
		errno = r->err;
		return -1;
	}
	if (size == 0) {
		return r->value.length;
	}
	if (r->value.length > size) {
		errno = ERANGE;
		return -1;
	}
	memcpy(value, r->value.data, r->value.length);
	return r->value.length;
}

static void async_open_memo_xattr_add(struct async_open_memo *memo,
				      uid_t uid, ssize_t ret, int err,
				      const void *value, size_t size)
{
	struct async_open_memo_read *r = NULL;

	/* a length query or a short buffer says nothing of the value */
	if (size == 0 || (ret == -1 && err == ERANGE)) {
		return;
	}
	r = async_open_memo_new(memo, uid, true, 0);
	if (r == NULL) {
		return;
	}
	r->err = ret == -1 ? err : 0;
	if (ret > 0) {
		r->value = data_blob_talloc(r, value, ret);
		if (r->value.data == NULL) {
			TALLOC_FREE(r);
			return;
		}
	}
	DLIST_ADD(memo->reads, r);
}

static ssize_t async_open_fgetxattr(vfs_handle_struct *handle,
				    struct files_struct *fsp,
				    const char *name, void *value,
				    size_t size)
{
	struct async_open_config *config = NULL;
	struct async_open_memo_read *r = NULL;
	uid_t uid = get_current_uid(handle->conn);
	ssize_t ret;
	int err;

	if (strcmp(name, XATTR_NTACL_NAME) == 0) {
		config = async_open_memo_for(handle, fsp);
	}
	if (config != NULL) {
		r = async_open_memo_find(config, uid, true, 0);
	}
	if (r != NULL) {
		return async_open_memo_xattr(r, value, size);
	}
	ret = SMB_VFS_NEXT_FGETXATTR(handle, fsp, name, value, size);
	if (config != NULL) {
		err = errno;
		async_open_memo_xattr_add(config->memo, uid, ret, err, value,
					  size);
		errno = err;
	}
	return ret;
}

/*
 * Where a create makes its file (a dup() of the directory's fd, the
 * temporary name in it) and who makes it, to rename it at the retry or
 * remove it again.
 */
static bool async_open_note_creator(struct async_open_pending *p,
				    const struct files_struct *dirfsp,
				    const struct smb_filename *smb_fname)
{
	const struct stat_ex *dir = &dirfsp->fsp_name->st;

	p->at_name = async_open_temp_name(p, smb_fname->base_name);
	p->leaf = talloc_strdup(p, smb_fname->base_name);
	if (p->at_name == NULL || p->leaf == NULL ||
	    asvfs_creds_current(p, &p->creds) != 0) {
		return false;
	}
	if (VALID_STAT(*dir)) {
		p->dir_dev = dir->st_ex_dev;
		p->dir_ino = dir->st_ex_ino;
		async_open_memo_keep(p);
	}
	p->dirfd = fcntl(fsp_get_pathref_fd(dirfsp), F_DUPFD_CLOEXEC, 0);
	return p->dirfd != -1;
}

/*
 * The open itself, on io_uring (engine) or a worker thread (engine
 * NULL), as async_open_route() decided.  Both keep a dup() of the fd and
 * a copy of the name until it completes, and run it with the caller's
 * credentials of now.
 */
static struct tevent_req *async_open_send_open(
	struct async_open_pending *p, struct asvfs_engine *engine,
	files_struct *fsp, const struct vfs_open_how *how)
{
	p->worker = engine == NULL;
	if (p->create && engine != NULL) {
		return asvfs_openat_send(p, p->ev, engine, p->dirfd,
					 p->at_name, how->flags, how->mode);
	}
	if (p->create) {
		return asvfs_worker_openat_send(p, p->ev, p->dirfd,
						p->at_name, how->flags,
						how->mode, &p->creds);
	}
	if (engine != NULL) {
		return asvfs_reopen_send(p, p->ev, engine,
					 fsp_get_pathref_fd(fsp), how->flags,
					 how->mode);
	}
	return asvfs_worker_reopen_send(p, p->ev, fsp_get_pathref_fd(fsp),
					how->flags, how->mode);
}

/*
 * A talloc child of the SMB2 request a create works for, freed when the
 * request is answered, cancelled or its connection goes.  A create whose
 * request is answered without its file (the timeout, smbd failing the
 * retry before it reaches openat, a cancel) is dropped then, not
 * ASYNC_OPEN_UNCLAIMED_SEC later: its file goes at once, or when the
 * create completes.
 */
static int async_open_watch_destructor(struct async_open_watch *w)
{
	if (w->p != NULL) {
		w->p->watch = NULL;
		DBG_DEBUG(MODULE ": mid %" PRIu64 " answered without its "
			  "create of %s\n", w->p->mid, w->p->name);
		TALLOC_FREE(w->p);
	}
	return 0;
}

static bool async_open_watch_request(struct async_open_pending *p,
				     struct smbd_smb2_request *smb2req)
{
	p->watch = talloc_zero(smb2req, struct async_open_watch);
	if (p->watch == NULL) {
		return false;
	}
	p->watch->p = p;
	talloc_set_destructor(p->watch, async_open_watch_destructor);
	return true;
}

static bool async_open_start(vfs_handle_struct *handle,
			     struct async_open_config *config,
			     struct smbXsrv_connection *xconn,
			     struct smbd_smb2_request *smb2req,
			     struct asvfs_engine *engine,
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
	if (config->mode == AO_AUTO) {
		/* a system call (no vDSO clock): only where it is used */
		p->started_nsec = asvfs_now_nsec();
		p->started_cpu_nsec = async_open_thread_cpu_nsec();
	}
	talloc_set_destructor(p, async_open_pending_destructor);
	p->name = talloc_strdup(p, fsp->fsp_name->base_name);
	if (p->name == NULL ||
	    (create && (!async_open_note_creator(p, dirfsp, smb_fname) ||
			!async_open_watch_request(p, smb2req)))) {
		TALLOC_FREE(p);
		return false;
	}
	if (object != NULL) {
		p->dev = object->st_dev;
		p->ino = object->st_ino;
	}
	p->subreq = async_open_send_open(p, engine, fsp, how);
	/* refused at once (say, no personality): smbd opens it itself */
	if (p->subreq == NULL || asvfs_engine_refused(&p->subreq)) {
		TALLOC_FREE(p);
		return false;
	}
	if (p->worker) {
		config->n.threads++;
	}
	async_open_take_ticket(p->subreq, ev);
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
	AO_SYNC_AGAIN,	/* failed asynchronously: start again, synchronously */
};

/*
 * Does this call ask for the existing file p opened?  Its retry is the
 * reopen of the same object.  (Creates: async_open_claim_create.)
 */
static enum async_open_verdict async_open_matches(
	struct async_open_pending *p, vfs_handle_struct *handle,
	const struct files_struct *dirfsp,
	const struct smb_filename *smb_fname, files_struct *fsp,
	const struct vfs_open_how *how)
{
	struct stat st;

	if (p->done && p->fd == -1 && async_open_infra_error(p->err)) {
		DBG_NOTICE(MODULE ": asynchronous open of %s failed with %s: "
			   "running it again synchronously\n", p->name,
			   strerror(p->err));
		return AO_SYNC_AGAIN;
	}
	if (!p->done || strcmp(p->name, fsp->fsp_name->base_name) != 0 ||
	    (how->flags & ~ASYNC_OPEN_REPLAY_FLAGS) != p->flags ||
	    how->mode != p->mode ||
	    !async_open_is_reopen(handle, dirfsp, smb_fname, fsp) ||
	    fstat(fsp_get_pathref_fd(fsp), &st) != 0) {
		return AO_MISMATCH;
	}
	/* an error (EACCES from the kernel) answers the same object too */
	if (st.st_dev != p->dev || st.st_ino != p->ino) {
		return AO_MISMATCH;
	}
	return (p->fd == -1 ||
		async_open_same_object(p->fd, st.st_dev, st.st_ino)) ?
		AO_HAND : AO_MISMATCH;
}

/* --- the retry of a create ----------------------------------------------- */

static void async_open_unmake(struct async_open_pending *p);
static int async_open_next(vfs_handle_struct *handle,
			   struct async_open_config *config,
			   const struct files_struct *dirfsp,
			   const struct smb_filename *smb_fname,
			   files_struct *fsp, const struct vfs_open_how *how);

/*
 * Is this call the create p made a file for: smbd's O_CREAT open of the
 * same name by name, in the same directory, with the same flags and mode?
 */
static bool async_open_is_our_create(struct async_open_pending *p,
				     vfs_handle_struct *handle,
				     const struct files_struct *dirfsp,
				     const struct smb_filename *smb_fname,
				     files_struct *fsp,
				     const struct vfs_open_how *how)
{
	struct stat dir, ours;

	return (how->flags & O_CREAT) &&
	       !async_open_is_reopen(handle, dirfsp, smb_fname, fsp) &&
	       strcmp(p->name, fsp->fsp_name->base_name) == 0 &&
	       (how->flags & ~ASYNC_OPEN_REPLAY_FLAGS) == p->flags &&
	       how->mode == p->mode &&
	       fstat(fsp_get_pathref_fd(dirfsp), &dir) == 0 &&
	       fstat(p->dirfd, &ours) == 0 &&
	       dir.st_dev == ours.st_dev && dir.st_ino == ours.st_ino;
}

/*
 * Put the file made under the temporary name at name, only if name is
 * free: 0 or an errno.  Where the file system cannot rename with
 * RENAME_NOREPLACE, link(2) gives the same "fails if it exists".
 */
static int async_open_move_in(struct async_open_pending *p, const char *name)
{
	struct stat st;

	/* still ours, and nobody opened it under its temporary name */
	if (fstatat(p->dirfd, p->at_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !async_open_same_object(p->fd, st.st_dev, st.st_ino)) {
		return ENOENT;
	}
	if (async_open_in_use(&st)) {
		return EBUSY;
	}
	if (renameat2(p->dirfd, p->at_name, p->dirfd, name,
		      RENAME_NOREPLACE) == 0) {
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS) {
		return errno;
	}
	if (linkat(p->dirfd, p->at_name, p->dirfd, name, 0) != 0) {
		return errno;
	}
	if (unlinkat(p->dirfd, p->at_name, 0) != 0) {
		int err = errno;

		unlinkat(p->dirfd, name, 0);
		return err;
	}
	return 0;
}

/*
 * The retry of a create.  smbd's path walk found the client's name free
 * (our file is under its temporary name) and now opens it O_CREAT|O_EXCL,
 * as on a first attempt: the file is moved in and its fd handed over,
 * counted as created, inheritance and all.  Anything else (another
 * create took the name first, an error, someone opened our temporary
 * file, a different call) removes our file and runs this call
 * synchronously: smbd's own answer.
 */
static int async_open_claim_create(struct async_open_pending *p,
				   vfs_handle_struct *handle,
				   const struct files_struct *dirfsp,
				   const struct smb_filename *smb_fname,
				   files_struct *fsp,
				   const struct vfs_open_how *how)
{
	struct async_open_config *config = p->config;
	int fd = -1;
	int err;

	if (!async_open_is_our_create(p, handle, dirfsp, smb_fname, fsp,
				      how)) {
		DBG_NOTICE(MODULE ": retry of mid %" PRIu64 " for %s is not "
			   "its create (%s, flags 0%o/0%o): running it "
			   "synchronously\n", p->mid, p->name,
			   smb_fname->base_name, how->flags, p->flags);
		config->n.mismatched++;
		goto next;
	}
	if (p->fd == -1) {
		if (async_open_infra_error(p->err) || p->err == EEXIST) {
			DBG_NOTICE(MODULE ": asynchronous create of %s failed "
				   "with %s: running it again synchronously\n",
				   p->name, strerror(p->err));
			config->n.sync_again++;
			goto next;
		}
		config->n.failed++;
		err = p->err;
		TALLOC_FREE(p);
		errno = err;
		return -1;
	}
	err = async_open_move_in(p, smb_fname->base_name);
	if (err != 0) {
		DBG_NOTICE(MODULE ": cannot move the create of %s in: %s; "
			   "running it synchronously\n", p->name,
			   strerror(err));
		config->n.sync_again++;
		goto next;
	}
	fd = p->fd;
	p->fd = -1;
	config->n.handed++;
	TALLOC_FREE(p);
	/* what vfs_default records after its own open */
	fsp->fsp_flags.have_proc_fds = fsp->conn->have_proc_fds;
	return fd;
next:
	async_open_unmake(p);
	TALLOC_FREE(p);
	return async_open_next(handle, config, dirfsp, smb_fname, fsp, how);
}

static void async_open_rerun_now(struct tevent_context *ev,
				 struct tevent_immediate *im,
				 void *private_data)
{
	struct async_open_pending *p = talloc_get_type_abort(
		private_data, struct async_open_pending);

	if (!async_open_retry_now(p->client, p->channel_id, p->mid)) {
		TALLOC_FREE(p);
	}
}

/*
 * Remove the file our create made under its temporary name now, as the
 * requester (smbd impersonates them in openat), if it is still ours.
 */
static void async_open_unmake(struct async_open_pending *p)
{
	struct stat st;

	if (!p->create || p->fd == -1 || p->dirfd == -1 ||
	    fstatat(p->dirfd, p->at_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !async_open_same_object(p->fd, st.st_dev, st.st_ino)) {
		return;
	}
	if (unlinkat(p->dirfd, p->at_name, 0) != 0) {
		DBG_NOTICE(MODULE ": cannot remove %s: %s\n", p->at_name,
			   strerror(errno));
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
		 * smbd's own poll (or any retry) came first: keep waiting.
		 * Running a create again now would race the one in flight.
		 */
		errno = EINTR;
		return -1;
	}
	if (p->create) {
		return async_open_claim_create(p, handle, dirfsp, smb_fname,
					       fsp, how);
	}
	switch (async_open_matches(p, handle, dirfsp, smb_fname, fsp, how)) {
	case AO_HAND:
		break;
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
 * Mode auto: an open that could go asynchronous does so until the share's
 * opens are measured fast, and again once they take longer than the
 * threshold (the policy: asvfs_estimate.h).  Synchronous opens are timed
 * by async_open_next_measured(), asynchronous ones by async_open_learn().
 * An asynchronous open costs smbd a second pass (the replay), which only
 * pays on slow storage.
 */
static bool async_open_auto_async(struct async_open_config *config)
{
	if (config->mode != AO_AUTO) {
		return true;
	}
	return asvfs_estimate_want_async(&config->estimate, asvfs_now_nsec());
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
	asvfs_estimate_add(&config->estimate, nsec_time_diff(&end, &start),
			   asvfs_mono_nsec(&end));
	return fd;
}

/* --- opens whose retry smbd would answer differently --------------------- */

/*
 * smbd marks every retried open as one (open_file_ntcreate() sets
 * first_open_attempt = false for a deferred request), and a retry waits
 * for any other lease that is being broken (delay_for_oplock_fn()) where
 * a first attempt only sends its break and goes on: smb2.lease.breaking4.
 * An open of a file with a lease in that state stays synchronous, the
 * answer of smbd's first attempt.  A break that starts while our open is
 * in flight is one the retry waits for (the man page says so).
 */
struct async_open_lease_state {
	struct file_id id;
	bool breaking;
};

static bool async_open_lease_breaking_fn(struct share_mode_entry *e,
					 bool *modified, void *private_data)
{
	struct async_open_lease_state *state = private_data;
	bool breaking = false;
	NTSTATUS status;

	if (e->op_type != LEASE_OPLOCK || share_entry_stale_pid(e)) {
		return false;
	}
	status = leases_db_get(&e->client_guid, &e->lease_key, &state->id,
			       NULL, &breaking, NULL, NULL, NULL, NULL);
	/* an entry without its lease record: smbd panics, we stay sync */
	if (!NT_STATUS_IS_OK(status) || breaking) {
		state->breaking = true;
		return true;
	}
	return false;
}

static bool async_open_meets_breaking_lease(files_struct *fsp)
{
	struct async_open_lease_state state = { .id = fsp->file_id };
	struct share_mode_lock *lck = NULL;
	bool ok;

	lck = fetch_share_mode_unlocked(talloc_tos(), fsp->file_id);
	if (lck == NULL) {
		return false;		/* nobody has it open */
	}
	ok = share_mode_forall_entries(lck, async_open_lease_breaking_fn,
				       &state);
	TALLOC_FREE(lck);
	return !ok || state.breaking;
}

/*
 * A create smbd asks for by name (O_CREAT|O_EXCL: it made sure the name
 * was free), the only kind of create this module defers.
 */
static bool async_open_is_create_call(vfs_handle_struct *handle,
				      const struct files_struct *dirfsp,
				      const struct smb_filename *smb_fname,
				      files_struct *fsp,
				      const struct vfs_open_how *how)
{
	return (how->flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL) &&
	       !async_open_is_reopen(handle, dirfsp, smb_fname, fsp);
}

enum async_open_route {
	ASYNC_OPEN_PASS,	/* not an open we defer: the next module */
	ASYNC_OPEN_NEXT,	/* the next module, counted */
	ASYNC_OPEN_MEASURE,	/* the next module, timed for mode auto */
	ASYNC_OPEN_ANSWER,	/* smbd's retry: the result of ours */
	ASYNC_OPEN_RING,	/* asynchronous, on io_uring */
	ASYNC_OPEN_THREAD,	/* asynchronous, on a worker thread */
};

/* What async_open_route() found out about the call on the way. */
struct async_open_call {
	struct smbXsrv_connection *xconn;
	struct smbd_smb2_request *smb2req;
	struct timeval request_time;
	struct async_open_pending *p;	/* ASYNC_OPEN_ANSWER: ours */
	struct async_open_waiter *w;	/* it waited for a free worker */
	struct asvfs_engine *engine;	/* ASYNC_OPEN_RING */
	bool create;
	struct stat st;			/* an existing file: what it is */
};

/* Whether smbd's open is one of the kinds async_open:mode defers. */
static bool async_open_kind(vfs_handle_struct *handle,
			    struct async_open_config *config,
			    const struct files_struct *dirfsp,
			    const struct smb_filename *smb_fname,
			    files_struct *fsp, const struct vfs_open_how *how,
			    struct async_open_call *call)
{
	bool existing;

	call->create = async_open_is_create_call(handle, dirfsp, smb_fname,
						 fsp, how);
	existing = !call->create &&
		   (config->mode == AO_ALL || config->mode == AO_AUTO) &&
		   async_open_is_reopen(handle, dirfsp, smb_fname, fsp) &&
		   fstat(fsp_get_pathref_fd(fsp), &call->st) == 0 &&
		   S_ISREG(call->st.st_mode);
	return call->create || existing;
}

/* Where an open goes: the one place it is decided. */
static enum async_open_route async_open_route(
	vfs_handle_struct *handle, struct async_open_config *config,
	const struct files_struct *dirfsp,
	const struct smb_filename *smb_fname, files_struct *fsp,
	const struct vfs_open_how *how, struct async_open_call *call)
{
	/* The module is off. */
	if (config->mode == AO_OFF) {
		return ASYNC_OPEN_PASS;
	}
	/* Pathref opens: O_PATH, no I/O, nothing that blocks. */
	if (fsp->fsp_flags.is_pathref || (how->flags & O_PATH)) {
		return ASYNC_OPEN_PASS;
	}
	/* Directories: only creates and regular files are deferred. */
	if (how->flags & O_DIRECTORY) {
		return ASYNC_OPEN_PASS;
	}
	/* openat2 lookups (RESOLVE_* flags) are never deferred. */
	if (ASVFS_OPEN_HOW_RESOLVE(how) != 0) {
		return ASYNC_OPEN_PASS;
	}
	/* Internal opens, with no directory to open in. */
	if (dirfsp == NULL) {
		return ASYNC_OPEN_PASS;
	}
	/* Nor are streams. */
	if (fsp_is_alternate_stream(fsp) || is_named_stream(smb_fname)) {
		return ASYNC_OPEN_PASS;
	}
	/* No SMB2 request to replay. */
	call->xconn = async_open_find_channel(handle->conn, fsp,
					      &call->request_time,
					      &call->smb2req);
	if (call->xconn == NULL) {
		return ASYNC_OPEN_NEXT;
	}
	/* smbd's retry of an open of ours: its result, or run again */
	call->p = async_open_lookup(config, call->xconn->channel_id,
				    fsp->mid);
	if (call->p != NULL && call->p->rerun) {
		TALLOC_FREE(call->p);
		return ASYNC_OPEN_NEXT;
	}
	if (call->p != NULL) {
		return ASYNC_OPEN_ANSWER;
	}
	/* Not a create or, in modes all and auto, a regular file. */
	if (!async_open_kind(handle, config, dirfsp, smb_fname, fsp, how,
			     call)) {
		return ASYNC_OPEN_NEXT;
	}
	/* Too old for our timeout to answer within smbd's limit. */
	call->w = async_open_waiter_lookup(config, call->xconn->channel_id,
					   fsp->mid);
	if (!async_open_in_time(config, &call->request_time, call->create)) {
		if (call->w != NULL) {
			config->n.late++;
			TALLOC_FREE(call->w);
		}
		return ASYNC_OPEN_NEXT;
	}
	/* Mode auto on fast storage (a waiter was found slow before). */
	if (call->w == NULL && config->mode == AO_AUTO &&
	    !async_open_auto_async(config)) {
		return ASYNC_OPEN_MEASURE;
	}
	/*
	 * smbd's retry of a deferred open waits for a breaking lease where
	 * its first attempt answers at once (smb2.lease.breaking4).
	 */
	if (!call->create && async_open_meets_breaking_lease(fsp)) {
		TALLOC_FREE(call->w);
		return ASYNC_OPEN_NEXT;
	}
	/* async_open:backend = threads. */
	if (config->backend == AO_BACKEND_THREADS) {
		return ASYNC_OPEN_THREAD;
	}
	call->engine = async_open_engine(handle, config);
	/* No io_uring, or no IORING_OP_OPENAT: threads, if backend auto. */
	if (call->engine == NULL && config->backend == AO_BACKEND_AUTO) {
		return ASYNC_OPEN_THREAD;
	}
	/* ... and synchronous, if backend io_uring. */
	if (call->engine == NULL) {
		TALLOC_FREE(call->w);
		return ASYNC_OPEN_NEXT;
	}
	return ASYNC_OPEN_RING;
}

/* Start an open of ours, or have smbd ask again once a worker is free. */
static int async_open_defer(vfs_handle_struct *handle,
			    struct async_open_config *config,
			    struct async_open_call *call,
			    const struct files_struct *dirfsp,
			    const struct smb_filename *smb_fname,
			    files_struct *fsp, const struct vfs_open_how *how)
{
	if (!async_open_admit(config, handle->conn->sconn->ev_ctx,
			      call->xconn, fsp->mid, call->w,
			      &call->request_time, call->create)) {
		errno = EINTR;		/* smbd asks again */
		return -1;
	}
	if (async_open_start(handle, config, call->xconn, call->smb2req,
			     call->engine, dirfsp, smb_fname, fsp, how,
			     call->create, call->create ? NULL : &call->st)) {
		if (call->create) {
			config->n.creates++;
		} else {
			config->n.existing++;
		}
		errno = EINTR;		/* smbd's retry picks the result up */
		return -1;
	}
	return async_open_next(handle, config, dirfsp, smb_fname, fsp, how);
}

static int async_open_openat_once(vfs_handle_struct *handle,
				  const struct files_struct *dirfsp,
				  const struct smb_filename *smb_fname,
				  files_struct *fsp,
				  const struct vfs_open_how *how)
{
	struct async_open_config *config = NULL;
	struct async_open_call call = { .xconn = NULL };

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				return -1);
	switch (async_open_route(handle, config, dirfsp, smb_fname, fsp, how,
				 &call)) {
	case ASYNC_OPEN_PASS:
		return SMB_VFS_NEXT_OPENAT(handle, dirfsp, smb_fname, fsp,
					   how);
	case ASYNC_OPEN_NEXT:
		return async_open_next(handle, config, dirfsp, smb_fname, fsp,
				       how);
	case ASYNC_OPEN_MEASURE:
		return async_open_next_measured(handle, config, dirfsp,
						smb_fname, fsp, how);
	case ASYNC_OPEN_ANSWER:
		return async_open_answer(call.p, handle, dirfsp, smb_fname,
					 fsp, how);
	case ASYNC_OPEN_RING:
	case ASYNC_OPEN_THREAD:
		break;
	}
	return async_open_defer(handle, config, &call, dirfsp, smb_fname,
				fsp, how);
}

/* --- a create asked twice in one pass (4.22) ------------------------------ */

/*
 * smbd 4.22's fd_openat() asks again when a create by name fails
 * (asvfs_samba_version.h, ASVFS_OPENAT_ASKS_AGAIN).  The second call must
 * get the first one's answer: EINTR while our create is in flight, the
 * timeout's sharing violation, the create's own error.  Asked afresh, it
 * would find no pending create for its request (the first answer took
 * it) and start another one.  The answer is kept on the fsp, so it goes
 * with this attempt's fsp; the retry of the request has a new one.
 */
struct async_open_asked {
	uint64_t mid;
	int flags;
	int err;
};

static struct async_open_asked *async_open_asked_before(
	vfs_handle_struct *handle, files_struct *fsp,
	const struct vfs_open_how *how)
{
	struct async_open_asked *asked = VFS_FETCH_FSP_EXTENSION(handle, fsp);

	if (asked == NULL || asked->mid != fsp->mid ||
	    asked->flags != how->flags) {
		return NULL;
	}
	return asked;
}

static void async_open_remember_answer(vfs_handle_struct *handle,
				       files_struct *fsp,
				       const struct vfs_open_how *how,
				       int err)
{
	struct async_open_asked *asked = VFS_FETCH_FSP_EXTENSION(handle, fsp);

	if (asked == NULL) {
		asked = VFS_ADD_FSP_EXTENSION(handle, fsp,
					      struct async_open_asked, NULL);
	}
	if (asked == NULL) {
		return;		/* the second call is asked afresh */
	}
	*asked = (struct async_open_asked) {
		.mid = fsp->mid, .flags = how->flags, .err = err,
	};
}

/*
 * Does a create of ours wait for this call's request?  (Message ids
 * repeat across the channels of a session: a create of another channel
 * only makes smbd's own failure repeated, not a different answer.)
 */
static bool async_open_has_create_for(vfs_handle_struct *handle,
				      const files_struct *fsp)
{
	struct async_open_config *config = NULL;
	struct async_open_pending *p = NULL;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				return false);
	for (p = async_open_pending_list; p != NULL; p = p->next) {
		if (p->config == config && p->create && p->mid == fsp->mid) {
			return true;
		}
	}
	return false;
}

static int async_open_openat(vfs_handle_struct *handle,
			     const struct files_struct *dirfsp,
			     const struct smb_filename *smb_fname,
			     files_struct *fsp, const struct vfs_open_how *how)
{
	struct async_open_asked *asked = NULL;
	bool create, had_create;
	int fd;

	create = ASVFS_OPENAT_ASKS_AGAIN && !fsp->fsp_flags.is_pathref &&
		 dirfsp != NULL &&
		 async_open_is_create_call(handle, dirfsp, smb_fname, fsp,
					   how);
	if (!create) {
		return async_open_openat_once(handle, dirfsp, smb_fname, fsp,
					      how);
	}
	asked = async_open_asked_before(handle, fsp, how);
	if (asked != NULL) {
		int err = asked->err;

		VFS_REMOVE_FSP_EXTENSION(handle, fsp);
		errno = err;
		return -1;
	}
	had_create = async_open_has_create_for(handle, fsp);
	fd = async_open_openat_once(handle, dirfsp, smb_fname, fsp, how);
	/*
	 * Only our answers are repeated: smbd's own failure (a synchronous
	 * open) gets smbd's own second attempt.
	 */
	if (fd == -1 && (errno == EINTR || had_create)) {
		int err = errno;

		async_open_remember_answer(handle, fsp, how, err);
		errno = err;
	}
	return fd;
}

/* --- the retry's case-insensitive lookup --------------------------------- */

/*
 * Does a create of ours, started or done, hold this name in dirfsp?  Its
 * file waits under the temporary name, so the name itself is still free.
 */
static struct async_open_pending *async_open_holds_name(
	struct async_open_config *config, const struct files_struct *dirfsp,
	const char *name)
{
	const struct stat_ex *dir = &dirfsp->fsp_name->st;
	struct async_open_pending *p = NULL;

	if (!VALID_STAT(*dir)) {
		return NULL;
	}
	for (p = async_open_pending_list; p != NULL; p = p->next) {
		if (p->config == config && p->create && !p->rerun &&
		    !p->timed_out && (!p->done || p->fd != -1) &&
		    p->dir_ino == dir->st_ex_ino &&
		    p->dir_dev == dir->st_ex_dev &&
		    strcmp(p->leaf, name) == 0) {
			return p;
		}
	}
	return NULL;
}

/*
 * smbd's retry of a create walks the client's name again, finds it free
 * (our file is still under its temporary name) and, on a case-insensitive
 * share, reads the whole directory for a variant of it in another case:
 * the scan its first pass made before our create started, which found
 * none.  For a name our create holds, that answer stands: the scan is not
 * made twice.  On slow storage it is a directory read of round trips on
 * smbd's main thread.  A variant another client makes meanwhile is not
 * seen, as it is not between smbd's own scan and its create; the exact
 * name is still created only if free (async_open_move_in).
 */
static NTSTATUS async_open_get_real_filename_at(
	vfs_handle_struct *handle, struct files_struct *dirfsp,
	const char *name, TALLOC_CTX *mem_ctx, char **found_name)
{
	struct async_open_config *config = NULL;
	struct async_open_pending *p = NULL;
	NTSTATUS status;

	SMB_VFS_HANDLE_GET_DATA(handle, config, struct async_open_config,
				return NT_STATUS_INTERNAL_ERROR);
	p = async_open_holds_name(config, dirfsp, name);
	if (p != NULL) {
		config->n.lookups++;
		async_open_memo_begin(handle, config, dirfsp, &p->memo);
		return NT_STATUS_OBJECT_NAME_NOT_FOUND;
	}
	status = SMB_VFS_NEXT_GET_REAL_FILENAME_AT(handle, dirfsp, name,
						   mem_ctx, found_name);
	/*
	 * A create may follow (see async_open_memo_begin); NOT_SUPPORTED
	 * (the default VFS's answer) has smbd scan the directory next.
	 */
	if ((NT_STATUS_EQUAL(status, NT_STATUS_OBJECT_NAME_NOT_FOUND) ||
	     NT_STATUS_EQUAL(status, NT_STATUS_NOT_SUPPORTED)) &&
	    config->mode != AO_OFF && VALID_STAT(dirfsp->fsp_name->st)) {
		async_open_memo_begin(handle, config, dirfsp, NULL);
	}
	return status;
}

static struct vfs_fn_pointers vfs_async_open_fns = {
	.connect_fn = async_open_connect,
	.disconnect_fn = async_open_disconnect,
	.openat_fn = async_open_openat,
	.get_real_filename_at_fn = async_open_get_real_filename_at,
	.fget_nt_acl_fn = async_open_fget_nt_acl,
	.fgetxattr_fn = async_open_fgetxattr,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	return asvfs_register_module(MODULE, &vfs_async_open_fns,
				     &vfs_async_open_debug_level);
}
