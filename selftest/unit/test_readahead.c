/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * Unit tests: the readahead window hands entries out in order, answers
 * telldir and seekdir as the stream below would, keeps what it read
 * until its room is needed, and gives each entry's value and names out
 * once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "asvfs_readahead.h"

/* Entry i is named "e<i>", object inode 100 + i, position 10 * (i + 1). */
static struct asvfs_readahead_entry *add(struct asvfs_readahead *ra,
					 unsigned i)
{
	struct dirent de = { .d_ino = 100 + i, .d_type = DT_REG };
	struct asvfs_readahead_entry *e = NULL;

	snprintf(de.d_name, sizeof(de.d_name), "e%u", i);
	e = asvfs_readahead_add(ra, &de, 10 * (i + 1));
	if (e != NULL) {
		e->key.dev = 7;
		e->key.ino = 100 + i;
	}
	return e;
}

static struct asvfs_readahead *window_of(unsigned window)
{
	struct asvfs_readahead *ra = asvfs_readahead_new(NULL, window);

	assert_non_null(ra);
	assert_true(asvfs_readahead_alloc(ra, 0));
	return ra;
}

static void assert_next(struct asvfs_readahead *ra, const char *name)
{
	struct dirent *de = asvfs_readahead_next(ra);

	assert_non_null(de);
	assert_string_equal(de->d_name, name);
}

/* Counts the frees of stand-ins for requests and batches. */
static int freed;

static int count_free(void *p)
{
	freed++;
	return 0;
}

static struct tevent_req *fake_subreq(TALLOC_CTX *mem_ctx)
{
	void *p = talloc_size(mem_ctx, 1);

	talloc_set_destructor(p, count_free);
	return (struct tevent_req *)p;
}

static void entries_come_out_in_order_and_tell_follows_them(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	long pos;

	add(ra, 0);
	add(ra, 1);
	assert_int_equal(asvfs_readahead_waiting(ra), 2);
	/* nothing handed out: the stream below answers */
	assert_false(asvfs_readahead_tell(ra, &pos));
	assert_next(ra, "e0");
	assert_true(asvfs_readahead_tell(ra, &pos));
	assert_int_equal(pos, 10);
	assert_next(ra, "e1");
	assert_true(asvfs_readahead_tell(ra, &pos));
	assert_int_equal(pos, 20);
	assert_null(asvfs_readahead_next(ra));
	assert_int_equal(asvfs_readahead_waiting(ra), 0);
	talloc_free(ra);
}

static void seekdir_into_the_window_goes_on_after_that_entry(void **state)
{
	struct asvfs_readahead *ra = window_of(2);

	add(ra, 0);
	add(ra, 1);
	add(ra, 2);
	assert_next(ra, "e0");
	assert_next(ra, "e1");
	assert_next(ra, "e2");
	/* smbd seeks back one entry when its answer is full */
	assert_true(asvfs_readahead_seek(ra, 20));
	assert_next(ra, "e2");
	/* and forward again, to an entry not handed out yet */
	assert_true(asvfs_readahead_seek(ra, 10));
	assert_true(asvfs_readahead_seek(ra, 30));
	assert_null(asvfs_readahead_next(ra));
	talloc_free(ra);
}

static void seekdir_out_of_the_window_drops_it(void **state)
{
	struct asvfs_readahead *ra = window_of(2);

	add(ra, 0)->subreq = fake_subreq(ra);
	add(ra, 1);
	assert_next(ra, "e0");
	freed = 0;
	assert_false(asvfs_readahead_seek(ra, 15));
	assert_int_equal(ra->count, 0);
	assert_int_equal(asvfs_readahead_waiting(ra), 0);
	assert_null(asvfs_readahead_next(ra));
	/* the read in flight went with it */
	assert_int_equal(freed, 1);
	talloc_free(ra);
}

