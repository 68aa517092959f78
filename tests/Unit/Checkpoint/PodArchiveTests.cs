using CriRuntime.Cgroups;
using CriRuntime.Checkpoint;
using CriRuntime.Oci;

namespace CriRuntime.Tests.Unit.Checkpoint;

public sealed class PodArchiveTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("podarchive-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PodDump Pod(params string[] names) => new()
    {
        Id = "p1", Name = "web", Namespace = "default", Uid = "u1",
        Containers = [.. names.Select(n => new PodDumpContainer { Name = n, Id = "id-" + n, Archive = PodArchive.ArchiveOf(n) })],
    };

    [Fact]
    public void Write_ThenRead_GivesBackEveryContainerAndItsArchive()
    {
        PodArchive.Write(_dir, Pod("app", "sidecar"), (c, path) => File.WriteAllText(path, c.Name));

        var pod = PodArchive.Read(_dir);

        Assert.Equal(["app", "sidecar"], pod.Containers.Select(c => c.Name));
        Assert.Equal("sidecar", File.ReadAllText(Path.Combine(_dir, "containers", "sidecar.tar")));
        Assert.Equal("u1", pod.Uid);
    }

    [Fact]
    public void Write_WhenAnArchiveFails_LeavesTheOutputDirectoryEmpty()
    {
        Assert.Throws<IOException>(() => PodArchive.Write(_dir, Pod("app", "sidecar"), (c, path) =>
        {
            File.WriteAllText(path, "partial");
            if (c.Name == "sidecar") throw new IOException("disk full");
        }));

        Assert.True(Directory.Exists(_dir));
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Read_RefusesAnArchiveThatIsASymlink()
    {
        PodArchive.Write(_dir, Pod("app"), (_, path) => File.WriteAllText(path, "x"));
        File.Delete(Path.Combine(_dir, "containers", "app.tar"));
        File.CreateSymbolicLink(Path.Combine(_dir, "containers", "app.tar"), "/etc/passwd");

        var e = Assert.Throws<InvalidDataException>(() => PodArchive.Read(_dir));
        Assert.Contains("symlink", e.Message);
    }

    [Theory]
    [InlineData("../../etc", "containers/../../etc.tar")]
    [InlineData("app", "/etc/passwd")]
    [InlineData("app", "containers/other.tar")]
    public void Read_RefusesANameOrArchivePathOutsideTheContainersDirectory(string name, string archive)
    {
        Directory.CreateDirectory(Path.Combine(_dir, "containers"));
        var pod = Pod() with { Containers = [new PodDumpContainer { Name = name, Archive = archive }] };
        File.WriteAllBytes(Path.Combine(_dir, "pod.dump"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(pod, PodArchiveJson.Default.PodDump));

        Assert.Throws<InvalidDataException>(() => PodArchive.Read(_dir));
    }

    [Fact]
    public void Read_OfADirectoryWithoutPodDump_SaysItIsNoPodCheckpoint()
    {
        var e = Assert.Throws<InvalidDataException>(() => PodArchive.Read(_dir));
        Assert.Contains("not a pod checkpoint", e.Message);
    }

    [Fact]
    public void DumpArgs_WithAFrozenCgroup_HandTheFreezerToCriu()
    {
        var args = DumpPlan.Args(42, "/img", "/work", "/rootfs", new Spec(), [], _ => null, "/sys/fs/cgroup/freezer/pods/p/a");

        var i = args.ToList().IndexOf("--freeze-cgroup");
        Assert.True(i >= 0, string.Join(' ', args));
        Assert.Equal("/sys/fs/cgroup/freezer/pods/p/a", args[i + 1]);
        Assert.DoesNotContain("--freeze-cgroup", DumpPlan.Args(42, "/img", "/work", "/rootfs", new Spec(), [], _ => null));
    }

    [Fact]
    public void DumpArgs_HandCriuThePostDumpActionScript()
    {
        var args = DumpPlan.Args(42, "/img", "/work", "/rootfs", new Spec(), [], _ => null, actionScript: "/work/post-dump.sh").ToList();

        Assert.Equal("/work/post-dump.sh", args[args.IndexOf("--action-script") + 1]);
        Assert.Contains("--leave-running", args);
    }

    [Fact]
    public void FreezerDir_IsTheV1FreezersWhereMounted_ElseTheCgroup2One()
    {
        var hybrid = new CgroupLayout { Mode = CgroupMode.Hybrid, V1Mounts = new Dictionary<string, string> { ["freezer"] = "/sys/fs/cgroup/freezer" }, UnifiedMount = "/sys/fs/cgroup/unified" };
        var v2 = new CgroupLayout { Mode = CgroupMode.V2, V1Mounts = new Dictionary<string, string>(), UnifiedMount = "/sys/fs/cgroup" };

        Assert.Equal("/sys/fs/cgroup/freezer/pods/p/a", DumpPlan.FreezerDir(hybrid, "/pods/p/a"));
        Assert.Equal("/sys/fs/cgroup/pods/p/a", DumpPlan.FreezerDir(v2, "pods/p/a"));
    }
}
