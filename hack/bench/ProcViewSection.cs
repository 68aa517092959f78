using System.Diagnostics;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>What the partition /proc view costs (issue 15): N pods of one sleeping busybox
/// container each without the view and N with it (annotation partition-view.criruntime.io/proc), alternating,
/// on the run's own criruntime daemon. Per container: the shims' mean PSS, its cgroup's memory
/// usage (the kernel's charge for the container: pages, page tables, its mounts' and cgroup's
/// kernel objects) and lxcfs's RSS growth over N (the node's MemAvailable moves by tens of MB
/// with other work on a shared machine: not usable); CreateContainer latency, calls one at a time. One warm-up pod per
/// mode is not counted (the first pod with the view starts lxcfs). N: $PROCVIEW_CONTAINERS, default 100.</summary>
public sealed class ProcViewSection : IBenchSection
{
    public string Name => "procview";
    public string Title => "Partition /proc view: containers with and without it (issue 15)";
    public bool UsesRuntimes => true;

    private const string Annotation = "partition-view.criruntime.io/proc";
    private static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    private sealed record Mode(string Name, int Containers, int Running, List<double> CreateMs, long CgroupKb, long ShimPssKb, long LxcfsGrowthKb, long LxcfsRssKb, List<string> Errors)
    {
        public double PerContainerKb => (double)(CgroupKb + ShimPssKb + LxcfsGrowthKb) / Containers;
    }

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
        Console.WriteLine($"[procview] {n} containers without and {n} with the /proc view, interleaved ...");
        _modes.AddRange(await RunInterleavedAsync(ctx, rt, n, ct));
        foreach (var mode in _modes)
        {
            Console.WriteLine($"  {mode.Name}: running {mode.Running}/{n}, CreateContainer p50 {Stats.Percentile(mode.CreateMs, 50):F1} ms, " +
                $"{mode.PerContainerKb:F0} KiB per container, errors {mode.Errors.Count}");
            foreach (var e in mode.Errors.Take(5)) Console.WriteLine("    " + e);
        }
    }

    /// <summary>Pods with and without the view alternate (which goes first alternates too), so a
    /// busy moment of the shared machine falls on both alike.</summary>
    private static async Task<Mode[]> RunInterleavedAsync(BenchContext ctx, OurRuntime rt, int n, CancellationToken ct)
    {
        var errors = new[] { new List<string>(), new List<string>() };
        var creates = new[] { new List<double>(), new List<double>() };
        var containerIds = new[] { new List<string>(), new List<string>() };
        var podIds = new List<string>();
        using var c = new CriClient(rt.Socket);
        CallOptions Call() => new(deadline: DateTime.UtcNow + Deadline, cancellationToken: ct);
        PodSandboxConfig Pod(string name, bool view)
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
        async Task StartOneAsync(string name, int mode, bool counted)
        {
            var pod = Pod(name, view: mode == 1);
            try
            {
                var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, Call())).PodSandboxId;
                podIds.Add(podId);
                var sw = Stopwatch.StartNew();
                var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = Container(), SandboxConfig = pod }, Call())).ContainerId;
                if (counted) { creates[mode].Add(sw.Elapsed.TotalMilliseconds); containerIds[mode].Add(id); }
                await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, Call());
            }
            catch (RpcException e) { errors[mode].Add($"{name}: {e.Status.StatusCode} {e.Status.Detail}"); }
        }

        // Not counted: first-call costs, and the first pod with the view starts lxcfs.
        await StartOneAsync("procview-warmup-plain", 0, counted: false);
        await StartOneAsync("procview-warmup-view", 1, counted: false);
        IEnumerable<int> Lxcfs(List<Procs.Proc> all) => all.Where(p => p.Comm == "lxcfs" && p.Cmdline.Contains(rt.State, StringComparison.Ordinal)).Select(p => p.Pid);
        var lxcfsBefore = Procs.Memory(Lxcfs(Procs.All()));
        for (var i = 0; i < n; i++)
            foreach (var mode in i % 2 == 0 ? new[] { 0, 1 } : [1, 0])
                await StartOneAsync($"procview-{(mode == 1 ? "view" : "plain")}-{i}", mode, counted: true);

        var all = Procs.All();
        var lxcfs = Procs.Memory(Lxcfs(all));
        var stats = (await c.Runtime.ListContainerStatsAsync(new ListContainerStatsRequest(), Call())).Stats;
        var running = (await c.Runtime.ListContainersAsync(new ListContainersRequest
        {
            Filter = new ContainerFilter { State = new ContainerStateValue { State = ContainerState.ContainerRunning } },
        }, Call())).Containers.Select(x => x.Id).ToHashSet(StringComparer.Ordinal);
        var modes = new Mode[2];
        for (var m = 0; m < 2; m++)
        {
            var ids = containerIds[m].ToHashSet(StringComparer.Ordinal);
            // The containers' own cgroups: the bench gives every pod the same cgroup parent, so a
            // pod's cgroup here is shared by all of them.
            var cgroupKb = (long)stats.Where(s => ids.Contains(s.Attributes.Id)).Sum(s => (double)(s.Memory?.UsageBytes?.Value ?? 0)) / 1024;
            var shims = Procs.Memory(all.Where(p => p.Comm is "criruntime-shim" or "criruntime-moni" && ids.Any(id => p.Cmdline.Contains(id, StringComparison.Ordinal))).Select(p => p.Pid));
            modes[m] = new Mode(m == 1 ? "with the view" : "without", n, ids.Count(running.Contains), creates[m], cgroupKb,
                shims.Count > 0 ? shims.PssKb * n / shims.Count : 0, m == 1 ? lxcfs.RssKb - lxcfsBefore.RssKb : 0, lxcfs.RssKb, errors[m]);
        }

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
                catch (RpcException e) { lock (errors[0]) errors[0].Add($"tear down {podId}: {e.Status.StatusCode} {e.Status.Detail}"); }
            }
        }, ct)));
        return modes;
    }

    public string Markdown(BenchContext ctx)
    {
        if (_skipped.Length > 0) return $"Not measured: {_skipped}.";
        static string F(double v, string f = "F1") => double.IsNaN(v) ? "n/a" : v.ToString(f, System.Globalization.CultureInfo.InvariantCulture);
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"{_modes.FirstOrDefault()?.Containers ?? 0} pods of one `sleep` container each (64 MiB, half a CPU), created one at a time on our daemon, alternately without and");
        sb.AppendLine("with the partition /proc view (`partition-view.criruntime.io/proc: \"true\"`: eight read-only lxcfs bind mounts per container).");
        sb.AppendLine("Memory per container: its cgroup's usage (what the kernel charges: pages, page tables, the kernel objects of its mounts and cgroups),");
        sb.AppendLine("its shim's PSS, and lxcfs's RSS growth over the count (the node's MemAvailable moves by tens of MB with other work on this shared machine).");
        sb.AppendLine("Target: the view adds at most 10% memory and 5 ms to CreateContainer p50.");
        sb.AppendLine();
        sb.AppendLine("| mode | running | CreateContainer p50 ms | p90 ms | cgroup KiB | shim PSS KiB | lxcfs growth KiB | per container KiB | lxcfs RSS KiB | errors |");
        sb.AppendLine("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        foreach (var m in _modes)
            sb.AppendLine($"| {m.Name} | {m.Running}/{m.Containers} | {F(Stats.Percentile(m.CreateMs, 50))} | {F(Stats.Percentile(m.CreateMs, 90))} | " +
                $"{F((double)m.CgroupKb / m.Containers, "F0")} | {F((double)m.ShimPssKb / m.Containers, "F0")} | {F((double)m.LxcfsGrowthKb / m.Containers, "F0")} | " +
                $"{F(m.PerContainerKb, "F0")} | {(m.LxcfsRssKb > 0 ? m.LxcfsRssKb.ToString(System.Globalization.CultureInfo.InvariantCulture) : "-")} | {m.Errors.Count} |");
        if (_modes.Count == 2)
        {
            var (without, with) = (_modes[0], _modes[1]);
            var addedMs = Stats.Percentile(with.CreateMs, 50) - Stats.Percentile(without.CreateMs, 50);
            var memPer = without.PerContainerKb;
            var addedPct = memPer > 0 ? (with.PerContainerKb - memPer) / memPer * 100 : double.NaN;
            sb.AppendLine();
            sb.AppendLine($"Added by the view: CreateContainer p50 {F(addedMs)} ms (target ≤ 5: {(addedMs <= 5 ? "met" : "missed")}), " +
                $"memory per container {F(addedPct)}% (target ≤ 10%: {(addedPct <= 10 ? "met" : "missed")}).");
        }
        return sb.ToString();
    }
}
