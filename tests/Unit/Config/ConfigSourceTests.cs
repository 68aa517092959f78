using CriRuntime.Config;

namespace CriRuntime.Tests.Unit.Config;

public class ConfigSourceTests
{
    private const string Start = """
        log_level = "info"
        [runtime]
        cgroup_driver = "cgroupfs"
        [streaming]
        token_ttl = "1m"
        port = 0
        """;

    private static (ConfigSource Source, Action<string> Edit) Make()
    {
        var toml = Start;
        CriRuntimeConfig Load() => ConfigLoader.LoadFromStrings([("/etc/criruntime/config.toml", toml)]);
        return (new ConfigSource(Load(), Load), t => toml = t);
    }

    [Fact]
    public void Reload_AppliesMirrorsLogLevelTokenTtlAndCniDir_ForTheNextReader()
    {
        var (source, edit) = Make();
        var changed = 0;
        source.Changed += _ => changed++;
        edit("""
            log_level = "debug"
            [cni]
            conf_dir = "/etc/other-cni"
            [registry.mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:5000"]
            [streaming]
            token_ttl = "5m"
            port = 0
            [checkpoint]
            dump_timeout = "30s"
            """);
        var r = source.Reload();
        Assert.Null(r.Error);
        Assert.Empty(r.Kept);
        Assert.Equal("debug", source.Current.LogLevel);
        Assert.Equal("/etc/other-cni", source.Current.Cni.ConfDir);
        Assert.Equal(["http://127.0.0.1:5000"], source.Current.Registry.Mirrors["docker.io"].Endpoints);
        Assert.Equal(TimeSpan.FromMinutes(5), source.Current.Streaming.TokenTtl);
        Assert.Equal(TimeSpan.FromSeconds(30), source.Current.Checkpoint.DumpTimeout);
        Assert.Contains("log_level", r.Applied);
        Assert.Contains("registry.mirrors.\"docker.io\".endpoints", r.Applied);
        Assert.Equal(1, changed);
    }

    [Fact]
    public void Reload_KeepsSocketRootCgroupDriverAndStreamingPort_NamingThem()
    {
        var (source, edit) = Make();
        var before = source.Current;
        edit("""
            socket = "/run/other.sock"
            root = "/var/lib/other"
            log_level = "warn"
            [runtime]
            cgroup_driver = "systemd"
            [streaming]
            token_ttl = "1m"
            port = 10010
            """);
        var r = source.Reload();
        Assert.Null(r.Error);
        Assert.Equal(["root", "runtime.cgroup_driver", "socket", "streaming.port"], r.Kept);
        Assert.Equal(["log_level"], r.Applied);
        Assert.Equal(before.Socket, source.Current.Socket);
        Assert.Equal(before.Root, source.Current.Root);
        Assert.Equal("cgroupfs", source.Current.Runtime.CgroupDriver);
        Assert.Equal(0, source.Current.Streaming.Port);
        Assert.Equal("warn", source.Current.LogLevel);
    }

    [Fact]
    public void Reload_AppliesTheSamplingRatio_AndKeepsTheOtlpEndpoint()
    {
        var (source, edit) = Make();
        edit("""
            [telemetry]
            otlp_endpoint = "http://127.0.0.1:4317"
            sampling_ratio = 0.5
            """);
        var r = source.Reload();
        Assert.Null(r.Error);
        Assert.Equal(["telemetry.sampling_ratio"], r.Applied);
        Assert.Equal(["telemetry.otlp_endpoint"], r.Kept);
        Assert.Equal(0.5, source.Current.Telemetry.SamplingRatio);
        Assert.Equal("", source.Current.Telemetry.OtlpEndpoint);
    }

    [Fact]
    public void Reload_OfAnInvalidConfig_IsRefusedWithTheFileAndKey_AndTheOldStays()
    {
        var (source, edit) = Make();
        var before = source.Current;
        var changed = 0;
        source.Changed += _ => changed++;
        edit("log_level = \"debug\"\n[registry]\ninsecure = 5");
        var r = source.Reload();
        Assert.Equal("/etc/criruntime/config.toml: key 'registry.insecure': must be an array of strings, not the integer 5", r.Error);
        Assert.Same(before, source.Current);
        Assert.Equal(0, changed);
    }

    [Fact]
    public void Reload_WithNothingChanged_AppliesNothing()
    {
        var (source, _) = Make();
        var r = source.Reload();
        Assert.Null(r.Error);
        Assert.Empty(r.Applied);
        Assert.Empty(r.Kept);
    }

    [Fact]
    public void Reload_ReadsTheBlockioClassFileAgain_AChangedFileBeingAnAppliedKey_ABadOneRefused()
    {
        var file = Path.Combine(Directory.CreateTempSubdirectory("blockio").FullName, "blockio.yaml");
        File.WriteAllText(file, "Classes:\n  slow:\n    - Weight: 50\n");
        var toml = $"[storage]\nblockio_config_file = \"{file}\"\n";
        CriRuntimeConfig Load() => ConfigLoader.LoadFromStrings([("/etc/criruntime/config.toml", toml)]);
        var source = new ConfigSource(Load(), Load);
        Assert.Equal(["slow"], source.Current.Storage.Blockio.Classes.Keys);

        File.WriteAllText(file, "Classes:\n  slow:\n    - Weight: 60\n  fast:\n    - Weight: 900\n");
        var r = source.Reload();

        Assert.Null(r.Error);
        Assert.Equal(["storage.blockio_classes"], r.Applied);
        Assert.Equal(["fast", "slow"], source.Current.Storage.Blockio.Classes.Keys.Order());

        File.WriteAllText(file, "Classes:\n  slow:\n    - Weight: 5\n");
        r = source.Reload();

        Assert.Contains("storage.blockio_config_file", r.Error);
        Assert.Contains("class slow: Weight", r.Error);
        Assert.Equal(2, source.Current.Storage.Blockio.Classes.Count); // the old classes stay
        Directory.Delete(Path.GetDirectoryName(file)!, recursive: true);
    }
}
