/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * slowfs: a FUSE pass-through file system that injects latency and faults.
 *
 * slowfs mirrors BACKING_DIR at MOUNTPOINT so that slow or flaky storage
 * (network file systems, HSM, cloud gateways) can be reproduced under a
 * Samba share in tests and benchmarks. What to inject comes from a small
 * config file that is re-read while mounted; see README.md.
 *
 * smbd switches between unix users, so every operation runs as the
 * process that issued it (fsuid, fsgid and umask, per thread): new objects
 * get the owners a direct access would give them.  Access is decided with
 * the caller's real credentials: by the kernel when mounted with
 * default_permissions (slowfs then lets the backing file system's checks
 * pass), else by the backing file system with the caller's supplementary
 * groups from /proc, which are not an io_uring worker's acting ones.
 */

#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <fuse.h>

#include <linux/capability.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* Operations, as named in the config and the stats file. */
enum sfs_op {
	SFS_GETATTR,
	SFS_READLINK,
	SFS_MKNOD,
	SFS_MKDIR,
	SFS_UNLINK,
	SFS_RMDIR,
	SFS_SYMLINK,
	SFS_RENAME,
	SFS_LINK,
	SFS_CHMOD,
	SFS_CHOWN,
	SFS_TRUNCATE,
	SFS_OPEN,
	SFS_CREATE,
	SFS_READ,
	SFS_WRITE,
	SFS_STATFS,
	SFS_FLUSH,
	SFS_RELEASE,
	SFS_FSYNC,
	SFS_OPENDIR,
	SFS_READDIR,
	SFS_RELEASEDIR,
	SFS_FSYNCDIR,
	SFS_ACCESS,
	SFS_UTIMENS,
	SFS_FALLOCATE,
	SFS_LSEEK,
	SFS_COPY_FILE_RANGE,
	SFS_SETXATTR,
	SFS_GETXATTR,
	SFS_LISTXATTR,
	SFS_REMOVEXATTR,
	SFS_LOCK,
	SFS_FLOCK,
	SFS_NUM_OPS
};

/* Index of the "all" pseudo operation in the rule table. */
#define SFS_ALL SFS_NUM_OPS

static const char *const sfs_op_names[SFS_NUM_OPS] = {
	[SFS_GETATTR] = "getattr",
	[SFS_READLINK] = "readlink",
	[SFS_MKNOD] = "mknod",
	[SFS_MKDIR] = "mkdir",
	[SFS_UNLINK] = "unlink",
	[SFS_RMDIR] = "rmdir",
	[SFS_SYMLINK] = "symlink",
	[SFS_RENAME] = "rename",
	[SFS_LINK] = "link",
	[SFS_CHMOD] = "chmod",
	[SFS_CHOWN] = "chown",
	[SFS_TRUNCATE] = "truncate",
	[SFS_OPEN] = "open",
	[SFS_CREATE] = "create",
	[SFS_READ] = "read",
	[SFS_WRITE] = "write",
	[SFS_STATFS] = "statfs",
	[SFS_FLUSH] = "flush",
	[SFS_RELEASE] = "release",
	[SFS_FSYNC] = "fsync",
	[SFS_OPENDIR] = "opendir",
	[SFS_READDIR] = "readdir",
	[SFS_RELEASEDIR] = "releasedir",
	[SFS_FSYNCDIR] = "fsyncdir",
	[SFS_ACCESS] = "access",
	[SFS_UTIMENS] = "utimens",
	[SFS_FALLOCATE] = "fallocate",
	[SFS_LSEEK] = "lseek",
	[SFS_COPY_FILE_RANGE] = "copy_file_range",
	[SFS_SETXATTR] = "setxattr",
	[SFS_GETXATTR] = "getxattr",
	[SFS_LISTXATTR] = "listxattr",
	[SFS_REMOVEXATTR] = "removexattr",
	[SFS_LOCK] = "lock",
	[SFS_FLOCK] = "flock",
};

/* What the config says about one operation (or about "all"). */
struct sfs_rule {
	unsigned int delay_ms;
	int error;		/* errno to inject, 0 for none */
	bool error_set;		/* own error given: "all.error" is ignored */
	unsigned int every;	/* fail every Nth matching call */
	bool every_set;
};

/*
 * One parsed config file. It is replaced as a whole when the file
 * changes, so readers see either the old or the new settings.
 */
struct sfs_config {
	struct sfs_rule rules[SFS_NUM_OPS + 1];
	unsigned int read_short;
	unsigned int write_short;
	bool direct_io;
	char *path_filter;
	/* Calls that passed path_filter, counted for error_every. */
	atomic_ullong matched[SFS_NUM_OPS];
};

/* What one call of an operation has to suffer. */
struct sfs_fault {
	unsigned int delay_ms;
	int error;
	unsigned int max_io;	/* read/write: byte limit, 0 = none */
	bool direct_io;		/* open/create: bypass the page cache */
};

/*
 * An open file or directory. fi->fh points to it. Files are also kept
 * in a list, which the lock code needs to find all opens of one inode.
 */
struct sfs_handle {
	int fd;			/* backing descriptor */
	int accmode;		/* O_RDONLY, O_WRONLY or O_RDWR */
	bool direct_io;		/* opened bypassing the page cache */
	dev_t dev;
	ino_t ino;
	bool has_owner;		/* lock_owner's POSIX locks live here */
	uint64_t lock_owner;
	DIR *dir;		/* directories only */
	struct dirent *entry;	/* read but not yet passed to the kernel */
	off_t dir_offset;	/* offset the kernel will ask for next */
	struct sfs_handle *prev;
	struct sfs_handle *next;
	char path[];		/* at open time, for path_filter */
};

static struct {
	char *backing;
	int root_fd;
	char *config_path;
	char *stats_path;

	bool switch_creds;	/* only possible when running as root */
	bool kernel_checks;	/* mounted with default_permissions */
	uid_t own_uid;
	gid_t own_gid;
	gid_t *own_groups;
	int num_own_groups;

	pthread_rwlock_t config_lock;
	struct sfs_config *config;
	bool config_present;
	struct stat config_stat;

	atomic_ullong calls[SFS_NUM_OPS];

	pthread_t helper;
	bool helper_running;
	atomic_bool helper_stop;

	pthread_mutex_t files_lock;
	struct sfs_handle *files;
} sfs = {
	.root_fd = -1,
	.config_lock = PTHREAD_RWLOCK_INITIALIZER,
	.files_lock = PTHREAD_MUTEX_INITIALIZER,
};

/* Per worker thread state. */
static __thread gid_t *t_groups;
static __thread int t_groups_size;
static __thread bool t_switched;
static __thread int t_fs_private;	/* 0 untried, 1 yes, -1 failed */

#define SFS_MAX_DELAY_MS 3600000U

/* ------------------------------------------------------------------ */
/* Config file                                                         */
/* ------------------------------------------------------------------ */

static const struct {
	const char *name;
	int value;
} sfs_errnos[] = {
	{ "0", 0 }, { "none", 0 },
	{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EACCES", EACCES },
	{ "ENOENT", ENOENT }, { "EAGAIN", EAGAIN }, { "EINTR", EINTR },
	{ "EPERM", EPERM }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
	{ "EBUSY", EBUSY }, { "ESTALE", ESTALE }, { "ETIMEDOUT", ETIMEDOUT },
	{ "ENOMEM", ENOMEM }, { "EEXIST", EEXIST }, { "EINVAL", EINVAL },
	{ "ENOTEMPTY", ENOTEMPTY }, { "ENODATA", ENODATA },
	{ "EOPNOTSUPP", EOPNOTSUPP }, { "ENOTSUP", ENOTSUP },
	{ "EFBIG", EFBIG }, { "ENAMETOOLONG", ENAMETOOLONG },
	{ "ENOLCK", ENOLCK }, { "EDEADLK", EDEADLK },
};

static char *sfs_trim(char *s)
{
	char *end = NULL;

	while (isspace((unsigned char)*s)) {
		s++;
	}
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1])) {
		end--;
	}
	*end = '\0';
	return s;
}

