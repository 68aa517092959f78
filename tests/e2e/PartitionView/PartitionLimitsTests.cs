using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;
using static CriRuntime.Tests.E2E.Harness.PodHelpers;

namespace CriRuntime.Tests.E2E.PartitionView;

/// <summary>Limits the CRI does not carry, set per pod by annotation and seen from inside the
/// containers: processes per pod, open files per container, the size of /dev/shm.</summary>
[Collection(RegistryCollection.Name)]
public class PartitionLimitsTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Fact]
    public async Task NofileAndShmSizeAnnotations_AreWhatTheContainerSees()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var logDir = Path.Combine(node.D.Dir, "logs");
        var pod = PodConfig("limited", logDir);
        pod.Annotations["nofile-limit.criruntime.io/container.probe"] = "1000:2000";
        pod.Annotations["shm-size.criruntime.io/pod"] = "16Mi";
        var podId = await node.C.RunPodAsync(pod);
        node.Track(podId);
        var probe = await node.C.StartNewAsync(podId, pod, Container("probe", node.Busybox, "sh", "-c",
            "echo soft $(ulimit -n) hard $(ulimit -Hn); df -k /dev/shm; echo done; exec sleep 3600"));
        // Another container of the pod: the pod's /dev/shm size, the runtime's open files.
        var other = await node.C.StartNewAsync(podId, pod, Container("other", node.Busybox, "sh", "-c",
            "echo soft $(ulimit -n); df -k /dev/shm; echo done; exec sleep 3600"));
        await WaitForTextAsync(Path.Combine(logDir, "probe.log"), "done");
        await WaitForTextAsync(Path.Combine(logDir, "other.log"), "done");

        var seen = LogText(Path.Combine(logDir, "probe.log"));
        Assert.Contains("soft 1000 hard 2000", seen);
        // A process exec'd into the container (kubectl exec) gets them too.
        Assert.Equal("1000 2000", (await node.C.ExecOkAsync(probe, "sh", "-c", "echo $(ulimit -n) $(ulimit -Hn)")).Trim());
        Assert.Matches(@"\s16384\s+\d+\s+\d+\s+\d+%\s+/dev/shm", seen);
        var otherSeen = LogText(Path.Combine(logDir, "other.log"));
        Assert.DoesNotContain("soft 1000\n", otherSeen);
        Assert.Matches(@"\s16384\s+\d+\s+\d+\s+\d+%\s+/dev/shm", otherSeen);

        // Without the annotation: Docker's and containerd's 64 MiB.
        var (plainId, plainPod) = await node.RunPodAsync("plain", p => p.LogDirectory = logDir);
        await node.C.StartNewAsync(plainId, plainPod, Container("plain", node.Busybox, "sh", "-c", "df -k /dev/shm; echo done; exec sleep 3600"));
        await WaitForTextAsync(Path.Combine(logDir, "plain.log"), "done");
        Assert.Matches(@"\s65536\s+\d+\s+\d+\s+\d+%\s+/dev/shm", LogText(Path.Combine(logDir, "plain.log")));
        GC.KeepAlive((probe, other));
    }

    [Theory]
    [InlineData("pids-limit.criruntime.io/pod", "lots")]
    [InlineData("shm-size.criruntime.io/pod", "0")]
    [InlineData("nofile-limit.criruntime.io/container.web", "9999999999999")]
    public async Task ABadLimitAnnotation_IsInvalidArgument_NamingIt(string annotation, string value)
    {
        await using var node = await TestNode.StartAsync(_registry);
        var pod = PodConfig("bad");
        pod.Annotations[annotation] = value;
        var e = await Assert.ThrowsAsync<RpcException>(() => node.C.RunPodAsync(pod));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains(annotation, e.Status.Detail);
    }

    [Fact]
    public async Task PodPidsLimit_StopsForkLoopsAtThePodsLimit_AcrossTwoContainers()
    {
        await using var node = await TestNode.StartAsync(_registry);
        var logDir = Path.Combine(node.D.Dir, "logs");
        var pod = PodConfig("forks", logDir);
        pod.Annotations["pids-limit.criruntime.io/pod"] = "20";
        var podId = await node.C.RunPodAsync(pod);
        node.Track(podId);
        // 15 processes, then 15 more in a second container: the pod's 20 stop the second, though
        // neither container has a limit of its own.
        await node.C.StartNewAsync(podId, pod, Container("first", node.Busybox, "sh", "-c",
            "for i in $(seq 14); do sleep 3600 & done; echo started; exec sleep 3600"));
        await WaitForTextAsync(Path.Combine(logDir, "first.log"), "started");
        var second = await node.C.StartNewAsync(podId, pod, Container("second", node.Busybox, "sleep", "3600"));
        var loop = await node.C.Runtime.ExecSyncAsync(new ExecSyncRequest
        {
            ContainerId = second, Cmd = { "sh", "-c", "for i in $(seq 15); do sleep 3600 >/dev/null 2>&1 & done; echo all started" }, Timeout = 30,
        });
        Assert.NotEqual(0, loop.ExitCode);
        Assert.Contains("can't fork", loop.Stderr.ToStringUtf8());
        Assert.DoesNotContain("all started", loop.Stdout.ToStringUtf8());

        var (code, report, stderr) = await DaemonProcess.RunCliAsync("beancounters", podId, "--config", node.D.ConfigFile, "--root", node.D.Root, "--state", node.D.State, "--socket", node.D.Socket);
        Assert.True(code == 0, stderr);
        // The pod's cgroup held at most its limit; the kernel counts the refusal in the cgroup
        // that forked (the second container's), not in the one whose limit refused.
        var pod20 = Numproc(report, $"pod {podId} ");
        Assert.Equal(("20", "20"), (pod20[2], pod20[3])); // maxheld, limit
        var refused = Numproc(report, $"container {second} ");
        Assert.Equal("max", refused[3]);
        Assert.True(long.Parse(refused[4]) > 0, report);
        await AssertNodeHealthyAsync(node.C);
    }

    /// <summary>The numproc row (resource, held, maxheld, limit, failcnt) of the block whose title starts so.</summary>
    private static string[] Numproc(string report, string title)
    {
        var lines = report.Split('\n');
        var start = Array.FindIndex(lines, l => l.StartsWith(title, StringComparison.Ordinal));
        Assert.True(start >= 0, report);
        return lines.Skip(start + 1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).First(f => f.Length > 0 && f[0] == "numproc");
    }
}
