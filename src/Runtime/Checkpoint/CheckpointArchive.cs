using System.Formats.Tar;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Checkpoint;

/// <summary>config.dump: the subset of Podman's container config that CRI-O writes and
/// checkpointctl reads (checkpointctl's metadata.ContainerConfig).</summary>
public sealed record ConfigDump
{
    public string Id { get; init; } = "";
    public string Name { get; init; } = "";
    public string RootfsImage { get; init; } = "";
    public string RootfsImageRef { get; init; } = "";
    public string RootfsImageName { get; init; } = "";
    [JsonPropertyName("runtime")] public string OciRuntime { get; init; } = "";
    public DateTimeOffset CreatedTime { get; init; }
    [JsonPropertyName("checkpointedTime")] public DateTimeOffset CheckpointedAt { get; init; }
    [JsonPropertyName("restoredTime")] public DateTimeOffset RestoredAt { get; init; }
    public bool Restored { get; init; }
}

/// <summary>status.dump: the container's state when it was checkpointed.</summary>
public sealed record StatusDump
{
    public string Id { get; init; } = "";
    public string State { get; init; } = "";
    public int Pid { get; init; }
    public long CreatedAt { get; init; }
    public long StartedAt { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(ConfigDump))]
[JsonSerializable(typeof(StatusDump))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(StdioDump))]
[JsonSerializable(typeof(TmpfsDump))]
[JsonSerializable(typeof(List<TmpfsRestore>))]
internal sealed partial class CheckpointJson : JsonSerializerContext;

/// <summary>The checkpoint archive the kubelet stores and checkpointctl reads: an uncompressed
/// tar of config.dump, spec.dump, status.dump, stdio.json (ours: what the init's stdio was), checkpoint/ (CRIU's images), rootfs-diff.tar and
/// deleted.files (the writable layer's changes), tmpfs.json and tmpfs-N.tar (ours: the container's
/// own tmpfs mounts, <see cref="TmpfsContent"/>), container.log and dump.log. Written to a
/// temporary name beside <c>location</c> (mode 0600) and renamed into place, so a failure never
/// leaves a partial archive at <c>location</c>.</summary>
public static class CheckpointArchive
{
    public const string ConfigDumpFile = "config.dump", SpecDumpFile = "spec.dump", StatusDumpFile = "status.dump",
        CheckpointDirectory = "checkpoint", RootFsDiffTar = "rootfs-diff.tar", DeletedFilesFile = "deleted.files",
        ContainerLogFile = "container.log", DumpLogFile = "dump.log", StatsDumpFile = "stats-dump";

    /// <param name="RootfsDiff">the writable layer's changes, captured while the container was
    /// still frozen (<see cref="WriteRootfsDiff"/> from <see cref="PostDumpHook"/>).</param>
    /// <param name="StatsDump">CRIU's dump statistics (frozen time, pages written), which it writes
    /// into its working directory: at the archive's top level, where Podman puts it and
    /// checkpointctl reads it.</param>
    public sealed record Parts(ConfigDump Config, byte[] Spec, StatusDump Status, string ImagesDir,
        string? ContainerLog, string? DumpLog, StdioDump Stdio, RootfsDiff RootfsDiff, string? StatsDump = null, Tmpfs? Tmpfs = null);

    /// <summary>The content of the container's own tmpfs mounts (<see cref="TmpfsContent"/>):
    /// tmpfs.json and a tmpfs-N.tar per mount in <see cref="Dir"/>.</summary>
    public sealed record Tmpfs(TmpfsDump Dump, string Dir);

    /// <summary>rootfs-diff.tar, written at <see cref="TarPath"/>, and the paths the layer deleted.</summary>
    public sealed record RootfsDiff(string TarPath, IReadOnlyList<string> Deleted);

    public static void Write(string location, Parts parts, bool durable = true)
    {
        using var archive = ArchiveWriter.Create(location);
        WriteParts(archive, parts, imagesStreamed: false);
        archive.Commit(durable: durable);
    }

    /// <summary>Finishes an archive whose CRIU images <see cref="ImageStreamer"/> already wrote
    /// (under <see cref="CheckpointDirectory"/>/): the other parts, then any image CRIU kept in
    /// the directory even when streaming (irmap-cache), then fsync and rename.</summary>
    internal static void Complete(ArchiveWriter archive, Parts parts, Containers.StepTimes? steps = null, bool durable = true)
    {
        WriteParts(archive, parts, imagesStreamed: true);
        steps?.Mark("parts");
        archive.Commit(steps, durable);
    }

