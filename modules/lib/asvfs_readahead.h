/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the readahead window of one directory stream.
 *
 * A module reads the entries of a directory ahead of its reader and
 * keeps them in a window of twice the read-ahead: while the reader
 * consumes one half, what was started for the other half is on its way.
 * Entries handed out stay until their room is needed, so that a seek back
 * to one of them keeps the read-ahead.
 *
 * Positions: each entry keeps the stream's telldir() taken right after it
 * was read.  A tell answers the position after the entry handed out last,
 * as the stream would had the reader read it directly; a seek to one of
 * those positions goes on inside the window, any other drops it.
 *
 * Each entry carries what was learnt about its object: its identity
 * (struct asvfs_attrcache_key), one attribute value and a list of xattr
 * names.  The value goes through one lifecycle (enum
 * asvfs_readahead_state) and is answered at most once; the names, listed
 * for several entries together in a batch, through a smaller one.
 *
 * Samba-free: talloc and tevent only; the reads themselves are the
 * caller's.
 */
#ifndef ASVFS_READAHEAD_H
#define ASVFS_READAHEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <dirent.h>
#include <talloc.h>

#include "asvfs_attrcache.h"

struct tevent_req;

/* An entry's value, in the order an entry goes through. */
enum asvfs_readahead_state {
	ASVFS_READAHEAD_READ = 0,	/* from the directory, nothing more */
	ASVFS_READAHEAD_NOTED,		/* key noted; no value coming */
	ASVFS_READAHEAD_FETCHING,	/* subreq reads the value */
	ASVFS_READAHEAD_FETCHED,	/* value read: size, err */
	ASVFS_READAHEAD_CACHED,		/* value from the attrcache */
	ASVFS_READAHEAD_ANSWERED,	/* given out once: never again */
};

/* An entry's xattr names; while a batch lists them, batch says which. */
enum asvfs_readahead_names {
	ASVFS_READAHEAD_NAMES_NONE = 0,	/* none at hand */
	/* names_len bytes at asvfs_readahead_names_of() */
	ASVFS_READAHEAD_NAMES_LISTED,
	ASVFS_READAHEAD_NAMES_CACHED,	/* ... and the cache holds them */
	/* given out, or refused: never again */
	ASVFS_READAHEAD_NAMES_ANSWERED,
};

/* The names of several entries, listed together by subreq. */
struct asvfs_readahead_batch {
	struct asvfs_readahead_batch *prev, *next;
	struct tevent_req *subreq;
};

struct asvfs_readahead_entry {
	struct dirent de;
	long pos_after;			/* telldir after reading it */
	enum asvfs_readahead_state state;
	enum asvfs_readahead_names names;
	struct asvfs_attrcache_key key;	/* from NOTED on */
	struct tevent_req *subreq;	/* FETCHING: the value's read */
	ssize_t size;			/* FETCHED, CACHED: value or -1 */
	int err;			/* ... with this errno */
	uint8_t value[ASVFS_DOSATTR_VALUE_MAX];
	struct asvfs_readahead_batch *batch;	/* lists its names */
	unsigned batch_idx;		/* its place in the batch */
	ssize_t names_len;
};

struct asvfs_readahead {
	struct asvfs_readahead_entry *entries;	/* NULL: not allocated */
	char *names;			/* names_max an entry, or NULL */
	size_t names_max;
	size_t bytes;			/* of entries and names */
	unsigned cap;			/* twice the read-ahead */
	unsigned first;			/* index of the oldest kept */
	unsigned count;			/* entries kept */
	unsigned handed;		/* of those, handed out */
	bool eof;			/* the stream below ended */
	struct asvfs_readahead_batch *batches;
};

/* A window for reading ahead window entries; its memory comes later. */
struct asvfs_readahead *asvfs_readahead_new(TALLOC_CTX *mem_ctx,
					    unsigned window);

/* What asvfs_readahead_alloc() takes, names_max bytes of names an entry. */
size_t asvfs_readahead_bytes(const struct asvfs_readahead *ra,
			     size_t names_max);

/* The entries (and their names when names_max > 0); false: no memory. */
bool asvfs_readahead_alloc(struct asvfs_readahead *ra, size_t names_max);

/* Drop everything and give the memory back; returns the bytes it held. */
size_t asvfs_readahead_free(struct asvfs_readahead *ra);

/* Forget all entries; reads in flight and batches are freed. */
void asvfs_readahead_drop(struct asvfs_readahead *ra);

/* Entries read ahead and not yet handed out. */
unsigned asvfs_readahead_waiting(const struct asvfs_readahead *ra);

/*
 * Keep an entry just read, with the stream's position after it; the
 * oldest entry handed out makes room.  NULL when not allocated, or when
 * every kept entry still waits to be handed out.
 */
struct asvfs_readahead_entry *asvfs_readahead_add(struct asvfs_readahead *ra,
						  const struct dirent *de,
						  long pos_after);

/* The next entry for the reader; NULL when all were handed out. */
struct dirent *asvfs_readahead_next(struct asvfs_readahead *ra);

/* The position after the entry handed out last; false: none was. */
bool asvfs_readahead_tell(const struct asvfs_readahead *ra, long *pos);

/*
 * Go on after the entry whose position is pos.  False, and the window
 * dropped, when pos is none of the window's: the caller seeks below.
 */
bool asvfs_readahead_seek(struct asvfs_readahead *ra, long pos);

/* The k-th entry kept, k < count, from the oldest. */
struct asvfs_readahead_entry *asvfs_readahead_at(struct asvfs_readahead *ra,
						 unsigned k);

/*
 * The entry for object (dev, ino) whose value (names: whose names) can
 * still be given out, searched from the entry handed out last backwards.
 */
struct asvfs_readahead_entry *asvfs_readahead_find(struct asvfs_readahead *ra,
						   dev_t dev, ino_t ino,
						   bool names);

/* Mark the value given out; returns the state it had. */
enum asvfs_readahead_state asvfs_readahead_answer(
	struct asvfs_readahead_entry *e);

/*
 * What was learnt about the objects answers nobody any more (another
 * reader): entries stay, as the stream gave them, back in READ.
 */
void asvfs_readahead_forget_objects(struct asvfs_readahead *ra);

/* An entry's names, NULL without a names buffer. */
char *asvfs_readahead_names_of(struct asvfs_readahead *ra,
			       const struct asvfs_readahead_entry *e);

/*
 * A new batch, its subreq for the caller to start; batches whose entries
 * are all gone are freed first.
 */
struct asvfs_readahead_batch *asvfs_readahead_batch_new(
	struct asvfs_readahead *ra);

/* The batch lists the names of these n entries, in this order. */
void asvfs_readahead_batch_start(struct asvfs_readahead *ra,
				 struct asvfs_readahead_batch *b,
				 struct asvfs_readahead_entry **entries,
				 unsigned n);

/* The batch is done with: unlinked and freed, with its subreq. */
void asvfs_readahead_batch_free(struct asvfs_readahead *ra,
				struct asvfs_readahead_batch *b);

#endif
