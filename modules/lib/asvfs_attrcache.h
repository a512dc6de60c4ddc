/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: a bounded cache of what an object's xattrs said, for
 * listings that come again.
 *
 * An entry is the raw user.DOSATTRIB value (or its absence) and the list
 * of xattr names of one object, valid for exactly the (device, inode,
 * ctime, size) it was read for.  Setting or removing any xattr, a chmod,
 * a rename and a write change the ctime, so an entry whose key still
 * matches describes the object as it is, on one condition the caller
 * must keep: an entry is put only for a ctime that was older than the
 * file system's timestamp granularity when the value was read, and that
 * was the object's ctime again after the read.  Otherwise a change in
 * the same timestamp tick could leave the ctime unchanged.
 *
 * The raw value, not a decoding: smbd decodes it again on every use, so
 * the answer is smbd's own, create time included.
 */
#ifndef ASVFS_ATTRCACHE_H
#define ASVFS_ATTRCACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>
#include <talloc.h>

/*
 * The longest DOS attribute value read for smbd: its
 * fget_ea_dos_attribute() reads into an fstring.  A longer one is smbd's
 * to read; neither the read-ahead nor this cache holds it.
 */
#define ASVFS_DOSATTR_VALUE_MAX 256
/* Longer name lists are not kept (smbd lists them itself). */
#define ASVFS_ATTRCACHE_NAMES_MAX 256

struct asvfs_attrcache_key {
	dev_t dev;
	ino_t ino;
	struct timespec ctime;
	off_t size;
};

/* What was read: len >= 0 bytes, or len == -1 with the errno in err. */
struct asvfs_attrcache_read {
	ssize_t len;
	int err;
	const void *data;
};

struct asvfs_attrcache;

/* At most max_entries objects; the least recently used go first. */
struct asvfs_attrcache *asvfs_attrcache_new(TALLOC_CTX *mem_ctx,
					    unsigned max_entries);

/*
 * Keep the DOS attribute value, or the names, of the object k.  An entry
 * of the same object with another key is replaced.  Only a value or a
 * missing xattr (ENODATA) is kept; other errors are not.
 */
void asvfs_attrcache_put_value(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       const struct asvfs_attrcache_read *r);
void asvfs_attrcache_put_names(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       const struct asvfs_attrcache_read *r);

/* What was kept for exactly k; r->data stays valid until the next put. */
bool asvfs_attrcache_get_value(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       struct asvfs_attrcache_read *r);
bool asvfs_attrcache_get_names(struct asvfs_attrcache *c,
			       const struct asvfs_attrcache_key *k,
			       struct asvfs_attrcache_read *r);

unsigned asvfs_attrcache_count(const struct asvfs_attrcache *c);

/* Forget every entry (what one user read, before another may ask). */
void asvfs_attrcache_clear(struct asvfs_attrcache *c);

#endif
