using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Checkpoint;

/// <summary>pod.dump: what CheckpointPod records of the pod, and which archive holds which container.</summary>
public sealed record PodDump
{
    public int Version { get; init; } = PodArchive.CurrentVersion;
    public string Id { get; init; } = "";
    public string Name { get; init; } = "";
    public string Namespace { get; init; } = "";
    public string Uid { get; init; } = "";
    public uint Attempt { get; init; }
    public string RuntimeHandler { get; init; } = "";
    [JsonPropertyName("checkpointedTime")] public DateTimeOffset CheckpointedAt { get; init; }
    public Dictionary<string, string> Labels { get; init; } = [];
    public Dictionary<string, string> Annotations { get; init; } = [];
    public List<PodDumpContainer> Containers { get; init; } = [];
}

/// <summary>One container of pod.dump: its name (what RestorePod matches container_configs by),
/// its id when checkpointed, and its archive, relative to the pod checkpoint's directory.</summary>
public sealed record PodDumpContainer
{
    public string Name { get; init; } = "";
    public string Id { get; init; } = "";
    public string Archive { get; init; } = "";
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(PodDump))]
internal sealed partial class PodArchiveJson : JsonSerializerContext;

/// <summary>The directory CheckpointPod writes into the caller's empty <c>output_path</c>:
/// <c>pod.dump</c> and <c>containers/NAME.tar</c>, one container checkpoint archive per
/// container (the format CheckpointContainer writes, <see cref="CheckpointArchive"/>).
/// RestorePod reads it back as hostile input: no symlinks, regular files only, names that are
/// one path component, pod.dump at most <see cref="MaxPodDumpBytes"/>.</summary>
public static class PodArchive
{
    public const int CurrentVersion = 1;
    public const string PodDumpFile = "pod.dump", ContainersDirectory = "containers";
    public const int MaxPodDumpBytes = 1 << 20;

    /// <summary>A container name usable as a file name: one path component, no NUL.</summary>
    public static bool IsSafeName(string name) =>
        name.Length is > 0 and <= 253 && name is not "." and not ".." && name.IndexOfAny(['/', '\0']) < 0;

    public static string ArchiveOf(string name) => $"{ContainersDirectory}/{name}.tar";

    /// <summary>Writes pod.dump and, through <paramref name="writeArchive"/> (given each
    /// container's archive path), every container's archive into <paramref name="dir"/>. On
    /// failure everything written is removed again (the directory itself, the caller's, stays).</summary>
    public static void Write(string dir, PodDump pod, Action<PodDumpContainer, string> writeArchive, bool durable = true)
    {
        var containers = Path.Combine(dir, ContainersDirectory);
        try
        {
            Directory.CreateDirectory(containers);
            foreach (var c in pod.Containers) writeArchive(c, Path.Combine(dir, c.Archive));
            Files.AtomicFile.Write(Path.Combine(dir, PodDumpFile), JsonSerializer.SerializeToUtf8Bytes(pod, PodArchiveJson.Default.PodDump), durable: durable);
        }
        catch
        {
            RemoveContents(dir);
            throw;
        }
    }

    /// <summary>Removes everything inside <paramref name="dir"/> (never following a symlink).</summary>
    public static void RemoveContents(string dir)
    {
        foreach (var e in new DirectoryInfo(dir).EnumerateFileSystemInfos())
        {
            if (e is DirectoryInfo { LinkTarget: null } d) d.Delete(recursive: true);
            else e.Delete();
        }
    }

    /// <summary>pod.dump of the pod checkpoint at <paramref name="dir"/>, checked: every
    /// container named once, safely, with its archive at containers/NAME.tar, a regular file.
    /// InvalidDataException naming what is wrong.</summary>
    public static PodDump Read(string dir)
    {
        var file = Path.Combine(dir, PodDumpFile);
        var info = new FileInfo(file);
        if (info.LinkTarget is not null) throw new InvalidDataException($"{file} is a symlink");
        if (!info.Exists) throw new InvalidDataException($"{file} not found (not a pod checkpoint)");
        if (info.Length > MaxPodDumpBytes) throw new InvalidDataException($"{file} is larger than {MaxPodDumpBytes} bytes");
        PodDump? pod;
        try { pod = JsonSerializer.Deserialize(File.ReadAllBytes(file), PodArchiveJson.Default.PodDump); }
        catch (JsonException e) { throw new InvalidDataException($"{file}: {e.Message}"); }
        if (pod is null) throw new InvalidDataException($"{file}: empty");
        if (pod.Version != CurrentVersion) throw new InvalidDataException($"{file}: version {pod.Version} is not {CurrentVersion}");
        if (pod.Containers.Count == 0) throw new InvalidDataException($"{file}: no containers");
        var containers = new DirectoryInfo(Path.Combine(dir, ContainersDirectory));
        if (containers.LinkTarget is not null || !containers.Exists) throw new InvalidDataException($"{containers.FullName}: not a directory");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var c in pod.Containers)
        {
            if (!IsSafeName(c.Name)) throw new InvalidDataException($"{file}: container name '{c.Name}' is not a file name");
            if (!seen.Add(c.Name)) throw new InvalidDataException($"{file}: container {c.Name} named twice");
            if (c.Archive != ArchiveOf(c.Name)) throw new InvalidDataException($"{file}: container {c.Name}: archive '{c.Archive}' is not {ArchiveOf(c.Name)}");
            var archive = new FileInfo(Path.Combine(dir, c.Archive));
            if (archive.LinkTarget is not null) throw new InvalidDataException($"{archive.FullName} is a symlink");
            if (Interop.Libc.DeviceInfo(archive.FullName, followSymlinks: false) is not { } st || (st.Mode & 0xF000) != 0x8000)
                throw new InvalidDataException($"{archive.FullName}: not a regular file");
        }
        return pod;
    }
}
