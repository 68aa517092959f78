using CriRuntime.Config;

namespace CriRuntime.Server;

/// <summary>What the configuration asks of the host, checked before the daemon binds its socket
/// (a daemon that would misplace every cgroup must not start).</summary>
public static class HostChecks
{
    /// <summary>The directory systemd creates when it is pid 1 (sd_booted(3)).</summary>
    public const string SystemdRunDir = "/run/systemd/system";

    /// <summary>cgroup_driver "systemd" means the kubelet hands out slice names
    /// (kubepods-burstable-pod….slice) and expects systemd to own the units. This daemon places
    /// cgroups with cgroupfs only; telling the kubelet "systemd" while doing that would put every
    /// pod in the wrong place, so the start is refused, naming the key and the reason.</summary>
    public static void CgroupDriver(CriRuntimeConfig config, string systemdRunDir = SystemdRunDir)
    {
        if (config.Runtime.CgroupDriver != "systemd") return;
        throw new StartupException(Directory.Exists(systemdRunDir)
            ? "runtime.cgroup_driver: \"systemd\" is not supported yet; set \"cgroupfs\" here and cgroupDriver: cgroupfs in the kubelet"
            : $"runtime.cgroup_driver: \"systemd\" needs a host that runs systemd ({systemdRunDir} does not exist); use \"cgroupfs\"");
    }
}
