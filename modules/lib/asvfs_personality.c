/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: io_uring personalities for the requesting user.
 */
#include "asvfs_personality.h"
#include "asvfs_creds.h"

#include <errno.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct asvfs_personality {
	int id;			/* 0: unused */
	uid_t uid;
	gid_t gid;
	int ngroups;
	gid_t *groups;		/* sorted */
	uint64_t last_used;
	unsigned held;		/* queued requests that still need it */
};

/* asvfs_personality_read_creds_from(): NULL asks the kernel */
static asvfs_creds_reader_fn creds_reader;

struct asvfs_personality_cache {
	struct io_uring *ring;
	unsigned max;
	struct asvfs_personality *entries;
	uint64_t clock;
	struct asvfs_creds now;		/* the lookup's key, reused */
	struct asvfs_creds kernel;	/* a reader's key confirmed, reused */
	struct asvfs_personality_stats stats;
};

static bool creds_match(const struct asvfs_personality *p,
			const struct asvfs_creds *c)
{
	return p->id != 0 && p->uid == c->uid && p->gid == c->gid &&
	       p->ngroups == c->ngroups &&
	       (c->ngroups == 0 ||
		memcmp(p->groups, c->groups, c->ngroups * sizeof(gid_t)) == 0);
}

struct asvfs_personality_cache *asvfs_personality_cache_new(
	TALLOC_CTX *mem_ctx, struct io_uring *ring, unsigned max_entries)
{
	struct asvfs_personality_cache *cache = NULL;

	cache = talloc_zero(mem_ctx, struct asvfs_personality_cache);
	if (cache == NULL) {
		return NULL;
	}
	cache->ring = ring;
	cache->max = max_entries > 0 ? max_entries : 1;
	cache->entries = talloc_zero_array(cache, struct asvfs_personality,
					   cache->max);
	if (cache->entries == NULL) {
		talloc_free(cache);
		return NULL;
	}
	return cache;
}

static struct asvfs_personality *find_entry(
	struct asvfs_personality_cache *cache, int id)
{
	unsigned i;

	for (i = 0; i < cache->max; i++) {
		if (cache->entries[i].id == id) {
			return &cache->entries[i];
		}
	}
	return NULL;
}

/* An unused entry, or the least recently used one nobody holds, emptied. */
static struct asvfs_personality *unused_entry(
	struct asvfs_personality_cache *cache)
{
	struct asvfs_personality *victim = NULL;
	unsigned i;

	for (i = 0; i < cache->max; i++) {
		struct asvfs_personality *p = &cache->entries[i];

		if (p->id == 0) {
			return p;
		}
		if (p->held == 0 &&
		    (victim == NULL || p->last_used < victim->last_used)) {
			victim = p;
		}
	}
	if (victim == NULL) {
		return NULL;
	}
	io_uring_unregister_personality(cache->ring, victim->id);
	cache->stats.unregistered++;
	TALLOC_FREE(victim->groups);
	victim->id = 0;
	return victim;
}

/* The entry cached under c, marked used; NULL if there is none. */
static struct asvfs_personality *lookup(struct asvfs_personality_cache *cache,
					const struct asvfs_creds *c)
{
	unsigned i;

	for (i = 0; i < cache->max; i++) {
		struct asvfs_personality *p = &cache->entries[i];

		if (creds_match(p, c)) {
			p->last_used = ++cache->clock;
			cache->stats.hits++;
			return p;
		}
	}
	return NULL;
}

/* The calling thread's credentials, registered under c: the kernel's. */
static int register_current(struct asvfs_personality_cache *cache,
			    const struct asvfs_creds *c)
{
	struct asvfs_personality *p = unused_entry(cache);
	int ret;

	if (p == NULL) {
		return -EBUSY;
	}
	/* never of size 0, which talloc answers with NULL */
	p->groups = talloc_array(cache->entries, gid_t, c->ngroups + 1);
	if (p->groups == NULL) {
		return -ENOMEM;
	}
	memcpy(p->groups, c->groups, c->ngroups * sizeof(gid_t));
	ret = io_uring_register_personality(cache->ring);
	if (ret < 0) {
		TALLOC_FREE(p->groups);
		return ret;
	}
	p->id = ret;
	p->uid = c->uid;
	p->gid = c->gid;
	p->ngroups = c->ngroups;
	p->held = 0;
	p->last_used = ++cache->clock;
	cache->stats.registered++;
	return p->id;
}

void asvfs_personality_read_creds_from(asvfs_creds_reader_fn reader)
{
	creds_reader = reader;
}

/* The key of a lookup: the record's, or without a reader the kernel's. */
static int current_key(struct asvfs_personality_cache *cache,
		       struct asvfs_creds *c)
{
	struct asvfs_creds_record rec;

	if (creds_reader == NULL) {
		return asvfs_creds_current(cache, c);
	}
	creds_reader(&rec);
	return asvfs_creds_from_record(cache, &rec, c);
}

int asvfs_personality_current(struct asvfs_personality_cache *cache)
{
	struct asvfs_creds *c = &cache->now;
	struct asvfs_personality *p = NULL;
	int ret;

	ret = current_key(cache, c);
	if (ret < 0) {
		return ret;
	}
	p = lookup(cache, c);
	if (p != NULL) {
		return p->id;
	}
	if (creds_reader != NULL) {
		/* nothing is registered under a key the kernel denies */
		ret = asvfs_creds_current(cache, &cache->kernel);
		if (ret < 0) {
			return ret;
		}
		if (!asvfs_creds_equal(c, &cache->kernel)) {
			cache->stats.record_mismatches++;
			c = &cache->kernel;
			p = lookup(cache, c);
			if (p != NULL) {
				return p->id;
			}
		}
	}
	return register_current(cache, c);
}

void asvfs_personality_hold(struct asvfs_personality_cache *cache, int id)
{
	struct asvfs_personality *p = find_entry(cache, id);

	if (p != NULL) {
		p->held++;
	}
}

void asvfs_personality_release(struct asvfs_personality_cache *cache,
			       int id)
{
	struct asvfs_personality *p = find_entry(cache, id);

	if (p != NULL && p->held > 0) {
		p->held--;
	}
}

const struct asvfs_personality_stats *asvfs_personality_stats(
	const struct asvfs_personality_cache *cache)
{
	return &cache->stats;
}
