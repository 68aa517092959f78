/* criruntime-pod-init: pid 1 of a pod's shared pid namespace (CRI NamespaceMode POD).
 *
 * A pid namespace dies with its pid 1, so a pod whose containers share one needs a pid 1 that
 * lives as long as the pod rather than its first container. This is it, and all it does:
 *
 *   criruntime-pod-init POD_ID STATE_DIR [USERNS]
 *
 * unshares a new pid namespace, forks the pod init into it (pid 1 there), prints the init's
 * host pid on stdout and exits 0. POD_ID and STATE_DIR are not used; they are in the init's
 * cmdline so the daemon can tell its own pod init from a process that reused the pid (and find
 * the inits of pods it never recorded after a crash). With USERNS (the pod's pinned user
 * namespace, userns_options POD) it first joins that namespace and becomes its root, so the pid
 * namespace is owned by it: the containers' root, root only there, may then mount their /proc.
 * (Single-threaded, so it may setns(CLONE_NEWUSER), which the daemon cannot.) The init, in its own session with stdio on /dev/null
 * and no other descriptor, reaps the orphans the pod's containers leave it and exits 0 on
 * SIGTERM or SIGINT; everything else is ignored (SIGKILL from the daemon still ends it). When it
 * exits, the kernel kills every process left in the namespace.
 *
 * Plain C rather than the NativeAOT shim: one per pod, for the pod's whole life, so it should
 * cost next to nothing (a few hundred KiB RSS, mostly shared libc pages). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void no_op(int sig) { (void)sig; }

static int fail(const char *what) {
    fprintf(stderr, "criruntime-pod-init: %s: %s\n", what, strerror(errno));
    return 1;
}

static int pod_init(const sigset_t *waited) {
    setsid();
    if (chdir("/") != 0) return 1;
    int null = open("/dev/null", O_RDWR);
    if (null < 0) return 1;
    dup2(null, 0);
    dup2(null, 1); /* the daemon reads the launcher's stdout to its end: we must not hold it */
    dup2(null, 2);
    syscall(SYS_close_range, 3U, ~0U, 0U);
    for (;;) {
        int sig = sigwaitinfo(waited, NULL);
        if (sig < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (sig != SIGCHLD) return 0; /* SIGTERM, SIGINT: the pod is stopping */
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
}

int main(int argc, char **argv) {
    if (argc != 3 && argc != 4) {
        fputs("usage: criruntime-pod-init POD_ID STATE_DIR [USERNS]\n", stderr);
        return 2;
    }
    /* Set before fork, so no signal can reach the init before it waits for them. Pid 1 of a
     * namespace drops signals left at SIG_DFL, even blocked ones once unblocked, so the waited
     * signals get a (never run) handler too. */
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGCHLD);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGINT);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = no_op;
    sigemptyset(&sa.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP && !sigismember(&waited, s)) signal(s, SIG_IGN);
    sigaction(SIGCHLD, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (sigprocmask(SIG_SETMASK, &waited, NULL) != 0) return fail("sigprocmask");

    if (argc == 4) {
        int fd = open(argv[3], O_RDONLY | O_CLOEXEC);
        if (fd < 0) return fail(argv[3]);
        if (setns(fd, CLONE_NEWUSER) != 0) return fail("setns(user)");
        close(fd);
        /* Root of the user namespace (host root is unmapped there): groups first, while allowed. */
        if (setgroups(0, NULL) != 0) return fail("setgroups");
        if (setresgid(0, 0, 0) != 0) return fail("setresgid(0)");
        if (setresuid(0, 0, 0) != 0) return fail("setresuid(0)");
    }
    if (unshare(CLONE_NEWPID) != 0) return fail("unshare(CLONE_NEWPID)");
    pid_t pid = fork();
    if (pid < 0) return fail("fork");
    if (pid == 0) return pod_init(&waited);
    printf("%d\n", (int)pid);
    return fflush(stdout) == 0 ? 0 : fail("write stdout");
}
