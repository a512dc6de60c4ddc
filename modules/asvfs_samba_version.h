/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: every difference between the Samba releases the
 * modules build against, in one place, keyed on SMB_VFS_INTERFACE_VERSION
 * (source3/include/vfs.h of the prepared tree):
 *
 *   47  Samba 4.17 (Debian 12)
 *   50  Samba 4.22 (Debian 12 bookworm-backports, Debian 13)
 *
 * Modules include this after smbd.h and use only what it defines where a
 * release differs; there are no per-release copies of module code.
 * Adding a release: extend the table above, add its differences below
 * (each with the interface version that brought it and what a module must
 * do about it), and a runtime recipe in buildtools/prepare-chroot.sh; see
 * docs/samba-versions.md.
 *
 * Samba-facing and header-only, like asvfs_module.h.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#ifndef ASVFS_SAMBA_VERSION_H
#define ASVFS_SAMBA_VERSION_H

#if SMB_VFS_INTERFACE_VERSION < 47 || SMB_VFS_INTERFACE_VERSION > 50
/* see docs/samba-versions.md to add one */
#error "samba-async-vfs knows VFS interfaces 47 (4.17) to 50 (4.22)"
#endif

/*
 * v49 (4.19): readdir_fn lost its stat buffer, and seekdir_fn/telldir_fn
 * are gone: smbd lists forward only and keeps the entry that did not fit
 * a QUERY_DIRECTORY answer itself (dptr->overflow).  A module's readdir_fn
 * keeps 4.17's arguments (registered on v49+ through a wrapper that
 * passes a NULL sbuf) and calls the next module with ASVFS_NEXT_READDIR().
 */
#if SMB_VFS_INTERFACE_VERSION >= 49
#define ASVFS_HAVE_SEEKDIR 0
#define ASVFS_NEXT_READDIR(handle, dirfsp, dirp, sbuf) \
	SMB_VFS_NEXT_READDIR(handle, dirfsp, dirp)
#else
#define ASVFS_HAVE_SEEKDIR 1
#define ASVFS_NEXT_READDIR(handle, dirfsp, dirp, sbuf) \
	SMB_VFS_NEXT_READDIR(handle, dirfsp, dirp, sbuf)
#endif

/*
 * 4.20: sconn->using_smb2 became conn_using_smb2(sconn) (no interface
 * version bump of its own; 4.22 is the first such release we build for).
 */
#if SMB_VFS_INTERFACE_VERSION >= 50
#define asvfs_using_smb2(sconn) conn_using_smb2(sconn)
#else
#define asvfs_using_smb2(sconn) ((sconn)->using_smb2)
#endif

/*
 * v50 (4.22): POSIX-append opens (SMB3 POSIX or SMB1 unix extensions,
 * FILE_APPEND_DATA without FILE_WRITE_DATA) write with the offset
 * VFS_PWRITE_APPEND_OFFSET (-1): the data goes to the end of the file,
 * which the fd was opened O_APPEND for.
 */
#ifdef VFS_PWRITE_APPEND_OFFSET
#define ASVFS_PWRITE_IS_APPEND(offset) ((offset) == VFS_PWRITE_APPEND_OFFSET)
#else
#define ASVFS_PWRITE_IS_APPEND(offset) false
#endif

/*
 * v50 (4.22): how->resolve may carry VFS_OPEN_HOW_WITH_BACKUP_INTENT, a
 * note for modules, not a path resolution rule: only the other bits keep
 * an open from being deferred.
 */
#ifdef VFS_OPEN_HOW_WITH_BACKUP_INTENT
#define ASVFS_OPEN_HOW_RESOLVE(how) \
	((how)->resolve & ~VFS_OPEN_HOW_WITH_BACKUP_INTENT)
#else
#define ASVFS_OPEN_HOW_RESOLVE(how) ((how)->resolve)
#endif

/*
 * v50 (4.22): fd_openat() asks openat_fn a second time, in the same pass,
 * when its open of a name without '/' fails: again after a path walk
 * (filename_convert_dirfsp_rel(), for a symlink in the last component).
 * 4.17's non_widelink_open() asks once.  A module that answered the
 * first call itself (an error or EINTR) gives the second one the same
 * answer (async_open: asked afresh, it would start another create).
 */
#if SMB_VFS_INTERFACE_VERSION >= 50
#define ASVFS_OPENAT_ASKS_AGAIN 1
#else
#define ASVFS_OPENAT_ASKS_AGAIN 0
#endif

#endif /* ASVFS_SAMBA_VERSION_H */
