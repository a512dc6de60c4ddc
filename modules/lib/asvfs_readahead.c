/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the readahead window of one directory stream (see
 * asvfs_readahead.h).
 */
#include <string.h>
#include <talloc.h>
#include <tevent.h>

/* Samba's list macros: header-only, no link to Samba */
#include "lib/util/dlinklist.h"

#include "asvfs_readahead.h"

#define ENTRY(ra, k) (&(ra)->entries[((ra)->first + (k)) % (ra)->cap])

static void readahead_free_batches(struct asvfs_readahead *ra)
{
	while (ra->batches != NULL) {
		struct asvfs_readahead_batch *b = ra->batches;

		DLIST_REMOVE(ra->batches, b);
		TALLOC_FREE(b);	/* its thread finishes on its own */
	}
}

/* The reads in flight go before the entries they write into. */
static int readahead_destructor(struct asvfs_readahead *ra)
{
	(void)asvfs_readahead_free(ra);
	return 0;
}

struct asvfs_readahead *asvfs_readahead_new(TALLOC_CTX *mem_ctx,
					    unsigned window)
{
	struct asvfs_readahead *ra = talloc_zero(mem_ctx,
						 struct asvfs_readahead);

	if (ra == NULL) {
		return NULL;
	}
	ra->cap = 2 * window;
	talloc_set_destructor(ra, readahead_destructor);
	return ra;
}

size_t asvfs_readahead_bytes(const struct asvfs_readahead *ra,
			     size_t names_max)
{
	return (size_t)ra->cap *
	       (sizeof(struct asvfs_readahead_entry) + names_max);
}

bool asvfs_readahead_alloc(struct asvfs_readahead *ra, size_t names_max)
{
	if (ra->entries != NULL) {
		return true;
	}
	ra->entries = talloc_zero_array(ra, struct asvfs_readahead_entry,
					ra->cap);
	if (ra->entries == NULL) {
		return false;
	}
	if (names_max > 0) {
		ra->names = talloc_array(ra->entries, char,
					 (size_t)ra->cap * names_max);
		if (ra->names == NULL) {
			TALLOC_FREE(ra->entries);
			return false;
		}
	}
	ra->names_max = names_max;
	ra->bytes = asvfs_readahead_bytes(ra, names_max);
	return true;
}

size_t asvfs_readahead_free(struct asvfs_readahead *ra)
{
	size_t bytes = ra->bytes;

	asvfs_readahead_drop(ra);
	TALLOC_FREE(ra->entries);	/* the names with them */
	ra->names = NULL;
	ra->names_max = 0;
	ra->bytes = 0;
	return bytes;
}

void asvfs_readahead_drop(struct asvfs_readahead *ra)
{
	unsigned k;

	/* a read in flight, freed, becomes its engine's */
	for (k = 0; k < ra->count; k++) {
		TALLOC_FREE(ENTRY(ra, k)->subreq);
	}
	readahead_free_batches(ra);
	ra->first = ra->count = ra->handed = 0;
	ra->eof = false;
}

unsigned asvfs_readahead_waiting(const struct asvfs_readahead *ra)
{
	return ra->count - ra->handed;
}

static void readahead_forget_oldest(struct asvfs_readahead *ra)
{
	TALLOC_FREE(ENTRY(ra, 0)->subreq);
	ra->first = (ra->first + 1) % ra->cap;
	ra->count--;
	ra->handed--;
}

struct asvfs_readahead_entry *asvfs_readahead_add(struct asvfs_readahead *ra,
						  const struct dirent *de,
						  long pos_after)
{
	struct asvfs_readahead_entry *e = NULL;

	if (ra->entries == NULL) {
		return NULL;
	}
	if (ra->count == ra->cap) {
		if (ra->handed == 0) {
			return NULL;
		}
		readahead_forget_oldest(ra);
	}
	e = ENTRY(ra, ra->count);
	*e = (struct asvfs_readahead_entry) {
		.de.d_ino = de->d_ino,
		.de.d_off = de->d_off,
		.de.d_reclen = de->d_reclen,
		.de.d_type = de->d_type,
		.pos_after = pos_after,
	};
	/* glibc's record may be shorter than struct dirent */
	memcpy(e->de.d_name, de->d_name,
	       strnlen(de->d_name, sizeof(e->de.d_name) - 1));
	ra->count++;
	return e;
}

struct dirent *asvfs_readahead_next(struct asvfs_readahead *ra)
{
	if (ra->handed == ra->count) {
		return NULL;
	}
	return &ENTRY(ra, ra->handed++)->de;
}

