using System.Diagnostics;
using System.Globalization;
using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using CriRuntime.Tests.E2E.Migration;
using Grpc.Core;
using MigrationApi = CriRuntime.Migration.V1.Migration;

namespace CriRuntime.Bench;

/// <summary>`--only migration` (issue 13): a busybox pod holding 10 MB, 200 MB and 1 GB migrated
/// cold and lazy between two daemons on this machine, set up as the e2e TwoNodes fixture does
/// (docs/migration.md, "Two nodes on one machine"): each its own root, state, socket, cgroup root
/// and CNI network (bridge and subnet), `[checkpoint] restore`, and a migration listener on
/// 127.0.0.1 with certificates of a CA generated for the run. fs.pipe-max-size is set to 4 MiB
/// for the section (lazy needs it) and restored after. The downtime is measured from the pod's
/// output: a loop prints a line every 10 ms, which each node's shim stamps (CLOCK_REALTIME, the
/// CRI log's time) as it reads it; the source's last line before the freeze and the target's
/// first after the restore bound the time the pod ran nowhere. (Not a clock read inside the pod:
/// CRIU restores the tasks in a time namespace whose monotonic and boot clocks continue from the
/// dump, so /proc/uptime inside hides the downtime, and busybox date has no sub-second format.)
/// The migration's own figure (first freeze to the target's answer, on the source) is reported
/// next to it.</summary>
public sealed class MigrationSection(Options opts) : IBenchSection
{
    public string Name => "migration";
    public string Title => "Live migration (issue 13)";
    public bool UsesRuntimes => false;

    private IReadOnlyList<int> SizesMb => opts.MigrationSizes;
    private static readonly string[] Modes = ["cold", "lazy"];
    private int Iterations => opts.MigrationIterations;
    private const string CriuPath = "/usr/local/sbin/criu";
    private const string TargetBridge = "crbench1", TargetSubnet = "10.61.0.0/16";

    /// <summary>One migration. Ticks: the pod's own downtime (last tick on the source to the first
    /// on the target); Reported: the migration's DowntimeMs; Total: Migrate called to DONE (for
    /// lazy, every page arrived).</summary>
    private sealed record Sample(double TicksMs, double ReportedMs, double TotalMs, long DumpMs, long TransferMs, long RestoreMs, long Bytes);

    private readonly Dictionary<(string Mode, int Mb), List<Sample>> _samples = [];
    private readonly List<string> _errors = [];
    /// <summary>The target's Restore steps (ms) per mode and size, from its daemon's Debug log.</summary>
    private readonly Dictionary<(string Mode, int Mb), Dictionary<string, List<double>>> _restoreSteps = [];
    private string _load = "";

