/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a bounded cache of what an object's xattrs said.
 *
 * A hash of (device, inode) to entries, with a least-recently-used list
 * for eviction.  Single-threaded: smbd's main thread only.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#include <errno.h>
#include <string.h>

#include "asvfs_attrcache.h"

/* One part of an entry: the DOS attribute value or the names. */
struct attrcache_part {
	bool known;
	ssize_t len;
	int err;
	uint8_t *data;		/* talloc child of the entry */
};

struct attrcache_entry {
	struct attrcache_entry *hnext;		/* hash chain */
	struct attrcache_entry *prev, *next;	/* most recent first */
	struct asvfs_attrcache_key key;
	struct attrcache_part value;
	struct attrcache_part names;
};

struct asvfs_attrcache {
	struct attrcache_entry **buckets;
	unsigned mask;
	unsigned count;
	unsigned max;
	struct attrcache_entry *newest, *oldest;
};

static unsigned attrcache_hash(const struct asvfs_attrcache *c, dev_t dev,
			       ino_t ino)
{
	uint64_t h = ((uint64_t)ino * 0x9E3779B97F4A7C15ULL) ^ (uint64_t)dev;

	return (unsigned)((h >> 32) ^ h) & c->mask;
}

struct asvfs_attrcache *asvfs_attrcache_new(TALLOC_CTX *mem_ctx,
					    unsigned max_entries)
{
	struct asvfs_attrcache *c = NULL;
	unsigned n = 16;

	if (max_entries == 0) {
		return NULL;
	}
	while (n < max_entries && n < (1U << 30)) {
		n <<= 1;
	}
	c = talloc_zero(mem_ctx, struct asvfs_attrcache);
	if (c == NULL) {
		return NULL;
	}
	c->buckets = talloc_zero_array(c, struct attrcache_entry *, n);
	if (c->buckets == NULL) {
		talloc_free(c);
		return NULL;
	}
	c->mask = n - 1;
	c->max = max_entries;
	return c;
}

unsigned asvfs_attrcache_count(const struct asvfs_attrcache *c)
{
	return c == NULL ? 0 : c->count;
}

static void attrcache_unlist(struct asvfs_attrcache *c,
			     struct attrcache_entry *e)
{
	if (e->prev != NULL) {
		e->prev->next = e->next;
	} else {
		c->newest = e->next;
	}
	if (e->next != NULL) {
		e->next->prev = e->prev;
	} else {
		c->oldest = e->prev;
	}
	e->prev = e->next = NULL;
}

static void attrcache_list_first(struct asvfs_attrcache *c,
				 struct attrcache_entry *e)
{
	e->next = c->newest;
	if (c->newest != NULL) {
		c->newest->prev = e;
	}
	c->newest = e;
	if (c->oldest == NULL) {
		c->oldest = e;
	}
}

static struct attrcache_entry **attrcache_link(struct asvfs_attrcache *c,
					       dev_t dev, ino_t ino)
{
	struct attrcache_entry **p = &c->buckets[attrcache_hash(c, dev, ino)];

	while (*p != NULL && ((*p)->key.dev != dev || (*p)->key.ino != ino)) {
		p = &(*p)->hnext;
	}
	return p;
}

static void attrcache_drop(struct asvfs_attrcache *c,
			   struct attrcache_entry *e)
{
	struct attrcache_entry **p = attrcache_link(c, e->key.dev,
						    e->key.ino);

	*p = e->hnext;
	attrcache_unlist(c, e);
	c->count--;
	talloc_free(e);
}

void asvfs_attrcache_clear(struct asvfs_attrcache *c)
{
	if (c == NULL) {
		return;
	}
	while (c->oldest != NULL) {
		attrcache_drop(c, c->oldest);
	}
}

static bool attrcache_same_key(const struct asvfs_attrcache_key *a,
			       const struct asvfs_attrcache_key *b)
{
	return a->dev == b->dev && a->ino == b->ino &&
	       a->ctime.tv_sec == b->ctime.tv_sec &&
	       a->ctime.tv_nsec == b->ctime.tv_nsec && a->size == b->size;
}

/* The entry of k's object, now keyed by k; NULL without memory. */
static struct attrcache_entry *attrcache_entry_for(
	struct asvfs_attrcache *c, const struct asvfs_attrcache_key *k)
{
	struct attrcache_entry **p = attrcache_link(c, k->dev, k->ino);
	struct attrcache_entry *e = *p;

	if (e != NULL && !attrcache_same_key(&e->key, k)) {
		attrcache_drop(c, e);	/* what it said is of the past */
		e = NULL;
	}
	if (e != NULL) {
		return e;
	}
	if (c->count >= c->max) {
		attrcache_drop(c, c->oldest);
	}
	e = talloc_zero(c, struct attrcache_entry);
	if (e == NULL) {
		return NULL;
	}
	e->key = *k;
	p = attrcache_link(c, k->dev, k->ino);	/* the drop may move it */
	e->hnext = *p;
	*p = e;
	attrcache_list_first(c, e);
	c->count++;
	return e;
}

static void attrcache_put(struct asvfs_attrcache *c,
			  const struct asvfs_attrcache_key *k,
			  const struct asvfs_attrcache_read *r, bool names,
			  size_t max)
{
	struct attrcache_entry *e = NULL;
	struct attrcache_part *part = NULL;
	uint8_t *data = NULL;

	if (c == NULL || (r->len < 0 && r->err != ENODATA) ||
	    (r->len >= 0 && (size_t)r->len > max)) {
		return;
	}
	e = attrcache_entry_for(c, k);
	if (e == NULL) {
		return;
	}
	part = names ? &e->names : &e->value;
	/* copied before the old data goes: r may be what get returned */
	data = (r->len > 0) ? talloc_memdup(e, r->data, r->len) : NULL;
	TALLOC_FREE(part->data);
	*part = (struct attrcache_part) { .len = r->len, .err = r->err,
					  .data = data };
	part->known = (r->len <= 0 || data != NULL);
}

void asvfs_attrcache_put_value(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       const struct asvfs_attrcache_read *r)
{
	attrcache_put(c, k, r, false, ASVFS_DOSATTR_VALUE_MAX);
}

void asvfs_attrcache_put_names(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       const struct asvfs_attrcache_read *r)
{
	attrcache_put(c, k, r, true, ASVFS_ATTRCACHE_NAMES_MAX);
}

static bool attrcache_get(struct asvfs_attrcache *c,
			  const struct asvfs_attrcache_key *k,
			  struct asvfs_attrcache_read *r, bool names)
{
	struct attrcache_entry *e = NULL;
	const struct attrcache_part *part = NULL;

	if (c == NULL) {
		return false;
	}
	e = *attrcache_link(c, k->dev, k->ino);
	if (e == NULL || !attrcache_same_key(&e->key, k)) {
		return false;
	}
	part = names ? &e->names : &e->value;
	if (!part->known) {
		return false;
	}
	*r = (struct asvfs_attrcache_read) {
		.len = part->len, .err = part->err, .data = part->data,
	};
	attrcache_unlist(c, e);
	attrcache_list_first(c, e);
	return true;
}

bool asvfs_attrcache_get_value(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       struct asvfs_attrcache_read *r)
{
	return attrcache_get(c, k, r, false);
}

bool asvfs_attrcache_get_names(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       struct asvfs_attrcache_read *r)
{
	return attrcache_get(c, k, r, true);
}
