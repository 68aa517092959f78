using CriRuntime.Cgroups;

namespace CriRuntime.Accounting;

/// <summary>The beancounters of a cgroup on this host: <see cref="Beancounters.Read"/> over the
/// real cgroup files, with the cgroup layout and huge page sizes read once (neither changes
/// while the daemon runs).</summary>
public sealed class BeancounterSource
{
    public static readonly BeancounterSource Host = new();

    private readonly Lazy<CgroupLayout> _layout = new(CgroupLayout.Detect);
    private readonly Lazy<IReadOnlyList<string>> _hugePageSizes = new(Beancounters.HugePageSizes);

    public IReadOnlyList<BeancounterRow> Read(string cgroupPath) =>
        Beancounters.Read(_layout.Value, cgroupPath, ReadFile, _hugePageSizes.Value);

    /// <summary>A cgroup file's text, or null when it does not exist (the cgroup may be gone).</summary>
    public static string? ReadFile(string path)
    {
        try { return File.ReadAllText(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
