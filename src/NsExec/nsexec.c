/* criruntime-nsexec: enters or creates a user namespace for a process that .NET cannot.
 *
 * unshare(CLONE_NEWUSER) and setns(userns) refuse a multi-threaded caller, and every .NET process
 * has threads; managed code must not run between fork and exec either. So the shim (and the
 * daemon, for a pod's namespaces) posix_spawn this single-threaded helper, which:
 *
 *   criruntime-nsexec [--sync-in FD] [--sync-out FD]            (both default to 4)
 *                     (--userns PATH | --new-userns) [--unshare HEXFLAGS]
 *                     (--hold | -- PROGRAM ARGS...)
 *
 *   1. --userns PATH: setns(2) into that user namespace (a pod's pinned one);
 *      --new-userns:  unshare(CLONE_NEWUSER), then writes "userns\n" on the sync channel and
 *      waits for "mapped\n": the caller, privileged in the parent namespace, writes
 *      /proc/PID/uid_map and gid_map in between (a process cannot map itself to host root).
 *   2. becomes root of the user namespace: setgroups(0), setresgid(0), setresuid(0) (the mapped
 *      ids, e.g. host 200000), keeping every capability in the namespace.
 *   3. unshares HEXFLAGS (CLONE_NEW* of mount, uts, ipc, net, pid...): made now, they are owned by
 *      the user namespace, so its root may mount proc and sysfs, set the hostname, etc.
 *   4. with CLONE_NEWPID, forks once more (clone(CLONE_PARENT): the child is the caller's child,
 *      so the caller reaps it and its PR_SET_PDEATHSIG ties to the caller) and the child is pid 1
 *      of the new namespace. Reports "init PID\n" (PID as the caller sees it) and exits; without a
 *      fork it reports "init self\n".
 *   5. --hold: waits for end of file on the sync channel and exits 0 (the daemon pins the
 *      namespaces of a pod through /proc/PID/ns/{user,net,...} meanwhile); otherwise execs PROGRAM.
 *
 * Every descriptor it was given stays open across the exec except the sync channel's (the
 * caller set up the program's descriptors). On failure it writes "error <what>: <strerror>\n" on
 * the sync channel, exits 1, and the program is never run. Nothing here allocates after step 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sync_in = 4, sync_out = 4;

static void say(const char *line) {
    size_t len = strlen(line), off = 0;
    while (off < len) {
        ssize_t n = write(sync_out, line + off, len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        off += (size_t)n;
    }
}

static int fail(const char *what) {
    char line[512];
    snprintf(line, sizeof line, "error %s: %s\n", what, strerror(errno));
    say(line);
    return 1;
}

/* Reads one line (without its newline) into buf; 0 at end of file or on error. */
static int hear(char *buf, size_t size) {
    size_t len = 0;
    while (len + 1 < size) {
        char c;
        ssize_t n = read(sync_in, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        if (c == '\n') break;
        buf[len++] = c;
    }
    buf[len] = 0;
    return 1;
}

static int usage(void) {
    fputs("usage: criruntime-nsexec [--sync-in FD] [--sync-out FD] (--userns PATH | --new-userns)\n"
          "                         [--unshare HEXFLAGS] (--hold | -- PROGRAM ARGS...)\n", stderr);
    return 2;
}

int main(int argc, char **argv) {
    const char *userns = NULL;
    int new_userns = 0, hold = 0;
    unsigned long flags = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) { i++; break; }
        if (strcmp(a, "--new-userns") == 0) new_userns = 1;
        else if (strcmp(a, "--hold") == 0) hold = 1;
        else if (i + 1 < argc && strcmp(a, "--userns") == 0) userns = argv[++i];
        else if (i + 1 < argc && strcmp(a, "--unshare") == 0) flags = strtoul(argv[++i], NULL, 16);
        else if (i + 1 < argc && strcmp(a, "--sync-in") == 0) sync_in = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(a, "--sync-out") == 0) sync_out = atoi(argv[++i]);
        else return usage();
    }
    char **program = argv + i;
    if ((userns != NULL) == new_userns || hold == (i < argc) || (flags & CLONE_NEWUSER)) return usage();
    if (fcntl(sync_in, F_GETFD) < 0 || fcntl(sync_out, F_GETFD) < 0) return usage();
    /* The program must not inherit the channel. */
    fcntl(sync_in, F_SETFD, FD_CLOEXEC);
    fcntl(sync_out, F_SETFD, FD_CLOEXEC);

    if (userns) {
        int fd = open(userns, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return fail(userns);
        if (setns(fd, CLONE_NEWUSER) != 0) return fail("setns(user)");
        close(fd);
    } else {
        if (unshare(CLONE_NEWUSER) != 0) return fail("unshare(CLONE_NEWUSER)");
        say("userns\n");
        char line[64];
        if (!hear(line, sizeof line) || strcmp(line, "mapped") != 0) {
            errno = ECANCELED;
            return fail("waiting for the id mappings");
        }
    }
    /* Root of the namespace: the ids the mappings give container id 0. Groups first, while
     * still allowed to change them. */
    if (setgroups(0, NULL) != 0) return fail("setgroups");
    if (setresgid(0, 0, 0) != 0) return fail("setresgid(0)");
    if (setresuid(0, 0, 0) != 0) return fail("setresuid(0)");

    if (flags && unshare((int)flags) != 0) return fail("unshare");

    if (flags & CLONE_NEWPID) {
        /* fork, but the child becomes the caller's child: the caller reaps the container. */
        long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
        if (pid < 0) return fail("clone(CLONE_PARENT)");
        if (pid > 0) {
            char line[64];
            snprintf(line, sizeof line, "init %ld\n", pid);
            say(line);
            return 0;
        }
        setsid(); /* as the spawned process was: the container's session leader */
    } else {
        say("init self\n");
    }

    if (hold) {
        char line[64];
        while (hear(line, sizeof line)) {}
        return 0;
    }
    execv(program[0], program);
    return fail(program[0]);
}
