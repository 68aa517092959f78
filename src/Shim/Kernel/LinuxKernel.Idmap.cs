using CriRuntime.Interop;

namespace CriRuntime.Shim.Kernel;

/// <summary>Detached mounts (open_tree, mount_setattr MOUNT_ATTR_IDMAP, move_mount) for
/// containers in a user namespace: see src/Shim/Container/UserNamespaces.cs. The one
/// implementation is Core's (src/Core/Interop/LibcMount.cs), shared with the daemon's idmapped
/// container layers.</summary>
public sealed partial class LinuxKernel
{
    public FdHandle CloneMount(string path, bool recursive, FdHandle? idmapTo) => Libc.CloneMount(path, recursive, idmapTo);

    public void MoveMount(FdHandle tree, string target) => Libc.MoveMount(tree, target);

    public void Fchdir(FdHandle dir) => Errno.Check(Libc.Fchdir(dir.Fd), "fchdir", $"fd {dir.Fd}");
}
