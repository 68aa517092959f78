using CriRuntime.Interop;
using CriRuntime.Kernel;

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
/// layers), then detached. The idmapped clone itself is Core's (Libc.CloneMount, through
/// <see cref="IHostKernel"/>), the one the shim uses for idmapped bind mounts.</summary>
public static class IdmappedRootfs
{
    /// <param name="rootUid">Host uid (and <paramref name="rootGid"/> gid) of the namespace's root:
    /// the owner of the upper dir, the container's "/".</param>
    public static void Mount(IReadOnlyList<string> layers, string upper, string work, string target, string usernsPath, string stagingDir,
        uint rootUid, uint rootGid, IHostKernel? kernel = null)
    {
        var k = kernel ?? HostKernel.Instance;
        Directory.CreateDirectory(upper);
        k.Chown(upper, rootUid, rootGid);
        using var userns = k.Open(usernsPath, Libc.O_RDONLY);
        var staged = new List<string>();
        try
        {
            foreach (var (layer, i) in layers.Select((l, i) => (l, i)))
            {
                var at = Path.Combine(stagingDir, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Directory.CreateDirectory(at);
                using var tree = k.CloneMount(layer, recursive: false, idmapTo: userns);
                k.MoveMount(tree, at);
                staged.Add(at);
            }
            RootfsMount.Mount(staged, upper, work, target, k);
        }
        finally
        {
            foreach (var at in staged)
                try { k.Umount2(at, Libc.MNT_DETACH); } catch (KernelException) { } // best effort: the overlay holds its own clones
            try { Directory.Delete(stagingDir, recursive: true); } catch (IOException) { }
        }
    }
}
