/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: what the modules share that speaks Samba: reading
 * <module>:<option> parametric options, logging a fallback once, the
 * engine for a call, and registering a module.
 *
 * It lives beside the modules, not in modules/lib/, because it includes
 * Samba's headers (through the module that includes it) and modules/lib/
 * builds without them, as Samba keeps vfs_acl_common.h beside the
 * modules that share it.  Header-only on purpose: DBG_ERR here logs
 * through the debug class of the module that includes this file (define
 * DBGC_CLASS first).
 *
 * Every reader follows one rule: an unset option gives the default, an
 * invalid one gives the default and one log line naming the option, the
 * reason and the value used instead.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#ifndef ASVFS_MODULE_H
#define ASVFS_MODULE_H

#include "asvfs_options.h"
#include "asvfs_engine.h"
#include "asvfs_personality.h"
#include "asvfs_process.h"

/* A number in [min, max] as parse() reads it. */
static inline uint64_t asvfs_conf_number(
	int snum, const char *module, const char *option, uint64_t def,
	uint64_t min, uint64_t max,
	bool (*parse)(const char *str, uint64_t min, uint64_t max,
		      uint64_t *result, char *errbuf, size_t errlen))
{
	const char *value = lp_parm_const_string(snum, module, option, NULL);
	uint64_t v = def;
	char err[128];

	if (value != NULL && !parse(value, min, max, &v, err, sizeof(err))) {
		DBG_ERR("%s:%s: %s; using %" PRIu64 "\n",
			module, option, err, def);
		v = def;
	}
	return v;
}

static inline uint64_t asvfs_conf_uint(int snum, const char *module,
				       const char *option, uint64_t def,
				       uint64_t min, uint64_t max)
{
	return asvfs_conf_number(snum, module, option, def, min, max,
				 asvfs_parse_uint64);
}

/* A size in bytes, written with an optional K, M, G or T suffix. */
static inline uint64_t asvfs_conf_size(int snum, const char *module,
				       const char *option, uint64_t def,
				       uint64_t min, uint64_t max)
{
	return asvfs_conf_number(snum, module, option, def, min, max,
				 asvfs_parse_size);
}

static inline bool asvfs_conf_bool(int snum, const char *module,
				   const char *option, bool def)
{
	const char *value = lp_parm_const_string(snum, module, option, NULL);
	bool v = def;
	char err[128];

	if (value != NULL && !asvfs_parse_bool(value, &v, err, sizeof(err))) {
		DBG_ERR("%s:%s: %s; using %s\n",
			module, option, err, def ? "yes" : "no");
		v = def;
	}
	return v;
}

/* def must be one of the table's values; its name is what gets logged. */
static inline int asvfs_conf_enum(int snum, const char *module,
				  const char *option,
				  const struct asvfs_enum_value *table, int def)
{
	const char *value = lp_parm_const_string(snum, module, option, NULL);
	const char *def_name = "?";
	int v = def;
	char err[128];
	int i;

	if (value == NULL ||
	    asvfs_parse_enum(value, table, &v, err, sizeof(err))) {
		return v;
	}
	for (i = 0; table[i].name != NULL; i++) {
		if (table[i].value == def) {
			def_name = table[i].name;
			break;
		}
	}
	DBG_ERR("%s:%s: %s; using %s\n", module, option, err, def_name);
	return def;
}

/* --- log once, then quietly ---------------------------------------------- */

/*
 * Log body (DBG_*'s parenthesised format and arguments) at level_first
 * the first time this line runs in the process, at level_rest after:
 * an admin sees a fallback once, "log level = 10" every time.
 * ASVFS_LOG_ONCE_PER keeps a first time for each of nkeys keys (e.g.
 * per operation kind), key < nkeys.  Each use has flags of its own, in
 * each module that includes this header.
 */
#define ASVFS_LOG_ONCE_PER(key, nkeys, level_first, level_rest, body) do { \
	static bool asvfs_logged_[nkeys]; \
	DBG_PREFIX(asvfs_logged_[key] ? (level_rest) : (level_first), body); \
	asvfs_logged_[key] = true; \
} while (0)

#define ASVFS_LOG_ONCE(level_first, level_rest, body) \
	ASVFS_LOG_ONCE_PER(0, 1, level_first, level_rest, body)

/* --- the engine's settings: [global] only --------------------------------- */

/*
 * The engine is one per smbd process, shared by every module and share
 * of that process, so its settings cannot be per share: they are
 * [global] options of their own, "async_vfs:<option>".  Precedence, for
 * each setting: async_vfs:<option> in [global]; else its older name
 * (async_uring:entries, async_uring:sqpoll), read in [global] only;
 * else the default.  In a share section both are ignored, with a log
 * line: no share decides for the whole process.
 */
#define ASVFS_ENGINE_OPTIONS "async_vfs"

