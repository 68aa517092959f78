using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>What the partition /proc view costs (issue 15): N pods of one sleeping busybox
/// container each, first without the view, then with it (annotation partition-view.criruntime.io/proc),
/// on the run's own criruntime daemon. Per container: the node's memory in use (MemTotal -
/// MemAvailable, after minus before, over N: shims, kernel mount and cgroup structures, lxcfs's
/// growth) and the shims' PSS; CreateContainer latency, calls one at a time. One warm-up pod per
/// mode is not counted (the first pod with the view starts lxcfs). N: $PROCVIEW_CONTAINERS, default 100.</summary>
public sealed class ProcViewSection : IBenchSection
{
    public string Name => "procview";
    public string Title => "Partition /proc view: containers with and without it (issue 15)";
    public bool UsesRuntimes => true;

    private const string Annotation = "partition-view.criruntime.io/proc";
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    private sealed record Mode(string Name, int Containers, int Running, List<double> CreateMs, long MemUsedKb, long ShimPssKb, long ShimRssKb, long LxcfsRssKb, List<string> Errors);

    private readonly List<Mode> _modes = [];
    private string _skipped = "";

    private static int Count() =>
        int.TryParse(Environment.GetEnvironmentVariable("PROCVIEW_CONTAINERS"), out var n) && n > 0 ? n : 100;

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        if (ctx.Runtimes.OfType<OurRuntime>().FirstOrDefault() is not { } rt)
        {
            _skipped = "criruntime is not among --runtimes";
            return;
        }
        var n = Count();
        foreach (var view in new[] { false, true })
        {
            Console.WriteLine($"[procview] {n} containers {(view ? "with" : "without")} the /proc view ...");
            var mode = await RunModeAsync(ctx, rt, n, view, ct);
            _modes.Add(mode);
            Console.WriteLine($"  running {mode.Running}/{n}, CreateContainer p50 {Stats.Percentile(mode.CreateMs, 50):F1} ms, " +
                $"{(double)mode.MemUsedKb / n:F0} KiB per container, errors {mode.Errors.Count}");
            foreach (var e in mode.Errors.Take(5)) Console.WriteLine("    " + e);
        }
    }

    private static async Task<Mode> RunModeAsync(BenchContext ctx, OurRuntime rt, int n, bool view, CancellationToken ct)
    {
        var errors = new List<string>();
        var creates = new List<double>();
        var podIds = new List<string>();
        using var c = new CriClient(rt.Socket);
        CallOptions Call() => new(deadline: DateTime.UtcNow + Deadline, cancellationToken: ct);
        PodSandboxConfig Pod(string name)
        {
            var p = new PodSandboxConfig
            {
                Metadata = new PodSandboxMetadata { Name = name, Namespace = "bench", Uid = Guid.NewGuid().ToString() },
                Hostname = name,
                Linux = new LinuxPodSandboxConfig { CgroupParent = rt.CgroupParent, SecurityContext = new LinuxSandboxSecurityContext() },
            };
            if (view) p.Annotations[Annotation] = "true";
            return p;
        }
        ContainerConfig Container() => new()
        {
            Metadata = new ContainerMetadata { Name = "sleep" },
            Image = new ImageSpec { Image = ctx.Env.Image("busybox") },
            Command = { "sleep", "3600" },
            Linux = new LinuxContainerConfig
            {
                SecurityContext = new LinuxContainerSecurityContext(),
                Resources = new LinuxContainerResources { MemoryLimitInBytes = 64 << 20, CpuPeriod = 100000, CpuQuota = 50000 },
            },
        };
        async Task StartOneAsync(string name, bool counted)
        {
            var pod = Pod(name);
            var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, Call())).PodSandboxId;
            podIds.Add(podId);
            var sw = Stopwatch.StartNew();
            var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = Container(), SandboxConfig = pod }, Call())).ContainerId;
            if (counted) creates.Add(sw.Elapsed.TotalMilliseconds);
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, Call());
        }

        var tag = view ? "view" : "plain";
        await StartOneAsync($"procview-{tag}-warmup", counted: false);
        var memBefore = Procs.MemUsedKb();
        var shimsBefore = Procs.Memory(rt.ShimPids(Procs.All()));
        for (var i = 0; i < n; i++)
        {
            try { await StartOneAsync($"procview-{tag}-{i}", counted: true); }
            catch (RpcException e) { errors.Add($"pod {i}: {e.Status.StatusCode} {e.Status.Detail}"); }
        }
        var all = Procs.All();
        var memUsed = Procs.MemUsedKb() - memBefore;
        var shims = Procs.Memory(rt.ShimPids(all));
        var lxcfs = Procs.Memory(all.Where(p => p.Comm == "lxcfs" && p.Cmdline.Contains(rt.State, StringComparison.Ordinal)).Select(p => p.Pid));
        var running = (await c.Runtime.ListContainersAsync(new ListContainersRequest
        {
            Filter = new ContainerFilter { State = new ContainerStateValue { State = ContainerState.ContainerRunning } },
        }, Call())).Containers.Count - 1; // the warm-up's

        var queue = new System.Collections.Concurrent.ConcurrentQueue<string>(podIds);
        await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => Task.Run(async () =>
        {
            using var tc = new CriClient(rt.Socket);
            while (queue.TryDequeue(out var podId))
            {
                try
                {
                    await tc.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, Call());
                    await tc.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, Call());
                }
                catch (RpcException e) { lock (errors) errors.Add($"tear down {podId}: {e.Status.StatusCode} {e.Status.Detail}"); }
            }
        }, ct)));
        return new Mode(view ? "with the view" : "without", n, running, creates, memUsed,
            shims.PssKb - shimsBefore.PssKb, shims.RssKb - shimsBefore.RssKb, lxcfs.RssKb, errors);
    }

    public string Markdown(BenchContext ctx)
    {
        if (_skipped.Length > 0) return $"Not measured: {_skipped}.";
        static string F(double v, string f = "F1") => double.IsNaN(v) ? "n/a" : v.ToString(f, System.Globalization.CultureInfo.InvariantCulture);
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{_modes.FirstOrDefault()?.Containers ?? 0} pods of one `sleep` container each (64 MiB, half a CPU), created one at a time on our daemon, first without the");
        sb.AppendLine("partition /proc view, then with it (`partition-view.criruntime.io/proc: \"true\"`: eight read-only lxcfs bind mounts per container).");
        sb.AppendLine("Memory per container: the node's memory in use (MemTotal - MemAvailable) after the pods started minus before, over the count;");
        sb.AppendLine("it includes the shims, the kernel's mounts and cgroups, and lxcfs's growth. Target: the view adds at most 10% memory and 5 ms to CreateContainer p50.");
        sb.AppendLine();
        sb.AppendLine("| mode | running | CreateContainer p50 ms | p90 ms | node memory per container KiB | shim PSS per container KiB | lxcfs RSS KiB | errors |");
        sb.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var m in _modes)
            sb.AppendLine($"| {m.Name} | {m.Running}/{m.Containers} | {F(Stats.Percentile(m.CreateMs, 50))} | {F(Stats.Percentile(m.CreateMs, 90))} | " +
                $"{F((double)m.MemUsedKb / m.Containers, "F0")} | {F((double)m.ShimPssKb / m.Containers, "F0")} | {(m.LxcfsRssKb > 0 ? m.LxcfsRssKb.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")} | {m.Errors.Count} |");
        if (_modes.Count == 2)
        {
            var (without, with) = (_modes[0], _modes[1]);
            var addedMs = Stats.Percentile(with.CreateMs, 50) - Stats.Percentile(without.CreateMs, 50);
            var memPer = (double)without.MemUsedKb / without.Containers;
            var addedPct = memPer > 0 ? ((double)with.MemUsedKb / with.Containers - memPer) / memPer * 100 : double.NaN;
            sb.AppendLine();
            sb.AppendLine($"Added by the view: CreateContainer p50 {F(addedMs)} ms (target ≤ 5: {(addedMs <= 5 ? "met" : "missed")}), " +
                $"memory per container {F(addedPct)}% (target ≤ 10%: {(addedPct <= 10 ? "met" : "missed")}).");
        }
        return sb.ToString();
    }
}
