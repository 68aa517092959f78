using System.Runtime.InteropServices;
using CriRuntime.Interop;

namespace CriRuntime.Containers;

/// <summary>A container's root file system: the image's layers as overlayfs lower dirs (read
/// only, shared by every container of the image) under the container's own upper dir.</summary>
public static class RootfsMount
{
    /// <param name="layers">Bottom layer first, as the image lists them.</param>
    public static void Mount(IReadOnlyList<string> layers, string upper, string work, string target)
    {
        Directory.CreateDirectory(upper);
        Directory.CreateDirectory(work);
        Directory.CreateDirectory(target);
        // overlayfs wants the top-most lower dir first.
        var data = $"lowerdir={string.Join(':', layers.Reverse())},upperdir={upper},workdir={work}";
        if (data.Length >= 4096)
            throw Errors.Fail.FailedPrecondition($"overlay mount options for {target} exceed a page ({data.Length} bytes, {layers.Count} layers)");
        if (Libc.Mount("overlay", target, "overlay", 0, data) != 0) throw Errno.Last("mount overlay on", target);
    }

    /// <summary>Unmounts; a path that is not mounted is fine (idempotent).</summary>
    public static void Unmount(string target)
    {
        if (Libc.Umount2(target, Libc.MNT_DETACH) == 0) return;
        var errno = Marshal.GetLastPInvokeError();
        if (errno is 22 or 2) return; // EINVAL: not mounted; ENOENT: gone
        throw Errno.Exception("umount", target, errno);
    }
}
