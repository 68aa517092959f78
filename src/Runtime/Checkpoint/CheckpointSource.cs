using System.Formats.Tar;
using System.Text.Json;
using CriRuntime.Oci;

namespace CriRuntime.Checkpoint;

/// <summary>A checkpoint archive unpacked into a directory of ours, after checks that treat it
/// as hostile input: only regular files at the names the format defines (and CRIU's images, flat
/// under checkpoint/) are taken; a symlink, hard link, device or fifo entry, an absolute name or
/// one with "..", a duplicate, or a missing config.dump/spec.dump/inventory.img refuses the whole
/// archive (<see cref="InvalidDataException"/> naming the entry). Unknown names are ignored.
/// Nothing named inside is trusted further: the image it records is only looked up among the
/// images already stored, its spec's devices and annotations are never used, and its bind mounts
/// must each be declared anew by the request (<see cref="UndeclaredBindMounts"/>).</summary>
public sealed record CheckpointSource(string Dir, ConfigDump Config, Spec Spec, string ImagesDir, string? RootfsDiffTar,
    IReadOnlyList<string> DeletedFiles, StdioDump? Stdio, TmpfsDump? Tmpfs = null)
{
    /// <summary>The pipe inodes of the checkpointed init's stdio ("pipe:[123]"), for CRIU's
    /// --inherit-fd on restore.</summary>
    public const string StdioFile = "stdio.json";

    private static readonly HashSet<string> TopLevel = new(StringComparer.Ordinal)
    {
        CheckpointArchive.ConfigDumpFile, CheckpointArchive.SpecDumpFile, CheckpointArchive.StatusDumpFile,
        CheckpointArchive.RootFsDiffTar, CheckpointArchive.DeletedFilesFile, CheckpointArchive.ContainerLogFile,
        CheckpointArchive.DumpLogFile, StdioFile, TmpfsContent.ManifestFile,
    };

    /// <summary>Unpacks <paramref name="archive"/> (an archive, or the uncompressed layer of a
    /// checkpoint image: the same entries under the same rules) into <paramref name="dest"/> (made
    /// here; must not exist).</summary>
    public static CheckpointSource Extract(Stream archive, string dest)
    {
        Directory.CreateDirectory(dest);
        var images = Path.Combine(dest, CheckpointArchive.CheckpointDirectory);
        Directory.CreateDirectory(images);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        // An image layer may stop right after its last entry (umoci's do): see TarEndTracker.
        var tracked = new Images.Snapshots.TarEndTracker(archive);
        using (var tar = new TarReader(tracked))
        {
            while (Next(tar, tracked) is { } e)
            {
                var name = e.Name;
                if (e.EntryType is TarEntryType.GlobalExtendedAttributes) continue;
                var parts = name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
                // The root itself ("./", or "/" as umoci writes it into a layer) names nothing to write.
                if (parts.Length == 0 && e.EntryType is TarEntryType.Directory) continue;
                if (name.StartsWith('/')) throw Bad(name, "absolute path");
                if (parts.Any(p => p == "..")) throw Bad(name, "path with \"..\"");
                if (parts.Length == 0) throw Bad(name, "empty name");
                var rel = string.Join('/', parts);
                if (e.EntryType is TarEntryType.SymbolicLink or TarEntryType.HardLink)
                    throw Bad(name, $"a link (to \"{e.LinkName}\") is not allowed in a checkpoint archive");
                if (e.EntryType is TarEntryType.Directory)
                {
                    if (rel != CheckpointArchive.CheckpointDirectory) throw Bad(name, "unexpected directory");
                    continue;
                }
                if (e.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile))
                    throw Bad(name, $"entry type {e.EntryType} is not allowed in a checkpoint archive");
                string target;
                if (parts.Length == 1 && (TopLevel.Contains(rel) || TmpfsContent.TarNamePattern().IsMatch(rel))) target = Path.Combine(dest, rel);
                else if (parts.Length == 2 && parts[0] == CheckpointArchive.CheckpointDirectory) target = Path.Combine(images, parts[1]);
                else if (parts.Length > 2 && parts[0] == CheckpointArchive.CheckpointDirectory) throw Bad(name, "CRIU images are not nested");
                else continue; // a name this format does not define (network.status, ...): not ours to use
                if (!seen.Add(rel)) throw Bad(name, "duplicate entry");
                using var output = new FileStream(target, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew, Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                });
                e.DataStream?.CopyTo(output);
            }
        }
        foreach (var required in new[] { CheckpointArchive.ConfigDumpFile, CheckpointArchive.SpecDumpFile, $"{CheckpointArchive.CheckpointDirectory}/inventory.img" })
            if (!seen.Contains(required)) throw new InvalidDataException($"checkpoint archive: {required} is missing");

        var config = Read(dest, CheckpointArchive.ConfigDumpFile, CheckpointJson.Default.ConfigDump);
        Spec spec;
        try { spec = SpecFile.Parse(File.ReadAllBytes(Path.Combine(dest, CheckpointArchive.SpecDumpFile))); }
        catch (JsonException e) { throw new InvalidDataException($"checkpoint archive: spec.dump: {e.Message}", e); }
        var deleted = seen.Contains(CheckpointArchive.DeletedFilesFile)
            ? Read(dest, CheckpointArchive.DeletedFilesFile, CheckpointJson.Default.ListString)
            : [];
        foreach (var d in deleted)
            if (d.Split('/', StringSplitOptions.RemoveEmptyEntries).Any(p => p is ".." or ".") || d.Trim('/').Length == 0)
                throw new InvalidDataException($"checkpoint archive: deleted.files: \"{d}\" is not a path inside the container");
        var stdio = seen.Contains(StdioFile) ? Read(dest, StdioFile, CheckpointJson.Default.StdioDump) : null;
        var tars = seen.Select(n => TmpfsContent.TarNamePattern().Match(n)).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToHashSet();
        TmpfsDump? tmpfs = null;
        if (seen.Contains(TmpfsContent.ManifestFile))
        {
            tmpfs = TmpfsContent.Validate(Read(dest, TmpfsContent.ManifestFile, CheckpointJson.Default.TmpfsDump), tars);
            for (var i = 0; i < tmpfs.Mounts.Count; i++) TmpfsContent.CheckTar(Path.Combine(dest, TmpfsContent.TarName(i)));
        }
        else if (tars.Count > 0) throw new InvalidDataException($"checkpoint archive: {TmpfsContent.TarName(tars.Min())} without {TmpfsContent.ManifestFile}");
        return new CheckpointSource(dest, config, spec, images,
            seen.Contains(CheckpointArchive.RootFsDiffTar) ? Path.Combine(dest, CheckpointArchive.RootFsDiffTar) : null, deleted, stdio, tmpfs);
    }

    /// <summary>Bind mounts the checkpointed container had (by destination) that the new
    /// container's spec does not have: CRIU would otherwise be handed host paths the archive chose.</summary>
    public IReadOnlyList<string> UndeclaredBindMounts(Spec declared)
    {
        var have = new HashSet<string>((declared.Mounts ?? []).Where(DumpPlan.IsBind).Select(m => "/" + m.Destination.Trim('/')), StringComparer.Ordinal);
        return [.. (Spec.Mounts ?? []).Where(DumpPlan.IsBind).Select(m => "/" + m.Destination.Trim('/')).Where(d => !have.Contains(d)).Distinct().Order(StringComparer.Ordinal)];
    }

    private static T Read<T>(string dir, string name, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> info)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(Path.Combine(dir, name)), info)
                ?? throw new InvalidDataException($"checkpoint archive: {name}: the document is null");
        }
        catch (JsonException e) { throw new InvalidDataException($"checkpoint archive: {name}: {e.Message}", e); }
    }

    private static TarEntry? Next(TarReader tar, Images.Snapshots.TarEndTracker tracked)
    {
        try
        {
            var e = tar.GetNextEntry();
            if (e is not null) tracked.EntryRead(e.Name, e.Length);
            return e;
        }
        catch (EndOfStreamException) when (tracked.EndedCleanly)
        {
            return null;
        }
        catch (EndOfStreamException) when (tracked.AtEnd)
        {
            throw new InvalidDataException($"checkpoint archive: truncated: {tracked.Truncation()}");
        }
    }

    private static InvalidDataException Bad(string entry, string why) => new($"checkpoint archive: entry \"{entry}\": {why}");
}

/// <summary>What the checkpointed init's fds 0, 1 and 2 were ("pipe:[4242]", "/dev/null", ...).</summary>
public sealed record StdioDump
{
    public IReadOnlyList<string> Fds { get; init; } = [];
}
