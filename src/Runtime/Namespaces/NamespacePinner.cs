using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Namespaces;

public enum NamespaceKind { Net, Ipc, Uts, Pid }

/// <summary>Creates namespaces that outlive every process in them, so a pod needs no pause process:
/// a dedicated thread unshares the namespace, configures it from the inside (hostname, sysctls)
/// and bind-mounts /proc/thread-self/ns/KIND onto a file; then the thread ends. The bind mount
/// keeps the namespace alive until it is unmounted. (containerd pkg/netns does the same.)
/// Every kernel call goes through <see cref="IHostKernel"/> (the real one when none is given).</summary>
public static class NamespacePinner
{
    public static int Flag(NamespaceKind kind) => kind switch
    {
        NamespaceKind.Net => Libc.CLONE_NEWNET,
        NamespaceKind.Ipc => Libc.CLONE_NEWIPC,
        NamespaceKind.Uts => Libc.CLONE_NEWUTS,
        NamespaceKind.Pid => Libc.CLONE_NEWPID,
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    private static string ProcName(NamespaceKind kind) => kind switch
    {
        NamespaceKind.Net => "net",
        NamespaceKind.Ipc => "ipc",
        NamespaceKind.Uts => "uts",
        // A new pid namespace applies to the thread's future children, not the thread itself.
        NamespaceKind.Pid => "pid_for_children",
        _ => throw new ArgumentOutOfRangeException(nameof(kind)),
    };

    /// <summary>Creates a new namespace of <paramref name="kind"/>, runs <paramref name="inside"/> in it
    /// (on the creating thread) and pins it at <paramref name="path"/>. On failure nothing is left.</summary>
    public static void Pin(NamespaceKind kind, string path, Action? inside = null, IHostKernel? kernel = null)
    {
        var k = kernel ?? HostKernel.Instance;
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (File.Create(path)) { }
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                k.Unshare(Flag(kind));
                inside?.Invoke();
                var source = $"/proc/self/task/{k.Gettid()}/ns/{ProcName(kind)}";
                k.Mount(source, path, null, Libc.MS_BIND, null);
            }
            catch (Exception e)
            {
                error = e;
            }
            // The thread ends here; its namespaces go with it except the one now pinned.
        }, maxStackSize: 256 * 1024) { IsBackground = true, Name = $"ns-{kind}" };
        thread.Start();
        thread.Join();
        if (error is not null)
        {
            TryDelete(path);
            throw error;
        }
    }

    /// <summary>Pins the namespace at <paramref name="source"/> (e.g. /proc/PID/ns/pid of a process
    /// that made it) at <paramref name="path"/>, so it has a stable path independent of the pid.
    /// On failure nothing is left.</summary>
    public static void PinExisting(string source, string path, IHostKernel? kernel = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (File.Create(path)) { }
        try { (kernel ?? HostKernel.Instance).Mount(source, path, null, Libc.MS_BIND, null); }
        catch (KernelException)
        {
            TryDelete(path);
            throw;
        }
    }

    /// <summary>Runs <paramref name="action"/> on a thread that joined the namespace pinned at
    /// <paramref name="path"/> (e.g. to write per-namespace sysctls).</summary>
    public static void RunIn(NamespaceKind kind, string path, Action action, IHostKernel? kernel = null)
    {
        var k = kernel ?? HostKernel.Instance;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                k.Setns(path, Flag(kind));
                action();
            }
            catch (Exception e)
            {
                error = e;
            }
        }, maxStackSize: 256 * 1024) { IsBackground = true, Name = $"ns-{kind}-run" };
        thread.Start();
        thread.Join();
        if (error is not null) throw error;
    }

    /// <summary>Unpins a namespace: lazy unmount then remove the file. Missing is fine (idempotent).</summary>
    public static void Unpin(string path, IHostKernel? kernel = null)
    {
        var k = kernel ?? HostKernel.Instance;
        if (k.FileType(path) is null) return;
        try { k.Umount2(path, Libc.MNT_DETACH); }
        catch (KernelException e) when (e.Errno is Errno.EINVAL or Errno.ENOENT) { } // not a mount point (already unmounted); gone
        TryDelete(path);
    }

    /// <summary>True when <paramref name="path"/> is a live pin: a namespace file is mounted on
    /// it (statfs says nsfs; an unmounted pin is a plain file). One syscall, where reading
    /// mountinfo costs as much as the node has mounts (five per pod), for each pod of a stats list.</summary>
    public static bool IsPinned(string path, IHostKernel? kernel = null)
    {
        try { return (kernel ?? HostKernel.Instance).Statfs(path).Type == FsUsage.NsfsMagic; }
        catch (KernelException) { return false; } // gone
    }

    public static void SetHostname(string hostname, IHostKernel? kernel = null) => (kernel ?? HostKernel.Instance).Sethostname(hostname);

    /// <summary>Writes one sysctl through /proc/sys as seen from the calling thread's namespaces.</summary>
    public static void WriteSysctl(string key, string value)
    {
        var file = "/proc/sys/" + key.Replace('.', '/');
        File.WriteAllText(file, value);
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }
}
