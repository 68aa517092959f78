using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>Latency samples (ms) per CRI call, and the errors met.</summary>
public sealed class Samples
{
    private readonly Dictionary<string, List<double>> _ms = [];
    private readonly List<string> _errors = [];
    private readonly Lock _lock = new();

    public void Add(string op, double ms) { lock (_lock) { if (!_ms.TryGetValue(op, out var l)) _ms[op] = l = []; l.Add(ms); } }
    public void Error(string what) { lock (_lock) _errors.Add(what); }
    public IReadOnlyList<double> Of(string op) { lock (_lock) return _ms.TryGetValue(op, out var l) ? [.. l] : []; }
    public IReadOnlyList<string> Errors { get { lock (_lock) return [.. _errors]; } }
}

public sealed record DensityResult(int Pods, int Running, double StartSeconds, double TeardownSeconds,
    long DaemonRssKb, int DaemonFds, long ShimRssKb, long ShimPssKb, int Shims, long PauseRssKb, long PausePssKb, int Pauses,
    long MemUsedKb, IReadOnlyList<string> Errors, long DaemonSettledRssKb = 0,
    double StatusMaxMs = double.NaN, double StatusP99Ms = double.NaN, int StatusCalls = 0, double DaemonStatusMaxMs = double.NaN,
    Stats.RssParts? DaemonSettledParts = null, DateTime SettledAt = default, long? DaemonManagedHeapKb = null);

/// <summary>Cold pulls: before each, the image is removed and the runtime's garbage collection
/// (synchronous in both: ours on RemoveImage, containerd's CRI deletes with SynchronousDelete)
/// has dropped its layers; a pull counts as cold when no layer blob is left under the root.</summary>
public sealed class PullSamples
{
    public List<double> Ms { get; } = [];
    public int Cold { get; set; }
    public List<string> Errors { get; } = [];
}

