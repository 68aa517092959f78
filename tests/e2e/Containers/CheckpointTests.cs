using System.Formats.Tar;
using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Containers.CountingContainer;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.Containers;

/// <summary>CheckpointContainer through CRIU (docs/checkpoint.md): the archive the kubelet and
/// checkpointctl read. Needs criu >= 4.2 (hack/deps.sh builds it into /usr/local/sbin).</summary>
[Collection(RegistryCollection.Name)]
public class CheckpointTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task CheckpointContainer_WritesTheArchiveFileByFile_AndTheContainerKeepsCounting()
    {
        Assert.True(File.Exists("/usr/local/sbin/criu") || File.Exists("/usr/sbin/criu"), "criu not installed: run hack/deps.sh");
        await using var node = await TestNode.StartAsync(_registry);
        var logs = Path.Combine(node.D.Dir, "logs");
        var (podId, pod) = await node.RunPodAsync("ckpt", p => p.LogDirectory = logs);
        var id = await node.C.StartNewAsync(podId, pod, Container("counter", node.Busybox, Counter));
        await WaitCountAsync(node.C, id, 3);

        var location = Path.Combine(node.D.Dir, "checkpoint.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = location, Timeout = 60 });

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(location));
        var entries = ReadTar(location);
        foreach (var name in new[] { "config.dump", "spec.dump", "status.dump", "rootfs-diff.tar", "deleted.files", "container.log", "dump.log",
                     "checkpoint/inventory.img", "checkpoint/pstree.img" })
            Assert.True(entries.ContainsKey(name), $"{name} missing; archive has {string.Join(", ", entries.Keys)}");
        Assert.Contains(entries.Keys, k => k.StartsWith("checkpoint/core-", StringComparison.Ordinal));
        Assert.Contains(entries.Keys, k => k.StartsWith("checkpoint/pages-", StringComparison.Ordinal));

        using (var config = JsonDocument.Parse(entries["config.dump"]))
        {
            Assert.Equal(id, config.RootElement.GetProperty("id").GetString());
            Assert.Equal("counter", config.RootElement.GetProperty("name").GetString());
            Assert.Equal(node.Busybox, config.RootElement.GetProperty("rootfsImageName").GetString());
        }
        using (var spec = JsonDocument.Parse(entries["spec.dump"]))
            Assert.Equal("sh", spec.RootElement.GetProperty("process").GetProperty("args")[0].GetString());
        using (var status = JsonDocument.Parse(entries["status.dump"]))
            Assert.Equal("running", status.RootElement.GetProperty("state").GetString());
        Assert.Equal(["/etc/group"], JsonSerializer.Deserialize<string[]>(entries["deleted.files"]) ?? []);
        var diff = ReadTar(entries["rootfs-diff.tar"]);
        Assert.Equal("kept\n", System.Text.Encoding.UTF8.GetString(diff["written.txt"]));
        Assert.True(diff.ContainsKey("count"), $"rootfs-diff.tar: {string.Join(", ", diff.Keys)}");
        Assert.DoesNotContain(diff.Keys, k => k.StartsWith("etc/group", StringComparison.Ordinal)); // a whiteout, not a file
        Assert.Contains("Dumping finished successfully", System.Text.Encoding.UTF8.GetString(entries["dump.log"]));
        // CRIU streamed its images into the archive (no copy); its statistics are where checkpointctl reads them.
        Assert.Contains("Dismissing the image streamer", System.Text.Encoding.UTF8.GetString(entries["dump.log"]));
        Assert.True(entries.ContainsKey("stats-dump"), $"stats-dump missing; archive has {string.Join(", ", entries.Keys)}");
        Assert.DoesNotContain(entries.Keys, k => k.Contains("streamer", StringComparison.Ordinal));
        Assert.Contains("\n", System.Text.Encoding.UTF8.GetString(entries["container.log"]));

        // leave-running: still running, and counting on.
        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
        var after = await CountAsync(node.C, id);
        await WaitCountAsync(node.C, id, after + 2);
        // Nothing left in the daemon's scratch space.
        Assert.Empty(Directory.Exists(Path.Combine(node.D.Root, "checkpoints")) ? Directory.GetFileSystemEntries(Path.Combine(node.D.Root, "checkpoints")) : []);
    }

    /// <summary>The writable layer is read while CRIU still holds the container frozen (its
    /// post-dump action script): a shell writing /a then /b as fast as it can, with no fork in the
    /// loop, is caught between two of its own writes, so the archive's /a equals /b or is one ahead
    /// (or one of them is empty: caught between its truncation and its write); read after the thaw,
    /// /b would be ahead of /a by what the loop did while the walk copied the 16 MiB /ab between them.</summary>
    [Fact]
    public async Task CheckpointContainer_OfAShellRewritingTwoFilesInALoop_CapturesThemAsTheyWereWhenFrozen()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, pod) = await node.RunPodAsync("churn");
        var id = await node.C.StartNewAsync(podId, pod, Container("churn", node.Busybox,
            ["sh", "-c", "dd if=/dev/zero of=/ab bs=1M count=16 2>/dev/null; i=0; while true; do i=$((i+1)); echo $i > /a; echo $i > /b; done"]));
        await node.C.ExecOkAsync(id, "sh", "-c", "until [ \"$(cat /b 2>/dev/null)\" -ge 1000 ] 2>/dev/null; do sleep 0.05; done");

        for (var round = 0; round < 3; round++)
        {
            var location = Path.Combine(node.D.Dir, $"churn-{round}.tar");
            await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = location, Timeout = 60 });
            var diff = ReadTar(ReadTar(location)["rootfs-diff.tar"]);
            var a = System.Text.Encoding.UTF8.GetString(diff["a"]).Trim();
            var b = System.Text.Encoding.UTF8.GetString(diff["b"]).Trim();
            Assert.True(a.Length == 0 || b.Length == 0 || long.Parse(a) - long.Parse(b) is 0 or 1,
                $"round {round}: the archive has a={a}, b={b}: not one instant of the process");
            var last = long.Parse(b.Length > 0 ? b : a);
            var now = long.Parse((await node.C.ExecOkAsync(id, "sh", "-c", "until v=$(cat /b) && [ -n \"$v\" ]; do :; done; echo $v")).Trim());
            Assert.True(now > last, $"round {round}: the container did not run on after the checkpoint (archive {last}, now {now})");
        }
    }

    /// <summary>As the kubelet creates it (by image id, seccomp RuntimeDefault, masked paths,
    /// /etc/hosts and the termination log bind-mounted from the pod's directory) plus a volume,
    /// with a TCP listener (AF_INET sockets: CRIU 4.1.1 fails on them on kernels >= 6.16).</summary>
    [Fact]
    public async Task CheckpointContainer_OfAKubeletShapedContainerWithAVolumeAndATcpListener_Succeeds()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = new KubePod { Name = "ckpt-kubelet", LogRoot = Path.Combine(node.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await node.C.RunPodAsync(sandbox);
        node.Track(podId);
        var imageId = (await node.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = node.Busybox } })).Image.Id;
        var config = Kubelet.Container(pod, "server", imageId, node.Busybox,
            ["sh", "-c", "echo hi > /www/index.html; httpd -p 8080 -h /www; " + Counter[2]]);
        var volume = Directory.CreateDirectory(Path.Combine(node.D.Dir, "volume")).FullName;
        config.Mounts.Add(new Mount { ContainerPath = "/www", HostPath = volume });
        var id = await node.C.StartNewAsync(podId, sandbox, config);
        await WaitCountAsync(node.C, id, 2);
        Assert.Equal("hi\n", await node.C.ExecOkAsync(id, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"));

        var location = Path.Combine(node.D.Dir, "checkpoint.tar");
        await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = location, Timeout = 60 });

        var entries = ReadTar(location);
        // (CI once found no dump.log in this archive: the entries it has say more than a KeyNotFoundException.)
        Assert.True(entries.TryGetValue("dump.log", out var dumpLogBytes),
            $"dump.log missing; archive has {string.Join(", ", entries.Select(e => $"{e.Key} ({e.Value.Length} B)"))}");
        var dumpLog = System.Text.Encoding.UTF8.GetString(dumpLogBytes);
        Assert.Contains("Dumping finished successfully", dumpLog);
        // The listener survived the dump and still answers.
        Assert.Equal("hi\n", await node.C.ExecOkAsync(id, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/index.html"));
        var after = await CountAsync(node.C, id);
        await WaitCountAsync(node.C, id, after + 2);
    }

    /// <summary>Without CRIU_FAULT=130 a dump on this VM can wait for a hardware breakpoint that
    /// never fires (measured with CRIU 4.1.1): the timeout must end it, leave the container running
    /// and write nothing.</summary>
    [Fact]
    public async Task CheckpointContainer_WhenCriuHangs_IsDeadlineExceededAfterTheTimeout_AndTheContainerCountsOn()
    {
        await using var node = await TestNode.StartAsync(_registry);
        File.WriteAllText(Path.Combine(node.D.DropInDir, "criu.toml"), "[checkpoint]\ncriu_env = []\n");
        await node.D.RestartAsync();
        var (podId, pod) = await node.RunPodAsync("ckpt-hang");
        var id = await node.C.StartNewAsync(podId, pod, Container("counter", node.Busybox, Counter));
        await WaitCountAsync(node.C, id, 2);
        var location = Path.Combine(node.D.Dir, "checkpoint.tar");

        var started = DateTime.UtcNow;
        RpcException? e = null;
        try { await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = location, Timeout = 3 }); }
        catch (RpcException caught) { e = caught; }

        // Where hardware breakpoints work (not this VM) CRIU simply finishes.
        if (e is null) Assert.True(File.Exists(location));
        else
        {
            Assert.True(e.StatusCode == StatusCode.DeadlineExceeded, $"{e.StatusCode}: {e.Status.Detail}");
            Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30));
            Assert.Empty(Directory.GetFiles(node.D.Dir, "*checkpoint.tar*"));
        }
        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
        var after = await CountAsync(node.C, id);
        await WaitCountAsync(node.C, id, after + 2);
    }

    /// <summary>A daemon killed while CRIU dumps leaves CRIU running (it is not killed with its
    /// parent); the next daemon kills it, so that it cannot keep the container stopped, and removes
    /// the scratch directory. A stand-in for criu that blocks stands for a hung dump.</summary>
    [Fact]
    public async Task DaemonRestart_DuringACheckpoint_KillsTheLeftoverCriu_AndRemovesItsScratch()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var fifo = Path.Combine(node.D.Dir, "criu-started");
        Assert.Equal(0, Mkfifo(fifo, 0x180));
        var fake = Path.Combine(node.D.Dir, "fake-criu");
        File.WriteAllText(fake, $"#!/bin/sh\ncase \"$1\" in --version) echo 'Version: 4.2.1'; exit 0;; check) exit 0;; esac\necho started > {fifo}\nsleep 1000\n");
        File.SetUnixFileMode(fake, (UnixFileMode)0x1ed);
        File.WriteAllText(Path.Combine(node.D.DropInDir, "criu.toml"), $"[checkpoint]\ncriu_path = \"{fake}\"\n");
        await node.D.RestartAsync();
        var (podId, pod) = await node.RunPodAsync("ckpt-restart");
        var id = await node.C.StartNewAsync(podId, pod, Container("idle", node.Busybox, "sleep", "3600"));

        // Opening a fifo blocks until the stand-in opens it too: on a thread of its own.
        var started = Task.Run(() => File.ReadAllText(fifo));
        var call = node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = Path.Combine(node.D.Dir, "c.tar") }).ResponseAsync;
        Assert.Equal("started\n", await started.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.Single(Directory.GetDirectories(Path.Combine(node.D.Root, "checkpoints")));
        await node.D.KillAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => call.WaitAsync(TimeSpan.FromSeconds(60)));
        Assert.NotEmpty(Processes(fake));

        await node.D.StartAsync();

        Assert.Empty(Processes(fake));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(node.D.Root, "checkpoints")));
        Assert.False(File.Exists(Path.Combine(node.D.Dir, "c.tar")));
        Assert.Equal(ContainerState.ContainerRunning, (await node.C.StatusAsync(id)).State);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "mkfifo", SetLastError = true)]
    private static extern int Mkfifo(string path, uint mode);

    [Fact]
    public async Task StatusVerbose_ReportsCriusVersionAndCheck()
    {
        using var d = new DaemonProcess();
        await d.StartAsync();
        using var c = d.Client();

        var info = (await c.Runtime.StatusAsync(new StatusRequest { Verbose = true })).Info;

        using var criu = JsonDocument.Parse(info["criu"]);
        Assert.StartsWith("4.", criu.RootElement.GetProperty("version").GetString());
        // With the default criu_env (CRIU_FAULT=130: no hardware breakpoints).
        Assert.True(criu.RootElement.GetProperty("checkOk").GetBoolean(), criu.RootElement.GetProperty("check").GetString());
        Assert.EndsWith("/criu", criu.RootElement.GetProperty("path").GetString());
    }

    [Fact]
    public async Task CheckpointContainer_OfAContainerNotRunning_IsFailedPrecondition_AndWritesNothing()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, pod) = await node.RunPodAsync("ckpt-created");
        var id = await node.C.CreateAsync(podId, pod, Container("idle", node.Busybox, "sleep", "3600"));
        var location = Path.Combine(node.D.Dir, "checkpoint.tar");

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = location }));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("not running", e.Status.Detail);
        Assert.Empty(Directory.GetFiles(node.D.Dir, "*checkpoint.tar*"));
    }

    [Fact]
    public async Task CheckpointContainer_WithARelativeLocation_IsInvalidArgument()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var (podId, pod) = await node.RunPodAsync("ckpt-relative");
        var id = await node.C.StartNewAsync(podId, pod, Container("idle", node.Busybox, "sleep", "3600"));

        var e = await Assert.ThrowsAsync<RpcException>(async () =>
            await node.C.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = "ckpt.tar" }));

        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("location", e.Status.Detail);
    }

    private static Dictionary<string, byte[]> ReadTar(string path)
    {
        using var fs = File.OpenRead(path);
        return ReadTar(fs);
    }

    private static Dictionary<string, byte[]> ReadTar(byte[] data) => ReadTar(new MemoryStream(data));

    private static Dictionary<string, byte[]> ReadTar(Stream s)
    {
        var result = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        using var tar = new TarReader(s);
        while (tar.GetNextEntry() is { } e)
        {
            var ms = new MemoryStream();
            e.DataStream?.CopyTo(ms);
            result[e.Name.TrimEnd('/')] = ms.ToArray();
        }
        return result;
    }
}
