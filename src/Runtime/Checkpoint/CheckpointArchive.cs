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
internal sealed partial class CheckpointJson : JsonSerializerContext;

/// <summary>The checkpoint archive the kubelet stores and checkpointctl reads: an uncompressed
/// tar of config.dump, spec.dump, status.dump, stdio.json (ours: what the init's stdio was), checkpoint/ (CRIU's images), rootfs-diff.tar and
/// deleted.files (the writable layer's changes), container.log and dump.log. Written to a
/// temporary name beside <c>location</c> (mode 0600) and renamed into place, so a failure never
/// leaves a partial archive at <c>location</c>.</summary>
public static class CheckpointArchive
{
    public const string ConfigDumpFile = "config.dump", SpecDumpFile = "spec.dump", StatusDumpFile = "status.dump",
        CheckpointDirectory = "checkpoint", RootFsDiffTar = "rootfs-diff.tar", DeletedFilesFile = "deleted.files",
        ContainerLogFile = "container.log", DumpLogFile = "dump.log";

    /// <param name="RootfsDiff">the writable layer's changes, captured while the container was
    /// still frozen (<see cref="WriteRootfsDiff"/> from <see cref="PostDumpHook"/>).</param>
    public sealed record Parts(ConfigDump Config, byte[] Spec, StatusDump Status, string ImagesDir,
        string? ContainerLog, string? DumpLog, StdioDump Stdio, RootfsDiff RootfsDiff);

    /// <summary>rootfs-diff.tar, written at <see cref="TarPath"/>, and the paths the layer deleted.</summary>
    public sealed record RootfsDiff(string TarPath, IReadOnlyList<string> Deleted);

    public static void Write(string location, Parts parts)
    {
        var dir = Path.GetDirectoryName(location)!;
        var tmp = Path.Combine(dir, $".{Path.GetFileName(location)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            var (diffTar, deleted) = (parts.RootfsDiff.TarPath, parts.RootfsDiff.Deleted.ToList());
            using (var fs = new FileStream(tmp, new FileStreamOptions
                   {
                       Mode = FileMode.CreateNew, Access = FileAccess.Write, BufferSize = 1 << 16,
                       UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                   }))
            {
                var archive = new WritebackFileStream(fs);
                using (var tar = new TarWriter(archive, TarEntryFormat.Pax, leaveOpen: true))
                {
                    Bytes(tar, ConfigDumpFile, JsonSerializer.SerializeToUtf8Bytes(parts.Config, CheckpointJson.Default.ConfigDump));
                    Bytes(tar, SpecDumpFile, parts.Spec);
                    Bytes(tar, StatusDumpFile, JsonSerializer.SerializeToUtf8Bytes(parts.Status, CheckpointJson.Default.StatusDump));
                    Bytes(tar, CheckpointSource.StdioFile, JsonSerializer.SerializeToUtf8Bytes(parts.Stdio, CheckpointJson.Default.StdioDump));
                    Bytes(tar, DeletedFilesFile, JsonSerializer.SerializeToUtf8Bytes(deleted, CheckpointJson.Default.ListString));
                    KernelCopied(tar, diffTar, RootFsDiffTar);
                    if (parts.ContainerLog is { } log && File.Exists(log)) tar.WriteEntry(log, ContainerLogFile);
                    if (parts.DumpLog is { } dump && File.Exists(dump)) tar.WriteEntry(dump, DumpLogFile);
                    AddTree(tar, parts.ImagesDir, CheckpointDirectory, tolerateVanished: false, skip: _ => false, kernelCopy: true);
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, location, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }

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

    private static void Bytes(TarWriter tar, string name, byte[] data)
    {
        var e = new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = new MemoryStream(data, writable: false),
            Mode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
            ModificationTime = DateTimeOffset.UtcNow,
        };
        tar.WriteEntry(e);
    }

    /// <summary>Every entry below <paramref name="root"/> under <paramref name="prefix"/>, parents
    /// first, symlinks as links (never followed). <paramref name="skip"/> gets the path relative to root.</summary>
    /// <summary>A regular file of ours (CRIU's images, the nested diff) as an entry whose data the
    /// kernel copies into the archive (<see cref="KernelCopySource"/>).</summary>
    private static void KernelCopied(TarWriter tar, string path, string name)
    {
        var info = new FileInfo(path);
        using var data = new KernelCopySource(path);
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name)
        {
            DataStream = data,
            Mode = info.UnixFileMode,
            ModificationTime = info.LastWriteTimeUtc,
        });
    }

    private static void AddTree(TarWriter tar, string root, string prefix, bool tolerateVanished, Func<string, bool> skip, bool kernelCopy = false)
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
                    if (kernelCopy && entry is FileInfo { LinkTarget: null }) KernelCopied(tar, entry.FullName, name);
                    else tar.WriteEntry(entry.FullName, name);
                }
                catch (Exception e) when (tolerateVanished && e is FileNotFoundException or DirectoryNotFoundException) { continue; }
                if (entry is DirectoryInfo { LinkTarget: null }) pending.Push(entry.FullName);
            }
        }
    }
}
