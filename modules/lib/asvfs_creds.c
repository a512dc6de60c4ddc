/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: the credentials of the requesting user, captured and
 * taken on by one thread.
 *
 * Copyright (C) samba-async-vfs authors
 * SPDX-License-Identifier: GPL-3.0-or-later
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "asvfs_creds.h"

/* 32-bit ABIs keep the 16-bit id calls under the plain names. */
#ifdef SYS_setresuid32
#define ASVFS_SYS_SETRESUID SYS_setresuid32
#define ASVFS_SYS_SETRESGID SYS_setresgid32
#define ASVFS_SYS_SETGROUPS SYS_setgroups32
#else
#define ASVFS_SYS_SETRESUID SYS_setresuid
#define ASVFS_SYS_SETRESGID SYS_setresgid
#define ASVFS_SYS_SETGROUPS SYS_setgroups
#endif

static int compare_gid(const void *a, const void *b)
{
	gid_t x = *(const gid_t *)a, y = *(const gid_t *)b;

	return (x > y) - (x < y);
}

/*
 * Into groups, room of them: the count, or -errno.  getgroups() answers
 * EINVAL where the room is too small; then ask for the count (which
 * smbd's next impersonation cannot change under us: one thread).
 */
static int creds_read_groups(TALLOC_CTX *mem_ctx, gid_t **groups)
{
	size_t room = (*groups != NULL) ? talloc_array_length(*groups) : 0;
	gid_t *bigger = NULL;
	int n;

	for (;;) {
		if (room > 0) {
			n = getgroups(room, *groups);
			if (n >= 0) {
				return n;
			}
			if (errno != EINVAL) {
				return -errno;
			}
		}
		n = getgroups(0, NULL);
		if (n < 0) {
			return -errno;
		}
		room = (size_t)n + 1;	/* never 0: the next call stores */
		bigger = talloc_realloc(mem_ctx, *groups, gid_t, room);
		if (bigger == NULL) {
			return -ENOMEM;
		}
		*groups = bigger;
	}
}

int asvfs_creds_current(TALLOC_CTX *mem_ctx, struct asvfs_creds *c)
{
	int n;

	c->uid = geteuid();
	c->gid = getegid();
	n = creds_read_groups(mem_ctx, &c->groups);
	if (n < 0) {
		c->ngroups = 0;
		return n;
	}
	c->ngroups = n;
	qsort(c->groups, n, sizeof(gid_t), compare_gid);
	return 0;
}

int asvfs_creds_from_record(TALLOC_CTX *mem_ctx,
			    const struct asvfs_creds_record *rec,
			    struct asvfs_creds *c)
{
	size_t room = (c->groups != NULL) ? talloc_array_length(c->groups) : 0;

	if (rec->ngroups < 0) {
		return -EINVAL;
	}
	if (room < (size_t)rec->ngroups + 1) {
		gid_t *bigger = talloc_realloc(mem_ctx, c->groups, gid_t,
					       rec->ngroups + 1);

		if (bigger == NULL) {
			return -ENOMEM;
		}
		c->groups = bigger;
	}
	c->uid = rec->uid;
	c->gid = rec->gid;
	c->ngroups = rec->ngroups;
	if (rec->ngroups > 0) {
		memcpy(c->groups, rec->groups, rec->ngroups * sizeof(gid_t));
		qsort(c->groups, rec->ngroups, sizeof(gid_t), compare_gid);
	}
	return 0;
}

bool asvfs_creds_equal(const struct asvfs_creds *a,
		       const struct asvfs_creds *b)
{
	return a->uid == b->uid && a->gid == b->gid &&
	       a->ngroups == b->ngroups &&
	       (a->ngroups == 0 ||
		memcmp(a->groups, b->groups,
		       a->ngroups * sizeof(gid_t)) == 0);
}

/* Whether the calling thread has c already; malloc, not talloc. */
static bool creds_are_the_threads(const struct asvfs_creds *c)
{
	gid_t *now = NULL;
	bool same = false;
	int n;

	if (geteuid() != c->uid || getegid() != c->gid) {
		return false;
	}
	n = getgroups(0, NULL);
	if (n != c->ngroups) {
		return false;
	}
	now = malloc(((size_t)n + 1) * sizeof(gid_t));
	if (now != NULL && getgroups(n, now) == n) {
		qsort(now, n, sizeof(gid_t), compare_gid);
		same = n == 0 ||
		       memcmp(now, c->groups, n * sizeof(gid_t)) == 0;
	}
	free(now);
	return same;
}

int asvfs_creds_become_thread(const struct asvfs_creds *c)
{
	if (creds_are_the_threads(c)) {
		return 0;
	}
	/*
	 * Root first (allowed: the saved uid is 0), since changing groups
	 * and gid needs it; the uid last, which gives up root.
	 */
	if (syscall(ASVFS_SYS_SETRESUID, -1, 0, -1) != 0 ||
	    syscall(ASVFS_SYS_SETGROUPS, c->ngroups, c->groups) != 0 ||
	    syscall(ASVFS_SYS_SETRESGID, -1, c->gid, -1) != 0 ||
	    syscall(ASVFS_SYS_SETRESUID, -1, c->uid, -1) != 0) {
		return errno;
	}
	return 0;
}
