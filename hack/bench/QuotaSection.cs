using System.Diagnostics;
using System.Globalization;
using System.Text;
using CriRuntime.Cri.V1;

namespace CriRuntime.Bench;

/// <summary>What a disk quota costs (issue 14): CreateContainer without a quota, with one taken from
/// the warm volume pool, and with one made cold (a daemon without a pool); then sequential write
/// throughput inside a container with and without a quota. Ours alone: containerd has no
/// per-container quota to compare with. Its own daemons, so no other section's state is in the way.</summary>
public sealed class QuotaSection(Options opts) : IBenchSection
{
    private const string Quota = "64Mi", WriteQuota = "512Mi";
    private const int WriteMiB = 256, WriteRepeats = 3;
    private readonly Dictionary<string, List<double>> _createMs = [];
    private readonly Dictionary<string, List<double>> _writeSeconds = [];
    private readonly List<string> _errors = [];

    public string Name => "quota";
    public string Title => "Disk quota cost";
    public bool UsesRuntimes => false;

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        var n = opts.QuotaIterations;
        await WithDaemonAsync(ctx, "criruntime-quota", "[storage]\nvolume_pool = 2\n", async w =>
        {
            Console.WriteLine($"[quota] {n} creates without a quota, {n} with a warm {Quota} volume ...");
            await CreatesAsync(w, "no quota", null, n, ct);
            await CreatesAsync(w, $"{Quota} quota, warm pool", Quota, n, ct);
            Console.WriteLine($"[quota] sequential writes of {WriteMiB} MiB with and without a {WriteQuota} quota ...");
            await WritesAsync(w, ct);
        }, ct);
        await WithDaemonAsync(ctx, "criruntime-nopool", "[storage]\nvolume_pool = 0\n", async w =>
        {
            Console.WriteLine($"[quota] {n} creates with a cold {Quota} volume (no pool) ...");
            await CreatesAsync(w, $"{Quota} quota, no pool (cold)", Quota, n, ct);
        }, ct);
    }

    /// <summary>A daemon of ours with <paramref name="config"/> for <paramref name="body"/>; its pods
    /// are removed and it is stopped (a clean stop: the pool is released) whatever happens.</summary>
    private static async Task WithDaemonAsync(BenchContext ctx, string name, string config, Func<Workloads, Task> body, CancellationToken ct)
    {
        await using var rt = new OurRuntime(Path.Combine(ctx.Env.Dir, name), ctx.DaemonBinary, ctx.Env.CniConfDir, name, config);
        await rt.StartAsync(Path.Combine(ctx.Env.LogDir, name + ".log"));
        var w = new Workloads(rt, ctx.Env);
        try
        {
            await w.PullAsync(ctx.Env.Image("busybox"), ct);
            await body(w);
        }
        finally
        {
            using var cleanup = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            await w.RemoveAllPodsAsync(cleanup.Token);
        }
    }

    /// <summary>One pod; per iteration CreateContainer (timed), StartContainer, StopContainer,
    /// RemoveContainer, as a node replacing a container does. One warm-up first (the template of
    /// the size is made then, and the pool starts filling).</summary>
    private async Task CreatesAsync(Workloads w, string label, string? quota, int n, CancellationToken ct)
    {
        using var c = w.Client();
        var pod = w.Pod("quota-" + label.Split(' ')[0].ToLowerInvariant());
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, cancellationToken: ct)).PodSandboxId;
        var ms = _createMs[label] = [];
        for (var i = -1; i < n; i++)
        {
            var config = w.Container($"app{i + 1}", "sleep", "3600");
            if (quota is not null) config.Annotations[$"disk-quota.criruntime.io/container.{config.Metadata.Name}"] = quota;
            try
            {
                var sw = Stopwatch.StartNew();
                var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = config, SandboxConfig = pod }, cancellationToken: ct)).ContainerId;
                if (i >= 0) ms.Add(sw.Elapsed.TotalMilliseconds);
                await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, cancellationToken: ct);
                await c.Runtime.StopContainerAsync(new StopContainerRequest { ContainerId = id, Timeout = 0 }, cancellationToken: ct);
                await c.Runtime.RemoveContainerAsync(new RemoveContainerRequest { ContainerId = id }, cancellationToken: ct);
            }
            catch (Grpc.Core.RpcException e) { _errors.Add($"{label}: {e.Status.StatusCode} {e.Status.Detail}"); }
        }
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
    }

    /// <summary>dd of <see cref="WriteMiB"/> MiB into the writable layer, flushed (conv=fsync), in
    /// a container without a quota and one with; the two take turns, <see cref="WriteRepeats"/>
    /// times each, so the machine's noise hits both.</summary>
    private async Task WritesAsync(Workloads w, CancellationToken ct)
    {
        using var c = w.Client();
        var pod = w.Pod("quota-writes");
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, cancellationToken: ct)).PodSandboxId;
        var containers = new List<(string Label, string Id)>();
        foreach (var (label, quota) in new[] { ("no quota", (string?)null), ($"{WriteQuota} quota", WriteQuota) })
        {
            var config = w.Container(quota is null ? "plain" : "quota", "sleep", "3600");
            if (quota is not null) config.Annotations[$"disk-quota.criruntime.io/container.{config.Metadata.Name}"] = quota;
            var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = config, SandboxConfig = pod }, cancellationToken: ct)).ContainerId;
            await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, cancellationToken: ct);
            containers.Add((label, id));
            _writeSeconds[label] = [];
        }
        for (var r = 0; r < WriteRepeats; r++)
            foreach (var (label, id) in containers)
            {
                var sw = Stopwatch.StartNew();
                var exec = await c.Runtime.ExecSyncAsync(new ExecSyncRequest
                {
                    ContainerId = id,
                    Cmd = { "sh", "-c", $"dd if=/dev/zero of=/w bs=1048576 count={WriteMiB} conv=fsync && rm /w" },
                    Timeout = 300,
                }, cancellationToken: ct);
                // busybox's dd prints no time: the exec's, whose own cost (~50 ms) both pay alike.
                if (exec.ExitCode == 0) _writeSeconds[label].Add(sw.Elapsed.TotalSeconds);
                else _errors.Add($"{label}: dd exit {exec.ExitCode}: {exec.Stderr.ToStringUtf8().Trim()}");
            }
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, cancellationToken: ct);
    }

    public string Markdown(BenchContext ctx)
    {
        static string F(double v, string fmt = "F1") => double.IsNaN(v) ? "n/a" : v.ToString(fmt, CultureInfo.InvariantCulture);
        var sb = new StringBuilder();
        sb.AppendLine($"Our daemon alone (containerd has no per-container quota). CreateContainer of a busybox container, {opts.QuotaIterations} times after one warm-up, each started, stopped and removed before the next, in one pod: without a quota, with a {Quota} quota from a daemon with the warm volume pool (`[storage] volume_pool = 2`), and with the same quota from a daemon without a pool (`volume_pool = 0`: image copy, loop attach and ext4 mount on the create path). Then `dd bs=1M count={WriteMiB} conv=fsync` into the writable layer of a container without a quota and one with a {WriteQuota} quota, taking turns, {WriteRepeats} times each.");
        sb.AppendLine();
        sb.AppendLine("| CreateContainer | p50 (ms) | p90 (ms) | p50 minus no quota (ms) |");
        sb.AppendLine("|---|---:|---:|---:|");
        var baseline = _createMs.TryGetValue("no quota", out var b) ? Stats.Percentile(b, 50) : double.NaN;
        foreach (var (label, ms) in _createMs)
            sb.AppendLine($"| {label} | {F(Stats.Percentile(ms, 50))} | {F(Stats.Percentile(ms, 90))} | {(label == "no quota" ? "" : F(Stats.Percentile(ms, 50) - baseline))} |");
        sb.AppendLine();
        sb.AppendLine($"| sequential write, {WriteMiB} MiB + fsync | median (s) | MiB/s | of no quota |");
        sb.AppendLine("|---|---:|---:|---:|");
        var plain = _writeSeconds.TryGetValue("no quota", out var p) ? Stats.Percentile(p, 50) : double.NaN;
        foreach (var (label, s) in _writeSeconds)
        {
            var med = Stats.Percentile(s, 50);
            sb.AppendLine($"| {label} | {F(med, "F2")} | {F(WriteMiB / med)} | {F(plain / med, "F2")} |");
        }
        sb.AppendLine();
        var warm = _createMs.FirstOrDefault(kv => kv.Key.Contains("warm", StringComparison.Ordinal)).Value;
        var added = warm is null ? double.NaN : Stats.Percentile(warm, 50) - baseline;
        var quotaWrite = _writeSeconds.FirstOrDefault(kv => kv.Key != "no quota").Value;
        var ratio = quotaWrite is null ? double.NaN : plain / Stats.Percentile(quotaWrite, 50);
        sb.AppendLine($"- Target: a quota adds at most 10 ms to CreateContainer p50: {F(added)} ms with the pool: {(double.IsNaN(added) ? "not measured" : added <= 10 ? "**met**" : "**missed**")}.");
        sb.AppendLine($"- Target: write throughput with a quota within 10% of without: {F(ratio * 100, "F0")}%: {(double.IsNaN(ratio) ? "not measured" : ratio >= 0.9 ? "**met**" : "**missed**")}.");
        foreach (var e in _errors.Distinct().Take(5)) sb.AppendLine($"- error: {e}");
        return sb.ToString();
    }
}