static bool sfs_parse_uint(const char *s, unsigned int max,
			   unsigned int *result)
{
	char *end = NULL;
	unsigned long v;

	/* strtoul() would accept "-1" and " 1": insist on plain digits */
	if (!isdigit((unsigned char)*s)) {
		return false;
	}
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max) {
		return false;
	}
	*result = (unsigned int)v;
	return true;
}

static bool sfs_parse_errno(const char *s, int *result)
{
	unsigned int v;
	size_t i;

	for (i = 0; i < sizeof(sfs_errnos) / sizeof(sfs_errnos[0]); i++) {
		if (strcasecmp(s, sfs_errnos[i].name) == 0) {
			*result = sfs_errnos[i].value;
			return true;
		}
	}
	if (sfs_parse_uint(s, 4095, &v)) {
		*result = (int)v;
		return true;
	}
	return false;
}

static int sfs_find_op(const char *name)
{
	int i;

	if (strcmp(name, "all") == 0) {
		return SFS_ALL;
	}
	if (strcmp(name, "stat") == 0) {
		return SFS_GETATTR;
	}
	for (i = 0; i < SFS_NUM_OPS; i++) {
		if (strcmp(name, sfs_op_names[i]) == 0) {
			return i;
		}
	}
	return -1;
}

static const char *sfs_set_short(struct sfs_config *c, int op,
				 const char *val)
{
	unsigned int *dst = NULL;

	if (op == SFS_READ) {
		dst = &c->read_short;
	} else if (op == SFS_WRITE) {
		dst = &c->write_short;
	} else {
		return "'short' exists only for read and write";
	}
	if (!sfs_parse_uint(val, INT_MAX, dst)) {
		return "short needs a byte count (0 = off)";
	}
	return NULL;
}

/* Apply "<op>.<param> = val". Returns why it is invalid, or NULL. */
static const char *sfs_set_op_param(struct sfs_config *c, char *key,
				    const char *val)
{
	char *param = strrchr(key, '.');
	struct sfs_rule *r = NULL;
	unsigned int every;
	int op;

	if (param == NULL) {
		return "unknown setting";
	}
	*param++ = '\0';
	op = sfs_find_op(key);
	if (op < 0) {
		return "unknown operation";
	}
	r = &c->rules[op];
	if (strcmp(param, "delay_ms") == 0) {
		if (!sfs_parse_uint(val, SFS_MAX_DELAY_MS, &r->delay_ms)) {
			return "delay_ms needs milliseconds (0-3600000)";
		}
	} else if (strcmp(param, "error") == 0) {
		if (!sfs_parse_errno(val, &r->error)) {
			return "error needs an errno name like EIO, or 0";
		}
		r->error_set = true;
	} else if (strcmp(param, "error_every") == 0) {
		if (!sfs_parse_uint(val, UINT_MAX, &every) || every == 0) {
			return "error_every needs a number >= 1";
		}
		r->every = every;
		r->every_set = true;
	} else if (strcmp(param, "short") == 0) {
		return sfs_set_short(c, op, val);
	} else {
		return "unknown parameter";
	}
	return NULL;
}

/* Apply one "key = value" line. Returns why it is invalid, or NULL. */
static const char *sfs_config_set(struct sfs_config *c, char *key,
				  const char *val)
{
	unsigned int v;

	if (strcmp(key, "path_filter") == 0) {
		char *copy = strdup(val);

		if (copy == NULL) {
			return "out of memory";
		}
		free(c->path_filter);
		c->path_filter = copy;
		return NULL;
	}
	if (strcmp(key, "direct_io") == 0) {
		if (!sfs_parse_uint(val, 1, &v)) {
			return "direct_io needs 0 or 1";
		}
		c->direct_io = (v == 1);
		return NULL;
	}
	return sfs_set_op_param(c, key, val);
}

static struct sfs_config *sfs_config_new(void)
{
	struct sfs_config *c = calloc(1, sizeof(*c));
	int i;

	if (c == NULL) {
		return NULL;
	}
	for (i = 0; i <= SFS_NUM_OPS; i++) {
		c->rules[i].every = 1;
	}
	return c;
}

static void sfs_config_free(struct sfs_config *c)
{
	if (c != NULL) {
		free(c->path_filter);
		free(c);
	}
}

static void sfs_config_line(struct sfs_config *c, char *line,
			    const char *name, unsigned int lineno)
{
	char *hash = strchr(line, '#');
	char *eq = NULL;
	char *text = NULL;
	char *orig = NULL;
	const char *why = NULL;

	if (hash != NULL) {
		*hash = '\0';
	}
	text = sfs_trim(line);
	if (*text == '\0') {
		return;
	}
	orig = strdup(text);	/* parsing cuts text up; keep it for errors */
	eq = strchr(text, '=');
	if (eq == NULL) {
		why = "expected 'key = value'";
	} else {
		*eq = '\0';
		why = sfs_config_set(c, sfs_trim(text), sfs_trim(eq + 1));
	}
	if (why != NULL) {
		/* a bad line must not stop the rest of the file working */
		fprintf(stderr, "slowfs: %s:%u: '%s': %s, line ignored\n",
			name, lineno, orig ? orig : "?", why);
	}
	free(orig);
}

static struct sfs_config *sfs_config_parse(FILE *f, const char *name)
{
	struct sfs_config *c = sfs_config_new();
	char *line = NULL;
	size_t cap = 0;
	unsigned int lineno = 0;

	if (c == NULL) {
		return NULL;
	}
	while (getline(&line, &cap, f) != -1) {
		sfs_config_line(c, line, name, ++lineno);
	}
	free(line);
	return c;
}

static bool sfs_same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino &&
	       a->st_size == b->st_size &&
	       a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
	       a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	       a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
	       a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static void sfs_config_install(struct sfs_config *c)
{
	struct sfs_config *old = NULL;

	pthread_rwlock_wrlock(&sfs.config_lock);
	old = sfs.config;
	sfs.config = c;
	pthread_rwlock_unlock(&sfs.config_lock);
	sfs_config_free(old);
}

/*
 * Copy the text just parsed to FILE.loaded (via a temp file and rename),
 * or remove FILE.loaded when f is NULL. A test that wrote a config waits
 * for FILE.loaded to hold the same text: a condition, not a fixed sleep,
 * so it works on a busy machine too.
 */
static void sfs_config_ack(FILE *f)
{
	char ack[PATH_MAX], tmp[PATH_MAX + 4];
	char buf[4096];
	FILE *out = NULL;
	size_t n;

	if (snprintf(ack, sizeof(ack), "%s.loaded", sfs.config_path) >=
	    (int)sizeof(ack)) {
		return;
	}
	if (f == NULL) {
		unlink(ack);
		return;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", ack);
	out = fopen(tmp, "we");
	if (out == NULL) {
		fprintf(stderr, "slowfs: cannot write %s: %s\n", tmp,
			strerror(errno));
		return;
	}
	rewind(f);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
		fwrite(buf, 1, n, out);
	}
	if (fclose(out) != 0 || rename(tmp, ack) != 0) {
		fprintf(stderr, "slowfs: cannot write %s: %s\n", ack,
			strerror(errno));
		unlink(tmp);
	}
}

