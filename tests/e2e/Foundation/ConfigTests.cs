using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Foundation;

/// <summary>The configuration as an operator meets it: files on disk read by the real binary.</summary>
public class ConfigTests
{
    [Fact]
    public async Task InvalidValue_StopsTheStart_NamingFileAndKey()
    {
        using var d = new DaemonProcess("[runtime]\ncgroup_driver = \"cgroupfs2\"\n");
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("serve", "--config", d.ConfigFile, "--socket", d.Socket, "--root", d.Root, "--state", d.State);
        Assert.Equal(2, code);
        Assert.Contains(d.ConfigFile, stderr);
        Assert.Contains("runtime.cgroup_driver", stderr);
        Assert.Contains("cgroupfs2", stderr);
        Assert.False(File.Exists(d.Socket));
    }

    [Fact]
    public async Task SystemdCgroupDriver_OnAHostWithoutSystemd_StopsTheStart_SayingWhy()
    {
        if (Directory.Exists("/run/systemd/system")) return; // a systemd host gets the other refusal (HostChecksTests)
        using var d = new DaemonProcess("[runtime]\ncgroup_driver = \"systemd\"\n");
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("serve", "--config", d.ConfigFile, "--socket", d.Socket, "--root", d.Root, "--state", d.State);
        Assert.Equal(2, code);
        Assert.Contains("runtime.cgroup_driver", stderr);
        Assert.Contains("/run/systemd/system", stderr);
        Assert.False(File.Exists(d.Socket));
    }

    [Fact]
    public async Task UnknownKey_InADropIn_StopsTheStart_NamingTheDropIn()
    {
        using var d = new DaemonProcess();
        var dropIn = Path.Combine(d.DropInDir, "50-typo.toml");
        await File.WriteAllTextAsync(dropIn, "[registry]\ninsecur = [\"a:5000\"]\n");
        var (code, _, stderr) = await DaemonProcess.RunCliAsync("serve", "--config", d.ConfigFile, "--socket", d.Socket, "--root", d.Root, "--state", d.State);
        Assert.Equal(2, code);
        Assert.Contains(dropIn, stderr);
        Assert.Contains("registry.insecur", stderr);
        Assert.Contains("unknown key", stderr);
    }

    [Fact]
    public async Task DropIns_OverrideTheMainFile_InNameOrder_AndFlagsOverrideBoth()
    {
        using var d = new DaemonProcess("""
            log_level = "warn"
            [registry]
            insecure = ["main.example:5000"]
            [registry.mirrors."registry.k8s.io"]
            endpoints = ["http://127.0.0.1:5000"]
            """);
        await File.WriteAllTextAsync(Path.Combine(d.DropInDir, "10-a.toml"), "[registry]\ninsecure = [\"a.example:5000\"]\n");
        await File.WriteAllTextAsync(Path.Combine(d.DropInDir, "20-b.toml"), "[registry]\ninsecure = [\"b.example:5000\"]\n[images]\npull_progress_timeout = \"90s\"\n");
        await File.WriteAllTextAsync(Path.Combine(d.DropInDir, "ignored.conf"), "this is not toml and not read");
        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("config", "--config", d.ConfigFile, "--log-level", "debug");
        Assert.True(code == 0, stderr);
        Assert.Contains("insecure = [\"b.example:5000\"]", stdout);
        Assert.DoesNotContain("a.example", stdout);
        Assert.Contains("[registry.mirrors.\"registry.k8s.io\"]\nendpoints = [\"http://127.0.0.1:5000\"]", stdout);
        Assert.Contains("pull_progress_timeout = \"1m30s\"", stdout);
        Assert.Contains("log_level = \"debug\"", stdout);
    }

    [Fact]
    public async Task NoConfigFileAtAll_GivesWorkingDefaults()
    {
        var missing = Path.Combine(Path.GetTempPath(), $"criruntime-none-{Guid.NewGuid():N}", "config.toml");
        // Without --config a missing default file is fine; name the default path explicitly via the env-free CLI.
        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("config");
        Assert.True(code == 0, stderr);
        Assert.Contains("socket = \"/run/criruntime/criruntime.sock\"", stdout);
        Assert.Contains("conf_dir = \"/etc/cni/net.d\"", stdout);
        Assert.Contains("bin_dirs = [\"/usr/lib/cni\", \"/opt/cni/bin\"]", stdout);
        // An explicitly named file that does not exist is an error, naming it.
        var (code2, _, stderr2) = await DaemonProcess.RunCliAsync("config", "--config", missing);
        Assert.Equal(2, code2);
        Assert.Contains(missing, stderr2);
    }

    [Fact]
    public async Task PrintedConfig_ReadsBackToTheSameConfig()
    {
        using var d = new DaemonProcess("[registry.mirrors.\"docker.io\"]\nendpoints = [\"http://127.0.0.1:1\", \"https://m.example\"]\n[streaming]\nport = 10010\n");
        var (_, first, _) = await DaemonProcess.RunCliAsync("config", "--config", d.ConfigFile);
        await File.WriteAllTextAsync(d.ConfigFile, first);
        var (code, second, stderr) = await DaemonProcess.RunCliAsync("config", "--config", d.ConfigFile);
        Assert.True(code == 0, stderr);
        Assert.Equal(first, second);
    }
}
