using CriRuntime.Cri.V1;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.State;

/// <summary>Records written by the version before typed fields (tests/Unit/State/Fixtures, written
/// by that version's stores) still load, every field kept, and the new fields filled from the
/// config they carry.</summary>
public sealed class RecordFixtureTests : IDisposable
{
    private const string PodId = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    private const string ContainerId = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-fixture-").FullName;

    public RecordFixtureTests()
    {
        var fixtures = Path.Combine(AppContext.BaseDirectory, "State", "Fixtures", "v1");
        foreach (var file in Directory.GetFiles(fixtures, "*", SearchOption.AllDirectories))
        {
            var to = Path.Combine(_root, Path.GetRelativePath(fixtures, file));
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(file, to);
        }
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void APodRecordOfThePreviousVersion_LoadsWithEveryField()
    {
        var p = new PodSandboxStore(_root, cgroupRoot: "changed-since").Find(PodId)!;

        Assert.Equal(("web", "default", "uid-1", 2u), (p.Name, p.Namespace, p.Uid, p.Attempt));
        Assert.Equal(PodState.NotReady, p.State);
        Assert.Equal(1_700_000_000_000_000_000, p.CreatedAtNanos);
        Assert.Equal("fast", p.RuntimeHandler);
        Assert.Equal($"/run/criruntime/pods/{PodId}/ns/net", p.NetNs);
        Assert.Equal($"/run/criruntime/pods/{PodId}/ns/ipc", p.IpcNs);
        Assert.Equal($"/run/criruntime/pods/{PodId}/ns/uts", p.UtsNs);
        Assert.Equal($"/run/criruntime/pods/{PodId}/ns/user", p.UserNs);
        Assert.Equal($"/run/criruntime/pods/{PodId}/ns/pid", p.PidNs);
        Assert.Equal(4242, p.PodInitPid);
        Assert.Equal(["10.88.0.7", "fd00::7"], p.Ips);
        Assert.Equal("crio-bridge", p.NetworkName);
        Assert.Equal("/kubepods/burstable/poduid-1", p.CgroupPath);
        Assert.Equal($"/var/lib/criruntime/pods/{PodId}", p.Dir);
        var config = PodSandboxConfig.Parser.ParseFrom(p.Config);
        Assert.Equal("web-host", config.Hostname);
        // Filled from the config, as that version decided them:
        Assert.Equal(PodSandboxRecord.CurrentVersion, p.Version);
        Assert.False(p.OwnsCgroup);
        Assert.Equal(new Dictionary<string, string> { ["app"] = "web", ["tier"] = "front" }, p.Labels);
        Assert.Equal(new Dictionary<string, string> { ["note"] = "kept" }, p.Annotations);
        Assert.Equal(new PodSandboxMetadata { Name = "web", Namespace = "default", Uid = "uid-1", Attempt = 2 }, p.Metadata);
        Assert.Equal(new NamespaceOption(), p.NamespaceModes.ToCri());
        Assert.Null(p.Resources);
    }

    [Fact]
    public void AContainerRecordOfThePreviousVersion_LoadsWithEveryField()
    {
        var c = new ContainerStore(_root).Find(ContainerId)!;

        Assert.Equal((PodId, "app", 1u), (c.PodId, c.Name, c.Attempt));
        Assert.Equal(1_700_000_001_000_000_000, c.CreatedAtNanos);
        Assert.Equal("sha256:" + new string('c', 64), c.ImageId);
        Assert.Equal("docker.io/library/busybox:latest", c.ImageRef);
        Assert.Equal("/var/log/pods/default_web_uid-1/app/1.log", c.LogPath);
        Assert.Equal($"/var/lib/criruntime/containers/{ContainerId}/bundle", c.BundleDir);
        Assert.Equal("/run/criruntime/c/bbbbbbbbbbbbbbbbbbbb", c.StateDir);
        Assert.Equal($"/kubepods/burstable/poduid-1/{ContainerId}", c.CgroupsPath);
        Assert.Equal(ContainerPhase.Exited, c.State);
        Assert.Equal((1_700_000_002_000_000_000, 1_700_000_003_000_000_000), (c.StartedAtNanos, c.FinishedAtNanos));
        Assert.Equal((137, "Error", "killed"), (c.ExitCode, c.Reason, c.Message));
        Assert.Equal((1000u, 1000u), (c.User!.Uid, c.User.Gid));
        Assert.Equal([1000u, 10u], c.User.SupplementalGroups);
        Assert.Equal(["sleep", "1000"], ContainerConfig.Parser.ParseFrom(c.Config).Command);
        // Filled from the config:
        Assert.Equal(ContainerRecord.CurrentVersion, c.Version);
        Assert.Equal(new Dictionary<string, string> { ["io.kubernetes.container.name"] = "app" }, c.Labels);
        Assert.Equal(new Dictionary<string, string> { ["io.kubernetes.container.hash"] = "abc" }, c.Annotations);
        Assert.Equal("Sigquit", c.StopSignal);
        Assert.Equal(3, CriRuntime.Containers.StopSignals.Number(c.StopSignal));
        Assert.Equal(new ContainerMetadata { Name = "app", Attempt = 1 }, c.Metadata);
        var mount = Assert.Single(c.Mounts);
        Assert.Equal(new Mount { ContainerPath = "/data", HostPath = "/srv/data", Readonly = true }, mount.ToCri());
        Assert.Null(c.Resources);
    }

    [Fact]
    public void APodRecordWithoutACgroupPath_GetsTheOneItsCgroupRootGave()
    {
        var path = Path.Combine(_root, "pods", PodId, "sandbox.json");
        var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        json.Remove("cgroupPath");
        var config = PodSandboxConfig.Parser.ParseFrom(Convert.FromBase64String(json["config"]!.GetValue<string>()));
        config.Linux.CgroupParent = "";
        json["config"] = Convert.ToBase64String(Google.Protobuf.MessageExtensions.ToByteArray(config));
        File.WriteAllText(path, json.ToJsonString());

        var p = new PodSandboxStore(_root, cgroupRoot: "criruntime").Find(PodId)!;

        Assert.Equal($"/criruntime/{PodId}", p.CgroupPath);
        Assert.True(p.OwnsCgroup);
    }
}