bool asvfs_readahead_tell(const struct asvfs_readahead *ra, long *pos)
{
	if (ra->handed == 0) {
		return false;
	}
	*pos = ra->entries[(ra->first + ra->handed - 1) % ra->cap].pos_after;
	return true;
}

bool asvfs_readahead_seek(struct asvfs_readahead *ra, long pos)
{
	unsigned k;

	for (k = 0; k < ra->count; k++) {
		if (ENTRY(ra, k)->pos_after == pos) {
			ra->handed = k + 1;
			return true;
		}
	}
	asvfs_readahead_drop(ra);
	return false;
}

struct asvfs_readahead_entry *asvfs_readahead_at(struct asvfs_readahead *ra,
						 unsigned k)
{
	return ENTRY(ra, k);
}

static bool readahead_open(const struct asvfs_readahead_entry *e,
			   bool names)
{
	if (names) {
		return e->state != ASVFS_READAHEAD_READ &&
		       e->names != ASVFS_READAHEAD_NAMES_ANSWERED;
	}
	switch (e->state) {
	case ASVFS_READAHEAD_FETCHING:
	case ASVFS_READAHEAD_FETCHED:
	case ASVFS_READAHEAD_CACHED:
		return true;
	case ASVFS_READAHEAD_READ:
	case ASVFS_READAHEAD_NOTED:
	case ASVFS_READAHEAD_ANSWERED:
		break;
	}
	return false;
}

/*
 * A reader asks about each entry right after reading it: the search
 * starts at the entry handed out last and wraps around.
 */
struct asvfs_readahead_entry *asvfs_readahead_find(struct asvfs_readahead *ra,
						   dev_t dev, ino_t ino,
						   bool names)
{
	unsigned i;

	for (i = 1; i <= ra->count; i++) {
		unsigned k = (ra->handed + ra->count - i) % ra->count;
		struct asvfs_readahead_entry *e = ENTRY(ra, k);

		if (readahead_open(e, names) && e->key.ino == ino &&
		    e->key.dev == dev) {
			return e;
		}
	}
	return NULL;
}

enum asvfs_readahead_state asvfs_readahead_answer(
	struct asvfs_readahead_entry *e)
{
	enum asvfs_readahead_state was = e->state;

	e->state = ASVFS_READAHEAD_ANSWERED;
	return was;
}

void asvfs_readahead_forget_objects(struct asvfs_readahead *ra)
{
	unsigned k;

	for (k = 0; k < ra->count; k++) {
		struct asvfs_readahead_entry *e = ENTRY(ra, k);

		TALLOC_FREE(e->subreq);
		e->state = ASVFS_READAHEAD_READ;
		e->names = ASVFS_READAHEAD_NAMES_NONE;
		e->batch = NULL;
	}
	readahead_free_batches(ra);
}

char *asvfs_readahead_names_of(struct asvfs_readahead *ra,
			       const struct asvfs_readahead_entry *e)
{
	if (ra->names == NULL) {
		return NULL;
	}
	return ra->names + (size_t)(e - ra->entries) * ra->names_max;
}

/* Whether an entry still waits for the names of batch b. */
static bool readahead_batch_wanted(struct asvfs_readahead *ra,
				   const struct asvfs_readahead_batch *b)
{
	unsigned k;

	for (k = 0; k < ra->count; k++) {
		if (ENTRY(ra, k)->batch == b) {
			return true;
		}
	}
	return false;
}

struct asvfs_readahead_batch *asvfs_readahead_batch_new(
	struct asvfs_readahead *ra)
{
	struct asvfs_readahead_batch *b = NULL, *next = NULL;

	for (b = ra->batches; b != NULL; b = next) {
		next = b->next;
		if (!readahead_batch_wanted(ra, b)) {
			asvfs_readahead_batch_free(ra, b);
		}
	}
	return talloc_zero(ra, struct asvfs_readahead_batch);
}

void asvfs_readahead_batch_start(struct asvfs_readahead *ra,
				 struct asvfs_readahead_batch *b,
				 struct asvfs_readahead_entry **entries,
				 unsigned n)
{
	unsigned i;

	DLIST_ADD_END(ra->batches, b);
	for (i = 0; i < n; i++) {
		entries[i]->batch = b;
		entries[i]->batch_idx = i;
	}
}

void asvfs_readahead_batch_free(struct asvfs_readahead *ra,
				struct asvfs_readahead_batch *b)
{
	DLIST_REMOVE(ra->batches, b);
	TALLOC_FREE(b);
}
