/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a small cache of bounce buffers.
 *
 * Reads and writes use the caller's buffer (freeing one in flight waits
 * for the kernel).  The ops whose caller may go without waiting, a
 * getxattr's value, have the kernel fill an engine-owned buffer instead,
 * copied out on completion: the kernel never touches memory smbd may
 * have freed.  Keeping a few freed buffers for reuse spares an
 * allocation, and the page faults of its first touch, per request.
 */
#ifndef ASVFS_BUFCACHE_H
#define ASVFS_BUFCACHE_H

#include <stddef.h>
#include <talloc.h>

struct asvfs_bufcache;

struct asvfs_bufcache *asvfs_bufcache_new(TALLOC_CTX *mem_ctx,
					  unsigned max_buffers,
					  size_t max_bytes);

/* A buffer of at least n bytes, a talloc child of mem_ctx. */
void *asvfs_bufcache_get(struct asvfs_bufcache *cache, TALLOC_CTX *mem_ctx,
			 size_t n);

/* Give a buffer from asvfs_bufcache_get() back (or free it). */
void asvfs_bufcache_put(struct asvfs_bufcache *cache, void *buf);

#endif
