using System.Runtime.InteropServices;

namespace CriRuntime.Shim.Kernel;

/// <summary>Detached mounts (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount) for
/// containers in a user namespace: see src/Shim/Container/UserNamespaces.cs.</summary>
public sealed unsafe partial class LinuxKernel
{
    private const int OPEN_TREE_CLONE = 1, OPEN_TREE_CLOEXEC = 0x80000, AT_EMPTY_PATH = 0x1000, AT_RECURSIVE = 0x8000;
    private const int MOVE_MOUNT_F_EMPTY_PATH = 4, MOVE_MOUNT_T_EMPTY_PATH = 0x40;
    private const ulong MOUNT_ATTR_IDMAP = 0x100000;
    private const long SYS_open_tree = 428, SYS_move_mount = 429;
    private const int AT_FDCWD = -100;

    public FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo)
    {
        var fd = (int)Native.SyscallOpenTree(SYS_open_tree, AT_FDCWD, path,
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (recursive ? AT_RECURSIVE : 0));
        if (fd < 0) throw KernelException.Last("open_tree(OPEN_TREE_CLONE)", path);
        var tree = new FdHandle(fd);
        if (idmapTo is null) return tree;
        // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
        var attr = stackalloc ulong[4] { MOUNT_ATTR_IDMAP, 0, 0, (ulong)idmapTo.Fd };
        if (Native.SyscallMountSetattr(Native.SYS_mount_setattr, tree.Fd, "", AT_EMPTY_PATH | (recursive ? AT_RECURSIVE : 0), attr, 32) != 0)
        {
            var e = KernelException.Last("mount_setattr(MOUNT_ATTR_IDMAP)", path);
            tree.Dispose();
            throw e;
        }
        return tree;
    }

    public void MoveMount(FdHandle tree, string target)
    {
        var rc = target == "."
            ? Native.SyscallMoveMount(SYS_move_mount, tree.Fd, "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)
            : Native.SyscallMoveMount(SYS_move_mount, tree.Fd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH);
        if (rc != 0) throw KernelException.Last("move_mount", target);
    }

    public void Fchdir(FdHandle dir)
    {
        if (Native.Fchdir(dir.Fd) != 0) throw KernelException.Last("fchdir", $"fd {dir.Fd}");
    }
}

internal static unsafe partial class Native
{
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallOpenTree(long number, int dirfd, string path, int flags);
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial long SyscallMoveMount(long number, int fromDirfd, string fromPath, int toDirfd, string toPath, int flags);
    [LibraryImport("libc", EntryPoint = "fchdir", SetLastError = true)]
    public static partial int Fchdir(int fd);
}
