using CriRuntime.Images.Snapshots;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Checkpoint;

/// <summary>A checkpoint's writable-layer changes put back into a new container's (still
/// unmounted, empty) overlay upper directory: rootfs-diff.tar through the hardened layer
/// extractor (no "..", no writes through symlinks, no device nodes, no hard links out), then an
/// overlayfs whiteout for every path of deleted.files, made only below real directories of the
/// upper dir (never through a symlink the diff put there).</summary>
public static class RootfsDiff
{
    public static void Apply(CheckpointSource source, string upper, IHostKernel? kernel = null)
    {
        var k = kernel ?? HostKernel.Instance;
        Directory.CreateDirectory(upper);
        if (source.RootfsDiffTar is { } tar)
        {
            using var fs = File.OpenRead(tar);
            LayerExtractor.Extract(fs, upper, CheckpointArchive.RootFsDiffTar, kernel: k);
        }
        foreach (var deleted in source.DeletedFiles)
        {
            var parts = deleted.Split('/', StringSplitOptions.RemoveEmptyEntries);
            var dir = upper;
            foreach (var part in parts[..^1])
            {
                dir = Path.Combine(dir, part);
                var info = new DirectoryInfo(dir);
                if (info.Exists && info.LinkTarget is null) continue;
                if (info.LinkTarget is not null || File.Exists(dir))
                    throw new InvalidDataException($"checkpoint archive: deleted.files: \"{deleted}\": {part} is not a directory in rootfs-diff.tar");
                Directory.CreateDirectory(dir);
            }
            var target = Path.Combine(dir, parts[^1]);
            if (File.Exists(target) || Directory.Exists(target) || new FileInfo(target).LinkTarget is not null)
                throw new InvalidDataException($"checkpoint archive: deleted.files: \"{deleted}\" is also in rootfs-diff.tar");
            k.Mknod(target, Libc.S_IFCHR, 0); // a 0:0 character device: overlayfs' whiteout
        }
    }
}
