using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.PartitionView;

/// <summary>After lxcfs was replaced, a running container's view files still refer to the dead
/// FUSE mount ("Transport endpoint is not connected"). This puts fresh ones in their place, inside
/// the container's own mount namespace, without the container noticing more than a reread:
/// read-only clones of the new lxcfs mount's files are made on the host (open_tree), then a
/// thread of its own (unshared file system context) joins the container's mount namespace and
/// root, detaches each stale mount and attaches the clone (move_mount). The thread ends there,
/// never to run anything else.</summary>
public static class ProcViewRemount
{
    private const ulong ReadOnlyAttrs = Libc.MOUNT_ATTR_RDONLY | Libc.MOUNT_ATTR_NOSUID | Libc.MOUNT_ATTR_NODEV | Libc.MOUNT_ATTR_NOEXEC;

    /// <param name="pid">The container's init, as the host sees it.</param>
    /// <param name="files">The view's files the container has, relative to both roots ("proc/meminfo").</param>
    /// <exception cref="KernelException">A step failed (naming it); files already replaced stay replaced.</exception>
    public static void Into(int pid, string lxcfsDir, IReadOnlyList<string> files, IHostKernel kernel)
    {
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try { Run(pid, lxcfsDir, files, kernel); }
            catch (Exception e) { failure = e; }
        }, 256 * 1024) { IsBackground = true, Name = $"remount {pid}" };
        thread.Start();
        thread.Join();
        if (failure is not null) throw failure;
    }

    private static void Run(int pid, string lxcfsDir, IReadOnlyList<string> files, IHostKernel k)
    {
        var trees = new List<(string File, FdHandle Tree)>();
        try
        {
            foreach (var file in files)
            {
                var tree = k.CloneMount(Path.Combine(lxcfsDir, file), recursive: false, idmapTo: null);
                trees.Add((file, tree));
                k.SetMountAttributes(tree, ReadOnlyAttrs, Path.Combine(lxcfsDir, file));
            }
            using var root = k.Open($"/proc/{pid}/root", Libc.O_RDONLY | Libc.O_DIRECTORY | Libc.O_CLOEXEC);
            k.Unshare(Libc.CLONE_FS);
            k.Setns($"/proc/{pid}/ns/mnt", Libc.CLONE_NEWNS);
            k.ChrootTo(root, $"/proc/{pid}/root");
            foreach (var (file, tree) in trees)
            {
                var dest = "/" + file;
                try { k.Umount2(dest, Libc.MNT_DETACH); }
                catch (KernelException e) when (e.HResult == Errno.EINVAL) { } // nothing mounted there (any more)
                k.MoveMount(tree, dest);
            }
        }
        finally
        {
            foreach (var (_, tree) in trees) tree.Dispose();
        }
    }
}
