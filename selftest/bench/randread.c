/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * One benchmark client: COUNT random 4 KiB reads of one file over SMB3,
 * through libsmbclient.  A C client, because eight Python clients took
 * three quarters of the benchmark machine's CPU and became what the
 * workload measured instead of the server.
 *
 * Usage: randread PORT USER PASSWORD SHARE FILE COUNT SEED
 * Prints the seconds the reads took (connection set-up excluded).
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
#include <stdbool.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libsmbclient.h>

#define BLOCK 4096

/* xorshift64*: the same sequence for the same seed on every run */
static uint64_t next_random(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

static double now_seconds(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

struct login {
	const char *user;
	const char *password;
};

static void give_login(SMBCCTX *ctx, const char *server, const char *share,
		       char *workgroup, int wglen, char *user, int userlen,
		       char *password, int pwlen)
{
	const struct login *l = smbc_getOptionUserData(ctx);

	snprintf(user, userlen, "%s", l->user);
	snprintf(password, pwlen, "%s", l->password);
}

static SMBCCTX *connect_context(const char *port, struct login *l)
{
	SMBCCTX *ctx = smbc_new_context();

	if (ctx == NULL) {
		return NULL;
	}
	smbc_setDebug(ctx, getenv("RANDREAD_DEBUG") ? 5 : 0);
	smbc_setPort(ctx, (uint16_t)atoi(port));
	smbc_setOptionProtocols(ctx, "SMB3", "SMB3");
	smbc_setOptionNoAutoAnonymousLogin(ctx, true);
	smbc_setOptionUserData(ctx, l);
	smbc_setFunctionAuthDataWithContext(ctx, give_login);
	if (smbc_init_context(ctx) == NULL) {
		smbc_free_context(ctx, 1);
		return NULL;
	}
	return ctx;
}

static int read_randomly(SMBCCTX *ctx, SMBCFILE *f, off_t size,
			 long count, uint64_t seed)
{
	smbc_lseek_fn seek = smbc_getFunctionLseek(ctx);
	smbc_read_fn rd = smbc_getFunctionRead(ctx);
	off_t blocks = size / BLOCK > 0 ? size / BLOCK : 1;
	char buf[BLOCK];
	long i;

	for (i = 0; i < count; i++) {
		off_t off = (off_t)(next_random(&seed) % blocks) * BLOCK;
		ssize_t n;

		if (seek(ctx, f, off, SEEK_SET) != off) {
			fprintf(stderr, "randread: seek: %s\n",
				strerror(errno));
			return -1;
		}
		n = rd(ctx, f, buf, sizeof(buf));
		if (n != (ssize_t)sizeof(buf) && off + n != size) {
			fprintf(stderr, "randread: read at %lld: %zd (%s)\n",
				(long long)off, n, strerror(errno));
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	SMBCCTX *ctx = NULL;
	SMBCFILE *f = NULL;
	struct login login;
	struct stat st;
	char url[1024];
	double start;
	int ret;

	if (argc != 8) {
		fprintf(stderr, "usage: randread PORT USER PASSWORD SHARE "
			"FILE COUNT SEED\n");
		return 2;
	}
	login = (struct login) { .user = argv[2], .password = argv[3] };
	ctx = connect_context(argv[1], &login);
	if (ctx == NULL) {
		fprintf(stderr, "randread: no context: %s\n", strerror(errno));
		return 1;
	}
	snprintf(url, sizeof(url), "smb://127.0.0.1/%s/%s", argv[4], argv[5]);
	f = smbc_getFunctionOpen(ctx)(ctx, url, O_RDONLY, 0);
	if (f == NULL || smbc_getFunctionFstat(ctx)(ctx, f, &st) != 0) {
		fprintf(stderr, "randread: %s: %s\n", url, strerror(errno));
		smbc_free_context(ctx, 1);
		return 1;
	}
	start = now_seconds();
	ret = read_randomly(ctx, f, st.st_size, atol(argv[6]),
			    (uint64_t)atoll(argv[7]) * 2 + 1);
	printf("%.6f\n", now_seconds() - start);
	smbc_getFunctionClose(ctx)(ctx, f);
	smbc_free_context(ctx, 1);
	return ret == 0 ? 0 : 1;
}
