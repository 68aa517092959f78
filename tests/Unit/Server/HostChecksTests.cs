using CriRuntime.Config;
using CriRuntime.Server;

namespace CriRuntime.Tests.Unit.Server;

public class HostChecksTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("hostchecks").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static CriRuntimeConfig WithDriver(string driver) =>
        new() { Runtime = new CriRuntimeConfig().Runtime with { CgroupDriver = driver } };

    [Fact]
    public void Cgroupfs_Starts()
    {
        HostChecks.CgroupDriver(WithDriver("cgroupfs"), Path.Combine(_dir, "absent"));
    }

    [Fact]
    public void Systemd_WithoutSystemd_IsRefused_NamingKeyAndWhy()
    {
        var e = Assert.Throws<StartupException>(() => HostChecks.CgroupDriver(WithDriver("systemd"), Path.Combine(_dir, "absent")));
        Assert.Contains("runtime.cgroup_driver", e.Message);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void Systemd_OnASystemdHost_IsRefused_AsNotSupported()
    {
        var e = Assert.Throws<StartupException>(() => HostChecks.CgroupDriver(WithDriver("systemd"), _dir));
        Assert.Contains("runtime.cgroup_driver", e.Message);
        Assert.Contains("not supported", e.Message);
    }
}