static void telldir_round_trips_through_seekdir(void **state)
{
	struct asvfs_readahead *ra = window_of(4);
	long pos[4];
	unsigned i;

	for (i = 0; i < 4; i++) {
		add(ra, i);
	}
	for (i = 0; i < 4; i++) {
		(void)asvfs_readahead_next(ra);
		assert_true(asvfs_readahead_tell(ra, &pos[i]));
	}
	for (i = 0; i < 3; i++) {
		char name[8];
		long again;

		snprintf(name, sizeof(name), "e%u", i + 1);
		assert_true(asvfs_readahead_seek(ra, pos[i]));
		assert_true(asvfs_readahead_tell(ra, &again));
		assert_int_equal(again, pos[i]);
		assert_next(ra, name);
	}
	talloc_free(ra);
}

static void room_is_made_only_from_entries_handed_out(void **state)
{
	struct asvfs_readahead *ra = window_of(2);	/* room for 4 */
	unsigned i;

	for (i = 0; i < 4; i++) {
		assert_non_null(add(ra, i));
	}
	/* every entry still waits: nothing may be forgotten */
	assert_null(add(ra, 4));
	assert_next(ra, "e0");
	assert_non_null(add(ra, 4));
	assert_int_equal(ra->count, 4);
	/* the oldest made room: a seek there leaves the window */
	assert_true(asvfs_readahead_seek(ra, 30));
	assert_next(ra, "e3");
	assert_false(asvfs_readahead_seek(ra, 10));
	assert_int_equal(ra->count, 0);
	talloc_free(ra);
}

static void window_wraps_around_its_room(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	unsigned i;
	long pos;

	for (i = 0; i < 10; i++) {
		assert_non_null(add(ra, i));
		(void)asvfs_readahead_next(ra);
	}
	assert_int_equal(ra->count, 4);
	assert_true(asvfs_readahead_tell(ra, &pos));
	assert_int_equal(pos, 100);
	assert_true(asvfs_readahead_seek(ra, 70));
	assert_next(ra, "e7");
	assert_next(ra, "e8");
	assert_next(ra, "e9");
	assert_null(asvfs_readahead_next(ra));
	talloc_free(ra);
}

static void a_value_is_answered_once(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	struct asvfs_readahead_entry *e = add(ra, 0);

	(void)asvfs_readahead_next(ra);
	e->state = ASVFS_READAHEAD_CACHED;
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, false), e);
	assert_null(asvfs_readahead_find(ra, 8, 100, false));
	assert_null(asvfs_readahead_find(ra, 7, 101, false));
	assert_int_equal(asvfs_readahead_answer(e), ASVFS_READAHEAD_CACHED);
	assert_null(asvfs_readahead_find(ra, 7, 100, false));
	/* the names are answered on their own */
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, true), e);
	e->names = ASVFS_READAHEAD_NAMES_ANSWERED;
	assert_null(asvfs_readahead_find(ra, 7, 100, true));
	talloc_free(ra);
}

static void only_values_on_their_way_or_at_hand_are_found(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	struct asvfs_readahead_entry *e = add(ra, 0);

	(void)asvfs_readahead_next(ra);
	/* read, but its object not looked at: neither */
	assert_null(asvfs_readahead_find(ra, 7, 100, false));
	assert_null(asvfs_readahead_find(ra, 7, 100, true));
	/* noted, its value left to the reader: only the names */
	e->state = ASVFS_READAHEAD_NOTED;
	assert_null(asvfs_readahead_find(ra, 7, 100, false));
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, true), e);
	e->state = ASVFS_READAHEAD_FETCHING;
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, false), e);
	e->state = ASVFS_READAHEAD_FETCHED;
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, false), e);
	talloc_free(ra);
}

static void find_starts_at_the_entry_handed_out_last(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	struct asvfs_readahead_entry *a = add(ra, 0);
	struct asvfs_readahead_entry *b = add(ra, 1);

	/* two names of one object (hard links) */
	b->key = a->key;
	a->state = b->state = ASVFS_READAHEAD_CACHED;
	(void)asvfs_readahead_next(ra);
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, false), a);
	(void)asvfs_readahead_next(ra);
	assert_ptr_equal(asvfs_readahead_find(ra, 7, 100, false), b);
	talloc_free(ra);
}