    private static string Workload(int mb) =>
        $"dd if=/dev/zero bs={mb}M count=1 | sleep 100000 & while :; do echo tick; sleep 0.01; done";

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        var dir = Path.Combine(ctx.Env.Dir, "migration");
        Directory.CreateDirectory(dir);
        using var certs = new TestCertificates("criruntime-bench-ca");
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        var loadBefore = File.ReadAllText("/proc/loadavg").Split(' ')[..3];
        var targetCni = Path.Combine(dir, "cni-b");
        Directory.CreateDirectory(targetCni);
        File.WriteAllText(Path.Combine(targetCni, "10-bench-b.conflist"), $$$"""
            {"cniVersion":"1.0.0","name":"crbench-b","plugins":[
              {"type":"bridge","bridge":"{{{TargetBridge}}}","isGateway":true,"ipMasq":false,"hairpinMode":true,
               "ipam":{"type":"host-local","ranges":[[{"subnet":"{{{TargetSubnet}}}"}]],"dataDir":"{{{Path.Combine(dir, "cni-b-leases")}}}","routes":[{"dst":"0.0.0.0/0"}]}},
              {"type":"loopback"}
            ]}
            """);
        Node? a = null, b = null;
        try
        {
            a = await NodeAsync(ctx, certs, "mig-a", ctx.Env.CniConfDir);
            b = await NodeAsync(ctx, certs, "mig-b", targetCni);
            using var ca = new CriClient(a.Runtime.Socket);
            using var cb = new CriClient(b.Runtime.Socket);
            foreach (var c in new[] { ca, cb })
                await c.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = ctx.Env.Image("busybox") } }, Call(ct));
            var n = 0;
            foreach (var mb in SizesMb)
                for (var i = 0; i < Iterations; i++)
                    foreach (var mode in Modes)
                    {
                        var what = $"{mode} {mb} MB #{i + 1}";
                        Console.WriteLine($"  {what} ...");
                        try
                        {
                            var s = await OnceAsync(ctx, a, ca, b, cb, mb, mode, $"m{++n}-{mode}-{mb}", Path.Combine(dir, $"logs-{n}"), ct);
                            if (!_samples.TryGetValue((mode, mb), out var l)) _samples[(mode, mb)] = l = [];
                            l.Add(s);
                            Console.WriteLine($"    downtime {s.TicksMs:F0} ms by the pod's ticks, {s.ReportedMs:F0} ms reported (dump {s.DumpMs}, transfer {s.TransferMs}, restore {s.RestoreMs}), total {s.TotalMs:F0} ms, {s.Bytes / 1e6:F1} MB sent");
                        }
                        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
                        {
                            _errors.Add($"{what}: {e.Message}");
                            Console.Error.WriteLine($"    {what}: {e.Message}");
                        }
                        await RemoveAllAsync(ca);
                        await RemoveAllAsync(cb);
                    }
        }
        finally
        {
            var loadAfter = File.ReadAllText("/proc/loadavg").Split(' ')[..3];
            _load = $"load average {string.Join(' ', loadBefore)} before, {string.Join(' ', loadAfter)} after";
            // The target's Debug lines "migration ID: restored on this node: step=1.2ms …".
            var targetLog = Path.Combine(ctx.Env.LogDir, "criruntime-mig-b.log");
            if (File.Exists(targetLog))
                foreach (var line in File.ReadAllLines(targetLog))
                {
                    const string Marker = ": restored on this node: ";
                    var at = line.IndexOf(Marker, StringComparison.Ordinal);
                    var id = at < 0 ? "" : line[..at].Split(' ').Last();
                    var parts = id.Split('-');
                    if (parts.Length != 3 || !int.TryParse(parts[2], CultureInfo.InvariantCulture, out var mb)) continue;
                    var steps = _restoreSteps.TryGetValue((parts[1], mb), out var d) ? d : _restoreSteps[(parts[1], mb)] = new(StringComparer.Ordinal);
                    foreach (var (step, ms) in StepTimes.Steps(line[(at + Marker.Length)..]))
                        (steps.TryGetValue(step, out var l) ? l : steps[step] = []).Add(ms);
                }
            foreach (var n in new[] { a, b })
                if (n is not null)
                {
                    try
                    {
                        using var c = new CriClient(n.Runtime.Socket);
                        await RemoveAllAsync(c);
                    }
                    catch (RpcException e) { Console.Error.WriteLine($"migration: cleanup: {e.Status.Detail}"); }
                    await n.Runtime.DisposeAsync();
                }
            Procs.TryRun("ip", "link", "del", TargetBridge);
        }
    }

    private sealed record Node(OurRuntime Runtime, string Address);

    private static async Task<Node> NodeAsync(BenchContext ctx, TestCertificates certs, string name, string cniConfDir)
    {
        var dir = Path.Combine(ctx.Env.Dir, name);
        using var cert = certs.Issue(name);
        var (certFile, keyFile, caFile) = certs.WritePem(cert, Path.Combine(dir, "pki"), name);
        var address = $"127.0.0.1:{FreePort()}";
        var rt = new OurRuntime(dir, ctx.DaemonBinary, cniConfDir, $"criruntime-{name}", $"""
            [checkpoint]
            restore = true
            criu_path = "{CriuPath}"
            criu_env = ["CRIU_FAULT=130"]
            [migration]
            listen = "{address}"
            cert_file = "{certFile}"
            key_file = "{keyFile}"
            ca_file = "{caFile}"
            """);
        await rt.StartAsync(Path.Combine(ctx.Env.LogDir, $"criruntime-{name}.log"));
        return new Node(rt, address);
    }

    private static int FreePort()
    {
        using var l = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        l.Start();
        return ((System.Net.IPEndPoint)l.LocalEndpoint).Port;
    }

    private static CallOptions Call(CancellationToken ct) => new(deadline: DateTime.UtcNow + TimeSpan.FromMinutes(10), cancellationToken: ct);

    private static PodSandboxConfig Pod(RuntimeUnderTest rt, string name, string uid, string logDir) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "bench", Uid = uid },
        Hostname = name,
        LogDirectory = logDir,
        Linux = new LinuxPodSandboxConfig { CgroupParent = rt.CgroupParent, SecurityContext = new LinuxSandboxSecurityContext() },
    };

    private static ContainerConfig Container(string image, int mb) => new()
    {
        Metadata = new ContainerMetadata { Name = "mem" },
        Image = new ImageSpec { Image = image },
        Command = { "sh", "-c", Workload(mb) },
        LogPath = "mem.log",
        Linux = new LinuxContainerConfig { SecurityContext = new LinuxContainerSecurityContext(), Resources = new LinuxContainerResources() },
    };

    private static async Task<Sample> OnceAsync(BenchContext ctx, Node a, CriClient ca, Node b, CriClient cb, int mb, string mode, string id, string logs, CancellationToken ct)
    {
        var (logA, logB) = (Path.Combine(logs, "a"), Path.Combine(logs, "b"));
        Directory.CreateDirectory(logA);
        Directory.CreateDirectory(logB);
        var uid = Guid.NewGuid().ToString();
        var image = ctx.Env.Image("busybox");
        var podA = Pod(a.Runtime, $"mig-{mb}", uid, logA);
        var podId = (await ca.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = podA }, Call(ct))).PodSandboxId;
        var cid = (await ca.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = Container(image, mb), SandboxConfig = podA }, Call(ct))).ContainerId;
        await ca.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = cid }, Call(ct));
        string[] resident = ["sh", "-c", $"until p=$(pidof dd) && [ \"$(awk '/VmRSS/{{print $2}}' /proc/$p/status)\" -ge {mb * 1000} ]; do sleep 0.05; done"];
        var ready = await ca.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = cid, Cmd = { resident }, Timeout = 300 }, Call(ct));
        if (ready.ExitCode != 0) throw new InvalidOperationException($"the {mb} MB process never became resident: {ready.Stderr.ToStringUtf8()}");

        var migA = new MigrationApi.MigrationClient(ca.Invoker);
        var migB = new MigrationApi.MigrationClient(cb.Invoker);
        await migB.PrepareTargetAsync(new PrepareTargetRequest
        {
            MigrationId = id, Config = Pod(b.Runtime, $"mig-{mb}", uid, logB), ContainerConfigs = { Container(image, mb) },
        }, Call(ct));

        MigrationStatus? last = null;
        var sw = Stopwatch.StartNew();
        using (var call = migA.Migrate(new MigrateRequest { MigrationId = id, PodSandboxId = podId, TargetAddress = b.Address, Mode = mode, AllowNewIp = true }, Call(ct)))
            await foreach (var s in call.ResponseStream.ReadAllAsync(ct)) last = s;
        var totalMs = sw.Elapsed.TotalMilliseconds;
        if (last?.Phase != "DONE") throw new InvalidOperationException($"migration ended {last?.Phase}: {last?.Error}");
        // The source is frozen until Commit: its log ends with the last tick before the freeze.
        var lastBefore = Ticks(Path.Combine(logA, "mem.log")).LastOrDefault();
        if (lastBefore == default) throw new InvalidOperationException("the source printed no tick");
        await migA.CommitAsync(new CommitRequest { MigrationId = id }, Call(ct));
        var firstAfter = await FirstTickAsync(Path.Combine(logB, "mem.log"), lastBefore, ct);
        // Every page arrived: the restored dd holds its buffer on the target.
        var restored = (await cb.Runtime.ListContainersAsync(new ListContainersRequest(), Call(ct))).Containers.Single();
        var there = await cb.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = restored.Id, Cmd = { resident }, Timeout = 300 }, Call(ct));
        if (there.ExitCode != 0) throw new InvalidOperationException($"the restored {mb} MB process is not resident on the target: {there.Stderr.ToStringUtf8()}");
        return new Sample((firstAfter - lastBefore).TotalMilliseconds, last.DowntimeMs, totalMs, last.DumpMs, last.TransferMs, last.RestoreMs, last.BytesSent);
    }

    /// <summary>The times the shim stamped the loop's lines with, in order, from a CRI log file
    /// ("TIME stdout F tick").</summary>
    private static List<DateTimeOffset> Ticks(string log)
    {
        var list = new List<DateTimeOffset>();
        if (!File.Exists(log)) return list;
        using var f = new FileStream(log, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        using var r = new StreamReader(f);
        while (r.ReadLine() is { } line)
        {
            var parts = line.Split(' ');
            if (parts.Length == 4 && parts[1] == "stdout" && parts[3] == "tick" && DateTimeOffset.TryParse(parts[0], CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var t))
                list.Add(t);
        }
        return list;
    }

    /// <summary>The target's first tick after <paramref name="after"/>: the restored loop prints
    /// within about 10 ms of running, but the shim writes the log, so it is read until the line is
    /// there (bounded).</summary>
    private static async Task<DateTimeOffset> FirstTickAsync(string log, DateTimeOffset after, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        Directory.CreateDirectory(Path.GetDirectoryName(log)!);
        using var watcher = new FileSystemWatcher(Path.GetDirectoryName(log)!) { EnableRaisingEvents = true };
        while (true)
        {
            var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            void OnChange(object? _, FileSystemEventArgs e) => changed.TrySetResult();
            watcher.Changed += OnChange;
            watcher.Created += OnChange;
            try
            {
                if (Ticks(log).FirstOrDefault(t => t > after) is var first && first != default) return first;
                // Woken by the next write, or after a second at most (a missed event).
                await changed.Task.WaitAsync(TimeSpan.FromSeconds(1), timeout.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                timeout.Token.ThrowIfCancellationRequested();
            }
            finally
            {
                watcher.Changed -= OnChange;
                watcher.Created -= OnChange;
            }
        }
    }

    private static async Task RemoveAllAsync(CriClient c)
    {
        try
        {
            foreach (var p in (await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest(), Call(CancellationToken.None))).Items)
            {
                await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = p.Id }, Call(CancellationToken.None));
                await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = p.Id }, Call(CancellationToken.None));
            }
        }
        catch (RpcException e) { Console.Error.WriteLine($"    cleanup: {e.Status.Detail}"); }
    }

    public string Markdown(BenchContext ctx)
    {
        string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString("F0", CultureInfo.InvariantCulture);
        double P50(IEnumerable<double> v) => v.ToList() is { Count: > 0 } l ? Stats.Percentile(l, 50) : double.NaN;
        List<Sample> Of(string mode, int mb) => _samples.TryGetValue((mode, mb), out var l) ? l : [];
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"A busybox pod `sh -c '{Workload(0).Replace("bs=0M", "bs=NM")}'` (dd holds an N MB buffer, resident, waited for; the loop ticks every ~10 ms) " +
            "migrated between two daemons on this machine (the e2e TwoNodes set-up: own roots, sockets, cgroup roots, CNI bridges and subnets, mTLS listeners on 127.0.0.1 with certificates of a CA made for the run), then committed. " +
            "The two subnets differ, so Migrate has `allow_new_ip` (the pod gets the target's address; CRIU restores with `--tcp-close`, the pod has no connection to keep); the kept-IP path is the e2e MigrationNetworkTests' (two network namespaces). " +
            "**Downtime (ticks)**: the time the target's shim stamped on the restored loop's first line minus the time the source's shim stamped on its last line before the freeze (the pod's own output; ±10 ms, the loop's period; not a clock read inside the pod: CRIU restores it in a time namespace whose monotonic clocks continue from the dump, and busybox date has no sub-second format). " +
            "**Reported**: the migration's own `downtime_ms` (source: first freeze to the target's answer that the container runs). **Total**: Migrate called to DONE (lazy: every page reached the target). " +
            $"fs.pipe-max-size 4 MiB for the section, restored after. p50 of {Iterations} runs per size and mode, cold and lazy in turns; milliseconds. Machine: {_load} (2 cores, shared).");
        sb.AppendLine();
        sb.AppendLine("| process | mode | downtime (ticks) | reported | of which dump | transfer | restore | total | sent |");
        sb.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var mb in SizesMb)
            foreach (var mode in Modes)
            {
                var s = Of(mode, mb);
                sb.AppendLine($"| {(mb >= 1024 ? $"{mb / 1024} GB" : $"{mb} MB")} | {mode} | {F(P50(s.Select(x => x.TicksMs)))} | {F(P50(s.Select(x => x.ReportedMs)))} | {F(P50(s.Select(x => (double)x.DumpMs)))} | " +
                    $"{F(P50(s.Select(x => (double)x.TransferMs)))} | {F(P50(s.Select(x => (double)x.RestoreMs)))} | {F(P50(s.Select(x => x.TotalMs)))} | {(s.Count > 0 ? $"{P50(s.Select(x => (double)x.Bytes)) / 1e6:F1} MB" : "n/a")} |");
            }
        sb.AppendLine();
        foreach (var mb in SizesMb)
        {
            var cold = P50(Of("cold", mb).Select(x => x.TicksMs));
            var lazy = P50(Of("lazy", mb).Select(x => x.TicksMs));
            if (double.IsNaN(cold) || double.IsNaN(lazy)) continue;
            var ratio = lazy / cold;
            var line = $"- {(mb >= 1024 ? $"{mb / 1024} GB" : $"{mb} MB")}: lazy/cold downtime {ratio:F2}";
            if (mb == 200)
                line += $" (target ≤ 0.3: {(ratio <= 0.3 ? "**met**" : "**missed**")}); lazy downtime {F(lazy)} ms (target ≤ 300 ms: {(lazy <= 300 ? "**met**" : "**missed**")})";
            sb.AppendLine(line + ".");
        }
        if (_restoreSteps.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("Where the target's part of the downtime goes (its Restore call, p50 ms of each step from the target daemon's Debug line; the tasks resume inside `start`, which ends when CRIU has exited):");
            sb.AppendLine();
            foreach (var mb in SizesMb)
                foreach (var mode in Modes)
                    if (_restoreSteps.TryGetValue((mode, mb), out var steps))
                        sb.AppendLine($"- {(mb >= 1024 ? $"{mb / 1024} GB" : $"{mb} MB")} {mode}: " +
                            string.Join(", ", steps.Select(kv => $"{kv.Key} {Stats.Percentile(kv.Value, 50).ToString("F1", CultureInfo.InvariantCulture)}")));
        }
        if (_errors.Count > 0)
        {
            sb.AppendLine();
            sb.AppendLine("Errors:");
            foreach (var e in _errors) sb.AppendLine($"- {e}");
        }
        return sb.ToString();
    }
}
