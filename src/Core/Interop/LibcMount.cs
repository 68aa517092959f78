using System.Runtime.InteropServices;

namespace CriRuntime.Interop;

/// <summary>Mounts and namespaces: mount(2), the detached-mount syscalls (open_tree, move_mount,
/// mount_setattr), pivot_root, setns/unshare, host and domain names.</summary>
internal static unsafe partial class Libc
{
    public const ulong MS_NOSUID = 2, MS_NODEV = 4, MS_NOEXEC = 8, MS_BIND = 4096, MS_PRIVATE = 1 << 18;
    public const int MNT_DETACH = 2;
    public const int CLONE_FS = 0x00000200, CLONE_NEWNS = 0x00020000, CLONE_NEWCGROUP = 0x02000000, CLONE_NEWUTS = 0x04000000, CLONE_NEWIPC = 0x08000000,
        CLONE_NEWUSER = 0x10000000, CLONE_NEWPID = 0x20000000, CLONE_NEWNET = 0x40000000;
    // The same on every architecture but pivot_root, which is x86_64's number.
    public const long SYS_pivot_root = 155, SYS_pidfd_send_signal = 424, SYS_open_tree = 428, SYS_move_mount = 429,
        SYS_pidfd_open = 434, SYS_pidfd_getfd = 438, SYS_mount_setattr = 442;
    public const int OPEN_TREE_CLONE = 1, OPEN_TREE_CLOEXEC = 0x80000;
    public const int MOVE_MOUNT_F_EMPTY_PATH = 4, MOVE_MOUNT_T_EMPTY_PATH = 0x40;
    public const ulong MOUNT_ATTR_RDONLY = 0x1, MOUNT_ATTR_NOSUID = 0x2, MOUNT_ATTR_NODEV = 0x4, MOUNT_ATTR_NOEXEC = 0x8,
        MOUNT_ATTR_IDMAP = 0x100000;

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Mount(string? source, string target, string? fstype, ulong flags, string? data);
    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Umount2(string target, int flags);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallPivotRoot(long number, string newRoot, string putOld);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallMountSetattr(long number, int dirfd, string path, int flags, ulong* attr, nuint size);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallOpenTree(long number, int dirfd, string path, int flags);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallMoveMount(long number, int fromDirfd, string fromPath, int toDirfd, string toPath, int flags);
    [LibraryImport("libc", EntryPoint = "sethostname", SetLastError = true)]
    public static partial int Sethostname(byte* name, nuint len);
    [LibraryImport("libc", EntryPoint = "setdomainname", SetLastError = true)]
    public static partial int Setdomainname(byte* name, nuint len);
    [LibraryImport("libc", EntryPoint = "setns", SetLastError = true)]
    public static partial int Setns(int fd, int nstype);
    [LibraryImport("libc", EntryPoint = "unshare", SetLastError = true)]
    public static partial int Unshare(int flags);

    /// <summary>A detached copy of the mount at <paramref name="path"/> (open_tree OPEN_TREE_CLONE),
    /// with its submounts when <paramref name="recursive"/>, and idmapped to the user namespace
    /// <paramref name="idmapTo"/> when given (mount_setattr MOUNT_ATTR_IDMAP). The one
    /// implementation of idmapped mounts: the daemon's idmapped container layers and the shim's
    /// idmapped bind mounts both come here.</summary>
    public static FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo)
    {
        var fd = (int)SyscallOpenTree(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
        if (fd < 0) throw Errno.Last("open_tree(OPEN_TREE_CLONE)", path);
        var tree = new FdHandle(fd);
        if (idmapTo is null) return tree;
        // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
        var attr = stackalloc ulong[4] { MOUNT_ATTR_IDMAP, 0, 0, (ulong)idmapTo.Fd };
        if (SyscallMountSetattr(SYS_mount_setattr, tree.Fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), attr, 32) != 0)
        {
            var e = Errno.Last("mount_setattr(MOUNT_ATTR_IDMAP)", path);
            tree.Dispose();
            throw e;
        }
        return tree;
    }

    /// <summary>Sets MOUNT_ATTR_* flags on a detached mount (mount_setattr).</summary>
    public static void SetMountAttributes(FdHandle tree, ulong attrSet, string what)
    {
        var attr = stackalloc ulong[4] { attrSet, 0, 0, 0 };
        if (SyscallMountSetattr(SYS_mount_setattr, tree.Fd, "", AT_EMPTY_PATH, attr, 32) != 0)
            throw Errno.Last("mount_setattr", what);
    }

    /// <summary>Attaches a detached mount at <paramref name="target"/>; "." is the current
    /// directory itself (after an fchdir to a directory descriptor).</summary>
    public static void MoveMount(FdHandle tree, string target)
    {
        var rc = target == "."
            ? SyscallMoveMount(SYS_move_mount, tree.Fd, "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
            : SyscallMoveMount(SYS_move_mount, tree.Fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
        if (rc != 0) throw Errno.Last("move_mount", target);
    }
}
