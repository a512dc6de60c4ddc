/*
 * samba-async-vfs: the credentials of the requesting user, captured and
 * taken on by one thread.
 *
 * Copyright (C) samba-async-vfs authors
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

int asvfs_creds_current(struct asvfs_creds *c)
{
	c->uid = geteuid();
	c->gid = getegid();
	c->ngroups = getgroups(ASVFS_CREDS_MAX_GROUPS, c->groups);
	if (c->ngroups < 0) {
		return -errno;	/* EINVAL: more groups than we keep */
	}
	qsort(c->groups, c->ngroups, sizeof(gid_t), compare_gid);
	return 0;
}

bool asvfs_creds_equal(const struct asvfs_creds *a,
		       const struct asvfs_creds *b)
{
	return a->uid == b->uid && a->gid == b->gid &&
	       a->ngroups == b->ngroups &&
	       memcmp(a->groups, b->groups, a->ngroups * sizeof(gid_t)) == 0;
}

int asvfs_creds_become_thread(const struct asvfs_creds *c)
{
	struct asvfs_creds now;

	if (asvfs_creds_current(&now) == 0 && asvfs_creds_equal(&now, c)) {
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