/* Replace the settings and tell whoever waits for them (sfs_config_ack). */
static void sfs_config_apply(struct sfs_config *c, FILE *f)
{
	sfs_config_install(c);
	sfs_config_ack(f);
	fprintf(stderr, "slowfs: config %s loaded\n",
		sfs.config_present ? sfs.config_path : "(none)");
}

/* Read the config file anew and apply it. */
static void sfs_config_reload(void)
{
	struct sfs_config *c = NULL;
	FILE *f = fopen(sfs.config_path, "re");

	if (f == NULL) {
		/* stat() worked: note it so we do not complain every 100ms */
		fprintf(stderr, "slowfs: cannot open %s: %s\n",
			sfs.config_path, strerror(errno));
		stat(sfs.config_path, &sfs.config_stat);
		sfs.config_present = true;
		return;
	}
	/* remember what we actually read; a later change is seen anew */
	fstat(fileno(f), &sfs.config_stat);
	sfs.config_present = true;
	c = sfs_config_parse(f, sfs.config_path);
	if (c != NULL) {
		sfs_config_apply(c, f);
	}
	fclose(f);
}

/*
 * Called at start and every 100ms by the helper thread, which is the
 * only one touching config_present and config_stat.
 */
static void sfs_config_check(void)
{
	struct sfs_config *c = NULL;
	struct stat st;

	if (sfs.config_path == NULL) {
		return;
	}
	if (stat(sfs.config_path, &st) == 0) {
		if (!sfs.config_present ||
		    !sfs_same_file(&st, &sfs.config_stat)) {
			sfs_config_reload();
		}
		return;
	}
	if (!sfs.config_present) {
		return;
	}
	/* config removed: back to plain pass-through */
	sfs.config_present = false;
	c = sfs_config_new();
	if (c != NULL) {
		sfs_config_apply(c, NULL);
	}
}

/* ------------------------------------------------------------------ */
/* Fault decisions                                                     */
/* ------------------------------------------------------------------ */

static bool sfs_path_matches(const struct sfs_config *c, const char *path)
{
	if (c->path_filter == NULL || c->path_filter[0] == '\0') {
		return true;
	}
	return path != NULL && strstr(path, c->path_filter) != NULL;
}

static unsigned int sfs_every(const struct sfs_rule *own,
			      const struct sfs_rule *all)
{
	if (own->every_set) {
		return own->every;
	}
	return all->every;
}

static void sfs_decide_locked(struct sfs_config *c, enum sfs_op op,
			      struct sfs_fault *f)
{
	const struct sfs_rule *own = &c->rules[op];
	const struct sfs_rule *all = &c->rules[SFS_ALL];
	int error = own->error_set ? own->error : all->error;

	f->delay_ms = own->delay_ms + all->delay_ms;
	if (error != 0) {
		/* atomic: several threads may count under the read lock */
		unsigned long long n = atomic_fetch_add(&c->matched[op], 1);

		if ((n + 1) % sfs_every(own, all) == 0) {
			f->error = error;
		}
	}
	if (op == SFS_READ) {
		f->max_io = c->read_short;
	} else if (op == SFS_WRITE) {
		f->max_io = c->write_short;
	}
	/* short reads/writes only reach the caller without page cache */
	if (c->read_short != 0 || c->write_short != 0) {
		f->direct_io = true;
	}
}

static void sfs_decide(enum sfs_op op, const char *path, struct sfs_fault *f)
{
	struct sfs_config *c = NULL;

	memset(f, 0, sizeof(*f));
	pthread_rwlock_rdlock(&sfs.config_lock);
	c = sfs.config;
	if (c != NULL) {
		if (sfs_path_matches(c, path)) {
			sfs_decide_locked(c, op, f);
		}
		f->direct_io = f->direct_io || c->direct_io;
	}
	pthread_rwlock_unlock(&sfs.config_lock);
}

static void sfs_sleep_ms(unsigned int ms)
{
	struct timespec until;

	if (ms == 0) {
		return;
	}
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	/* absolute time: a signal cannot make the delay shorter */
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME,
			       &until, NULL) == EINTR) {
	}
}

/* ------------------------------------------------------------------ */
/* Credentials                                                         */
/* ------------------------------------------------------------------ */

/* Supplementary groups of the calling process, or 0 if unknown. */
static int sfs_caller_groups(const struct fuse_context *ctx)
{
	int n;

	if (ctx->pid <= 0) {
		return 0;
	}
	if (t_groups == NULL) {
		t_groups = calloc(32, sizeof(gid_t));
		if (t_groups == NULL) {
			return -ENOMEM;
		}
		t_groups_size = 32;
	}
	n = fuse_getgroups(t_groups_size, t_groups);
	if (n > t_groups_size) {
		gid_t *bigger = realloc(t_groups, n * sizeof(gid_t));

		if (bigger == NULL) {
			return -ENOMEM;
		}
		t_groups = bigger;
		t_groups_size = n;
		n = fuse_getgroups(t_groups_size, t_groups);
	}
	/*
	 * The caller may have exited (e.g. a delayed close). Having no
	 * supplementary groups can only deny access, never grant it.
	 */
	if (n < 0 || n > t_groups_size) {
		return 0;
	}
	return n;
}

static void sfs_become_self(void)
{
	if (!t_switched) {
		return;
	}
	setfsuid(sfs.own_uid);
	setfsgid(sfs.own_gid);
	/* raw syscall: glibc's setgroups() would change every thread */
	syscall(SYS_setgroups, sfs.num_own_groups, sfs.own_groups);
	t_switched = false;
}

/*
 * The capabilities that let the backing file system's permission checks
 * pass, raised again in this thread's effective set after setfsuid() to
 * a user dropped them.  Not CAP_FOWNER or CAP_FSETID: owner checks are
 * decided by the fsuid, which is the caller's, and a user's write must
 * still clear set-id bits.
 */
static int sfs_keep_dac_override(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data) != 0) {
		return -errno;
	}
	data[0].effective |= (1U << CAP_DAC_OVERRIDE) |
			     (1U << CAP_DAC_READ_SEARCH) | (1U << CAP_CHOWN);
	if (syscall(SYS_capset, &hdr, data) != 0) {
		return -errno;
	}
	return 0;
}

/*
 * Act as the caller's fsuid and fsgid in this thread.  setfsuid() cannot
 * report failure: the values are read back.  On failure the thread is
 * itself again.
 */
static int sfs_take_fsids(const struct fuse_context *ctx)
{
	setfsgid(ctx->gid);
	setfsuid(ctx->uid);
	if ((gid_t)setfsgid(-1) != ctx->gid ||
	    (uid_t)setfsuid(-1) != ctx->uid) {
		sfs_become_self();
		return -EPERM;
	}
	return 0;
}

/*
 * Owner of what the caller creates: its fsuid and fsgid, as the kernel
 * sent them (right also for io_uring's workers, which act with the
 * credentials of the request's personality).  With default_permissions
 * the kernel has already decided every access with the caller's real
 * credentials, supplementary groups included, before the request came
 * here; the groups of /proc/<tid>/status are a task's real credentials,
 * which for an io-wq worker are not the personality's.  So the backing
 * file system is not asked again: its permission checks are overridden.
 */
static int sfs_become_owner(const struct fuse_context *ctx)
{
	int ret;

	t_switched = true;
	ret = sfs_take_fsids(ctx);
	if (ret != 0) {
		return ret;
	}
	ret = sfs_keep_dac_override();
	if (ret != 0) {
		sfs_become_self();
	}
	return ret;
}