/// <summary>The measured workloads, the same for both runtimes.</summary>
public sealed class Workloads(RuntimeUnderTest rt, BenchEnv env)
{
    public static readonly string[] LifecycleOps =
        ["RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"];

    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);
    private static CallOptions Call(CancellationToken ct) => new(deadline: DateTime.UtcNow + Deadline, cancellationToken: ct);

    public CriClient Client() => new(rt.Socket);

    public PodSandboxConfig Pod(string name) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "bench", Uid = Guid.NewGuid().ToString() },
        Hostname = name,
        Linux = new LinuxPodSandboxConfig { CgroupParent = rt.CgroupParent, SecurityContext = new LinuxSandboxSecurityContext() },
    };

    public ContainerConfig Container(string name, params string[] command) => new()
    {
        Metadata = new ContainerMetadata { Name = name },
        Image = new ImageSpec { Image = env.Image("busybox") },
        Command = { command },
        Linux = new LinuxContainerConfig { SecurityContext = new LinuxContainerSecurityContext(), Resources = new LinuxContainerResources() },
    };

    public async Task PullAsync(string image, CancellationToken ct)
    {
        using var c = Client();
        await c.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = image } }, Call(ct));
    }

    public async Task<VersionResponse> VersionAsync(CancellationToken ct)
    {
        using var c = Client();
        return await c.Runtime.VersionAsync(new VersionRequest(), Call(ct));
    }

    private static async Task<T> Timed<T>(Samples s, string op, Func<Task<T>> call)
    {
        var sw = Stopwatch.StartNew();
        var r = await call();
        s.Add(op, sw.Elapsed.TotalMilliseconds);
        return r;
    }

    /// <summary>One pod through its whole life: run, create, start, exec, stop, remove. The
    /// container stops on SIGTERM (a trap), so StopContainer measures the polite path.</summary>
    public async Task LifecycleAsync(CriClient c, string name, Samples s, CancellationToken ct)
    {
        var pod = Pod(name);
        string? podId = null;
        try
        {
            podId = (await Timed(s, "RunPodSandbox", async () => await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, Call(ct)))).PodSandboxId;
            var config = Container("app", "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait");
            var id = (await Timed(s, "CreateContainer", async () => await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = config, SandboxConfig = pod }, Call(ct)))).ContainerId;
            await Timed(s, "StartContainer", async () => await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, Call(ct)));
            var exec = await Timed(s, "ExecSync", async () => await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { "true" }, Timeout = 10 }, Call(ct)));
            if (exec.ExitCode != 0) s.Error($"{name}: ExecSync exit code {exec.ExitCode}");
            await Timed(s, "StopContainer", async () => await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 10 }, Call(ct)));
            await Timed(s, "RemoveContainer", async () => await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id }, Call(ct)));
            await Timed(s, "StopPodSandbox", async () => await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, Call(ct)));
            await Timed(s, "RemovePodSandbox", async () => await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, Call(ct)));
            podId = null;
        }
        catch (RpcException e)
        {
            s.Error($"{name}: {e.Status.StatusCode} {e.Status.Detail}");
        }
        finally
        {
            if (podId is not null) await RemovePodQuietlyAsync(c, podId, ct);
        }
    }

    private static async Task RemovePodQuietlyAsync(CriClient c, string podId, CancellationToken ct)
    {
        try
        {
            await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, Call(ct));
            await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, Call(ct));
        }
        catch (RpcException) { }
    }

    public async Task<Samples> SequentialAsync(int iterations, CancellationToken ct)
    {
        using var c = Client();
        await LifecycleAsync(c, "warmup", new Samples(), ct); // first-call costs (JIT, page cache) are not counted
        var s = new Samples();
        for (var i = 0; i < iterations; i++) await LifecycleAsync(c, $"seq-{i}", s, ct);
        return s;
    }

    public async Task<(Samples Samples, double WallSeconds)> ConcurrentAsync(int clients, int iterations, CancellationToken ct)
    {
        var s = new Samples();
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, clients).Select(k => Task.Run(async () =>
        {
            using var c = Client();
            for (var i = 0; i < iterations; i++) await LifecycleAsync(c, $"conc-{k}-{i}", s, ct);
        }, ct)));
        return (s, sw.Elapsed.TotalSeconds);
    }

    /// <summary>N pods with one sleeping busybox container each, started by P clients; measured
    /// once all run; then all torn down (StopPodSandbox + RemovePodSandbox) by P clients.</summary>
    public async Task<DensityResult> DensityAsync(int pods, int parallelism, CancellationToken ct)
    {
        var errors = new List<string>();
        var ids = new System.Collections.Concurrent.ConcurrentBag<string>();
        var memBefore = Procs.MemUsedKb(dropCaches: true);
        var (netBefore, heldBefore) = (NetDevices(), Held());
        // The node must keep answering while pods come and go: Status every 100 ms, its latency kept.
        using var polling = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var statusMs = new List<double>();
        var slowStatus = new List<(DateTime At, double Ms)>();
        var poller = Task.Run(async () =>
        {
            using var c = Client();
            while (!polling.IsCancellationRequested)
            {
                var at = DateTime.UtcNow;
                var t = Stopwatch.StartNew();
                try { await c.Runtime.StatusAsync(new StatusRequest(), Call(polling.Token)); }
                catch (RpcException) when (polling.IsCancellationRequested) { break; }
                catch (RpcException e) { lock (errors) errors.Add($"Status: {e.Status.StatusCode} {e.Status.Detail}"); }
                lock (statusMs)
                {
                    statusMs.Add(t.Elapsed.TotalMilliseconds);
                    if (t.Elapsed.TotalMilliseconds > 100) slowStatus.Add((at, t.Elapsed.TotalMilliseconds));
                }
                try { await Task.Delay(100, polling.Token); } catch (OperationCanceledException) { break; }
            }
        }, CancellationToken.None);
        var next = -1;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, parallelism).Select(_ => Task.Run(async () =>
        {
            using var c = Client();
            for (var i = Interlocked.Increment(ref next); i < pods; i = Interlocked.Increment(ref next))
            {
                var pod = Pod($"density-{i}");
                try
                {
                    var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, Call(ct))).PodSandboxId;
                    ids.Add(podId);
                    var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = Container("sleep", "sleep", "3600"), SandboxConfig = pod }, Call(ct))).ContainerId;
                    await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, Call(ct));
                }
                catch (RpcException e)
                {
                    lock (errors) errors.Add($"start pod {i}: {e.Status.StatusCode} {e.Status.Detail}");
                }
            }
        }, ct)));
        var startSeconds = sw.Elapsed.TotalSeconds;

        int running;
        using (var c = Client())
        {
            var list = await c.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { State = new ContainerStateValue { State = ContainerState.ContainerRunning } } }, Call(ct));
            running = list.Containers.Count;
        }
        var all = Procs.All();
        var daemon = Procs.Memory([rt.DaemonPid]);
        var shims = Procs.Memory(rt.ShimPids(all));
        var pause = Procs.Memory(rt.PausePids(all));
        var memUsed = Procs.MemUsedKb(dropCaches: true) - memBefore;
        var fds = Procs.OpenFds(rt.DaemonPid);
        // Steady state: 5 s of what a kubelet sends an idle node (its PLEG relist, every second),
        // then the daemon's RSS again; the one above is right after the burst of starts.
        for (var i = 0; i < 5; i++)
        {
            using (var c = Client())
            {
                await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest(), Call(ct));
                await c.Runtime.ListContainersAsync(new ListContainersRequest(), Call(ct));
            }
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
        }
        var settled = Procs.Memory([rt.DaemonPid]);
        var settledAt = DateTime.UtcNow;
        // Where the settled RSS is, by mapping (the smaps kept beside the bench's logs).
        Stats.RssParts? parts = null;
        try
        {
            var smaps = File.ReadAllText($"/proc/{rt.DaemonPid}/smaps");
            File.WriteAllText(Path.Combine(env.LogDir, $"density-{pods}-{rt.Name}-daemon.smaps"), smaps);
            parts = Stats.RssByMapping(smaps, new FileInfo($"/proc/{rt.DaemonPid}/exe").LinkTarget ?? "");
        }
        catch (IOException) { }

        sw.Restart();
        var queue = new System.Collections.Concurrent.ConcurrentQueue<string>(ids);
        await Task.WhenAll(Enumerable.Range(0, parallelism).Select(_ => Task.Run(async () =>
        {
            using var c = Client();
            while (queue.TryDequeue(out var podId))
            {
                try
                {
                    await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, Call(ct));
                    await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, Call(ct));
                }
                catch (RpcException e)
                {
                    lock (errors) errors.Add($"tear down {podId}: {e.Status.StatusCode} {e.Status.Detail}");
                }
            }
        }, ct)));
        var teardown = sw.Elapsed.TotalSeconds;
        using (var c = Client())
        {
            var left = await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest(), Call(ct));
            if (left.Items.Count > 0) errors.Add($"{left.Items.Count} pods still listed after teardown");
        }
        var shimsLeft = rt.ShimPids(Procs.All()).Count;
        if (shimsLeft > 0) errors.Add($"{shimsLeft} shim processes still running after teardown");
        await polling.CancelAsync();
        await poller;
        // Leftovers the kernel keeps: veths, mounts, cgroups.
        var (netAfter, heldAfter) = (NetDevices(), Held());
        if (netAfter > netBefore) errors.Add($"{netAfter - netBefore} veths left on {BenchEnv.Bridge} after teardown");
        if (heldAfter.Mounts > heldBefore.Mounts) errors.Add($"{heldAfter.Mounts - heldBefore.Mounts} mounts left under {rt.Dir} after teardown");
        if (heldAfter.Cgroups > heldBefore.Cgroups) errors.Add($"{heldAfter.Cgroups - heldBefore.Cgroups} cgroups left below {rt.CgroupParent} after teardown");
        double[] sorted;
        lock (statusMs) sorted = [.. statusMs.Order()];
        // When the slow ones were sent, to find them in the daemon's log.
        foreach (var (at, ms) in slowStatus) Console.WriteLine($"  Status over 100 ms: sent {at:HH:mm:ss.fff} UTC, {ms:F1} ms");
        return new DensityResult(pods, running, startSeconds, teardown, daemon.RssKb, fds, shims.RssKb, shims.PssKb, shims.Count,
            pause.RssKb, pause.PssKb, pause.Count, memUsed, errors, settled.RssKb,
            sorted.Length == 0 ? double.NaN : sorted[^1], sorted.Length == 0 ? double.NaN : sorted[(int)Math.Min(sorted.Length - 1, Math.Ceiling(sorted.Length * 0.99) - 1)], sorted.Length,
            DaemonSettledParts: parts, SettledAt: settledAt);
    }

    /// <summary>Ports on the bench's bridge: a pod's veth that outlives it stays attached.</summary>
    private static int NetDevices() =>
        Directory.Exists($"/sys/class/net/{BenchEnv.Bridge}/brif") ? Directory.GetFileSystemEntries($"/sys/class/net/{BenchEnv.Bridge}/brif").Length : 0;

    /// <summary>Mounts under this runtime's directory (rootfs, namespace pins, shm) and cgroups
    /// below its pods' parent: other work on the machine does not count.</summary>
    private (int Mounts, int Cgroups) Held()
    {
        var mounts = File.ReadAllLines("/proc/self/mountinfo").Count(l => l.Contains(rt.Dir, StringComparison.Ordinal));
        var parent = "/sys/fs/cgroup/memory" + rt.CgroupParent;
        if (!Directory.Exists(parent)) parent = "/sys/fs/cgroup" + rt.CgroupParent;
        var cgroups = Directory.Exists(parent) ? Directory.GetDirectories(parent, "*", SearchOption.AllDirectories).Length : 0;
        return (mounts, cgroups);
    }

    public async Task PullColdOnceAsync(string image, IReadOnlyList<string> layerDigests, PullSamples into, CancellationToken ct)
    {
        using var c = Client();
        try
        {
            await RemoveImageAsync(c, image, ct);
            if (!LayerBlobsPresent(layerDigests)) into.Cold++;
            var sw = Stopwatch.StartNew();
            await c.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = image } }, Call(ct));
            into.Ms.Add(sw.Elapsed.TotalMilliseconds);
        }
        catch (RpcException e)
        {
            into.Errors.Add($"pull: {e.Status.StatusCode} {e.Status.Detail}");
        }
    }

    public async Task RemoveImageAsync(CriClient c, string image, CancellationToken ct)
    {
        try { await c.Images.RemoveImageAsync(new RemoveImageRequest { Image = new ImageSpec { Image = image } }, Call(ct)); }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound) { }
    }

    private bool LayerBlobsPresent(IReadOnlyList<string> digests)
    {
        var names = digests.ToHashSet(StringComparer.Ordinal);
        return Directory.EnumerateFiles(rt.Root, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
            .Any(f => names.Contains(Path.GetFileName(f)));
    }

    /// <summary>Stops and removes every pod the runtime still has (cleanup after a failure).</summary>
    public async Task RemoveAllPodsAsync(CancellationToken ct)
    {
        using var c = Client();
        var pods = await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest(), Call(ct));
        await Parallel.ForEachAsync(pods.Items, new ParallelOptions { MaxDegreeOfParallelism = 10, CancellationToken = ct },
            async (p, t) => await RemovePodQuietlyAsync(c, p.Id, t));
    }
}