static void another_reader_finds_nothing_but_the_entries(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	struct asvfs_readahead_entry *e = add(ra, 0);

	add(ra, 1);
	e->state = ASVFS_READAHEAD_FETCHING;
	e->subreq = fake_subreq(ra);
	freed = 0;
	asvfs_readahead_forget_objects(ra);
	assert_int_equal(freed, 1);
	assert_null(e->subreq);
	assert_null(asvfs_readahead_find(ra, 7, 100, false));
	assert_null(asvfs_readahead_find(ra, 7, 100, true));
	assert_next(ra, "e0");
	assert_next(ra, "e1");
	talloc_free(ra);
}

static void reads_in_flight_go_before_the_entries(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	unsigned i;

	for (i = 0; i < 4; i++) {
		add(ra, i)->subreq = fake_subreq(NULL);
	}
	freed = 0;
	(void)asvfs_readahead_next(ra);
	add(ra, 4);		/* the oldest makes room */
	assert_int_equal(freed, 1);
	talloc_free(ra);	/* the other three */
	assert_int_equal(freed, 4);
}

static void batches_whose_entries_are_gone_are_freed(void **state)
{
	struct asvfs_readahead *ra = window_of(2);
	struct asvfs_readahead_entry *named[2];
	struct asvfs_readahead_batch *b = NULL, *b2 = NULL;
	unsigned i;

	named[0] = add(ra, 0);
	named[1] = add(ra, 1);
	b = asvfs_readahead_batch_new(ra);
	assert_non_null(b);
	talloc_set_destructor(b, (int (*)(struct asvfs_readahead_batch *))
			      count_free);
	asvfs_readahead_batch_start(ra, b, named, 2);
	assert_ptr_equal(named[1]->batch, b);
	assert_int_equal(named[1]->batch_idx, 1);
	freed = 0;
	/* one of its entries is still kept: the batch stays */
	for (i = 2; i < 5; i++) {
		(void)asvfs_readahead_next(ra);
		add(ra, i);
	}
	b2 = asvfs_readahead_batch_new(ra);
	assert_int_equal(freed, 0);
	assert_ptr_equal(ra->batches, b);
	(void)asvfs_readahead_next(ra);
	add(ra, 5);
	talloc_free(b2);
	b2 = asvfs_readahead_batch_new(ra);
	assert_int_equal(freed, 1);
	assert_null(ra->batches);
	talloc_free(ra);
}

static void names_sit_beside_their_entries(void **state)
{
	struct asvfs_readahead *ra = asvfs_readahead_new(NULL, 2);
	struct asvfs_readahead_entry *e = NULL;
	size_t bytes = asvfs_readahead_bytes(ra, 0);

	/* nothing read ahead before the memory is there */
	assert_null(add(ra, 0));
	assert_true(asvfs_readahead_alloc(ra, 1024));
	assert_int_equal(ra->bytes, bytes + 4 * 1024);
	add(ra, 0);
	e = add(ra, 1);
	assert_ptr_equal(asvfs_readahead_names_of(ra, e), ra->names + 1024);
	assert_int_equal(asvfs_readahead_free(ra), bytes + 4 * 1024);
	assert_int_equal(ra->count, 0);
	assert_true(asvfs_readahead_alloc(ra, 0));
	assert_int_equal(ra->bytes, bytes);
	assert_null(asvfs_readahead_names_of(ra, add(ra, 0)));
	talloc_free(ra);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(
			entries_come_out_in_order_and_tell_follows_them),
		cmocka_unit_test(
			seekdir_into_the_window_goes_on_after_that_entry),
		cmocka_unit_test(seekdir_out_of_the_window_drops_it),
		cmocka_unit_test(telldir_round_trips_through_seekdir),
		cmocka_unit_test(room_is_made_only_from_entries_handed_out),
		cmocka_unit_test(window_wraps_around_its_room),
		cmocka_unit_test(a_value_is_answered_once),
		cmocka_unit_test(
			only_values_on_their_way_or_at_hand_are_found),
		cmocka_unit_test(find_starts_at_the_entry_handed_out_last),
		cmocka_unit_test(another_reader_finds_nothing_but_the_entries),
		cmocka_unit_test(reads_in_flight_go_before_the_entries),
		cmocka_unit_test(batches_whose_entries_are_gone_are_freed),
		cmocka_unit_test(names_sit_beside_their_entries),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
