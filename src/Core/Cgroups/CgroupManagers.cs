namespace CriRuntime.Cgroups;

/// <summary>Picks the manager for this node's cgroup layout. The layout is read once per process:
/// hierarchies are mounted at boot and do not change under a running runtime.
/// A systemd driver (cgroup_driver = "systemd") would plug in here: a manager that asks systemd
/// over D-Bus to create a transient scope (StartTransientUnit with Delegate=yes) and then wraps
/// the V1/V2/Hybrid manager for the scope's path to write the limits systemd does not own.</summary>
public static class CgroupManagers
{
    private static readonly Lazy<CgroupLayout> Detected = new(CgroupLayout.Detect);

    /// <summary>The layout of this node (read from /proc/self/mountinfo on first use).</summary>
    public static CgroupLayout Layout => Detected.Value;

    /// <summary>The manager for a cgroup at <paramref name="path"/> (relative to the hierarchy
    /// roots, e.g. "kubepods/pod123/abc") on this node.</summary>
    public static ICgroupManager Create(string path) => Create(path, Layout, CgroupFs.Instance);

    public static ICgroupManager Create(string path, CgroupLayout layout, ICgroupFs fs) => layout.Mode switch
    {
        CgroupMode.V1 => new V1Manager(path, layout, fs),
        CgroupMode.V2 => new V2Manager(path, layout.UnifiedMount!, fs),
        CgroupMode.Hybrid => new HybridManager(path, layout, fs),
        _ => throw new ArgumentOutOfRangeException(nameof(layout), layout.Mode, "unknown cgroup mode"),
    };
}
