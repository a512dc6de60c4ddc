/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * LD_PRELOAD shim for test clients that can only connect to port 445
 * (Samba 4.22's Python libsmb.Conn has no port argument): a connect() to
 * TCP port 445 goes to $ASVFS_SMB_PORT instead, where the test's private
 * smbd listens.  Test-only; nothing else is changed.
 *
 * Copyright (C) samba-async-vfs authors
 *
 * This program is free software; you can redistribute it and/or modify
 * it under the terms of the GNU General Public License as published by
 * the Free Software Foundation; either version 3 of the License, or
 * (at your option) any later version.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SMB_PORT 445

typedef int (*connect_fn)(int, const struct sockaddr *, socklen_t);

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	connect_fn next = (connect_fn)dlsym(RTLD_NEXT, "connect");
	const char *port = getenv("ASVFS_SMB_PORT");
	struct sockaddr_storage copy;

	if (port == NULL || addr == NULL || len > sizeof(copy)) {
		return next(fd, addr, len);
	}
	memcpy(&copy, addr, len);
	if (copy.ss_family == AF_INET &&
	    ntohs(((struct sockaddr_in *)&copy)->sin_port) == SMB_PORT) {
		((struct sockaddr_in *)&copy)->sin_port = htons(atoi(port));
	} else if (copy.ss_family == AF_INET6 &&
		   ntohs(((struct sockaddr_in6 *)&copy)->sin6_port) ==
		   SMB_PORT) {
		((struct sockaddr_in6 *)&copy)->sin6_port = htons(atoi(port));
	}
	return next(fd, (const struct sockaddr *)&copy, len);
}
