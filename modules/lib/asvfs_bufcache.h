/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a small cache of bounce buffers.
 *
 * Every read and write goes through an engine-owned buffer (the kernel
 * must never touch memory smbd may free).  Allocating a fresh multi-MiB
 * buffer per request costs page faults on every first touch; keeping a
 * few freed buffers for reuse makes the bounce a plain memcpy.
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