/*
 * Take on the caller's identity for this thread only. fsuid/fsgid are
 * per thread in Linux; so are groups when set by the raw syscall.
 */
static int sfs_become_caller(void)
{
	struct fuse_context *ctx = fuse_get_context();
	int n;

	if (!sfs.switch_creds) {
		return 0;
	}
	if (sfs.kernel_checks) {
		return sfs_become_owner(ctx);
	}
	n = sfs_caller_groups(ctx);
	if (n < 0) {
		return n;
	}
	t_switched = true;
	if (syscall(SYS_setgroups, n, t_groups) != 0) {
		int err = errno;

		sfs_become_self();
		return -err;
	}
	return sfs_take_fsids(ctx);
}

/*
 * The mode to pass when creating an object. With a thread-private umask
 * (unshare(CLONE_FS)) the backing file system applies the caller's umask
 * itself, which keeps default ACLs working; otherwise mask by hand.
 */
static mode_t sfs_caller_mode(mode_t mode)
{
	mode_t caller_umask = fuse_get_context()->umask;

	if (t_fs_private == 0) {
		t_fs_private = (unshare(CLONE_FS) == 0) ? 1 : -1;
	}
	if (t_fs_private == 1) {
		umask(caller_umask);
		return mode;
	}
	return mode & ~caller_umask;
}

/* ------------------------------------------------------------------ */
/* Operation frame                                                     */
/* ------------------------------------------------------------------ */

static void sfs_count(enum sfs_op op)
{
	atomic_fetch_add_explicit(&sfs.calls[op], 1, memory_order_relaxed);
}

/*
 * Start an operation: count it, inject the configured latency and fault
 * and, if as_caller, take on the caller's identity. Returns 0 or -errno;
 * after 0 the operation must end with sfs_leave() or sfs_become_self().
 */
static int sfs_enter_as(enum sfs_op op, const char *path,
			struct sfs_fault *f, bool as_caller)
{
	sfs_count(op);
	sfs_decide(op, path, f);
	sfs_sleep_ms(f->delay_ms);
	if (f->error != 0) {
		return -f->error;
	}
	return as_caller ? sfs_become_caller() : 0;
}

static int sfs_enter(enum sfs_op op, const char *path, struct sfs_fault *f)
{
	return sfs_enter_as(op, path, f, true);
}

/*
 * Start an operation that only reads attributes of an existing object.
 * With default_permissions the kernel has already checked the caller's
 * access (read permission for user.* xattrs, capabilities for trusted.*;
 * listing names needs none), so the backing file system has nothing to
 * refuse that the caller may do, and nothing is created: slowfs stays
 * itself.  Taking on the caller costs several syscalls, more CPU than the
 * operation; on the benchmark's slow storage that cost, not the
 * configured latency, bounded every parallel listing.
 */
static int sfs_enter_read(enum sfs_op op, const char *path,
			  struct sfs_fault *f)
{
	return sfs_enter_as(op, path, f, !sfs.kernel_checks);
}

/* End an operation: -1 from a syscall becomes -errno. */
static int sfs_leave(ssize_t ret)
{
	int result = (ret < 0) ? -errno : (int)ret;

	sfs_become_self();
	return result;
}

/* Path relative to the backing directory, for the *at() calls. */
static const char *sfs_rel(const char *path)
{
	while (*path == '/') {
		path++;
	}
	return (*path == '\0') ? "." : path;
}

/*
 * A path for calls without an *at() variant (xattrs, statvfs). Going
 * through our descriptor of the backing directory keeps working when
 * slowfs is mounted on top of the backing directory itself.
 */
static int sfs_proc_path(const char *path, char *buf, size_t len)
{
	int n = snprintf(buf, len, "/proc/self/fd/%d/%s",
			 sfs.root_fd, sfs_rel(path));

	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

#define SFS_PROC_PATH_MAX (PATH_MAX + 64)
#define SFS_POSIX_ACL_PREFIX "system.posix_acl_"

static struct sfs_handle *sfs_handle(const struct fuse_file_info *fi)
{
	return (struct sfs_handle *)(uintptr_t)fi->fh;
}

/* With nullpath_ok the kernel may give no path: use the open-time one. */
static const char *sfs_fpath(const char *path,
			     const struct fuse_file_info *fi)
{
	if (fi != NULL && fi->fh != 0) {
		return sfs_handle(fi)->path;
	}
	return path;
}

static struct sfs_handle *sfs_handle_new(const char *path, int fd)
{
	size_t len = strlen(path) + 1;
	struct sfs_handle *h = calloc(1, sizeof(*h) + len);

	if (h == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	h->fd = fd;
	memcpy(h->path, path, len);
	return h;
}

/* ------------------------------------------------------------------ */
/* Metadata operations                                                 */
/* ------------------------------------------------------------------ */

static int sfs_getattr(const char *path, struct stat *st,
		       struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_GETATTR, sfs_fpath(path, fi), &f);

	if (ret != 0) {
		return ret;
	}
	if (fi != NULL) {
		return sfs_leave(fstat(sfs_handle(fi)->fd, st));
	}
	return sfs_leave(fstatat(sfs.root_fd, sfs_rel(path), st,
				 AT_SYMLINK_NOFOLLOW));
}

static int sfs_readlink(const char *path, char *buf, size_t size)
{
	struct sfs_fault f;
	ssize_t n;
	int ret = sfs_enter(SFS_READLINK, path, &f);

	if (ret != 0) {
		return ret;
	}
	if (size == 0) {
		return sfs_leave(0);
	}
	n = readlinkat(sfs.root_fd, sfs_rel(path), buf, size - 1);
	if (n >= 0) {
		/* FUSE wants a string, truncated if need be */
		buf[n] = '\0';
		n = 0;
	}
	return sfs_leave(n);
}

static int sfs_mknod(const char *path, mode_t mode, dev_t rdev)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_MKNOD, path, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(mknodat(sfs.root_fd, sfs_rel(path),
				 sfs_caller_mode(mode), rdev));
}

static int sfs_mkdir(const char *path, mode_t mode)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_MKDIR, path, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(mkdirat(sfs.root_fd, sfs_rel(path),
				 sfs_caller_mode(mode)));
}

static int sfs_unlink(const char *path)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_UNLINK, path, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(unlinkat(sfs.root_fd, sfs_rel(path), 0));
}

static int sfs_rmdir(const char *path)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_RMDIR, path, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(unlinkat(sfs.root_fd, sfs_rel(path), AT_REMOVEDIR));
}

static int sfs_symlink(const char *target, const char *path)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_SYMLINK, path, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(symlinkat(target, sfs.root_fd, sfs_rel(path)));
}

static int sfs_rename(const char *from, const char *to, unsigned int flags)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_RENAME, from, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(renameat2(sfs.root_fd, sfs_rel(from),
				   sfs.root_fd, sfs_rel(to), flags));
}

static int sfs_link(const char *from, const char *to)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_LINK, to, &f);

	if (ret != 0) {
		return ret;
	}
	return sfs_leave(linkat(sfs.root_fd, sfs_rel(from),
				sfs.root_fd, sfs_rel(to), 0));
}

static int sfs_chmod(const char *path, mode_t mode,
		     struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_CHMOD, sfs_fpath(path, fi), &f);

	if (ret != 0) {
		return ret;
	}
	if (fi != NULL) {
		return sfs_leave(fchmod(sfs_handle(fi)->fd, mode));
	}
	return sfs_leave(fchmodat(sfs.root_fd, sfs_rel(path), mode, 0));
}

