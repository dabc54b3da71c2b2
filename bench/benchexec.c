/* benchexec [-c CGROUP_PROCS] [-n MOUNT_NS] [-m FD] -- PROGRAM [ARGS...]
 *
 * The harness's launch helper (static, a few pages): optionally move itself into a cgroup (so
 * the whole tree of PROGRAM is charged there from its first page) and/or enter a mount
 * namespace, then exec PROGRAM.  With -m, fork first, wait4() for PROGRAM and write its
 * ru_maxrss (KiB: the largest process of its reaped tree) to FD; the fork happens here, in a
 * tiny process, because a child inherits its parent's RSS high-water mark across exec.
 * Used for the memory figures of every tool, and for crun's timing (crun must run in a mount
 * namespace with only cgroup2 mounted).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int i = 1, mfd = -1;

	for (; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0) {
			i++;
			break;
		}
		if (i + 1 >= argc)
			return 125;
		if (strcmp(argv[i], "-c") == 0) {
			int fd = open(argv[++i], O_WRONLY);
			if (fd < 0 || write(fd, "0", 1) != 1) {
				perror(argv[i]);
				return 125;
			}
			close(fd);
		} else if (strcmp(argv[i], "-n") == 0) {
			int fd = open(argv[++i], O_RDONLY | O_CLOEXEC);
			if (fd < 0 || setns(fd, CLONE_NEWNS) != 0) {
				perror(argv[i]);
				return 125;
			}
			close(fd);
		} else if (strcmp(argv[i], "-m") == 0) {
			mfd = atoi(argv[++i]);
		} else {
			return 125;
		}
	}
	if (i >= argc)
		return 125;
	if (mfd >= 0) {
		struct rusage ru;
		int status;
		pid_t pid = fork();

		if (pid < 0)
			return 125;
		if (pid == 0) {
			close(mfd);
			execv(argv[i], argv + i);
			perror(argv[i]);
			_exit(127);
		}
		if (wait4(pid, &status, 0, &ru) < 0)
			return 125;
		dprintf(mfd, "%ld\n", ru.ru_maxrss);
		return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	}
	execv(argv[i], argv + i);
	perror(argv[i]);
	return 127;
}
