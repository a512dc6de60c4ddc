/*
 * samba-async-vfs: reading <module>:<option> parametric options, and
 * registering a module.
 *
 * Samba-facing and header-only on purpose: the engine library stays free
 * of Samba's headers, and DBG_ERR here logs through the debug class of
 * the module that includes this file (define DBGC_CLASS first).
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
#ifndef ASVFS_SMBCONF_H
#define ASVFS_SMBCONF_H

#include "asvfs_options.h"
#include "asvfs_engine.h"

static inline uint64_t asvfs_conf_uint(int snum, const char *module,
				       const char *option, uint64_t def,
				       uint64_t min, uint64_t max)
{
	const char *value = lp_parm_const_string(snum, module, option, NULL);
	uint64_t v = def;
	char err[128];

	if (value != NULL &&
	    !asvfs_parse_uint64(value, min, max, &v, err, sizeof(err))) {
		DBG_ERR("%s:%s: %s; using %" PRIu64 "\n",
			module, option, err, def);
		v = def;
	}
	return v;
}

/* A size in bytes, written with an optional K, M, G or T suffix. */
static inline uint64_t asvfs_conf_size(int snum, const char *module,
				       const char *option, uint64_t def,
				       uint64_t min, uint64_t max)
{
	const char *value = lp_parm_const_string(snum, module, option, NULL);
	uint64_t v = def;
	char err[128];

	if (value != NULL &&
	    !asvfs_parse_size(value, min, max, &v, err, sizeof(err))) {
		DBG_ERR("%s:%s: %s; using %" PRIu64 "\n",
			module, option, err, def);
		v = def;
	}
	return v;
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

/*
 * The process's engine for a module's work of one kind on smbd's main
 * event context, or NULL: the module then does what "fallback" says (a
 * phrase for the log, e.g. "opens stay synchronous").  io_uring refused
 * is logged by the first module that meets it in a process; an opcode
 * the kernel lacks, once per module, process and kind.
 */
static inline struct asvfs_engine *asvfs_module_engine(
	vfs_handle_struct *handle, const char *module,
	const struct asvfs_engine_config *config, enum asvfs_op_kind kind,
	const char *fallback)
{
	static bool missing_logged[ASVFS_OP_KIND_COUNT];
	struct asvfs_engine *engine = NULL;
	bool first = false;
	int err = 0;

	engine = asvfs_engine_get(handle->conn->sconn->ev_ctx, config, &err,
				  &first);
	if (engine == NULL) {
		if (first) {
			DBG_WARNING("%s: io_uring unavailable (%s): %s\n",
				    module, strerror(err), fallback);
		}
		return NULL;
	}
	if (!asvfs_engine_supports(engine, kind)) {
		if (!missing_logged[kind]) {
			missing_logged[kind] = true;
			DBG_WARNING("%s: the kernel lacks io_uring %s: %s\n",
				    module, asvfs_op_kind_name(kind),
				    fallback);
		}
		return NULL;
	}
	return engine;
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
	return NT_STATUS_OK;
}

#endif
