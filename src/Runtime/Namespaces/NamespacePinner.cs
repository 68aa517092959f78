using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Interop;

namespace CriRuntime.Namespaces;

public enum NamespaceKind { Net, Ipc, Uts, Pid }

/// <summary>Creates namespaces that outlive every process in them, so a pod needs no pause process:
/// a dedicated thread unshares the namespace, configures it from the inside (hostname, sysctls)
/// and bind-mounts /proc/thread-self/ns/KIND onto a file; then the thread ends. The bind mount
/// keeps the namespace alive until it is unmounted. (containerd pkg/netns does the same.)</summary>
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
    public static void Pin(NamespaceKind kind, string path, Action? inside = null)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (File.Create(path)) { }
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                if (Libc.Unshare(Flag(kind)) != 0) throw Errno.Last($"unshare({kind})", path);
                inside?.Invoke();
                var source = $"/proc/self/task/{Libc.Gettid()}/ns/{ProcName(kind)}";
                if (Libc.Mount(source, path, null, Libc.MS_BIND, null) != 0) throw Errno.Last($"bind mount {source} on", path);
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
    public static void PinExisting(string source, string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using (File.Create(path)) { }
        if (Libc.Mount(source, path, null, Libc.MS_BIND, null) == 0) return;
        var error = Errno.Last($"bind mount {source} on", path);
        TryDelete(path);
        throw error;
    }

    /// <summary>Runs <paramref name="action"/> on a thread that joined the namespace pinned at
    /// <paramref name="path"/> (e.g. to write per-namespace sysctls).</summary>
    public static void RunIn(NamespaceKind kind, string path, Action action)
    {
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try
            {
                using var fd = FdHandle.Open(path, Libc.O_RDONLY);
                if (Libc.Setns(fd.Fd, Flag(kind)) != 0) throw Errno.Last($"setns({kind})", path);
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
    public static void Unpin(string path)
    {
        if (Libc.FileType(path) is null) return;
        if (Libc.Umount2(path, Libc.MNT_DETACH) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != 22 /* EINVAL: not a mount point (already unmounted) */ && errno != 2)
                throw Errno.Exception("umount", path, errno);
        }
        TryDelete(path);
    }

    /// <summary>True when <paramref name="path"/> is a live pin (a mounted nsfs file).</summary>
    public static bool IsPinned(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == path);

    public static void SetHostname(string hostname)
    {
        var bytes = Encoding.UTF8.GetBytes(hostname);
        unsafe
        {
            fixed (byte* p = bytes)
                Errno.Check(Libc.Sethostname(p, (nuint)bytes.Length), "sethostname", hostname);
        }
    }

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
