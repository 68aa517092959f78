using System.Text.Json;
using CriRuntime.Cgroups;
using CriRuntime.Files;

namespace CriRuntime.Checkpoint;

/// <summary>The cgroups a checkpoint froze, written down (atomically, durably) before the first
/// is frozen and forgotten once all are thawed: a daemon killed in between leaves the record, and
/// the next daemon thaws every cgroup it names before serving (<see cref="ThawLeftovers"/>).
/// One file per checkpoint in progress, <c>frozen-ID.json</c> in the checkpoints scratch root.</summary>
public sealed class FreezeLedger(string dir)
{
    private const string Prefix = "frozen-", Suffix = ".json";

    public string Dir => dir;

    /// <summary>Records <paramref name="cgroupPaths"/> as about to be frozen; returns the record's path.</summary>
    public string Record(IReadOnlyList<string> cgroupPaths)
    {
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, $"{Prefix}{Guid.NewGuid():N}{Suffix}");
        AtomicFile.Write(file, JsonSerializer.SerializeToUtf8Bytes(cgroupPaths.ToList(), CheckpointJson.Default.ListString));
        return file;
    }

    /// <summary>Every cgroup of the record is thawed: the record goes.</summary>
    public static void Forget(string file) => File.Delete(file);

    /// <summary>Records left by a daemon that did not finish its checkpoint.</summary>
    public IReadOnlyList<(string File, IReadOnlyList<string> CgroupPaths)> Leftovers()
    {
        if (!Directory.Exists(dir)) return [];
        var result = new List<(string, IReadOnlyList<string>)>();
        foreach (var file in Directory.GetFiles(dir, Prefix + "*" + Suffix).Order(StringComparer.Ordinal))
        {
            List<string>? paths;
            try { paths = JsonSerializer.Deserialize(File.ReadAllBytes(file), CheckpointJson.Default.ListString); }
            catch (JsonException) { paths = null; } // written atomically: only a foreign file can be unreadable
            result.Add((file, paths ?? []));
        }
        return result;
    }

    /// <summary>At start, before serving: thaws every cgroup a previous daemon recorded as frozen
    /// and removes the records. A cgroup that is gone (its container removed since) needs nothing;
    /// a thaw that fails keeps its record for the next start. Returns the cgroups thawed.</summary>
    public int ThawLeftovers(ICgroupManagerFactory cgroups, Action<string, Exception> failed)
    {
        var thawed = 0;
        foreach (var (file, paths) in Leftovers())
        {
            var all = true;
            foreach (var path in paths)
            {
                try { cgroups.Create(path).Thaw(); thawed++; }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    if (e is CgroupException { Errno: 2 } or DirectoryNotFoundException or FileNotFoundException) continue;
                    all = false;
                    failed(path, e);
                }
            }
            if (all) Forget(file);
        }
        return thawed;
    }
}