static int sfs_chown(const char *path, uid_t uid, gid_t gid,
		     struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_CHOWN, sfs_fpath(path, fi), &f);

	if (ret != 0) {
		return ret;
	}
	if (fi != NULL) {
		return sfs_leave(fchown(sfs_handle(fi)->fd, uid, gid));
	}
	return sfs_leave(fchownat(sfs.root_fd, sfs_rel(path), uid, gid,
				  AT_SYMLINK_NOFOLLOW));
}

static int sfs_truncate(const char *path, off_t size,
			struct fuse_file_info *fi)
{
	char ppath[SFS_PROC_PATH_MAX];
	struct sfs_fault f;
	int ret = sfs_enter(SFS_TRUNCATE, sfs_fpath(path, fi), &f);

	if (ret != 0) {
		return ret;
	}
	if (fi != NULL) {
		return sfs_leave(ftruncate(sfs_handle(fi)->fd, size));
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(truncate(ppath, size));
}

static int sfs_utimens(const char *path, const struct timespec tv[2],
		       struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_UTIMENS, sfs_fpath(path, fi), &f);

	if (ret != 0) {
		return ret;
	}
	if (fi != NULL) {
		return sfs_leave(futimens(sfs_handle(fi)->fd, tv));
	}
	return sfs_leave(utimensat(sfs.root_fd, sfs_rel(path), tv,
				   AT_SYMLINK_NOFOLLOW));
}

static int sfs_access(const char *path, int mask)
{
	struct sfs_fault f;
	int ret = sfs_enter(SFS_ACCESS, path, &f);

	if (ret != 0) {
		return ret;
	}
	/* AT_EACCESS: check with fsuid/fsgid, not slowfs's real ids */
	return sfs_leave(faccessat(sfs.root_fd, sfs_rel(path), mask,
				   AT_EACCESS));
}

