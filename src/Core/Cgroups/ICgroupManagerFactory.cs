namespace CriRuntime.Cgroups;

/// <summary>Where the daemon's controllers get a cgroup manager for a path: the node's own
/// (<see cref="HostCgroupManagers"/>) in the daemon, a fake in unit tests.</summary>
public interface ICgroupManagerFactory
{
    ICgroupManager Create(string path);
}

/// <summary>Managers for this node's cgroup layout (<see cref="CgroupManagers.Create(string)"/>).</summary>
public sealed class HostCgroupManagers : ICgroupManagerFactory
{
    public static readonly HostCgroupManagers Instance = new();

    public ICgroupManager Create(string path) => CgroupManagers.Create(path);
}
