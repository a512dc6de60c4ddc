/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * asvfs_canary: the ABI canary of samba-async-vfs (selftest only, never
 * installed).
 *
 * It proves on every run that a module built by this tree loads by name in
 * the installed smbd, that its vfs_fn_pointers layout matches (connect_fn
 * and pread_send_fn are called through the same table smbd uses), and that
 * it can call into the shared engine library.  Everything else passes to
 * the next module.
 */
#include "includes.h"
#include "smbd/smbd.h"
#include "asvfs_options.h"
#include "asvfs_uring_probe.h"

static int vfs_asvfs_canary_debug_level = DBGC_VFS;

#undef DBGC_CLASS
#define DBGC_CLASS vfs_asvfs_canary_debug_level

static int asvfs_canary_connect(vfs_handle_struct *handle,
				const char *service, const char *user)
{
	struct asvfs_uring_support support;
	char desc[256];
	const char *mark = NULL;
	uint64_t level = 1;
	char err[128];
	int ret;

	ret = SMB_VFS_NEXT_CONNECT(handle, service, user);
	if (ret < 0) {
		return ret;
	}

	/* An option parsed and validated as real modules do. */
	mark = lp_parm_const_string(SNUM(handle->conn), "asvfs_canary",
				    "log level", NULL);
	if (mark != NULL &&
	    !asvfs_parse_uint64(mark, 0, 10, &level, err, sizeof(err))) {
		DBG_ERR("asvfs_canary:log level: %s, using 1\n", err);
		level = 1;
	}

	asvfs_uring_probe(&support);
	DEBUG((int)level, ("asvfs_canary: connected to [%s] interface %d, "
			   "%s\n", service, SMB_VFS_INTERFACE_VERSION,
			   asvfs_uring_describe(&support, desc,
						sizeof(desc))));
	return 0;
}

static struct vfs_fn_pointers asvfs_canary_fns = {
	.connect_fn = asvfs_canary_connect,
};

/* Out of tree, smbd's loader looks for this exact name. */
NTSTATUS samba_init_module(TALLOC_CTX *ctx);
NTSTATUS samba_init_module(TALLOC_CTX *ctx)
{
	NTSTATUS status;

	status = smb_register_vfs(SMB_VFS_INTERFACE_VERSION, "asvfs_canary",
				  &asvfs_canary_fns);
	if (!NT_STATUS_IS_OK(status)) {
		return status;
	}
	vfs_asvfs_canary_debug_level = debug_add_class("asvfs_canary");
	if (vfs_asvfs_canary_debug_level == -1) {
		vfs_asvfs_canary_debug_level = DBGC_VFS;
	}
	return NT_STATUS_OK;
}
