using System.Text;
using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>Where a pod's memory goes (issue 18: "find where the 1.7 MB goes first"): N pods of one
/// sleeping busybox container each, started on each runtime of the run, with the page cache
/// dropped before and after; the node's /proc/meminfo deltas per pod split by kind (anonymous
/// pages, page tables, kernel stacks, slab, per-cpu, shmem, what is left), the monitor process's
/// own figures (PSS anon/file, threads, page tables, descriptors by kind) and the kernel objects
/// per pod (mounts, cgroups, network devices). N: $BREAKDOWN_PODS, default 50.</summary>
public sealed class MemoryBreakdownSection : IBenchSection
{
    public string Name => "memory";
    public string Title => "Memory per pod: where it goes (issue 18)";
    public bool UsesRuntimes => true;

    private static readonly string[] MeminfoKeys =
        ["AnonPages", "PageTables", "KernelStack", "SUnreclaim", "SReclaimable", "Percpu", "Shmem", "Cached", "Buffers"];
    private static readonly string[] RollupKeys = ["Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Rss", "Private_Dirty", "Private_Clean"];

    private sealed record Result(string Runtime, int Pods, int Running, double UsedKb, Dictionary<string, double> MeminfoKb,
        int Monitors, Dictionary<string, double> MonitorKb, double Threads, double VmPteKb, Dictionary<string, double> Fds,
        double Mounts, double Cgroups, double NetDevices, List<string> Errors);

    private readonly List<Result> _results = [];