static int sfs_statfs(const char *path, struct statvfs *st)
{
	char ppath[SFS_PROC_PATH_MAX];
	struct sfs_fault f;
	int ret = sfs_enter(SFS_STATFS, path, &f);

	if (ret != 0) {
		return ret;
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(statvfs(ppath, st));
}

/* ------------------------------------------------------------------ */
/* Extended attributes                                                 */
/* ------------------------------------------------------------------ */

static int sfs_setxattr(const char *path, const char *name,
			const char *value, size_t size, int flags)
{
	char ppath[SFS_PROC_PATH_MAX];
	struct sfs_fault f;
	int ret = sfs_enter(SFS_SETXATTR, path, &f);

	if (ret != 0) {
		return ret;
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(lsetxattr(ppath, name, value, size, flags));
}

static int sfs_getxattr(const char *path, const char *name, char *value,
			size_t size)
{
	char ppath[SFS_PROC_PATH_MAX];
	struct sfs_fault f;
	int ret;

	if (strncmp(name, SFS_POSIX_ACL_PREFIX,
		    sizeof(SFS_POSIX_ACL_PREFIX) - 1) == 0) {
		/*
		 * The kernel's own reads of an ACL for its permission checks
		 * (FUSE_CAP_POSIX_ACL, see sfs_init()): not a caller's
		 * getxattr, so neither delayed nor failed nor counted, or
		 * every injected getxattr fault would hit a permission check
		 * first.
		 */
		if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
			return -errno;
		}
		ret = lgetxattr(ppath, name, value, size);
		return ret < 0 ? -errno : ret;
	}
	ret = sfs_enter_read(SFS_GETXATTR, path, &f);
	if (ret != 0) {
		return ret;
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(lgetxattr(ppath, name, value, size));
}

/*
 * The names a caller without CAP_SYS_ADMIN would get: the backing file
 * system lists trusted.* only to such callers, and slowfs read the list
 * as itself.  The caller's uid stands in for its capabilities.
 */
static ssize_t sfs_caller_names(char *all, ssize_t len, char *list,
				size_t size)
{
	bool privileged = (fuse_get_context()->uid == 0);
	ssize_t out = 0;
	ssize_t i = 0;

	while (i < len) {
		size_t n = strnlen(all + i, len - i) + 1;

		if (privileged || strncmp(all + i, "trusted.", 8) != 0) {
			if (size != 0 && (size_t)out + n > size) {
				errno = ERANGE;
				return -1;
			}
			if (size != 0) {
				memmove(list + out, all + i, n);
			}
			out += n;
		}
		i += n;
	}
	return out;
}

static int sfs_listxattr(const char *path, char *list, size_t size)
{
	char ppath[SFS_PROC_PATH_MAX];
	static __thread char all[65536];	/* XATTR_LIST_MAX */
	struct sfs_fault f;
	ssize_t len;
	int ret = sfs_enter_read(SFS_LISTXATTR, path, &f);

	if (ret != 0) {
		return ret;
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	if (t_switched) {
		return sfs_leave(llistxattr(ppath, list, size));
	}
	len = llistxattr(ppath, all, sizeof(all));
	if (len < 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(sfs_caller_names(all, len, list, size));
}

static int sfs_removexattr(const char *path, const char *name)
{
	char ppath[SFS_PROC_PATH_MAX];
	struct sfs_fault f;
	int ret = sfs_enter(SFS_REMOVEXATTR, path, &f);

	if (ret != 0) {
		return ret;
	}
	if (sfs_proc_path(path, ppath, sizeof(ppath)) != 0) {
		return sfs_leave(-1);
	}
	return sfs_leave(lremovexattr(ppath, name));
}

/* ------------------------------------------------------------------ */
/* Files                                                               */
/* ------------------------------------------------------------------ */

static void sfs_files_add(struct sfs_handle *h)
{
	pthread_mutex_lock(&sfs.files_lock);
	h->next = sfs.files;
	if (sfs.files != NULL) {
		sfs.files->prev = h;
	}
	sfs.files = h;
	pthread_mutex_unlock(&sfs.files_lock);
}

static void sfs_files_del(struct sfs_handle *h)
{
	pthread_mutex_lock(&sfs.files_lock);
	if (h->prev != NULL) {
		h->prev->next = h->next;
	} else {
		sfs.files = h->next;
	}
	if (h->next != NULL) {
		h->next->prev = h->prev;
	}
	pthread_mutex_unlock(&sfs.files_lock);
}

/* Wrap a freshly opened backing fd into fi. Returns 0 or -1/errno. */
static int sfs_file_opened(const char *path, int fd, int flags,
			   const struct sfs_fault *f,
			   struct fuse_file_info *fi)
{
	struct sfs_handle *h = NULL;
	struct stat st;

	if (fd == -1) {
		return -1;
	}
	h = sfs_handle_new(path, fd);
	if (h == NULL || fstat(fd, &st) != 0) {
		int err = errno;

		free(h);
		close(fd);
		errno = err;
		return -1;
	}
	h->accmode = flags & O_ACCMODE;
	h->dev = st.st_dev;
	h->ino = st.st_ino;
	sfs_files_add(h);
	h->direct_io = f->direct_io;
	fi->fh = (uintptr_t)h;
	fi->direct_io = f->direct_io;
	return 0;
}

static int sfs_open(const char *path, struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int fd;
	int ret = sfs_enter(SFS_OPEN, path, &f);

	if (ret != 0) {
		return ret;
	}
	fd = openat(sfs.root_fd, sfs_rel(path), fi->flags | O_CLOEXEC);
	return sfs_leave(sfs_file_opened(path, fd, fi->flags, &f, fi));
}

static int sfs_create(const char *path, mode_t mode,
		      struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int fd;
	int ret = sfs_enter(SFS_CREATE, path, &f);

	if (ret != 0) {
		return ret;
	}
	fd = openat(sfs.root_fd, sfs_rel(path),
		    fi->flags | O_CREAT | O_CLOEXEC, sfs_caller_mode(mode));
	return sfs_leave(sfs_file_opened(path, fd, fi->flags, &f, fi));
}

/*
 * Apply read.short/write.short. Only for opens without page cache: there
 * the kernel would take a short read for end of file.
 */
static size_t sfs_limit_io(const struct sfs_handle *h,
			   const struct sfs_fault *f, size_t size)
{
	if (h->direct_io && f->max_io != 0 && size > f->max_io) {
		return f->max_io;
	}
	return size;
}

static int sfs_read(const char *path, char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_READ, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	size = sfs_limit_io(h, &f, size);
	return sfs_leave(pread(h->fd, buf, size, off));
}

static int sfs_write(const char *path, const char *buf, size_t size,
		     off_t off, struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_WRITE, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	size = sfs_limit_io(h, &f, size);
	return sfs_leave(pwrite(h->fd, buf, size, off));
}

static int sfs_flush(const char *path, struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_FLUSH, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	/* a close of a duplicate lets e.g. NFS report write errors */
	ret = dup(h->fd);
	if (ret != -1) {
		ret = close(ret);
	}
	return sfs_leave(ret);
}

static int sfs_release(const char *path, struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;

	(void)path;
	/* no error injection: the kernel ignores it, the fd must go */
	sfs_count(SFS_RELEASE);
	sfs_decide(SFS_RELEASE, h->path, &f);
	sfs_sleep_ms(f.delay_ms);
	sfs_files_del(h);
	close(h->fd);
	free(h);
	return 0;
}

static int sfs_fsync(const char *path, int datasync,
		     struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_FSYNC, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	return sfs_leave(datasync ? fdatasync(h->fd) : fsync(h->fd));
}

static int sfs_fallocate(const char *path, int mode, off_t off,
			 off_t len, struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_FALLOCATE, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	return sfs_leave(fallocate(h->fd, mode, off, len));
}

static off_t sfs_lseek(const char *path, off_t off, int whence,
		       struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	off_t res;
	int ret = sfs_enter(SFS_LSEEK, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	/* SEEK_DATA/SEEK_HOLE: the reason this operation exists */
	res = lseek(h->fd, off, whence);
	if (res == -1) {
		res = -errno;
	}
	sfs_become_self();
	return res;
}

static ssize_t sfs_copy_file_range(const char *path_in,
				   struct fuse_file_info *fi_in,
				   off_t off_in, const char *path_out,
				   struct fuse_file_info *fi_out,
				   off_t off_out, size_t size, int flags)
{
	struct sfs_handle *in = sfs_handle(fi_in);
	struct sfs_handle *out = sfs_handle(fi_out);
	struct sfs_fault f;
	ssize_t res;
	int ret = sfs_enter(SFS_COPY_FILE_RANGE, out->path, &f);

	(void)path_in;
	(void)path_out;
	if (ret != 0) {
		return ret;
	}
	res = copy_file_range(in->fd, &off_in, out->fd, &off_out, size,
			      (unsigned int)flags);
	if (res == -1) {
		res = -errno;
	}
	sfs_become_self();
	return res;
}

/* ------------------------------------------------------------------ */
/* Locks                                                               */
/* ------------------------------------------------------------------ */

/*
 * FUSE hands us every byte-range lock as a POSIX lock plus a lock owner:
 * the caller's file table for fcntl(F_SETLK), the open file for OFD
 * locks (F_OFD_SETLK, used by Samba). slowfs is one process, so its own
 * POSIX locks could never conflict with each other. Instead we use OFD
 * locks on backing descriptors and route all locks of one owner on one
 * inode through one backing open: the first one the owner locked with.
 */

static bool sfs_can_lock(const struct sfs_handle *h, short type)
{
	if (type == F_RDLCK) {
		return h->accmode != O_WRONLY;
	}
	if (type == F_WRLCK) {
		return h->accmode != O_RDONLY;
	}
	return true;
}

static bool sfs_owns(const struct sfs_handle *it,
		     const struct sfs_handle *h, uint64_t owner)
{
	return it->has_owner && it->lock_owner == owner &&
	       it->dev == h->dev && it->ino == h->ino;
}

/*
 * A duplicate of the backing fd holding owner's locks on h's inode,
 * claiming h for owner if there is none. Duplicate: the handle may be
 * released while we wait in F_OFD_SETLKW.
 */
static int sfs_owner_fd(struct sfs_handle *h, uint64_t owner, short type,
			bool claim)
{
	struct sfs_handle *use = NULL;
	struct sfs_handle *it = NULL;
	int fd;

	pthread_mutex_lock(&sfs.files_lock);
	for (it = sfs.files; it != NULL; it = it->next) {
		if (sfs_owns(it, h, owner) && sfs_can_lock(it, type)) {
			use = it;
			break;
		}
	}
	if (use == NULL) {
		use = h;
		if (claim && !h->has_owner) {
			h->has_owner = true;
			h->lock_owner = owner;
		}
	}
	fd = fcntl(use->fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&sfs.files_lock);
	return fd;
}

/*
 * Unlock a range for owner on every open that holds its locks. On
 * close (flush) only those: an owner that never locked must not drop
 * locks others (e.g. OFD owners) hold through the same open.
 */
static int sfs_unlock_owner(struct sfs_handle *h, uint64_t owner,
			    struct flock *fl, bool closing)
{
	struct sfs_handle *it = NULL;
	bool found = false;
	int ret = 0;

	fl->l_type = F_UNLCK;
	pthread_mutex_lock(&sfs.files_lock);
	for (it = sfs.files; it != NULL; it = it->next) {
		if (!sfs_owns(it, h, owner)) {
			continue;
		}
		found = true;
		if (fcntl(it->fd, F_OFD_SETLK, fl) == -1) {
			ret = -errno;
		}
	}
	if (!found && !closing && fcntl(h->fd, F_OFD_SETLK, fl) == -1) {
		ret = -errno;
	}
	pthread_mutex_unlock(&sfs.files_lock);
	return ret;
}

static int sfs_setlk(struct sfs_handle *h, uint64_t owner,
		     struct flock *fl, bool wait)
{
	int fd = sfs_owner_fd(h, owner, fl->l_type, true);
	int ret;

	if (fd == -1) {
		return -errno;
	}
	ret = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, fl);
	ret = (ret == -1) ? -errno : 0;
	close(fd);
	return ret;
}

static int sfs_getlk(struct sfs_handle *h, uint64_t owner,
		     struct flock *fl)
{
	int fd = sfs_owner_fd(h, owner, F_UNLCK, false);
	int ret;

	if (fd == -1) {
		return -errno;
	}
	ret = fcntl(fd, F_OFD_GETLK, fl);
	ret = (ret == -1) ? -errno : 0;
	close(fd);
	/* OFD conflicts report pid -1: FUSE wants 0 for "unknown" */
	if (fl->l_pid < 0) {
		fl->l_pid = 0;
	}
	return ret;
}

static int sfs_lock(const char *path, struct fuse_file_info *fi, int cmd,
		    struct flock *fl)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret;

	(void)path;
	fl->l_pid = 0;		/* required by the OFD lock calls */
	if (fi->flush) {
		/* libfuse's unlock-on-close, not a request: no faults */
		return sfs_unlock_owner(h, fi->lock_owner, fl, true);
	}
	ret = sfs_enter(SFS_LOCK, h->path, &f);
	if (ret != 0) {
		return ret;
	}
	if (cmd == F_GETLK) {
		ret = sfs_getlk(h, fi->lock_owner, fl);
	} else if (cmd != F_SETLK && cmd != F_SETLKW) {
		ret = -EINVAL;
	} else if (fl->l_type == F_UNLCK) {
		ret = sfs_unlock_owner(h, fi->lock_owner, fl, false);
	} else {
		ret = sfs_setlk(h, fi->lock_owner, fl, cmd == F_SETLKW);
	}
	sfs_become_self();
	return ret;
}

static int sfs_flock(const char *path, struct fuse_file_info *fi, int op)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_FLOCK, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	/* flock() locks belong to the open file: exactly our backing fd */
	return sfs_leave(flock(h->fd, op));
}

/* ------------------------------------------------------------------ */
/* Directories                                                         */
/* ------------------------------------------------------------------ */

static int sfs_dir_opened(const char *path, int fd,
			  struct fuse_file_info *fi)
{
	struct sfs_handle *h = NULL;
	int err;

	if (fd == -1) {
		return -1;
	}
	h = sfs_handle_new(path, fd);
	if (h != NULL) {
		h->dir = fdopendir(fd);
		if (h->dir != NULL) {
			fi->fh = (uintptr_t)h;
			return 0;
		}
	}
	err = errno;
	free(h);
	close(fd);
	errno = err;
	return -1;
}

static int sfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct sfs_fault f;
	int fd;
	int ret = sfs_enter(SFS_OPENDIR, path, &f);

	if (ret != 0) {
		return ret;
	}
	fd = openat(sfs.root_fd, sfs_rel(path),
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return sfs_leave(sfs_dir_opened(path, fd, fi));
}

/* Attributes for one entry: full ones for readdirplus if we can. */
static enum fuse_fill_dir_flags sfs_dirent_stat(struct sfs_handle *h,
						enum fuse_readdir_flags flags,
						struct stat *st)
{
	memset(st, 0, sizeof(*st));
	if ((flags & FUSE_READDIR_PLUS) &&
	    fstatat(dirfd(h->dir), h->entry->d_name, st,
		    AT_SYMLINK_NOFOLLOW) == 0) {
		return FUSE_FILL_DIR_PLUS;
	}
	st->st_ino = h->entry->d_ino;
	st->st_mode = DTTOIF(h->entry->d_type);
	return 0;
}

/* Position the backing stream where the kernel wants to continue. */
static void sfs_dir_seek(struct sfs_handle *h, off_t offset)
{
	if (offset == h->dir_offset) {
		return;
	}
	/* telldir/seekdir by the caller, or a rewind */
	if (offset == 0) {
		rewinddir(h->dir);
	} else {
		seekdir(h->dir, offset);
	}
	h->entry = NULL;
	h->dir_offset = offset;
}

static int sfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill,
		       off_t offset, struct fuse_file_info *fi,
		       enum fuse_readdir_flags flags)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_READDIR, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	sfs_dir_seek(h, offset);
	for (;;) {
		enum fuse_fill_dir_flags fill_flags;
		struct stat st;
		off_t next;

		if (h->entry == NULL) {
			errno = 0;
			h->entry = readdir(h->dir);
			if (h->entry == NULL) {
				ret = (errno != 0) ? -1 : 0;
				break;
			}
		}
		fill_flags = sfs_dirent_stat(h, flags, &st);
		next = telldir(h->dir);
		if (fill(buf, h->entry->d_name, &st, next, fill_flags) != 0) {
			/* buffer full: keep the entry for the next call */
			break;
		}
		h->entry = NULL;
		h->dir_offset = next;
	}
	return sfs_leave(ret);
}

