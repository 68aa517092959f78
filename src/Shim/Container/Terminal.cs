using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>A terminal for the container's process (`process.terminal`), made the way runc makes
/// it: by the process itself, after it entered the container's mount namespace (the init after
/// pivot_root, exec-init after setns), so the pty lives in the container's own devpts instance
/// (`newinstance`), `/dev/pts/N` inside names it, and nothing of the host's devpts is exposed.
/// The slave becomes stdin, stdout, stderr and the controlling terminal (the process is a session
/// leader: spawned with POSIX_SPAWN_SETSID); the master goes to the supervisor over the sync
/// socket with SCM_RIGHTS ("pty" line) and is closed here, so the container never holds it.</summary>
public static class Terminal
{
    public const string PtyMessage = "pty";

    public static void Setup(IKernel k, FdHandle sync)
    {
        using var master = k.Open("/dev/ptmx", Libc.O_RDWR | Libc.O_NOCTTY, 0);
        using var peer = k.OpenPtyPeer(master);
        k.SetControllingTerminal(peer);
        for (var fd = 0; fd <= 2; fd++) k.Dup2(peer, fd);
        k.SendFd(sync, PtyMessage, master);
    }
}