    private static int Count() =>
        int.TryParse(Environment.GetEnvironmentVariable("BREAKDOWN_PODS"), out var n) && n > 0 ? n : 50;

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        var n = Count();
        foreach (var rt in ctx.Runtimes)
        {
            Console.WriteLine($"[memory] {rt.Name}: {n} pods ...");
            var r = await MeasureAsync(rt, new Workloads(rt, ctx.Env), n, ct);
            Console.WriteLine($"  {r.Running}/{n} running, {r.UsedKb:F0} KiB per pod, monitor PSS {r.MonitorKb["Pss"]:F0} KiB, errors {r.Errors.Count}");
            foreach (var e in r.Errors.Take(5)) Console.WriteLine("    " + e);
            _results.Add(r);
        }
        // What the same kernel objects cost with no runtime at all: the floor under every column.
        Console.WriteLine($"[memory] kernel floor: {n} bare pods ...");
        var floor = await KernelFloorAsync(n, ct);
        Console.WriteLine($"  {floor.UsedKb:F0} KiB per pod, errors {floor.Errors.Count}");
        _results.Add(floor);
    }

    /// <summary>N "bare pods" made without a runtime: a process in new net, ipc, uts, pid and mount
    /// namespaces (`unshare --fork --mount-proc`, so a small C parent and its child, as our monitor
    /// and its container), a veth pair on a bridge of its own with an address and lo up, and a pod
    /// and a container cgroup in each v1 hierarchy of memory, cpu, cpuacct, pids and blkio (or
    /// the unified one). Measured as the pods are: the node with the page cache dropped, before and
    /// after. No runtime can go below it with the same isolation.</summary>
    private static async Task<Result> KernelFloorAsync(int n, CancellationToken ct)
    {
        const string Bridge = "crfloor0", Parent = "crbench-floor";
        var errors = new List<string>();
        string[] hierarchies = Directory.Exists("/sys/fs/cgroup/memory")
            ? [.. new[] { "memory", "cpu", "cpuacct", "pids", "blkio" }.Select(h => $"/sys/fs/cgroup/{h}").Where(Directory.Exists)]
            : ["/sys/fs/cgroup"];
        var holders = new List<System.Diagnostics.Process>();
        Procs.Run("ip", "link", "add", Bridge, "type", "bridge");
        var before = Snapshot();
        try
        {
            Procs.Run("ip", "link", "set", Bridge, "up");
            for (var i = 0; i < n; i++)
            {
                var holder = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("unshare",
                    ["--net", "--ipc", "--uts", "--pid", "--mount", "--fork", "--mount-proc", "sleep", "3600"]) { RedirectStandardError = true })!;
                holders.Add(holder);
                var child = "";
                for (var wait = 0; wait < 200 && child.Length == 0; wait++)
                {
                    child = File.ReadAllText($"/proc/{holder.Id}/task/{holder.Id}/children").Trim();
                    if (child.Length == 0) await Task.Delay(10, ct);
                }
                foreach (var h in hierarchies)
                {
                    var dir = Path.Combine(h, Parent, $"pod{i}", "c");
                    Directory.CreateDirectory(dir);
                    File.WriteAllText(Path.Combine(dir, "cgroup.procs"), child.Length > 0 ? child : holder.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                }
                var ns = holder.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
                Procs.Run("ip", "link", "add", $"crfl{i}", "type", "veth", "peer", "name", $"crflp{i}");
                Procs.Run("ip", "link", "set", $"crflp{i}", "netns", ns);
                Procs.Run("ip", "link", "set", $"crfl{i}", "master", Bridge, "up");
                Procs.Run("nsenter", "-t", ns, "-n", "ip", "addr", "add", $"10.61.{i / 250}.{i % 250 + 1}/16", "dev", $"crflp{i}");
                Procs.Run("nsenter", "-t", ns, "-n", "ip", "link", "set", $"crflp{i}", "up");
                Procs.Run("nsenter", "-t", ns, "-n", "ip", "link", "set", "lo", "up");
            }
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or System.ComponentModel.Win32Exception)
        {
            errors.Add($"bare pod: {e.Message}");
        }
        var after = Snapshot();
        // Down again: the namespaces' pid 1 first (it takes its veth end with it), then the cgroups.
        // Every bare pod's processes are in each hierarchy: one hierarchy lists them all.
        for (var i = 0; i < n; i++)
        {
            var procs = Path.Combine(hierarchies[0], Parent, $"pod{i}", "c", "cgroup.procs");
            if (!File.Exists(procs)) continue;
            foreach (var pid in File.ReadAllText(procs).Split('\n', StringSplitOptions.RemoveEmptyEntries)) Procs.Signal(int.Parse(pid, System.Globalization.CultureInfo.InvariantCulture), 9);
        }
        foreach (var holder in holders) { await holder.WaitForExitAsync(ct); holder.Dispose(); }
        foreach (var h in hierarchies)
        {
            for (var i = 0; i < n; i++)
                foreach (var dir in new[] { Path.Combine(h, Parent, $"pod{i}", "c"), Path.Combine(h, Parent, $"pod{i}") })
                    for (var tries = 0; Directory.Exists(dir); tries++)
                    {
                        try { Directory.Delete(dir); }
                        catch (IOException) when (tries < 100) { await Task.Delay(50, ct); } // its last process is still being reaped
                    }
            if (Directory.Exists(Path.Combine(h, Parent))) Directory.Delete(Path.Combine(h, Parent));
        }
        Procs.TryRun("ip", "link", "del", Bridge);
        return new Result("kernel floor (no runtime)", n, holders.Count, (after.Used - before.Used) / (double)n,
            MeminfoKeys.ToDictionary(k => k, k => (after.Meminfo[k] - before.Meminfo[k]) / (double)n),
            0, RollupKeys.ToDictionary(k => k, _ => 0.0), 0, 0, [],
            (after.Mounts - before.Mounts) / (double)n, (after.Cgroups - before.Cgroups) / (double)n,
            (after.NetDevices - before.NetDevices) / (double)n, errors);
    }

    private static async Task<Result> MeasureAsync(RuntimeUnderTest rt, Workloads w, int n, CancellationToken ct)
    {
        var errors = new List<string>();
        // One pod first, not counted: first-use costs (image unpacked, lazily made state).
        var warm = await StartPodsAsync(w, 1, "memwarm", errors, ct);
        var before = Snapshot();
        var ids = await StartPodsAsync(w, n, "mem", errors, ct);
        var after = Snapshot();
        var all = Procs.All();
        var monitors = rt.ShimPids(all).Concat(rt.PausePids(all)).ToList();
        var monitorKb = RollupKeys.ToDictionary(k => k, _ => 0.0);
        double threads = 0, pte = 0;
        var fds = new Dictionary<string, double>();
        var counted = 0;
        foreach (var pid in monitors)
        {
            try
            {
                var rollup = File.ReadAllText($"/proc/{pid}/smaps_rollup");
                var status = File.ReadAllText($"/proc/{pid}/status");
                foreach (var k in RollupKeys) monitorKb[k] += Stats.MeminfoKb(rollup, k);
                threads += Stats.MeminfoKb(status, "Threads");
                pte += Stats.MeminfoKb(status, "VmPTE");
                foreach (var kind in FdKinds(pid)) fds[kind] = fds.GetValueOrDefault(kind) + 1;
                counted++;
            }
            catch (IOException) { }
        }
        int running;
        using (var c = w.Client())
            running = (await c.Runtime.ListContainersAsync(new ListContainersRequest
            {
                Filter = new ContainerFilter { State = new ContainerStateValue { State = ContainerState.ContainerRunning } },
            }, new CallOptions(deadline: DateTime.UtcNow.AddMinutes(1), cancellationToken: ct))).Containers.Count - warm.Count;
        await TearDownAsync(w, [.. warm, .. ids], errors, ct);

        var pods = Math.Max(1, ids.Count);
        // The monitors of the warm-up pod are among those measured: their figures are per pod over all.
        var allPods = Math.Max(1, ids.Count + warm.Count);
        return new Result(rt.Name, n, running, (after.Used - before.Used) / (double)pods,
            MeminfoKeys.ToDictionary(k => k, k => (after.Meminfo[k] - before.Meminfo[k]) / (double)pods),
            counted, monitorKb.ToDictionary(kv => kv.Key, kv => kv.Value / allPods), threads / allPods, pte / allPods,
            fds.ToDictionary(kv => kv.Key, kv => kv.Value / allPods),
            (after.Mounts - before.Mounts) / (double)pods, (after.Cgroups - before.Cgroups) / (double)pods,
            (after.NetDevices - before.NetDevices) / (double)pods, errors);
    }

    private sealed record Node(long Used, Dictionary<string, long> Meminfo, int Mounts, long Cgroups, int NetDevices);

    /// <summary>The node after dropping the page cache (as in the issue's measurement).</summary>
    private static Node Snapshot()
    {
        File.WriteAllText("/proc/sys/vm/drop_caches", "3");
        var text = File.ReadAllText("/proc/meminfo");
        return new Node(Stats.MeminfoKb(text, "MemTotal") - Stats.MeminfoKb(text, "MemAvailable"),
            MeminfoKeys.ToDictionary(k => k, k => Stats.MeminfoKb(text, k)),
            File.ReadAllLines("/proc/self/mountinfo").Length,
            // num_cgroups of every hierarchy (/proc/cgroups: subsys hierarchy num_cgroups enabled), each hierarchy once.
            File.ReadAllLines("/proc/cgroups").Skip(1).Select(l => l.Split('\t')).Where(f => f.Length >= 3)
                .GroupBy(f => f[1]).Sum(g => long.Parse(g.First()[2], System.Globalization.CultureInfo.InvariantCulture)),
            Directory.GetFileSystemEntries("/sys/class/net").Length);
    }

    /// <summary>Each descriptor of the process by what it is: socket, pipe, anon_inode kinds, file.</summary>
    private static IEnumerable<string> FdKinds(int pid)
    {
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            string? target;
            try { target = new FileInfo(fd).LinkTarget; }
            catch (IOException) { continue; }
            if (target is null) continue;
            yield return target.StartsWith("socket:", StringComparison.Ordinal) ? "socket"
                : target.StartsWith("pipe:", StringComparison.Ordinal) ? "pipe"
                : target.StartsWith("anon_inode:", StringComparison.Ordinal) ? target["anon_inode:".Length..].Trim('[', ']')
                : target.StartsWith("/dev/", StringComparison.Ordinal) ? "device"
                : "file";
        }
    }

    private static async Task<List<string>> StartPodsAsync(Workloads w, int n, string prefix, List<string> errors, CancellationToken ct)
    {
        var ids = new System.Collections.Concurrent.ConcurrentBag<string>();
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, Math.Min(5, n)).Select(_ => Task.Run(async () =>
        {
            using var c = w.Client();
            for (var i = Interlocked.Increment(ref next); i < n; i = Interlocked.Increment(ref next))
            {
                var pod = w.Pod($"{prefix}-{i}");
                try
                {
                    var call = new CallOptions(deadline: DateTime.UtcNow.AddMinutes(2), cancellationToken: ct);
                    var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, call)).PodSandboxId;
                    ids.Add(podId);
                    var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = w.Container("sleep", "sleep", "3600"), SandboxConfig = pod }, call)).ContainerId;
                    await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, call);
                }
                catch (RpcException e)
                {
                    lock (errors) errors.Add($"start {prefix}-{i}: {e.Status.StatusCode} {e.Status.Detail}");
                }
            }
        }, ct)));
        return [.. ids];
    }

    private static async Task TearDownAsync(Workloads w, IReadOnlyList<string> ids, List<string> errors, CancellationToken ct)
    {
        using var c = w.Client();
        await Parallel.ForEachAsync(ids, new ParallelOptions { MaxDegreeOfParallelism = 5, CancellationToken = ct }, async (podId, t) =>
        {
            try
            {
                var call = new CallOptions(deadline: DateTime.UtcNow.AddMinutes(2), cancellationToken: t);
                await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, call);
                await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, call);
            }
            catch (RpcException e)
            {
                lock (errors) errors.Add($"tear down {podId}: {e.Status.StatusCode} {e.Status.Detail}");
            }
        });
    }

    public string Markdown(BenchContext ctx)
    {
        var sb = new StringBuilder();
        var n = _results.FirstOrDefault()?.Pods ?? Count();
        sb.AppendLine($"{n} pods of one busybox `sleep` container each, started by 5 clients after one warm-up pod; the page cache is dropped");
        sb.AppendLine("before and after (`/proc/sys/vm/drop_caches`), and every figure is the difference over the pods divided by their number.");
        sb.AppendLine("Node: `/proc/meminfo` (MemTotal - MemAvailable, and its parts). Monitor: our shim per container (idle, it is `criruntime-monitor`), containerd's");
        sb.AppendLine("shim and pause per pod (`smaps_rollup`, `status`, `fd/`). Kernel objects: lines of the host's mountinfo, `num_cgroups` summed");
        sb.AppendLine("over the hierarchies of `/proc/cgroups`, entries of `/sys/class/net`. The machine is shared: node figures carry the noise of");
        sb.AppendLine("other work (a single-digit MiB change elsewhere moves them by ~100 KiB per pod at 50 pods); the monitor's are exact.");
        sb.AppendLine("The last column is the kernel's floor: as many bare pods made without any runtime, with the same isolation (a process in");
        sb.AppendLine("new net, ipc, uts, pid and mount namespaces under `unshare --fork --mount-proc`, so a small parent and its child; a veth on a");
        sb.AppendLine("bridge with an address; a pod and a container cgroup per hierarchy), measured the same way. No runtime goes below it.");
        sb.AppendLine();
        if (_results.Count == 0) { sb.AppendLine("Not run."); return sb.ToString(); }
        sb.AppendLine("| per pod | " + string.Join(" | ", _results.Select(r => r.Runtime)) + " |");
        sb.AppendLine("|---|" + string.Concat(_results.Select(_ => "---:|")));
        void Row(string label, Func<Result, string> value) => sb.AppendLine($"| {label} | {string.Join(" | ", _results.Select(value))} |");
        static string K(double kb) => kb.ToString("F0", System.Globalization.CultureInfo.InvariantCulture);
        static string D(double v) => v.ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        Row("pods running / asked", r => $"{r.Running}/{r.Pods}");
        Row("**memory used (KiB)**", r => $"**{K(r.UsedKb)}**");
        Row("anonymous pages (KiB)", r => K(r.MeminfoKb["AnonPages"]));
        Row("page tables (KiB)", r => K(r.MeminfoKb["PageTables"]));
        Row("kernel stacks (KiB)", r => K(r.MeminfoKb["KernelStack"]));
        Row("slab, unreclaimable (KiB)", r => K(r.MeminfoKb["SUnreclaim"]));
        Row("slab, reclaimable (KiB)", r => K(r.MeminfoKb["SReclaimable"]));
        Row("per-cpu (KiB)", r => K(r.MeminfoKb["Percpu"]));
        Row("shmem (KiB)", r => K(r.MeminfoKb["Shmem"]));
        Row("page cache left after the drop (KiB)", r => K(r.MeminfoKb["Cached"] - r.MeminfoKb["Shmem"] + r.MeminfoKb["Buffers"]));
        Row("monitor processes per pod", r => D(r.Monitors / (double)(r.Pods + 1)));
        Row("monitor PSS (KiB)", r => K(r.MonitorKb["Pss"]));
        Row("- of it anonymous (KiB)", r => K(r.MonitorKb["Pss_Anon"]));
        Row("- of it file-backed (KiB)", r => K(r.MonitorKb["Pss_File"]));
        Row("monitor RSS (KiB)", r => K(r.MonitorKb["Rss"]));
        Row("monitor private dirty (KiB)", r => K(r.MonitorKb["Private_Dirty"]));
        Row("monitor threads", r => D(r.Threads));
        Row("monitor page tables (KiB)", r => K(r.VmPteKb));
        var kinds = _results.SelectMany(r => r.Fds.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        foreach (var kind in kinds) Row($"monitor fds: {kind}", r => D(r.Fds.GetValueOrDefault(kind)));
        Row("mounts", r => D(r.Mounts));
        Row("cgroups (all hierarchies)", r => D(r.Cgroups));
        Row("network devices", r => D(r.NetDevices));
        Row("errors", r => r.Errors.Count.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return sb.ToString();
    }
}