static int sfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;

	(void)path;
	sfs_count(SFS_RELEASEDIR);
	sfs_decide(SFS_RELEASEDIR, h->path, &f);
	sfs_sleep_ms(f.delay_ms);
	closedir(h->dir);
	free(h);
	return 0;
}

static int sfs_fsyncdir(const char *path, int datasync,
			struct fuse_file_info *fi)
{
	struct sfs_handle *h = sfs_handle(fi);
	struct sfs_fault f;
	int ret = sfs_enter(SFS_FSYNCDIR, h->path, &f);

	(void)path;
	if (ret != 0) {
		return ret;
	}
	return sfs_leave(datasync ? fdatasync(h->fd) : fsync(h->fd));
}

/* ------------------------------------------------------------------ */
/* Statistics and the helper thread                                    */
/* ------------------------------------------------------------------ */

static void sfs_stats_write(FILE *f)
{
	int i;

	for (i = 0; i < SFS_NUM_OPS; i++) {
		fprintf(f, "%s %llu\n", sfs_op_names[i],
			(unsigned long long)atomic_load(&sfs.calls[i]));
	}
}

/* Write the counters to a temp file and rename: readers see it whole. */
static void sfs_stats_dump(void)
{
	char tmp[PATH_MAX];
	FILE *f = NULL;
	int fd;

	if (sfs.stats_path == NULL) {
		fprintf(stderr, "slowfs: SIGUSR1 but no --stats file\n");
		return;
	}
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", sfs.stats_path) >=
	    (int)sizeof(tmp)) {
		fprintf(stderr, "slowfs: stats path too long\n");
		return;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd == -1 || fchmod(fd, 0644) != 0 ||
	    (f = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "slowfs: cannot write %s: %s\n", tmp,
			strerror(errno));
		if (fd != -1) {
			close(fd);
		}
		return;
	}
	sfs_stats_write(f);
	if (fclose(f) != 0 || rename(tmp, sfs.stats_path) != 0) {
		fprintf(stderr, "slowfs: cannot write %s: %s\n",
			sfs.stats_path, strerror(errno));
	}
}

/*
 * Polls the config every 100ms and dumps stats on SIGUSR1. SIGUSR1 is
 * blocked in all threads, so sigtimedwait() here is its only consumer.
 */
static void *sfs_helper_main(void *arg)
{
	struct timespec tick = { .tv_sec = 0, .tv_nsec = 100 * 1000 * 1000 };
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	while (!atomic_load(&sfs.helper_stop)) {
		int sig = sigtimedwait(&set, NULL, &tick);

		sfs_config_check();
		if (sig == SIGUSR1) {
			sfs_stats_dump();
		}
	}
	return NULL;
}

static void *sfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/* inode numbers as in the backing fs: Samba uses them as ids */
	cfg->use_ino = 1;
	/* unlink really unlinks: no .fuse_hidden files visible to Samba */
	cfg->hard_remove = 1;
	/* lets I/O continue on unlinked open files (needs hard_remove) */
	cfg->nullpath_ok = 1;
	/* we apply the caller's umask ourselves, see sfs_caller_mode() */
	if (conn->capable & FUSE_CAP_DONT_MASK) {
		conn->want |= FUSE_CAP_DONT_MASK;
	}
	/*
	 * With default_permissions the kernel decides access with the
	 * caller's real credentials and slowfs's own checks are overridden
	 * (sfs_become_owner()): the kernel must then see POSIX ACLs too, or a
	 * "u:someone:---" entry would be ignored.  It reads them through our
	 * getxattr of system.posix_acl_*.
	 */
	if (sfs.kernel_checks && (conn->capable & FUSE_CAP_POSIX_ACL)) {
		conn->want |= FUSE_CAP_POSIX_ACL;
	}
	/*
	 * Started here, not in main(): fuse_main() forks into the
	 * background after parsing, which would lose the thread.
	 */
	if (pthread_create(&sfs.helper, NULL, sfs_helper_main, NULL) == 0) {
		sfs.helper_running = true;
	} else {
		fprintf(stderr, "slowfs: cannot start helper thread\n");
	}
	return NULL;
}

