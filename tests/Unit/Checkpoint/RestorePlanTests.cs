using System.Formats.Tar;
using System.Text;
using CriRuntime.Checkpoint;
using CriRuntime.Containers;
using CriRuntime.Oci;
using CriRuntime.Tests.Unit.Kernel;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>The `criu restore` arguments (taken from the new spec, never from the archive's) and
/// the writable layer put back from rootfs-diff.tar and deleted.files.</summary>
public sealed class RestorePlanTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("restore-plan-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly Spec NewSpec = new()
    {
        Process = new Process(),
        Mounts =
        [
            new Mount { Destination = "/etc/hosts", Type = "bind", Source = "/new/pod/hosts", Options = ["rbind", "rw"] },
            new Mount { Destination = "/proc", Type = "proc", Source = "proc" },
        ],
        Linux = new Linux
        {
            MaskedPaths = ["/proc/kcore", "/proc/acpi"],
            CgroupsPath = "/criruntime/pod1/c1",
            Namespaces =
            [
                new LinuxNamespace { Type = "pid" },
                new LinuxNamespace { Type = "network", Path = "/run/criruntime/ns/net/new" },
                new LinuxNamespace { Type = "ipc", Path = "/run/criruntime/ns/ipc/new" },
                new LinuxNamespace { Type = "mount" },
            ],
        },
    };

    private CheckpointSource Source(params string[] stdio) => new(_dir, new ConfigDump(), new Spec(), Path.Combine(_dir, "checkpoint"), null, [],
        stdio.Length == 0 ? null : new StdioDump { Fds = stdio });

    private static string After(IReadOnlyList<string> args, string flag) => args[args.ToList().IndexOf(flag) + 1];

    [Fact]
    public void Build_SuppliesTheNewSpecsBindSourcesAndDevNullForMaskedPaths_AsExternalMounts()
    {
        var plan = RestorePlan.Build("/usr/local/sbin/criu", ["CRIU_FAULT=130"], Source(), _dir, "/b/rootfs", NewSpec, NewSpec.Linux!.CgroupsPath!);

        var externals = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--external").Select(x => plan.Args[x.i + 1]).ToList();
        Assert.Equal(["mnt[/dev/full]:/dev/full", "mnt[/dev/null]:/dev/null", "mnt[/dev/random]:/dev/random", "mnt[/dev/tty]:/dev/tty",
            "mnt[/dev/urandom]:/dev/urandom", "mnt[/dev/zero]:/dev/zero",
            "mnt[/etc/hosts]:/new/pod/hosts", "mnt[/proc/acpi]:/dev/null", "mnt[/proc/kcore]:/dev/null"], externals);
        Assert.Equal("/b/rootfs", After(plan.Args, "--root"));
        Assert.Equal("/criruntime/pod1/c1", After(plan.Args, "--cgroup-root"));
        Assert.Contains("--restore-sibling", plan.Args);
        Assert.Contains("--restore-detached", plan.Args);
        Assert.Equal(["CRIU_FAULT=130"], plan.Env);
        Assert.Equal(plan.PidFile, After(plan.Args, "--pidfile"));
        // The restore runs ahead of the node's other work, as the daemon's own CRIU runs do.
        Assert.Equal(Criu.CriuNice, plan.Nice);
    }

    [Fact]
    public void Build_WithAnEmptyDirectory_SuppliesItForEveryMaskedPathADumpMayHaveDeclaredADirectory()
    {
        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/b/rootfs", NewSpec, "/c", emptyDir: "/b/masked-empty");

        var externals = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--external").Select(x => plan.Args[x.i + 1]).ToList();
        // One directory each: CRIU skips the read-only remount of a second external mount of one source.
        Assert.Contains("mnt[masked-dir/proc/acpi]:/b/masked-empty/proc-acpi", externals);
        Assert.Contains("mnt[masked-dir/proc/kcore]:/b/masked-empty/proc-kcore", externals);
        Assert.Contains("mnt[/proc/acpi]:/dev/null", externals); // a masked file of an older dump
    }

    [Fact]
    public void Build_SuppliesTheFreshTmpfsOfEachCapturedTmpfs_UnderItsKey()
    {
        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/b/rootfs", NewSpec, "/c",
            tmpfs: [("/dev", "/b/restore-tmpfs/0"), ("/dev/shm", "/b/restore-tmpfs/1")]);

        var externals = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--external").Select(x => plan.Args[x.i + 1]).ToList();
        Assert.Contains("mnt[tmpfs/dev]:/b/restore-tmpfs/0", externals);
        Assert.Contains("mnt[tmpfs/dev/shm]:/b/restore-tmpfs/1", externals);
    }

    [Fact]
    public void Build_HandsThePodsNetworkNamespaceOver_AndReplacesTheOldStdoutAndStderrPipes()
    {
        var plan = RestorePlan.Build("criu", [], Source("/dev/null", "pipe:[111]", "pipe:[222]"), _dir, "/r", NewSpec, "/c");

        var inherited = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--inherit-fd").Select(x => plan.Args[x.i + 1]).ToList();
        Assert.Equal(["fd[102]:extRootNetNS", "fd[100]:pipe:[111]", "fd[101]:pipe:[222]"], inherited);
        Assert.Equal(new Dictionary<string, string> { ["102"] = "/run/criruntime/ns/net/new" }, plan.Files);
        Assert.Equal((100, 101), (plan.StdoutFd, plan.StderrFd));
    }

    [Fact]
    public void Build_JoinsTheNewPodsUtsAndIpcNamespaces_AsAFreshContainerWould()
    {
        var spec = NewSpec with
        {
            Linux = NewSpec.Linux! with
            {
                Namespaces = [.. NewSpec.Linux.Namespaces!, new LinuxNamespace { Type = "uts", Path = "/run/criruntime/ns/uts/new" }],
            },
        };

        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/r", spec, "/c");

        var joined = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--join-ns").Select(x => plan.Args[x.i + 1]).ToList();
        Assert.Equal(["ipc:/run/criruntime/ns/ipc/new", "uts:/run/criruntime/ns/uts/new"], joined);
        // Only the network namespace is handed over as an fd; none for uts or ipc.
        Assert.Equal(["102"], plan.Files.Keys);
    }

    [Fact]
    public void Build_JoinsNoUtsOrIpcNamespace_WhereTheSpecHasNoPathForThem()
    {
        var spec = NewSpec with { Linux = NewSpec.Linux! with { Namespaces = [new LinuxNamespace { Type = "ipc" }, new LinuxNamespace { Type = "uts" }] } };

        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/r", spec, "/c");

        Assert.DoesNotContain("--join-ns", plan.Args);
    }

    [Fact]
    public void Build_KeepsNamedHierarchiesWhereTheDaemonIs_AndPutsTheRestIntoTheNewCgroup()
    {
        var named = RestorePlan.NamedHierarchies("12:pids:/x\n1:name=systemd:/system.slice/criruntime.service\n0::/x\n");
        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/r", NewSpec, "criruntime/p/c", named);

        var roots = plan.Args.Select((a, i) => (a, i)).Where(x => x.a == "--cgroup-root").Select(x => plan.Args[x.i + 1]).ToList();
        Assert.Equal(["/criruntime/p/c", "name=systemd:/system.slice/criruntime.service"], roots);
    }

    [Fact]
    public void Build_WithStdoutAndStderrOnOnePipe_InheritsItOnce()
    {
        var plan = RestorePlan.Build("criu", [], Source("/dev/null", "pipe:[7]", "pipe:[7]"), _dir, "/r", NewSpec, "/c");

        Assert.Single(plan.Args, a => a.Contains("pipe:[7]"));
        Assert.Equal((100, 100), (plan.StdoutFd, plan.StderrFd));
    }

    [Fact]
    public void Build_RefusesAStdioRecordThatIsNotAPipeName()
    {
        var e = Assert.Throws<InvalidDataException>(() => RestorePlan.Build("criu", [], Source("/dev/null", "pipe:[1] --action-script=/x"), _dir, "/r", NewSpec, "/c"));
        Assert.Contains("stdio.json", e.Message);
    }

    private CheckpointSource WithDiff(Action<TarWriter> diff, params string[] deleted)
    {
        var tarPath = Path.Combine(_dir, "rootfs-diff.tar");
        using (var fs = File.Create(tarPath))
        using (var tar = new TarWriter(fs, TarEntryFormat.Pax))
            diff(tar);
        return new CheckpointSource(_dir, new ConfigDump(), new Spec(), _dir, tarPath, deleted, null);
    }

    [Fact]
    public void RootfsDiff_ExtractsTheDiff_AndWhitesOutDeletedFiles()
    {
        var k = new RecordingHostKernel();
        var upper = Path.Combine(_dir, "upper");
        var source = WithDiff(t => t.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "written.txt") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes("kept\n")) }),
            "/etc/group");

        RootfsDiff.Apply(source, upper, k);

        Assert.Equal("kept\n", File.ReadAllText(Path.Combine(upper, "written.txt")));
        Assert.True(Directory.Exists(Path.Combine(upper, "etc")));
        Assert.Contains($"mknod {Path.Combine(upper, "etc", "group")} 20000 0", k.Calls);
    }

    [Fact]
    public void RootfsDiff_RefusesAWhiteoutThroughASymlinkTheDiffPutThere()
    {
        var k = new RecordingHostKernel();
        var outside = Path.Combine(_dir, "outside");
        Directory.CreateDirectory(outside);
        var source = WithDiff(t => t.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "etc") { LinkName = outside }), "/etc/group");

        var e = Assert.Throws<InvalidDataException>(() => RootfsDiff.Apply(source, Path.Combine(_dir, "upper"), k));

        Assert.Contains("/etc/group", e.Message);
        Assert.DoesNotContain(k.Calls, c => c.StartsWith("mknod", StringComparison.Ordinal));
    }

    [Fact]
    public void MakeMountPoints_MakesRootLevelMountPointsOnly_AndNeverThroughASymlink()
    {
        var rootfs = Directory.CreateDirectory(Path.Combine(_dir, "rootfs")).FullName;
        var outside = Directory.CreateDirectory(Path.Combine(_dir, "outside")).FullName;
        Directory.CreateSymbolicLink(Path.Combine(rootfs, "data"), outside);
        var hostname = Path.Combine(_dir, "hostname");
        File.WriteAllText(hostname, "pod\n");
        var spec = new Spec
        {
            Mounts =
            [
                new Mount { Destination = "/proc", Type = "proc", Source = "proc" },
                new Mount { Destination = "/dev", Type = "tmpfs", Source = "tmpfs" },
                new Mount { Destination = "/dev/termination-log", Type = "bind", Source = hostname, Options = ["rbind"] },
                new Mount { Destination = "/etc/hostname", Type = "bind", Source = hostname, Options = ["rbind"] },
                new Mount { Destination = "/data/volume", Type = "bind", Source = _dir, Options = ["rbind"] },
            ],
        };

        CheckpointRestore.MakeMountPoints(rootfs, spec);

        Assert.True(Directory.Exists(Path.Combine(rootfs, "proc")));
        Assert.True(Directory.Exists(Path.Combine(rootfs, "dev")));
        Assert.True(File.Exists(Path.Combine(rootfs, "etc", "hostname")));
        Assert.Equal("", File.ReadAllText(Path.Combine(rootfs, "etc", "hostname")));
        // Inside /dev (a tmpfs CRIU restores with its content): not ours to make.
        Assert.False(File.Exists(Path.Combine(rootfs, "dev", "termination-log")));
        // /data is a symlink out of the root: nothing is made through it.
        Assert.Empty(Directory.GetFileSystemEntries(outside));
    }

    [Fact]
    public void WithTcpEstablished_RestoresTheConnectionsEstablished_InsteadOfClosed()
    {
        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/r", NewSpec, "/c");

        var kept = RestorePlan.WithTcpEstablished(plan);

        Assert.Contains("--tcp-close", plan.Args);
        Assert.DoesNotContain("--tcp-close", kept.Args);
        Assert.Single(kept.Args, a => a == "--tcp-established");
        Assert.Equal(plan.Args.Count, kept.Args.Count);
    }

    [Fact]
    public void WithLazyPages_AddsLazyPagesOnce_AndTheLazyPagesDaemonSharesTheRestoresImagesAndWorkDirectory()
    {
        var plan = RestorePlan.Build("criu", [], Source(), _dir, "/r", NewSpec, "/c");

        var lazy = RestorePlan.WithLazyPages(RestorePlan.WithLazyPages(plan));
        var daemon = RestorePlan.LazyPagesArgs(lazy, "10.0.0.5", 40123);

        Assert.Single(lazy.Args, a => a == "--lazy-pages");
        Assert.DoesNotContain("--lazy-pages", plan.Args);
        Assert.Equal("lazy-pages", daemon[0]);
        // Its socket (lazy-pages.socket) is found by the restore in the shared work directory.
        Assert.Equal(After(plan.Args, "--work-dir"), After(daemon, "--work-dir"));
        Assert.Equal(After(plan.Args, "--images-dir"), After(daemon, "--images-dir"));
        Assert.Contains("--page-server", daemon);
        Assert.Equal("10.0.0.5", After(daemon, "--address"));
        Assert.Equal("40123", After(daemon, "--port"));
    }
}
