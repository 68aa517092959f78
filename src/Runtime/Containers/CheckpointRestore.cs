using System.Text.Json;
using CriRuntime.Checkpoint;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Files;
using CriRuntime.Images;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.State;

namespace CriRuntime.Containers;

/// <summary>The steps CreateContainer adds when <c>image.image</c> is a checkpoint archive
/// (docs/checkpoint.md, "Restore"). The archive is hostile input: every refusal is
/// InvalidArgument naming the entry or field; nothing from it reaches the spec, and CRIU only
/// gets host paths the new request declared.</summary>
public static class CheckpointRestore
{
    /// <summary>The unpacked archive, in the container's directory.</summary>
    public const string DirName = "checkpoint";

    /// <summary>The image annotations that make a stored image a checkpoint image (whose layer
    /// holds an archive's entries): checkpointctl's and containerd's, and CRI-O's.</summary>
    public static readonly IReadOnlyList<string> ImageAnnotations =
        ["org.criu.checkpoint.container.name", "io.kubernetes.cri-o.annotations.checkpoint.name"];

    /// <summary>Where a restore is asked for: <c>image.image</c> an absolute path (an archive),
    /// or a stored image whose manifest (or index) carries one of <see cref="ImageAnnotations"/>;
    /// else null (an ordinary image). FailedPrecondition when restore is off. An image that is
    /// not stored is no checkpoint here: the usual lookup then answers NotFound (CreateContainer
    /// never pulls).</summary>
    public static CheckpointOrigin? Origin(string image, CheckpointSection config, IImageResolver images)
    {
        if (image.StartsWith('/'))
        {
            if (!config.Restore)
                throw Fail.FailedPrecondition($"config.image.image: {image} is a checkpoint archive path, and restoring from checkpoints is off ([checkpoint] restore = false)");
            return new CheckpointOrigin(image, null);
        }
        if (images.Find(image) is not { } record) return null;
        var annotations = images.Annotations(record);
        if (ImageAnnotations.FirstOrDefault(annotations.ContainsKey) is not { } key) return null;
        if (!config.Restore)
            throw Fail.FailedPrecondition($"config.image.image: {image} is a checkpoint image (annotation {key}), and restoring from checkpoints is off ([checkpoint] restore = false)");
        return new CheckpointOrigin(image, record);
    }

    /// <summary>What a restore cannot give the request yet.</summary>
    public static void CheckRequest(ContainerConfig c, PodSandboxRecord pod)
    {
        if (c.Tty) throw Fail.InvalidArgument("config.tty: a container restored from a checkpoint cannot have a terminal yet");
        if (c.Stdin) throw Fail.InvalidArgument("config.stdin: a container restored from a checkpoint cannot have a stdin yet");
        if (pod.UserNs is not null) throw Fail.InvalidArgument("a container restored from a checkpoint cannot run in a pod with a user namespace yet");
    }

    /// <summary>The archive's or the checkpoint image's entries, checked and unpacked into
    /// <paramref name="dest"/>.</summary>
    public static CheckpointSource Unpack(CheckpointOrigin origin, IImageResolver images, string dest) =>
        origin.Image is { } image ? UnpackImage(origin.Name, image, images, dest) : Unpack(origin.Name, dest);

