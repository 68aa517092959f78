/* The benchmark's pod sandbox image for containerd (registry.k8s.io/pause is unreachable here):
 * holds the pod's namespaces, exits on SIGINT/SIGTERM, reaps orphans. Built static by build-pause.sh. */
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, 0, WNOHANG) > 0) {} }

int main(void)
{
    signal(SIGINT, quit);
    signal(SIGTERM, quit);
    signal(SIGCHLD, reap);
    for (;;) pause();
}
