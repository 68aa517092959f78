using System.Formats.Tar;
using System.Text;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Containers.CountingContainer;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>Restore from a checkpoint archive through CreateContainer + StartContainer
/// (docs/checkpoint.md, "Restore"), with requests shaped as the kubelet sends them. Needs
/// criu >= 4.2 (hack/deps.sh).</summary>
[Collection(RegistryCollection.Name)]
public class RestoreTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    /// <summary>A kubelet-shaped pod (its logs under the node's kubelet/logs), tracked for teardown.</summary>
    internal static async Task<(string PodId, PodSandboxConfig Sandbox, KubePod Pod)> KubePodAsync(TestNode node, string name)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await node.C.RunPodAsync(sandbox);
        node.Track(podId);
        return (podId, sandbox, pod);
    }

    internal static async Task<string> ImageIdAsync(TestNode node) =>
        (await node.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = node.Busybox } })).Image.Id;

    [Fact]
    public async Task RestoredCounter_InANewPod_ContinuesFromTheCheckpointedValue_WithItsWritableLayer()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var imageId = await ImageIdAsync(node);
        var (oldPodId, oldSandbox, oldPod) = await KubePodAsync(node, "counter-a");
        var oldId = await node.C.StartNewAsync(oldPodId, oldSandbox, Kubelet.Container(oldPod, "counter", imageId, node.Busybox, Counter));
        await WaitCountAsync(node.C, oldId, 10);
        // Content of the container's own tmpfs mounts (/dev/shm, /dev), which the daemon captures
        // itself while the tasks are frozen (CRIU binds a fresh tmpfs with it at the restore).
        await node.C.ExecOkAsync(oldId, "sh", "-c", "echo shared > /dev/shm/segment && mkdir /dev/extra && echo made > /dev/extra/file");
        var cgroupView = Timeless(await node.C.ExecOkAsync(oldId, "ls", "-l", "/sys/fs/cgroup"));
        var location = Path.Combine(node.D.Dir, "checkpoint.tar");
        // A lower bound of the value in memory when CRIU froze it (the archive's files are
        // captured after the container runs on, so they may be ahead of it).
        var checkpointed = await CountAsync(node.C, oldId);
        var oldInit = node.D.ContainerPids(oldId).Container.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = oldId, Location = location, Timeout = 60 });
        Assert.True(checkpointed >= 10, $"checkpointed at {checkpointed}");
        var maskedDirs = MaskedDirs(node, oldId);
        var tmpfsMounts = MountInfoOf(oldInit).Where(m => m.FsType == "tmpfs" && !maskedDirs.Contains(m.Point)).Select(m => m.Point).Order(StringComparer.Ordinal).ToList();
        Assert.Contains("/dev/shm", tmpfsMounts);
        // The original goes away, as when a pod is migrated.
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = oldId, Timeout = 0 });

        var (podId, sandbox, pod) = await KubePodAsync(node, "counter-b");
        var config = Kubelet.Container(pod, "counter", location, location, Counter);
        var id = await node.C.CreateAsync(podId, sandbox, config);
        var created = await node.C.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerCreated, created.State);
        // The image it runs is the stored one the archive recorded; what the request named is kept beside it.
        Assert.Equal(imageId, created.ImageId);
        Assert.Equal(node.Busybox, created.Image.Image);
        Assert.Equal(location, created.Image.UserSpecifiedImage);

        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
        // What the process sees continues from the checkpoint, not from 0.
        var first = await CountAsync(node.C, id);
        Assert.True(first >= checkpointed, $"restored counter at {first}, checkpointed at {checkpointed}");
        await WaitCountAsync(node.C, id, first + 3);
        // CRIU put the restored processes into the new container's cgroup (--cgroup-root).
        // This daemon's counters only (its cgroup root is named after its directory): another
        // run's counter on the same machine is not ours to judge.
        var ours = "/" + Path.GetFileName(node.D.Dir) + "/";
        var restored = Processes("count.new").Where(pid => CgroupOf(pid).Contains(ours, StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(restored);
        foreach (var pid in restored)
        {
            var memory = File.ReadAllLines($"/proc/{pid}/cgroup").Single(l => l.Split(':')[1].Split(',').Contains("memory"));
            Assert.EndsWith("/" + id, memory);
            // CRIU restores at nice -10 (the downtime goes first); the processes keep their own 0.
            Assert.Equal("0", NiceOf(pid));
        }
        Assert.Equal("kept\n", await node.C.ExecOkAsync(id, "cat", "/written.txt"));
        Assert.Equal("gone\n", await node.C.ExecOkAsync(id, "sh", "-c", "test -e /etc/group || echo gone"));
        // No tmpfs went through CRIU's tar and gzip inside the frozen time: the masked directories
        // are binds of empty directories, and the container's own tmpfs mounts (/dev, /dev/shm,
        // v1's /sys/fs/cgroup) are in the archive's tmpfs.json with their content. The restored
        // container finds them as they were: the files in them, the devices working, the same
        // file systems and sizes, and the masked directories still hidden (empty, read-only).
        Assert.Equal(0, TmpfsImages(location));
        Assert.Equal(tmpfsMounts, TmpfsManifest(location));
        await AssertTmpfsRestoredAsync(node.C, id, cgroupView);
        await AssertMaskedDirsHiddenAsync(node.C, id);
        // Checkpointed again, a restored container's masked directories (binds of an empty
        // directory now) are declared external again, and a second restore hides them too.
        var again = Path.Combine(node.D.Dir, "checkpoint-again.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = again, Timeout = 60 });
        Assert.Equal(0, TmpfsImages(again));
        Assert.Equal(tmpfsMounts, TmpfsManifest(again));
        var (podId3, sandbox3, pod3) = await KubePodAsync(node, "counter-c");
        var third = await node.C.CreateAsync(podId3, sandbox3, Kubelet.Container(pod3, "counter", again, again, Counter));
        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = third });
        await AssertTmpfsRestoredAsync(node.C, third, cgroupView);
        await AssertMaskedDirsHiddenAsync(node.C, third);
        // StartContainer's fresh tmpfs mounts are bound into the container by CRIU, then gone from the host.
        Assert.DoesNotContain(File.ReadAllLines("/proc/self/mountinfo"), l => l.Contains("/restore-tmpfs/", StringComparison.Ordinal));
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = third, Timeout = 0 });
        // Its stdout goes on into the new container's CRI log, from the checkpointed value on.
        var log = Path.Combine(Kubelet.LogDirectory(pod), "counter", "0.log");
        var logged = File.ReadAllLines(log).Select(l => l.Split(' ', 4)).Where(f => f.Length == 4 && f[1] == "stdout").Select(f => int.Parse(f[3])).ToList();
        Assert.NotEmpty(logged);
        Assert.True(logged[0] >= checkpointed, $"first logged value {logged[0]}, checkpointed at {checkpointed}");

        // Supervised like any container: stopped, it has exited with the signal's code.
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 1 });
        var stopped = await node.C.StatusAsync(id);
        Assert.Equal(ContainerState.ContainerExited, stopped.State);
        Assert.True(stopped.ExitCode is 137 or 143, $"exit code {stopped.ExitCode}");
    }

    /// <summary>The nice value of a process (/proc/PID/stat field 19; the comm in parentheses may hold spaces).</summary>
    private static string NiceOf(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        return stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[16];
    }

    /// <summary>The masked paths of the container's spec (bundle/config.json, where the product
    /// wrote what it decided: the request's list, else SpecBuilder.DefaultMaskedPaths; the
    /// kubelet's list here) that are directories on this kernel's /proc and /sys: those the shim
    /// hides with a tmpfs (the others are files, hidden by /dev/null).</summary>
    private static HashSet<string> MaskedDirs(TestNode node, string id)
    {
        using var spec = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(node.D.Root, "containers", id, "bundle", "config.json")));
        var masked = spec.RootElement.GetProperty("linux").GetProperty("maskedPaths").EnumerateArray().Select(p => p.GetString()!).ToList();
        Assert.NotEmpty(masked);
        return new(masked.Where(Directory.Exists), StringComparer.Ordinal);
    }

    private static List<(string Point, string FsType)> MountInfoOf(string pid) =>
        [.. File.ReadAllLines($"/proc/{pid}/mountinfo").Select(l => l.Split(' ')).Select(f => (f[4], f[Array.IndexOf(f, "-") + 1]))];

    /// <summary>CRIU's images of tmpfs contents (tmpfs-dev-N.tar.gz.img) in a checkpoint archive.</summary>
    private static int TmpfsImages(string archive)
    {
        using var reader = new TarReader(File.OpenRead(archive));
        var n = 0;
        while (reader.GetNextEntry() is { } e)
            if (e.Name.StartsWith("checkpoint/tmpfs-dev-", StringComparison.Ordinal)) n++;
        return n;
    }

    /// <summary>The mount points in the archive's tmpfs.json.</summary>
    private static List<string> TmpfsManifest(string archive)
    {
        using var reader = new TarReader(File.OpenRead(archive));
        while (reader.GetNextEntry() is { } e)
            if (e.Name == "tmpfs.json")
                return [.. System.Text.Json.JsonDocument.Parse(e.DataStream!).RootElement.GetProperty("mounts").EnumerateArray()
                    .Select(m => m.GetProperty("path").GetString()!).Order(StringComparer.Ordinal)];
        return [];
    }

    /// <summary>`ls -l` lines without their month, day and time: a restored container's cgroup
    /// directories are new, and their times are the restore's.</summary>
    private static string Timeless(string ls) =>
        string.Join('\n', ls.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(f => f.Length > 8 ? string.Join(' ', f[..5].Concat(f[8..])) : string.Join(' ', f)));

    private static async Task AssertTmpfsRestoredAsync(CriClient c, string id, string cgroupView)
    {
        Assert.Equal("shared\n", await c.ExecOkAsync(id, "cat", "/dev/shm/segment"));
        Assert.Equal("made\n", await c.ExecOkAsync(id, "cat", "/dev/extra/file"));
        Assert.Equal(cgroupView, Timeless(await c.ExecOkAsync(id, "ls", "-l", "/sys/fs/cgroup")));
        Assert.Equal("3\nok\n", await c.ExecOkAsync(id, "sh", "-c", "echo x > /dev/null && head -c 3 /dev/zero | wc -c && test -e /dev/fd/0 && echo ok"));
        var mounts = (await c.ExecOkAsync(id, "cat", "/proc/self/mountinfo")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split(' ')).ToList();
        string[] Of(string point) => mounts.Last(f => f[4] == point);
        foreach (var (point, size) in new[] { ("/dev", "size=65536k"), ("/dev/shm", "size=65536k") })
        {
            var f = Of(point);
            Assert.Equal("tmpfs", f[Array.IndexOf(f, "-") + 1]);
            Assert.Contains(size, f[Array.IndexOf(f, "-") + 3]);
        }
        Assert.StartsWith("ro,", Of("/sys/fs/cgroup")[5]);
    }

    private static async Task AssertMaskedDirsHiddenAsync(CriClient c, string id)
    {
        const string Script = "for d in /proc/acpi /proc/asound /proc/scsi /sys/firmware; do [ -d $d ] || continue; " +
            "echo \"$d $(ls -A $d | wc -l) $(touch $d/x 2>/dev/null && echo writable || echo read-only)\"; done";
        var lines = (await c.ExecOkAsync(id, "sh", "-c", Script)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines); // this kernel has /sys/firmware and /proc/acpi
        foreach (var line in lines) Assert.EndsWith(" 0 read-only", line);
    }

    private static string CgroupOf(int pid)
    {
        try { return File.ReadAllText($"/proc/{pid}/cgroup"); }
        catch (IOException) { return ""; } // exited meanwhile
    }

    /// <summary>A container whose writable layer is a disk-quota volume (issue 14): the checkpoint
    /// takes its changes from the volume, and the restored container, with a quota of its own, has
    /// them in its new volume.</summary>
    [Fact]
    public async Task ACounterWithADiskQuota_IsCheckpointedFromItsVolume_AndRestoredIntoANewOne()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var imageId = await ImageIdAsync(node);
        const string Quota = "disk-quota.criruntime.io/container.counter";
        var (oldPodId, oldSandbox, oldPod) = await KubePodAsync(node, "quota-a");
        var oldConfig = Kubelet.Container(oldPod, "counter", imageId, node.Busybox, Counter);
        oldConfig.Annotations[Quota] = "64Mi";
        var oldId = await node.C.StartNewAsync(oldPodId, oldSandbox, oldConfig);
        await WaitCountAsync(node.C, oldId, 5);
        // Its changes are in the volume, not in the container's directory.
        Assert.True(File.Exists(Path.Combine(node.D.Root, "containers", oldId, "volume", "upper", "written.txt")));
        Assert.False(Directory.Exists(Path.Combine(node.D.Root, "containers", oldId, "upper")));
        var checkpointed = await CountAsync(node.C, oldId);
        var location = Path.Combine(node.D.Dir, "quota-checkpoint.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = oldId, Location = location, Timeout = 60 });
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = oldId, Timeout = 0 });
        using (var archive = new TarReader(File.OpenRead(location)))
        {
            var entries = new List<string>();
            while (archive.GetNextEntry() is { } e) entries.Add(e.Name);
            Assert.Contains("rootfs-diff.tar", entries);
        }

        var (podId, sandbox, pod) = await KubePodAsync(node, "quota-b");
        var config = Kubelet.Container(pod, "counter", location, location, Counter);
        config.Annotations[Quota] = "64Mi";
        var id = await node.C.CreateAsync(podId, sandbox, config);
        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        Assert.True(File.Exists(Path.Combine(node.D.Root, "containers", id, "volume", "upper", "written.txt")), "the diff went into the new volume");
        Assert.Equal("kept\n", await node.C.ExecOkAsync(id, "cat", "/written.txt"));
        Assert.Equal("gone\n", await node.C.ExecOkAsync(id, "sh", "-c", "test -e /etc/group || echo gone"));
        var first = await CountAsync(node.C, id);
        Assert.True(first >= checkpointed, $"restored counter at {first}, checkpointed at {checkpointed}");
    }

    /// <summary>A listener (AF_INET: needs CRIU >= 4.2 on this kernel) in a kubelet-shaped
    /// container with a volume: restored in a new pod (whose request declares the volume again), it
    /// answers there.</summary>
    [Fact]
    public async Task RestoredTcpListener_InANewPod_Answers()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var imageId = await ImageIdAsync(node);
        var volume = Directory.CreateDirectory(Path.Combine(node.D.Dir, "volume")).FullName;
        string[] server = ["sh", "-c", "echo hi > /www/index.html; httpd -p 8080 -h /www; while true; do sleep 1; done"];
        var (oldPodId, oldSandbox, oldPod) = await KubePodAsync(node, "server-a");
        var oldConfig = Kubelet.Container(oldPod, "server", imageId, node.Busybox, server);
        oldConfig.Mounts.Add(new Mount { ContainerPath = "/www", HostPath = volume });
        var oldId = await node.C.StartNewAsync(oldPodId, oldSandbox, oldConfig);
        await node.C.ExecOkAsync(oldId, "sh", "-c", "until wget -q -O /dev/null http://127.0.0.1:8080/index.html; do sleep 0.05; done");
        var location = Path.Combine(node.D.Dir, "server.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = oldId, Location = location, Timeout = 60 });
        await node.C.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = oldId, Timeout = 0 });

        var (podId, sandbox, pod) = await KubePodAsync(node, "server-b");
        var config = Kubelet.Container(pod, "server", location, location, server);
        config.Mounts.Add(new Mount { ContainerPath = "/www", HostPath = volume });
        var id = await node.C.CreateAsync(podId, sandbox, config);
        await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });

        // No httpd was started in the new container: the answer comes from the restored listener.
        Assert.Equal("hi\n", await node.C.ExecOkAsync(id, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"));
    }

    /// <summary>CRIU images it cannot read: the archive passes CreateContainer's checks, the start
    /// fails, and the container has exited with CRIU's error; one never started is removed cleanly.</summary>
    [Fact]
    public async Task Start_WhenCriuRestoreFails_IsFailedPrecondition_AndTheContainerExitsNamingCriusError()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "broken");
        var archive = WriteArchive(node.D.Dir, await ImageIdAsync(node), []);
        var id = await node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", archive, archive, ["true"]));
        Assert.Equal(ContainerState.ContainerCreated, (await node.C.StatusAsync(id)).State);

        var e = await Assert.ThrowsAsync<RpcException>(async () => await node.C.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("criu restore failed", e.Status.Detail);
        var exited = await node.C.WaitExitedAsync(id);
        Assert.Equal(ContainerState.ContainerExited, exited.State);
        Assert.Equal("StartError", exited.Reason);
        Assert.Contains("criu restore failed", exited.Message);
        Assert.Contains("Error", exited.Message); // the restore.log lines

        var never = await node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "never", archive, archive, ["true"]));
        await node.C.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = never });
        Assert.DoesNotContain((await node.C.Runtime.ListContainersAsync(new ListContainersRequest())).Containers, c => c.Id == never);
    }

    [Fact]
    public async Task CreateFromAnArchive_WithRestoreOff_IsFailedPrecondition()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "restore-off");
        var archive = WriteArchive(node.D.Dir, await ImageIdAsync(node), []);

        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", archive, archive, ["true"])));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("restore = false", e.Status.Detail);
    }

    [Fact]
    public async Task HostileArchives_AreInvalidArgument_AndNothingIsWrittenOutsideTheRoot()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "hostile");
        var imageId = await ImageIdAsync(node);
        var outside = Path.Combine(Path.GetTempPath(), "restore-escape-" + Guid.NewGuid().ToString("N"));

        var cases = new (string Name, string Archive, string Expect)[]
        {
            ("symlink", WriteArchive(node.D.Dir, imageId, [new PaxTarEntry(TarEntryType.SymbolicLink, "checkpoint/pages-1.img") { LinkName = outside }]), "link"),
            ("absolute", WriteArchive(node.D.Dir, imageId, [Entry("/" + outside.TrimStart('/'), "x")]), "absolute"),
            ("dotdot", WriteArchive(node.D.Dir, imageId, [Entry("checkpoint/../../" + Path.GetFileName(outside), "x")]), ".."),
            ("image not stored", WriteArchive(node.D.Dir, "sha256:" + new string('0', 64), []), "not stored"),
            ("undeclared bind mount", WriteArchive(node.D.Dir, imageId, [], bind: "/host-etc"), "/host-etc"),
            // Not a regular file (a fifo would block its reader): refused before it is opened.
            ("directory", node.D.Dir, "not a regular file"),
            // A device node in a tmpfs's captured content: a restore makes only the new spec's devices.
            ("tmpfs device", WriteArchive(node.D.Dir, imageId, [Entry("tmpfs.json", """{"mounts":[{"path":"/dev","options":"size=65536k"}]}"""),
                TmpfsTar(new PaxTarEntry(TarEntryType.BlockDevice, "sda") { DeviceMajor = 8, DeviceMinor = 0 })]), "BlockDevice"),
            ("tmpfs path outside", WriteArchive(node.D.Dir, imageId, [Entry("tmpfs.json", """{"mounts":[{"path":"/dev/../etc"}]}"""),
                TmpfsTar()]), "mounts[0].path"),
        };
        foreach (var (name, archive, expect) in cases)
        {
            var e = await Assert.ThrowsAsync<RpcException>(() => node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", archive, archive, ["true"])));
            Assert.True(e.StatusCode == StatusCode.InvalidArgument, $"{name}: {e.StatusCode}: {e.Status.Detail}");
            Assert.Contains(expect, e.Status.Detail);
        }
        Assert.False(File.Exists(outside) || Directory.Exists(outside), $"{outside} was written");
        Assert.Empty((await node.C.Runtime.ListContainersAsync(new ListContainersRequest())).Containers);
        Assert.Empty(Directory.GetDirectories(Path.Combine(node.D.Root, "containers")));
    }

    /// <summary>The devices and CDI annotations an archive's spec.dump names are never used: the new
    /// container's spec is built from the request alone.</summary>
    [Fact]
    public async Task AnArchivesDevicesAndCdiAnnotations_AreNotGivenToTheRestoredContainer()
    {
        await using var node = await RestoringNodeAsync(_registry);
        var (podId, sandbox, pod) = await KubePodAsync(node, "devices");
        var archive = WriteArchive(node.D.Dir, await ImageIdAsync(node), [], devices: true);

        var id = await node.C.CreateAsync(podId, sandbox, Kubelet.Container(pod, "c", archive, archive, ["true"]));

        var bundle = File.ReadAllText(Path.Combine(node.D.Root, "containers", id, "bundle", "config.json"));
        Assert.DoesNotContain("/dev/sda", bundle);
        Assert.DoesNotContain("cdi.k8s.io", bundle);
        await node.C.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id });
    }

    private static PaxTarEntry TmpfsTar(params TarEntry[] entries)
    {
        var inner = new MemoryStream();
        using (var w = new TarWriter(inner, TarEntryFormat.Pax, leaveOpen: true))
            foreach (var e in entries) w.WriteEntry(e);
        inner.Position = 0;
        return new PaxTarEntry(TarEntryType.RegularFile, "tmpfs-0.tar") { DataStream = inner };
    }

    private static PaxTarEntry Entry(string name, string content) =>
        new(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) };

    /// <summary>A minimal archive (config.dump naming <paramref name="imageId"/>, a spec.dump,
    /// an inventory.img) plus <paramref name="extra"/> entries.</summary>
    private static string WriteArchive(string dir, string imageId, IReadOnlyList<TarEntry> extra, string? bind = null, bool devices = false)
    {
        var path = Path.Combine(dir, $"hostile-{Guid.NewGuid():N}.tar");
        var mounts = bind is null ? "[]" : $"[{{\"destination\":\"{bind}\",\"type\":\"bind\",\"source\":\"/etc\",\"options\":[\"rbind\",\"rw\"]}}]";
        if (devices) mounts += ",\"linux\":{\"devices\":[{\"path\":\"/dev/sda\",\"type\":\"b\",\"major\":8,\"minor\":0}]},\"annotations\":{\"cdi.k8s.io/gpu\":\"vendor.com/gpu=0\"}";
        using var fs = File.Create(path);
        using var tar = new TarWriter(fs, TarEntryFormat.Pax);
        tar.WriteEntry(Entry("config.dump", $"{{\"id\":\"x\",\"name\":\"c\",\"rootfsImageRef\":\"{imageId}\",\"rootfsImageName\":\"busybox\"}}"));
        tar.WriteEntry(Entry("spec.dump", $"{{\"ociVersion\":\"1.0.2\",\"process\":{{\"args\":[\"sh\"],\"cwd\":\"/\"}},\"root\":{{\"path\":\"rootfs\"}},\"mounts\":{mounts}}}"));
        tar.WriteEntry(Entry("checkpoint/inventory.img", "not really"));
        foreach (var e in extra) tar.WriteEntry(e);
        return path;
    }
}
