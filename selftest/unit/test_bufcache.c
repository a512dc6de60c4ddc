/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: bounce buffers are reused, and the cache stays bounded.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <talloc.h>

#include "asvfs_bufcache.h"

static void freed_buffer_is_reused_for_the_same_size_class(void **state)
{
	TALLOC_CTX *mem = talloc_new(NULL);
	struct asvfs_bufcache *c = asvfs_bufcache_new(mem, 4, 1 << 30);
	void *a = asvfs_bufcache_get(c, mem, 1000000);
	void *b = NULL;

	assert_true(talloc_get_size(a) >= 1000000);
	asvfs_bufcache_put(c, a);
	b = asvfs_bufcache_get(c, mem, 700000);	/* same power of two */
	assert_ptr_equal(a, b);
	assert_ptr_equal(talloc_parent(b), mem);
	b = asvfs_bufcache_get(c, mem, 100);	/* nothing cached fits */
	assert_ptr_not_equal(a, b);
	talloc_free(mem);
}

static void cache_keeps_at_most_max_buffers_and_bytes(void **state)
{
	TALLOC_CTX *mem = talloc_new(NULL);
	struct asvfs_bufcache *c = asvfs_bufcache_new(mem, 2, 3 * 65536);
	void *bufs[4];
	int i;

	for (i = 0; i < 4; i++) {
		bufs[i] = asvfs_bufcache_get(c, mem, 65536);
	}
	for (i = 0; i < 4; i++) {
		asvfs_bufcache_put(c, bufs[i]);
	}
	/* two kept (the count bound), two freed */
	assert_int_equal(talloc_total_blocks(c), 1 + 1 + 2);

	c = asvfs_bufcache_new(mem, 8, 65536);
	bufs[0] = asvfs_bufcache_get(c, mem, 65536);
	bufs[1] = asvfs_bufcache_get(c, mem, 65536);
	asvfs_bufcache_put(c, bufs[0]);
	asvfs_bufcache_put(c, bufs[1]);	/* over the byte bound: freed */
	assert_int_equal(talloc_total_blocks(c), 1 + 1 + 1);
	talloc_free(mem);
}

static void put_without_cache_frees(void **state)
{
	TALLOC_CTX *mem = talloc_new(NULL);
	void *buf = talloc_size(mem, 4096);

	asvfs_bufcache_put(NULL, buf);
	asvfs_bufcache_put(NULL, NULL);
	assert_int_equal(talloc_total_blocks(mem), 1);
	talloc_free(mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(freed_buffer_is_reused_for_the_same_size_class),
		cmocka_unit_test(cache_keeps_at_most_max_buffers_and_bytes),
		cmocka_unit_test(put_without_cache_frees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
