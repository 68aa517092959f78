using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Containers;

/// <summary>A container's root file system: the image's layers as overlayfs lower dirs (read
/// only, shared by every container of the image) under the container's own upper dir.</summary>
public static class RootfsMount
{
    /// <param name="layers">Bottom layer first, as the image lists them.</param>
    /// <param name="kernel">The host kernel; <see cref="HostKernel.Instance"/> when null.</param>
    public static void Mount(IReadOnlyList<string> layers, string upper, string work, string target, IHostKernel? kernel = null)
    {
        Directory.CreateDirectory(upper);
        Directory.CreateDirectory(work);
        Directory.CreateDirectory(target);
        // overlayfs wants the top-most lower dir first.
        var data = $"lowerdir={string.Join(':', layers.Reverse())},upperdir={upper},workdir={work}";
        if (data.Length >= 4096)
            throw Errors.Fail.FailedPrecondition($"overlay mount options for {target} exceed a page ({data.Length} bytes, {layers.Count} layers)");
        (kernel ?? HostKernel.Instance).Mount("overlay", target, "overlay", 0, data);
    }

    /// <summary>Unmounts; a path that is not mounted is fine (idempotent).</summary>
    public static void Unmount(string target, IHostKernel? kernel = null)
    {
        try { (kernel ?? HostKernel.Instance).Umount2(target, Libc.MNT_DETACH); }
        catch (KernelException e) when (e.Errno is Errno.EINVAL or Errno.ENOENT) { } // not mounted; gone
    }
}
