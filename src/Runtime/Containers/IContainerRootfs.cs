namespace CriRuntime.Containers;

/// <summary>A container's root file system as the container controller mounts it: the image's
/// layers under the container's writable layer, idmapped for a pod with its own user namespace.
/// <see cref="HostRootfs"/> mounts for real; unit tests use a fake.</summary>
public interface IContainerRootfs
{
    /// <param name="layers">Bottom layer first, as the image lists them.</param>
    void Mount(IReadOnlyList<string> layers, string upper, string work, string target);
    /// <param name="rootUid">Host uid (and <paramref name="rootGid"/> gid) of the user namespace's root.</param>
    void MountIdmapped(IReadOnlyList<string> layers, string upper, string work, string target, string usernsPath, string stagingDir, uint rootUid, uint rootGid);
    /// <summary>Idempotent: a path that is not mounted is fine.</summary>
    void Unmount(string target);
}

/// <summary>Overlay mounts on this host (<see cref="RootfsMount"/>, <see cref="IdmappedRootfs"/>).</summary>
public sealed class HostRootfs : IContainerRootfs
{
    public void Mount(IReadOnlyList<string> layers, string upper, string work, string target) => RootfsMount.Mount(layers, upper, work, target);
    public void MountIdmapped(IReadOnlyList<string> layers, string upper, string work, string target, string usernsPath, string stagingDir, uint rootUid, uint rootGid) =>
        IdmappedRootfs.Mount(layers, upper, work, target, usernsPath, stagingDir, rootUid, rootGid);
    public void Unmount(string target) => RootfsMount.Unmount(target);
}

public static class ContainerRootfsExtensions
{
    /// <summary>The mounts in a container's bundle, each idempotently: the tmpfs content of a
    /// restore (<see cref="Checkpoint.TmpfsContent"/>), then the rootfs. At the recorded exit and,
    /// when that did not do it, at RemoveContainer.</summary>
    public static void UnmountBundle(this IContainerRootfs rootfs, string bundleDir)
    {
        Checkpoint.TmpfsContent.Release(Kernel.HostKernel.Instance, bundleDir);
        rootfs.Unmount(Path.Combine(bundleDir, "rootfs"));
    }
}
