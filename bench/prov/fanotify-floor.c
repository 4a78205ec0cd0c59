/*
 * A floor for a fanotify capture, for bench/prov/run.sh: what observing a command costs with
 * nothing of asl-capture around it.
 *
 *   fanotify-floor ns|read COMMAND
 *
 * Both modes run COMMAND with `sh -c` in its own copy of the mount tree (a slave of the
 * original, as asl-capture's command gets). `ns` stops there (the cost of the namespace
 * alone). `read` also marks the copy of the root mount (where the benchmark's files are; the
 * other mounts asl-capture marks see no events in it) with the events asl-capture asks for
 * (open, open for exec, close after write, reported by directory handle and name), and reads
 * the queue every 10 ms until the command ends under SCHED_IDLE, as asl-capture's observer
 * on an idle machine, then once more under the normal policy; the events are counted and dropped, and the
 * group is closed by a child, as asl-capture's is. No path is resolved, nothing is sorted,
 * encoded or stored.
 *
 * Build: cc -O2 -o fanotify-floor fanotify-floor.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char buf[256 * 1024];

/* Reads every queued event; returns the bytes read, or -1 on an error. */
static long drain(int fan)
{
	long total = 0;
	for (;;) {
		ssize_t n = read(fan, buf, sizeof buf);
		if (n > 0) {
			total += n;
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else if (n < 0 && errno != EAGAIN) {
			perror("fanotify-floor: reading events");
			return -1;
		} else {
			return total;
		}
	}
}

/*
 * Closes the group without waiting: the last close of a group that has marks waits for the
 * kernel's mark reaper (an SRCU grace period, 0.1 to over 10 ms). As asl-capture does, a
 * child takes the last reference and closes it after this process has let go.
 */
static void close_elsewhere(int fan)
{
	int p[2];
	if (pipe(p)) {
		close(fan);
		return;
	}
	pid_t c = fork();
	if (c == 0) {
		/* Nothing of the caller's output is held open past its exit. */
		int null = open("/dev/null", O_RDWR);
		dup2(null, 1);
		dup2(null, 2);
		close(p[1]);
		char b;
		while (read(p[0], &b, 1) > 0)
			;
		close(fan);
		_exit(0);
	}
	close(p[0]);
	close(fan);
	close(p[1]);
}

/* Ends the command on an error of ours: no command is left running unobserved. */
static int fail_with_child(pid_t pid, const char *what)
{
	perror(what);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "ns") && strcmp(argv[1], "read"))) {
		fprintf(stderr, "usage: fanotify-floor ns|read COMMAND\n");
		return 2;
	}
	int observe = !strcmp(argv[1], "read");
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL)) {
		perror("fanotify-floor: own mount tree");
		return 1;
	}
	int fan = -1;
	if (observe) {
		fan = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK |
				    FAN_UNLIMITED_QUEUE | FAN_REPORT_DFID_NAME, O_RDONLY);
		if (fan < 0 || fanotify_mark(fan, FAN_MARK_ADD | FAN_MARK_MOUNT,
					     FAN_OPEN | FAN_OPEN_EXEC | FAN_CLOSE_WRITE,
					     AT_FDCWD, "/")) {
			perror("fanotify-floor: fanotify");
			return 1;
		}
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("fanotify-floor: fork");
		return 1;
	}
	if (pid == 0) {
		execl("/bin/sh", "sh", "-c", argv[2], (char *)NULL);
		_exit(127);
	}
	long bytes = 0;
	if (observe) {
		int pidfd = syscall(SYS_pidfd_open, pid, 0);
		if (pidfd < 0)
			return fail_with_child(pid, "fanotify-floor: pidfd_open");
		struct sched_param idle = { 0 };
		if (sched_setscheduler(0, SCHED_IDLE, &idle))
			return fail_with_child(pid, "fanotify-floor: SCHED_IDLE");
		for (;;) {
			struct pollfd p = { .fd = pidfd, .events = POLLIN };
			int r = poll(&p, 1, 10);
			if (r < 0 && errno != EINTR)
				return fail_with_child(pid, "fanotify-floor: poll");
			long n = drain(fan);
			if (n < 0)
				return fail_with_child(pid, "fanotify-floor: reading events");
			bytes += n;
			if (r > 0)
				break;
		}
		/* Back to normal at the command's end, as asl-capture's watchdog does. */
		if (sched_setscheduler(0, SCHED_OTHER, &idle))
			return fail_with_child(pid, "fanotify-floor: SCHED_OTHER");
	}
	int status;
	if (waitpid(pid, &status, 0) < 0) {
		perror("fanotify-floor: waitpid");
		return 1;
	}
	if (observe) {
		long n = drain(fan);
		if (n < 0)
			return 1;
		bytes += n;
		if (bytes == 0) {
			fprintf(stderr, "fanotify-floor: no event was read\n");
			return 1;
		}
		close_elsewhere(fan);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
