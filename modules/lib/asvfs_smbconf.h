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
