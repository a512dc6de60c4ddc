/* SPDX-License-Identifier: GPL-3.0-or-later */
/*
 * samba-async-vfs: which process this is, without a system call.
 */
#include "asvfs_process.h"

#include <pthread.h>
#include <unistd.h>

static pid_t process_id;
static pthread_once_t process_id_once = PTHREAD_ONCE_INIT;

/*
 * fork() runs this in the child before fork() returns there, so no code
 * of the child sees the parent's id.  (glibc drops a library's fork
 * handlers when the library is unloaded.)
 */
static void process_id_forked(void)
{
	process_id = getpid();
}

static void process_id_init(void)
{
	process_id = getpid();
	if (pthread_atfork(NULL, NULL, process_id_forked) != 0) {
		/* without a handler a cached id could be a parent's */
		process_id = 0;
	}
}

pid_t asvfs_process_id(void)
{
	(void)pthread_once(&process_id_once, process_id_init);
	if (process_id == 0) {
		return getpid();
	}
	return process_id;
}