/* The value set in snum's own section, NULL when it only inherits. */
static inline const char *asvfs_conf_share_only(int snum, const char *module,
						const char *option)
{
	const char *share = lp_parm_const_string(snum, module, option, NULL);
	const char *global = lp_parm_const_string(GLOBAL_SECTION_SNUM, module,
						  option, NULL);

	if (share == NULL || (global != NULL && strcmp(share, global) == 0)) {
		return NULL;
	}
	return share;
}

static inline void asvfs_conf_engine_ignored(int snum, const char *module,
					     const char *option)
{
	const char *value = asvfs_conf_share_only(snum, module, option);

	if (value != NULL) {
		DBG_WARNING("%s:%s = %s in a share section is ignored: the "
			"engine is per process; set "
			ASVFS_ENGINE_OPTIONS ":%s in [global]\n",
			module, option, value, option);
	}
}

/* Which module's name an engine setting is read under in [global]. */
static inline const char *asvfs_conf_engine_name(const char *option,
						 const char *old_module)
{
	if (old_module != NULL &&
	    lp_parm_const_string(GLOBAL_SECTION_SNUM, ASVFS_ENGINE_OPTIONS,
				 option, NULL) == NULL &&
	    lp_parm_const_string(GLOBAL_SECTION_SNUM, old_module, option,
				 NULL) != NULL) {
		return old_module;
	}
	return ASVFS_ENGINE_OPTIONS;
}

/*
 * Fill config with the process's engine settings, for a module's
 * connect to share snum; bad values are logged and replaced by the
 * default (asvfs_conf_uint()'s rule).
 */
static inline void asvfs_conf_engine(int snum,
				     struct asvfs_engine_config *config)
{
	const char *name = NULL;

	name = asvfs_conf_engine_name("entries", "async_uring");
	config->entries = asvfs_conf_uint(GLOBAL_SECTION_SNUM, name,
					  "entries", 256, 8, 32768);
	name = asvfs_conf_engine_name("sqpoll", "async_uring");
	config->sqpoll = asvfs_conf_bool(GLOBAL_SECTION_SNUM, name, "sqpoll",
					 false);
	/*
	 * Kernel threads, made only while there is blocking work for them
	 * and gone after some idle seconds.  0 keeps the kernel's default
	 * (4 per CPU), which made 200 opens of 5 s each wait behind each
	 * other for two minutes.
	 */
	config->workers = asvfs_conf_uint(GLOBAL_SECTION_SNUM,
					  ASVFS_ENGINE_OPTIONS,
					  "io-wq workers", 256, 0, 65536);
	config->personalities = 0;
	if (snum == GLOBAL_SECTION_SNUM) {
		return;
	}
	asvfs_conf_engine_ignored(snum, ASVFS_ENGINE_OPTIONS, "entries");
	asvfs_conf_engine_ignored(snum, ASVFS_ENGINE_OPTIONS, "sqpoll");
	asvfs_conf_engine_ignored(snum, ASVFS_ENGINE_OPTIONS, "io-wq workers");
	asvfs_conf_engine_ignored(snum, "async_uring", "entries");
	asvfs_conf_engine_ignored(snum, "async_uring", "sqpoll");
}

/*
 * Log the settings of the process's engine at level 3, once per module
 * and process (each module has its own copy of this static).
 */
static inline void asvfs_log_engine(const char *module,
				    struct asvfs_engine *engine,
				    const struct asvfs_engine_config *config)
{
	static pid_t logged_pid;

	if (logged_pid == asvfs_process_id()) {
		return;
	}
	logged_pid = asvfs_process_id();
	/*
	 * The module's class (registered under its name, so this finds
	 * it): DBGC_CLASS is not yet the module's where this is included.
	 */
	DEBUGC(debug_add_class(module), 3,
	       ("%s: engine set up: entries=%u sqpoll=%s io-wq workers=%u "
		"(%u in force)\n", module, config->entries,
		config->sqpoll ? "yes" : "no", config->workers,
		asvfs_engine_workers(engine)));
}

/* smbd's monotonic clock in the nanoseconds asvfs_estimate.h takes. */
static inline uint64_t asvfs_mono_nsec(const struct timespec *ts)
{
	return (uint64_t)ts->tv_sec * 1000000000ULL + (uint64_t)ts->tv_nsec;
}

static inline uint64_t asvfs_now_nsec(void)
{
	struct timespec now;

	clock_gettime_mono(&now);
	return asvfs_mono_nsec(&now);
}

/*
 * Whether a module after this one in "vfs objects" (not the last handle:
 * vfs_default, whose work our modules do) does what does_it() looks for
 * in its function table, e.g. keeps xattrs or takes locks its own way:
 * such a module must never be bypassed.
 */
static inline bool asvfs_lower_module(
	const vfs_handle_struct *handle,
	bool (*does_it)(const struct vfs_fn_pointers *fns))
{
	const vfs_handle_struct *h = NULL;

	for (h = handle->next; h != NULL && h->next != NULL; h = h->next) {
		if (does_it(h->fns)) {
			return true;
		}
	}
	return false;
}