    /// <summary>A checkpoint image's one layer is an archive's entries, laid out as
    /// `checkpointctl build` (buildah) and podman make it. Its blob is read again from the content
    /// store and goes through the archive's checks: the pull unpacked it as an ordinary layer,
    /// where a symlink pointing anywhere or an absolute name is allowed.</summary>
    private static CheckpointSource UnpackImage(string name, ImageRecord image, IImageResolver images, string dest)
    {
        if (image.Layers.Count != 1)
            throw Fail.InvalidArgument($"config.image.image: checkpoint image {name} ({image.Id}) has {image.Layers.Count} layers; a checkpoint image has one, holding the archive's entries");
        var layer = image.Layers[0];
        Stream blob;
        try { blob = images.OpenLayer(layer); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw Fail.FailedPrecondition($"config.image.image: checkpoint image {name} ({image.Id}): layer {layer.Digest} is no longer stored (pull it again)");
        }
        using (blob)
        {
            try
            {
                using var tar = Images.Snapshots.LayerExtractor.Decompress(blob);
                return CheckpointSource.Extract(tar, dest);
            }
            catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException or ZstdSharp.ZstdException)
            {
                throw Fail.InvalidArgument($"config.image.image: checkpoint image {name} ({image.Id}), layer {layer.Digest}: {e.Message}");
            }
        }
    }

    public static CheckpointSource Unpack(string archive, string dest)
    {
        // A regular file only: opening a fifo the request named would wait for a writer forever.
        (uint Mode, uint Major, uint Minor)? stat;
        try { stat = Interop.Libc.DeviceInfo(archive); }
        catch (Interop.KernelException e) { throw Fail.InvalidArgument($"config.image.image: checkpoint archive {archive}: {e.Message}"); }
        if (stat is not { } st)
            throw Fail.InvalidArgument($"config.image.image: checkpoint archive {archive} not found");
        if ((st.Mode & 0xF000) != 0x8000)
            throw Fail.InvalidArgument($"config.image.image: {archive} is not a regular file (a checkpoint archive)");
        FileStream fs;
        try { fs = File.OpenRead(archive); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or UnauthorizedAccessException)
        {
            throw Fail.InvalidArgument($"config.image.image: checkpoint archive {archive}: {e.Message}");
        }
        using (fs)
        {
            try { return CheckpointSource.Extract(fs, dest); }
            catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
            {
                throw Fail.InvalidArgument($"config.image.image: {archive}: {e.Message}");
            }
        }
    }

    /// <summary>The image the archive was made from, by the id in config.dump, among the stored
    /// images only: never pulled, never re-tagged.</summary>
    public static ResolvedImage ResolveImage(IImageResolver images, CheckpointSource source)
    {
        var id = source.Config.RootfsImageRef;
        if (id.Length == 0) throw Fail.InvalidArgument("checkpoint archive: config.dump: rootfsImageRef is empty");
        if (images.Find(id) is null)
            throw Fail.InvalidArgument($"checkpoint archive: config.dump: image {id} ({source.Config.RootfsImageName}) is not stored on this node (pull it first; an image named in a checkpoint is never pulled)");
        return images.Resolve(id);
    }

    public static void ApplyRootfsDiff(CheckpointSource source, string upper)
    {
        try { RootfsDiff.Apply(source, upper); }
        catch (InvalidDataException e) { throw Fail.InvalidArgument(e.Message); }
    }

    /// <summary>The mount points of the spec's mounts that sit directly on the root file system
    /// (not inside another of its mounts, whose content CRIU restores itself), made in the mounted
    /// rootfs where the image lacks them, as the shim makes them for a fresh container: the dump
    /// left them out of rootfs-diff.tar, and CRIU needs them to mount onto. A path through a
    /// symlink is left alone (CRIU then fails naming it): nothing is created outside the root.</summary>
    public static void MakeMountPoints(string rootfs, Spec spec)
    {
        var dests = (spec.Mounts ?? []).Select(m => (Mount: m, Dest: "/" + m.Destination.Trim('/'))).ToList();
        foreach (var (m, dest) in dests)
        {
            if (dest == "/" || dests.Any(o => o.Dest != dest && (o.Dest == "/" ? false : dest.StartsWith(o.Dest + "/", StringComparison.Ordinal)))) continue;
            var parts = dest.Split('/', StringSplitOptions.RemoveEmptyEntries);
            var path = rootfs;
            var ok = true;
            for (var i = 0; i < parts.Length && ok; i++)
            {
                path = Path.Combine(path, parts[i]);
                var info = new FileInfo(path);
                if (info.LinkTarget is not null) ok = false;
                else if (Directory.Exists(path)) continue;
                else if (info.Exists) ok = i == parts.Length - 1;
                else if (i < parts.Length - 1) Directory.CreateDirectory(path);
                else if (DumpPlan.IsBind(m) && File.Exists(m.Source)) File.WriteAllBytes(path, []);
                else Directory.CreateDirectory(path);
            }
        }
    }

    /// <summary>Checks the archive's bind mounts against the new spec and writes the shim's
    /// bundle/restore.json (<see cref="RestorePlan"/>).</summary>
    /// <param name="podShm">the new pod's /dev/shm (<see cref="Pods.PodShm"/>), if it has one.</param>
    public static void WriteRestoreSpec(Criu criu, CheckpointSection config, CheckpointSource source, string bundle, string rootfs, Spec spec, string? podShm = null)
    {
        if (source.UndeclaredBindMounts(spec) is { Count: > 0 } undeclared)
            throw Fail.InvalidArgument($"checkpoint archive: bind mount{(undeclared.Count > 1 ? "s" : "")} {string.Join(", ", undeclared)} recorded in spec.dump {(undeclared.Count > 1 ? "are" : "is")} not declared by config.mounts");
        RestoreSpec plan;
        try
        {
            // CRIU writes the dumped hostname into the uts namespace it restores into, the new
            // pod's (--join-ns): the images get the names that namespace has, so the pod keeps them.
            if (spec.Linux?.Namespaces?.FirstOrDefault(n => n.Type == "uts" && !string.IsNullOrEmpty(n.Path)) is { } uts
                && UtsImage.Find(source.ImagesDir) is { Count: > 0 } utsImages)
            {
                var (node, domain) = UtsNames(uts.Path!);
                foreach (var image in utsImages) UtsImage.Rewrite(image, node, domain);
            }
            // Our cgroup managers make no container cgroup in named hierarchies (name=systemd):
            // the restored tasks stay where a fresh container's init would, in the daemon's.
            // What a masked directory is restored as: empty, the container's own, made read-only
            // by the restored mount's flags.
            var empty = Path.Combine(bundle, "masked-empty");
            foreach (var masked in spec.Linux?.MaskedPaths ?? [])
                Directory.CreateDirectory(RestorePlan.MaskedDirSource(empty, masked), UnixFileMode.UserRead | UnixFileMode.UserExecute
                    | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
            // The tmpfs mounts whose content the daemon captured: StartContainer mounts a fresh one
            // for each, filled from the archive, with the new spec's devices.
            var tmpfs = source.Tmpfs is { } dump ? TmpfsContent.Plan(dump, source.Dir, bundle, spec, podShm) : [];
            AtomicFile.Write(Path.Combine(bundle, TmpfsContent.RestoreFile),
                JsonSerializer.SerializeToUtf8Bytes(tmpfs.Select(t => t.Restore).ToList(), CheckpointJson.Default.ListTmpfsRestore), durable: false);
            plan = RestorePlan.Build(criu.Require(), config.CriuEnv, source, source.Dir, rootfs, spec, spec.Linux?.CgroupsPath ?? "",
                RestorePlan.NamedHierarchies(File.ReadAllText("/proc/self/cgroup")), empty, [.. tmpfs.Where(t => !t.Restore.Pod).Select(t => (t.Path, t.Restore.Dir))]);
        }
        catch (InvalidDataException e) { throw Fail.InvalidArgument(e.Message); }
        AtomicFile.Write(Path.Combine(bundle, RestoreSpec.FileName), JsonSerializer.SerializeToUtf8Bytes(plan, ShimJsonContext.Default.RestoreSpec), durable: false);
    }

    /// <summary>The hostname and domainname of the uts namespace pinned at <paramref name="path"/>,
    /// read through /proc/sys from a thread inside it.</summary>
    private static (string Nodename, string Domainname) UtsNames(string path)
    {
        var names = ("", "");
        Namespaces.NamespacePinner.RunIn(Namespaces.NamespaceKind.Uts, path, () =>
            names = (File.ReadAllText("/proc/sys/kernel/hostname").TrimEnd('\n'), File.ReadAllText("/proc/sys/kernel/domainname").TrimEnd('\n')));
        return names;
    }
}

/// <summary>What a restore is made from: an archive at <see cref="Name"/> (a path), or the stored
/// checkpoint image <see cref="Image"/> the request named <see cref="Name"/>.</summary>
public sealed record CheckpointOrigin(string Name, ImageRecord? Image);