static void sfs_destroy(void *private_data)
{
	(void)private_data;
	if (sfs.helper_running) {
		atomic_store(&sfs.helper_stop, true);
		pthread_join(sfs.helper, NULL);
		sfs.helper_running = false;
	}
	if (sfs.stats_path != NULL) {
		sfs_stats_dump();
	}
}

static const struct fuse_operations sfs_ops = {
	.init = sfs_init,
	.destroy = sfs_destroy,
	.getattr = sfs_getattr,
	.readlink = sfs_readlink,
	.mknod = sfs_mknod,
	.mkdir = sfs_mkdir,
	.unlink = sfs_unlink,
	.rmdir = sfs_rmdir,
	.symlink = sfs_symlink,
	.rename = sfs_rename,
	.link = sfs_link,
	.chmod = sfs_chmod,
	.chown = sfs_chown,
	.truncate = sfs_truncate,
	.open = sfs_open,
	.create = sfs_create,
	.read = sfs_read,
	.write = sfs_write,
	.statfs = sfs_statfs,
	.flush = sfs_flush,
	.release = sfs_release,
	.fsync = sfs_fsync,
	.opendir = sfs_opendir,
	.readdir = sfs_readdir,
	.releasedir = sfs_releasedir,
	.fsyncdir = sfs_fsyncdir,
	.access = sfs_access,
	.utimens = sfs_utimens,
	.fallocate = sfs_fallocate,
	.lseek = sfs_lseek,
	.copy_file_range = sfs_copy_file_range,
	.setxattr = sfs_setxattr,
	.getxattr = sfs_getxattr,
	.listxattr = sfs_listxattr,
	.removexattr = sfs_removexattr,
	.lock = sfs_lock,
	.flock = sfs_flock,
};

/* ------------------------------------------------------------------ */
/* Start-up                                                            */
/* ------------------------------------------------------------------ */

struct sfs_opts {
	char *config;
	char *stats;
	int help;
};

enum {
	SFS_KEY_HELP,
	SFS_KEY_DEFAULT_PERMISSIONS,
};

static const struct fuse_opt sfs_optspec[] = {
	{ "--config=%s", offsetof(struct sfs_opts, config), 0 },
	{ "config=%s", offsetof(struct sfs_opts, config), 0 },
	{ "--stats=%s", offsetof(struct sfs_opts, stats), 0 },
	{ "stats=%s", offsetof(struct sfs_opts, stats), 0 },
	FUSE_OPT_KEY("-h", SFS_KEY_HELP),
	FUSE_OPT_KEY("--help", SFS_KEY_HELP),
	FUSE_OPT_KEY("default_permissions", SFS_KEY_DEFAULT_PERMISSIONS),
	FUSE_OPT_END
};

static void sfs_usage(const char *prog)
{
	fprintf(stderr,
		"usage: %s BACKING_DIR MOUNTPOINT [-f] [-o fuse options]\n"
		"          [--config=FILE] [--stats=FILE]\n"
		"\n"
		"    --config=FILE  latency/fault settings, re-read on change\n"
		"    --stats=FILE   per-operation call counts, written on\n"
		"                   SIGUSR1 and at unmount\n"
		"Typical: -o allow_other,default_permissions (as root)\n\n",
		prog);
}

static int sfs_opt_proc(void *data, const char *arg, int key,
			struct fuse_args *outargs)
{
	struct sfs_opts *opts = data;

	(void)outargs;
	if (key == FUSE_OPT_KEY_NONOPT && sfs.backing == NULL) {
		/* first bare argument is ours, the second the mountpoint */
		sfs.backing = strdup(arg);
		return 0;
	}
	if (key == SFS_KEY_HELP) {
		opts->help = 1;
	}
	if (key == SFS_KEY_DEFAULT_PERMISSIONS) {
		sfs.kernel_checks = true;	/* and kept for libfuse */
	}
	return 1;
}

/* Absolute copy of path: fuse_main() may chdir("/") when daemonizing. */
static char *sfs_abspath(const char *path)
{
	char cwd[PATH_MAX];
	char *res = NULL;

	if (path == NULL || path[0] == '/') {
		return (path == NULL) ? NULL : strdup(path);
	}
	if (getcwd(cwd, sizeof(cwd)) == NULL ||
	    asprintf(&res, "%s/%s", cwd, path) == -1) {
		return NULL;
	}
	return res;
}

static int sfs_setup_ids(void)
{
	int n;

	sfs.own_uid = geteuid();
	sfs.own_gid = getegid();
	sfs.switch_creds = (sfs.own_uid == 0);
	if (!sfs.switch_creds) {
		fprintf(stderr, "slowfs: not root: every operation runs "
			"as uid %u\n", (unsigned int)sfs.own_uid);
		return 0;
	}
	n = getgroups(0, NULL);
	if (n < 0) {
		return -1;
	}
	sfs.own_groups = calloc(n + 1, sizeof(gid_t));
	if (sfs.own_groups == NULL) {
		return -1;
	}
	n = getgroups(n, sfs.own_groups);
	if (n < 0) {
		return -1;
	}
	sfs.num_own_groups = n;
	return 0;
}

static int sfs_setup(const struct sfs_opts *opts)
{
	char *real = realpath(sfs.backing, NULL);

	if (real == NULL) {
		fprintf(stderr, "slowfs: %s: %s\n", sfs.backing,
			strerror(errno));
		return -1;
	}
	free(sfs.backing);
	sfs.backing = real;
	sfs.root_fd = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (sfs.root_fd == -1) {
		fprintf(stderr, "slowfs: %s: %s\n", real, strerror(errno));
		return -1;
	}
	sfs.config_path = sfs_abspath(opts->config);
	sfs.stats_path = sfs_abspath(opts->stats);
	if ((opts->config != NULL && sfs.config_path == NULL) ||
	    (opts->stats != NULL && sfs.stats_path == NULL) ||
	    sfs_setup_ids() != 0) {
		fprintf(stderr, "slowfs: setup failed: %s\n",
			strerror(errno));
		return -1;
	}
	/* creation modes come from the caller, never from our umask */
	umask(0);
	sfs.config = sfs_config_new();
	if (sfs.config == NULL) {
		return -1;
	}
	sfs_config_check();
	return 0;
}

int main(int argc, char *argv[])
{
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct sfs_opts opts = { 0 };
	sigset_t set;
	int ret;

	if (fuse_opt_parse(&args, &opts, sfs_optspec, sfs_opt_proc) != 0) {
		return 1;
	}
	if (opts.help) {
		sfs_usage(argv[0]);
		return fuse_main(args.argc, args.argv, &sfs_ops, NULL);
	}
	if (sfs.backing == NULL) {
		sfs_usage(argv[0]);
		return 1;
	}
	if (sfs_setup(&opts) != 0) {
		return 1;
	}
	/*
	 * Each blocked F_SETLKW holds a worker thread; libfuse's default of
	 * 10 is quickly used up. Inserted first, so "-o max_threads=N"
	 * given by the user still wins.
	 */
	if (fuse_opt_insert_arg(&args, 1, "-omax_threads=64") != 0) {
		return 1;
	}
	/* inherited by every thread: only the helper takes SIGUSR1 */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	ret = fuse_main(args.argc, args.argv, &sfs_ops, NULL);
	fuse_opt_free_args(&args);
	free(opts.config);
	free(opts.stats);
	return ret;
}