/* What asvfs_module_engine() checks and does beyond the engine itself. */
#define ASVFS_ENGINE_COUNT_FALLBACK 0x1	/* count a refusal for the kind */
#define ASVFS_ENGINE_NEED_SLOT 0x2	/* a free fixed-file slot */

/* asvfs_module_engine() without the counting. */
static inline struct asvfs_engine *asvfs_module_engine_find(
	vfs_handle_struct *handle, struct tevent_context *ev,
	const char *module, const struct asvfs_engine_config *config,
	enum asvfs_op_kind kind, unsigned flags, const char *fallback)
{
	const char *kind_name = asvfs_op_kind_name(kind);
	struct asvfs_engine *engine = NULL;
	bool first = false;
	int err = 0;

	/*
	 * The engine lives on smbd's main event context.  A call on another
	 * one (smb_vfs_fsync_sync()'s temporary context) is completed there
	 * by the next module, and must never be what creates the engine.
	 */
	if (ev != handle->conn->sconn->ev_ctx) {
		DBG_DEBUG("%s: %s on a temporary event context: %s\n",
			  module, kind_name, fallback);
		return NULL;
	}
	engine = asvfs_engine_get(ev, config, &err, &first);
	if (engine == NULL) {
		/* the first module that meets it in the process says so */
		if (first) {
			DBG_WARNING("%s: io_uring unavailable (%s): %s\n",
				    module, strerror(err), fallback);
		} else {
			DBG_DEBUG("%s: %s without io_uring (%s): %s\n",
				  module, kind_name, strerror(err), fallback);
		}
		return NULL;
	}
	asvfs_log_engine(module, engine, config);
	if (!asvfs_engine_supports(engine, kind)) {
		ASVFS_LOG_ONCE_PER(kind, ASVFS_OP_KIND_COUNT, DBGLVL_WARNING,
				   DBGLVL_DEBUG,
				   ("%s: the kernel lacks io_uring %s: %s\n",
				    module, kind_name, fallback));
		return NULL;
	}
	if ((flags & ASVFS_ENGINE_NEED_SLOT) &&
	    !asvfs_engine_has_free_slot(engine)) {
		DBG_DEBUG("%s: %s: no free fixed-file slot: %s\n", module,
			  kind_name, fallback);
		return NULL;
	}
	return engine;
}

/*
 * The process's engine for a module's call of one kind on event context
 * ev, or NULL: the module then does what "fallback" says (a phrase for
 * the log, e.g. "opens stay synchronous").  NULL on any event context
 * but smbd's main one; where io_uring is refused, logged at level 1 by
 * the first module that meets it in a process; where the kernel lacks
 * the opcode, at level 1 once per module, process and kind; the rest at
 * level 10.  flags: ASVFS_ENGINE_COUNT_FALLBACK counts each NULL in the
 * engine's fallback counter of the kind; ASVFS_ENGINE_NEED_SLOT also
 * wants a free fixed-file slot.
 */
static inline struct asvfs_engine *asvfs_module_engine(
	vfs_handle_struct *handle, struct tevent_context *ev,
	const char *module, const struct asvfs_engine_config *config,
	enum asvfs_op_kind kind, unsigned flags, const char *fallback)
{
	struct asvfs_engine *engine = NULL;

	engine = asvfs_module_engine_find(handle, ev, module, config, kind,
					  flags, fallback);
	if (engine == NULL && (flags & ASVFS_ENGINE_COUNT_FALLBACK)) {
		asvfs_engine_count_fallback(kind);
	}
	return engine;
}

/*
 * The personality cache's key from smbd's record of the identity it set
 * last: set_sec_ctx() and pop_sec_ctx() update it in the same step as
 * the system calls that take the identity on (and panic when those
 * fail), so it is the kernel's, for three system calls less per request.
 * The cache still registers nothing the kernel does not confirm.
 */
static inline void asvfs_smbd_creds(struct asvfs_creds_record *rec)
{
	const struct security_unix_token *ut = get_current_utok(NULL);

	rec->uid = ut->uid;
	rec->gid = ut->gid;
	rec->ngroups = (int)ut->ngroups;
	rec->groups = ut->groups;
}

/*
 * Register a module under its name and give it a debug class of the
 * same name (DBGC_VFS if classes are exhausted), so that
 * "log level = 1 <module>:10" debugs one module.
 */
static inline NTSTATUS asvfs_register_module(const char *module,
					     struct vfs_fn_pointers *fns,
					     int *debug_level)
{
	NTSTATUS status;

	status = smb_register_vfs(SMB_VFS_INTERFACE_VERSION, module, fns);
	if (!NT_STATUS_IS_OK(status)) {
		return status;
	}
	*debug_level = debug_add_class(module);
	if (*debug_level == -1) {
		*debug_level = DBGC_VFS;
	}
	/* any module's copy: smbd unloads no module it registered */
	asvfs_personality_read_creds_from(asvfs_smbd_creds);
	return NT_STATUS_OK;
}

#endif
