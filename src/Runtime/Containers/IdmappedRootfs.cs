using System.Runtime.InteropServices;
using CriRuntime.Interop;

namespace CriRuntime.Containers;

/// <summary>The overlay root of a container in a user namespace: the image's layers (lower dirs)
/// are idmapped mounts (mount_setattr MOUNT_ATTR_IDMAP, the pod's user namespace; overlayfs
/// itself cannot be idmapped, its layers can), so the image's files, owned by host root on disk,
/// are the namespace's root's inside and the shared snapshots are never chowned. The upper dir
/// is not idmapped (overlayfs makes its work dirs and copies up with the mounter's ids, host
/// root, which an idmapped upper could not represent): its root belongs to the namespace's
/// root (e.g. host 200000), and what the container writes is stored with its host ids, as
/// containerd's idmapped overlay snapshots do. The idmapped layers are attached at staging
/// directories only while the overlay is mounted (overlayfs keeps private clones of its
/// layers), then detached.</summary>
public static partial class IdmappedRootfs
{
    private const int OPEN_TREE_CLONE = 1, OPEN_TREE_CLOEXEC = 0x80000, AT_EMPTY_PATH = 0x1000, AT_FDCWD = -100;
    private const int MOVE_MOUNT_F_EMPTY_PATH = 4;
    private const ulong MOUNT_ATTR_IDMAP = 0x100000;
    private const long SYS_open_tree = 428, SYS_move_mount = 429, SYS_mount_setattr = 442;

    /// <param name="rootUid">Host uid (and <paramref name="rootGid"/> gid) of the namespace's root:
    /// the owner of the upper dir, the container's "/".</param>
    public static void Mount(IReadOnlyList<string> layers, string upper, string work, string target, string usernsPath, string stagingDir,
        uint rootUid, uint rootGid)
    {
        Directory.CreateDirectory(upper);
        if (Chown(upper, rootUid, rootGid) != 0) throw Errno.Last("chown", upper);
        using var userns = FdHandle.Open(usernsPath, Libc.O_RDONLY);
        var staged = new List<string>();
        try
        {
            foreach (var (layer, i) in layers.Select((l, i) => (l, i)))
            {
                var at = Path.Combine(stagingDir, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Directory.CreateDirectory(at);
                using var tree = CloneIdmapped(layer, userns);
                if (MoveMount(SYS_move_mount, tree.Fd, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) != 0) throw Errno.Last("move_mount", at);
                staged.Add(at);
            }
            RootfsMount.Mount(staged, upper, work, target);
        }
        finally
        {
            foreach (var at in staged) Libc.Umount2(at, Libc.MNT_DETACH);
            try { Directory.Delete(stagingDir, recursive: true); } catch (IOException) { }
        }
    }

    private static FdHandle CloneIdmapped(string path, FdHandle userns)
    {
        var fd = (int)OpenTree(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
        if (fd < 0) throw Errno.Last("open_tree(OPEN_TREE_CLONE)", path);
        var tree = new FdHandle(fd);
        Span<ulong> attr = [MOUNT_ATTR_IDMAP, 0, 0, (ulong)userns.Fd];
        unsafe
        {
            fixed (ulong* a = attr)
            {
                if (MountSetattr(SYS_mount_setattr, tree.Fd, "", AT_EMPTY_PATH, a, 32) != 0)
                {
                    var e = Errno.Last("mount_setattr(MOUNT_ATTR_IDMAP)", path);
                    tree.Dispose();
                    throw e;
                }
            }
        }
        return tree;
    }

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Chown(string path, uint uid, uint gid);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long OpenTree(long number, int dirfd, string path, int flags);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial long MountSetattr(long number, int dirfd, string path, int flags, ulong* attr, nuint size);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial long MoveMount(long number, int fromDirfd, string fromPath, int toDirfd, string toPath, int flags);
}