    private static void WriteParts(ArchiveWriter archive, Parts parts, bool imagesStreamed)
    {
        var (diffTar, deleted) = (parts.RootfsDiff.TarPath, parts.RootfsDiff.Deleted.ToList());
        archive.Bytes(ConfigDumpFile, JsonSerializer.SerializeToUtf8Bytes(parts.Config, CheckpointJson.Default.ConfigDump));
        archive.Bytes(SpecDumpFile, parts.Spec);
        archive.Bytes(StatusDumpFile, JsonSerializer.SerializeToUtf8Bytes(parts.Status, CheckpointJson.Default.StatusDump));
        archive.Bytes(CheckpointSource.StdioFile, JsonSerializer.SerializeToUtf8Bytes(parts.Stdio, CheckpointJson.Default.StdioDump));
        archive.Bytes(DeletedFilesFile, JsonSerializer.SerializeToUtf8Bytes(deleted, CheckpointJson.Default.ListString));
        archive.File(diffTar, RootFsDiffTar);
        if (parts.Tmpfs is { } tmpfs)
        {
            archive.Bytes(TmpfsContent.ManifestFile, JsonSerializer.SerializeToUtf8Bytes(tmpfs.Dump, CheckpointJson.Default.TmpfsDump));
            for (var i = 0; i < tmpfs.Dump.Mounts.Count; i++) archive.File(Path.Combine(tmpfs.Dir, TmpfsContent.TarName(i)), TmpfsContent.TarName(i));
        }
        var tar = archive.Tar;
        // Both may still grow (the container runs on; a lazy dump's CRIU logs on): each entry is
        // the file as long as it was when it was opened.
        if (parts.ContainerLog is { } log && File.Exists(log)) archive.File(log, ContainerLogFile);
        if (parts.DumpLog is { } dump && File.Exists(dump)) archive.File(dump, DumpLogFile);
        if (parts.StatsDump is { } stats && File.Exists(stats)) archive.File(stats, StatsDumpFile);
        if (!imagesStreamed)
        {
            AddTree(tar, parts.ImagesDir, CheckpointDirectory, tolerateVanished: false, skip: _ => false, archive: archive);
            return;
        }
        foreach (var local in new DirectoryInfo(parts.ImagesDir).EnumerateFiles().OrderBy(f => f.Name, StringComparer.Ordinal))
            if (local.LinkTarget is null && local.Name != ImageStreamer.SocketName && IsRegular(local.FullName))
                archive.File(local.FullName, $"{CheckpointDirectory}/{local.Name}");
    }

    private static bool IsRegular(string path) =>
        Interop.Libc.DeviceInfo(path, followSymlinks: false) is { } d && (d.Mode & 0xF000) == 0x8000;

    /// <summary>Tars the overlay upper directory (the container's writable layer) into
    /// <paramref name="tarPath"/> and returns it with the paths it deleted from the image (overlayfs
    /// whiteouts: character devices 0:0), as "/etc/motd". An entry that is gone by the time it is
    /// read is left out (nothing of the container writes while it is frozen; anything else may).</summary>
    public static RootfsDiff WriteRootfsDiff(string upper, string tarPath, IReadOnlySet<string> skip)
    {
        var deleted = new List<string>();
        using var fs = new FileStream(tarPath, FileMode.Create, FileAccess.Write);
        using var tar = new TarWriter(fs, TarEntryFormat.Pax, leaveOpen: false);
        if (Directory.Exists(upper))
            AddTree(tar, upper, "", tolerateVanished: true, skip: rel =>
            {
                if (skip.Contains("/" + rel)) return true;
                var full = Path.Combine(upper, rel);
                if (Interop.Libc.DeviceInfo(full, followSymlinks: false) is { } d && (d.Mode & 0xF000) == 0x2000 && d.Major == 0 && d.Minor == 0)
                {
                    deleted.Add("/" + rel);
                    return true;
                }
                return false;
            });
        return new RootfsDiff(tarPath, deleted);
    }

    /// <summary>Every entry below <paramref name="root"/> under <paramref name="prefix"/>, parents
    /// first, symlinks as links (never followed). <paramref name="skip"/> gets the path relative to
    /// root. With <paramref name="archive"/>, regular files' data is copied by the kernel.</summary>
    private static void AddTree(TarWriter tar, string root, string prefix, bool tolerateVanished, Func<string, bool> skip, ArchiveWriter? archive = null)
    {
        if (prefix.Length > 0) tar.WriteEntry(root, prefix);
        var pending = new Stack<string>();
        pending.Push(root);
        while (pending.Count > 0)
        {
            var dir = pending.Pop();
            List<FileSystemInfo> entries;
            try { entries = [.. new DirectoryInfo(dir).EnumerateFileSystemInfos().OrderBy(e => e.Name, StringComparer.Ordinal)]; }
            catch (DirectoryNotFoundException) when (tolerateVanished && dir != root) { continue; }
            foreach (var entry in entries)
            {
                var rel = Path.GetRelativePath(root, entry.FullName);
                try
                {
                    if (skip(rel)) continue;
                    var name = prefix.Length > 0 ? $"{prefix}/{rel}" : rel;
                    if (archive is not null && entry is FileInfo { LinkTarget: null }) archive.File(entry.FullName, name);
                    else tar.WriteEntry(entry.FullName, name);
                }
                catch (Exception e) when (tolerateVanished && e is FileNotFoundException or DirectoryNotFoundException) { continue; }
                if (entry is DirectoryInfo { LinkTarget: null }) pending.Push(entry.FullName);
            }
        }
    }
}
