/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: the attribute cache answers only for exactly the key it
 * was given, keeps within its bound, and forgets an object's past.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "asvfs_attrcache.h"

static struct asvfs_attrcache_key key(ino_t ino)
{
	return (struct asvfs_attrcache_key) {
		.dev = 42, .ino = ino,
		.ctime = { .tv_sec = 1000, .tv_nsec = 500 }, .size = 7,
	};
}

static const struct asvfs_attrcache_read blob = {
	.len = 5, .data = "blob",
};

static void value_comes_back_for_the_same_key(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key k = key(1);
	struct asvfs_attrcache_read r;

	assert_false(asvfs_attrcache_get_value(c, &k, &r));
	asvfs_attrcache_put_value(c, &k, &blob);
	assert_true(asvfs_attrcache_get_value(c, &k, &r));
	assert_int_equal(r.len, 5);
	assert_memory_equal(r.data, "blob", 5);
	/* the names are a part of their own */
	assert_false(asvfs_attrcache_get_names(c, &k, &r));
	talloc_free(c);
}

static void any_other_key_misses(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key k = key(1), other;
	struct asvfs_attrcache_read r;

	asvfs_attrcache_put_value(c, &k, &blob);
	other = k;
	other.ctime.tv_nsec++;
	assert_false(asvfs_attrcache_get_value(c, &other, &r));
	other = k;
	other.ctime.tv_sec--;
	assert_false(asvfs_attrcache_get_value(c, &other, &r));
	other = k;
	other.size++;
	assert_false(asvfs_attrcache_get_value(c, &other, &r));
	other = k;
	other.dev++;
	assert_false(asvfs_attrcache_get_value(c, &other, &r));
	other = k;
	other.ino++;
	assert_false(asvfs_attrcache_get_value(c, &other, &r));
	assert_true(asvfs_attrcache_get_value(c, &k, &r));
	talloc_free(c);
}

/* A put for a newer key drops all the older key said, names too. */
static void a_new_key_forgets_the_old(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key k = key(1), newer = key(1);
	struct asvfs_attrcache_read names = { .len = 3, .data = "u.a" };
	struct asvfs_attrcache_read r;

	asvfs_attrcache_put_value(c, &k, &blob);
	asvfs_attrcache_put_names(c, &k, &names);
	newer.ctime.tv_sec++;
	asvfs_attrcache_put_value(c, &newer, &blob);
	assert_false(asvfs_attrcache_get_names(c, &newer, &r));
	assert_false(asvfs_attrcache_get_value(c, &k, &r));
	assert_false(asvfs_attrcache_get_names(c, &k, &r));
	assert_int_equal(asvfs_attrcache_count(c), 1);
	talloc_free(c);
}

static void missing_xattr_is_kept_other_errors_are_not(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key a = key(1), b = key(2);
	struct asvfs_attrcache_read none = { .len = -1, .err = ENODATA };
	struct asvfs_attrcache_read eio = { .len = -1, .err = EIO };
	struct asvfs_attrcache_read r;

	asvfs_attrcache_put_value(c, &a, &none);
	assert_true(asvfs_attrcache_get_value(c, &a, &r));
	assert_int_equal(r.len, -1);
	assert_int_equal(r.err, ENODATA);
	asvfs_attrcache_put_value(c, &b, &eio);
	assert_false(asvfs_attrcache_get_value(c, &b, &r));
	talloc_free(c);
}

static void long_values_are_not_kept(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key k = key(1);
	char big[ASVFS_DOSATTR_VALUE_MAX + 1] = { 0 };
	struct asvfs_attrcache_read r = { .len = sizeof(big), .data = big };

	asvfs_attrcache_put_value(c, &k, &r);
	assert_false(asvfs_attrcache_get_value(c, &k, &r));
	r.len = ASVFS_DOSATTR_VALUE_MAX;
	asvfs_attrcache_put_value(c, &k, &r);
	assert_true(asvfs_attrcache_get_value(c, &k, &r));
	talloc_free(c);
}

/* Past the bound the least recently used object goes. */
static void bound_evicts_the_least_recently_used(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 3);
	struct asvfs_attrcache_key k[4] = { key(1), key(2), key(3), key(4) };
	struct asvfs_attrcache_read r;
	int i;

	for (i = 0; i < 3; i++) {
		asvfs_attrcache_put_value(c, &k[i], &blob);
	}
	assert_true(asvfs_attrcache_get_value(c, &k[0], &r));	/* used */
	asvfs_attrcache_put_value(c, &k[3], &blob);
	assert_int_equal(asvfs_attrcache_count(c), 3);
	assert_true(asvfs_attrcache_get_value(c, &k[0], &r));
	assert_false(asvfs_attrcache_get_value(c, &k[1], &r));
	assert_true(asvfs_attrcache_get_value(c, &k[2], &r));
	assert_true(asvfs_attrcache_get_value(c, &k[3], &r));
	talloc_free(c);
}

/* Many objects in few buckets: every one is found, and only it. */
static void collisions_keep_objects_apart(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 2000);
	struct asvfs_attrcache_read r;
	unsigned i;

	for (i = 0; i < 2000; i++) {
		struct asvfs_attrcache_key k = key(i * 1024);
		struct asvfs_attrcache_read v = { .len = sizeof(i),
						  .data = &i };

		asvfs_attrcache_put_value(c, &k, &v);
	}
	for (i = 0; i < 2000; i++) {
		struct asvfs_attrcache_key k = key(i * 1024);

		assert_true(asvfs_attrcache_get_value(c, &k, &r));
		assert_memory_equal(r.data, &i, sizeof(i));
	}
	talloc_free(c);
}

static void no_cache_without_entries(void **state)
{
	struct asvfs_attrcache_key k = key(1);
	struct asvfs_attrcache_read r;

	assert_null(asvfs_attrcache_new(NULL, 0));
	asvfs_attrcache_put_value(NULL, &k, &blob);
	assert_false(asvfs_attrcache_get_value(NULL, &k, &r));
}

static void clear_forgets_everything(void **state)
{
	struct asvfs_attrcache *c = asvfs_attrcache_new(NULL, 8);
	struct asvfs_attrcache_key k1 = key(1), k2 = key(2);
	struct asvfs_attrcache_read r;

	asvfs_attrcache_put_value(c, &k1, &blob);
	asvfs_attrcache_put_names(c, &k2, &blob);
	assert_int_equal(asvfs_attrcache_count(c), 2);
	asvfs_attrcache_clear(c);
	assert_int_equal(asvfs_attrcache_count(c), 0);
	assert_false(asvfs_attrcache_get_value(c, &k1, &r));
	assert_false(asvfs_attrcache_get_names(c, &k2, &r));
	/* and it keeps working afterwards */
	asvfs_attrcache_put_value(c, &k1, &blob);
	assert_true(asvfs_attrcache_get_value(c, &k1, &r));
	asvfs_attrcache_clear(NULL);
	talloc_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(value_comes_back_for_the_same_key),
		cmocka_unit_test(any_other_key_misses),
		cmocka_unit_test(a_new_key_forgets_the_old),
		cmocka_unit_test(missing_xattr_is_kept_other_errors_are_not),
		cmocka_unit_test(long_values_are_not_kept),
		cmocka_unit_test(bound_evicts_the_least_recently_used),
		cmocka_unit_test(collisions_keep_objects_apart),
		cmocka_unit_test(no_cache_without_entries),
		cmocka_unit_test(clear_forgets_everything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
