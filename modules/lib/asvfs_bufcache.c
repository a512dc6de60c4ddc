/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a small cache of bounce buffers.
 */
#include "asvfs_bufcache.h"

#include <stdbool.h>

#define ASVFS_BUF_MIN 4096

struct asvfs_bufcache {
	unsigned max_buffers;
	size_t max_bytes;
	unsigned count;
	size_t bytes;
	void **bufs;		/* cached buffers, talloc children of cache */
};

struct asvfs_bufcache *asvfs_bufcache_new(TALLOC_CTX *mem_ctx,
					  unsigned max_buffers,
					  size_t max_bytes)
{
	struct asvfs_bufcache *cache = talloc_zero(mem_ctx,
						   struct asvfs_bufcache);

	if (cache == NULL) {
		return NULL;
	}
	cache->bufs = talloc_zero_array(cache, void *, max_buffers + 1);
	if (cache->bufs == NULL) {
		talloc_free(cache);
		return NULL;
	}
	cache->max_buffers = max_buffers;
	cache->max_bytes = max_bytes;
	return cache;
}

/* Sizes are rounded up to a power of two so that buffers fit again. */
static size_t size_class(size_t n)
{
	size_t s = ASVFS_BUF_MIN;

	while (s < n && s < ((size_t)1 << 40)) {
		s <<= 1;
	}
	return s;
}

void *asvfs_bufcache_get(struct asvfs_bufcache *cache, TALLOC_CTX *mem_ctx,
			 size_t n)
{
	size_t want = size_class(n);
	unsigned i;

	for (i = 0; i < cache->count; i++) {
		void *buf = cache->bufs[i];

		if (talloc_get_size(buf) == want) {
			cache->bufs[i] = cache->bufs[--cache->count];
			cache->bytes -= want;
			return talloc_steal(mem_ctx, buf);
		}
	}
	return talloc_size(mem_ctx, want);
}

void asvfs_bufcache_put(struct asvfs_bufcache *cache, void *buf)
{
	size_t size;

	if (buf == NULL) {
		return;
	}
	if (cache == NULL) {
		talloc_free(buf);
		return;
	}
	size = talloc_get_size(buf);
	if (cache->count >= cache->max_buffers ||
	    cache->bytes + size > cache->max_bytes) {
		talloc_free(buf);
		return;
	}
	cache->bufs[cache->count++] = talloc_steal(cache, buf);
	cache->bytes += size;
}
