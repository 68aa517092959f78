using System.Diagnostics;
using System.Formats.Tar;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Bench;

/// <summary>`--only checkpoint` (issue 12): CheckpointContainer and restore (CreateContainer +
/// StartContainer from the archive) of a busybox process holding 10 MB and 200 MB, side by side
/// with Debian's runc (`runc checkpoint --leave-running` / `runc restore -d`, what containerd
/// and CRI-O call underneath) on an identical busybox bundle, both with the same CRIU binary and
/// CRIU_FAULT=130. The frozen time is CRIU's own count in each dump's stats-dump (freezing_time +
/// frozen_time), so it is measured the same way for both; each dump's dump.log and stats-dump are
/// kept in artifacts/bench/checkpoint-RUNTIME-MB-I.*.</summary>
public sealed partial class CheckpointSection : IBenchSection
{
    public string Name => "checkpoint";
    public string Title => "Checkpoint and restore (issue 12)";
    public bool UsesRuntimes => false;

    private static readonly int[] SizesMb = [10, 200];
    private const int Iterations = 5;
    private const string CriuPath = "/usr/local/sbin/criu";

    /// <summary>One run. Frozen: CRIU's own stats-dump, freezing_time + frozen_time (from the
    /// first interrupt or freeze of the tasks until they are resumed), the same counter for both.</summary>
    private sealed record Sample(double CheckpointMs, double FrozenMs, long Bytes, double RestoreMs, CriuStats Stats)
    {
        /// <summary>Ours: the daemon's step times of the call (its Debug line), in order.</summary>
        public List<(string Step, double Ms)> Steps { get; init; } = [];
    }

    /// <summary>CRIU's stats-dump (microseconds in the image; milliseconds here).</summary>
    private sealed record CriuStats(double FreezingMs, double FrozenMs, double MemdumpMs, double MemwriteMs, double FrozenByLogMs)
    {
        public double StoppedMs => FreezingMs + FrozenMs;
    }
    private readonly Dictionary<(string Runtime, int Mb), List<Sample>> _samples = [];
    private readonly List<string> _errors = [];
    private string _criuVersion = "";
    private string _runcVersion = "";

    private static string Workload(int mb) => $"dd if=/dev/zero bs={mb}M count=1 | sleep 100000";

    public async Task RunAsync(BenchContext ctx, CancellationToken ct)
    {
        _criuVersion = Procs.TryRun(CriuPath, "--version").Stdout.Split('\n').FirstOrDefault(l => l.StartsWith("Version:", StringComparison.Ordinal))?.Trim() ?? "not installed";
        _runcVersion = Procs.TryRun("runc", "--version").Stdout.Split('\n').FirstOrDefault()?.Trim() ?? "not installed";
        var dir = Path.Combine(ctx.Env.Dir, "checkpoint");
        var ours = new OurRuntime(Path.Combine(dir, "criruntime"), ctx.DaemonBinary, ctx.Env.CniConfDir, "criruntime-ckpt",
            $"[checkpoint]\nrestore = true\ncriu_path = \"{CriuPath}\"\ncriu_env = [\"CRIU_FAULT=130\"]\n");
        await ours.StartAsync(Path.Combine(ctx.Env.LogDir, "criruntime-ckpt.log"));
        try
        {
            using var c = new CriClient(ours.Socket);
            await c.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = ctx.Env.Image("busybox") } }, Call(ct));
            var bundleRootfs = Path.Combine(dir, "runc-rootfs");
            ExtractBusybox(ctx.Env, bundleRootfs);
            foreach (var mb in SizesMb)
                for (var i = 0; i < Iterations; i++)
                {
                    Console.WriteLine($"  {mb} MB, iteration {i + 1}/{Iterations}: criruntime ...");
                    await Try($"criruntime {mb} MB #{i + 1}", async () => Add(("criruntime", mb), await OursOnceAsync(c, ours, ctx, mb, Path.Combine(dir, $"ours-{mb}-{i}"), Path.Combine(ctx.Env.LogDir, $"checkpoint-criruntime-{mb}-{i}"), ct)));
                    Console.WriteLine($"  {mb} MB, iteration {i + 1}/{Iterations}: runc ...");
                    await Try($"runc {mb} MB #{i + 1}", async () => Add(("runc", mb), await RuncOnceAsync(ours.CgroupParent, bundleRootfs, mb, Path.Combine(dir, $"runc-{mb}-{i}"), i, Path.Combine(ctx.Env.LogDir, $"checkpoint-runc-{mb}-{i}"), ct)));
                }
        }
        finally
        {
            try
            {
                using var c = new CriClient(ours.Socket);
                foreach (var p in (await c.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest(), Call(CancellationToken.None))).Items)
                {
                    await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = p.Id }, Call(CancellationToken.None));
                    await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = p.Id }, Call(CancellationToken.None));
                }
            }
            catch (RpcException e) { Console.Error.WriteLine($"checkpoint: cleanup: {e.Status.Detail}"); }
            await ours.DisposeAsync();
        }
    }

    private void Add((string, int) key, Sample s)
    {
        if (!_samples.TryGetValue(key, out var l)) _samples[key] = l = [];
        l.Add(s);
        Console.WriteLine($"    checkpoint {s.CheckpointMs:F0} ms, frozen {s.FrozenMs:F0} ms (freezing {s.Stats.FreezingMs:F0} + frozen {s.Stats.FrozenMs:F0}; " +
            $"memdump {s.Stats.MemdumpMs:F0}, memwrite {s.Stats.MemwriteMs:F0}; dump.log seize to unfreeze {s.Stats.FrozenByLogMs:F0}), {s.Bytes / 1e6:F1} MB, restore {s.RestoreMs:F0} ms" +
            (s.Steps.Count > 0 ? $"\n    steps: {string.Join(' ', s.Steps.Select(x => $"{x.Step}={x.Ms:F0}"))}" : ""));
    }

    private async Task Try(string what, Func<Task> run)
    {
        try { await run(); }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            _errors.Add($"{what}: {e.Message}");
            Console.Error.WriteLine($"    {what}: {e.Message}");
        }
    }

    private static CallOptions Call(CancellationToken ct) => new(deadline: DateTime.UtcNow + TimeSpan.FromMinutes(5), cancellationToken: ct);

    private static PodSandboxConfig Pod(RuntimeUnderTest rt, string name) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "bench", Uid = Guid.NewGuid().ToString() },
        Hostname = name,
        Linux = new LinuxPodSandboxConfig { CgroupParent = rt.CgroupParent, SecurityContext = new LinuxSandboxSecurityContext() },
    };

    private static ContainerConfig Container(string image, string[] command) => new()
    {
        Metadata = new ContainerMetadata { Name = "mem" },
        Image = new ImageSpec { Image = image },
        Command = { command },
        Linux = new LinuxContainerConfig { SecurityContext = new LinuxContainerSecurityContext(), Resources = new LinuxContainerResources() },
    };

    /// <summary>Waits inside the container (its own sleep, not ours) until dd holds <paramref name="mb"/> MB.</summary>
    private static string[] WaitResident(int mb) =>
        ["sh", "-c", $"until p=$(pidof dd) && [ \"$(awk '/VmRSS/{{print $2}}' /proc/$p/status)\" -ge {mb * 1000} ]; do sleep 0.05; done"];

    /// <param name="keep">where the dump's dump.log and stats-dump are kept (PREFIX.dump.log, PREFIX.stats-dump).</param>
    private static async Task<Sample> OursOnceAsync(CriClient c, RuntimeUnderTest rt, BenchContext ctx, int mb, string dir, string keep, CancellationToken ct)
    {
        Directory.CreateDirectory(dir);
        var pod = Pod(rt, $"ckpt-{mb}");
        var podId = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod }, Call(ct))).PodSandboxId;
        var id = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = Container(ctx.Env.Image("busybox"), ["sh", "-c", Workload(mb)]), SandboxConfig = pod }, Call(ct))).ContainerId;
        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id }, Call(ct));
        var ready = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { WaitResident(mb) }, Timeout = 120 }, Call(ct));
        if (ready.ExitCode != 0) throw new InvalidOperationException($"the {mb} MB process never became resident: {ready.Stderr.ToStringUtf8()}");

        var archive = Path.Combine(dir, "checkpoint.tar");
        var sw = Stopwatch.StartNew();
        await c.Runtime.CheckpointContainerAsync(new CheckpointContainerRequest { ContainerId = id, Location = archive, Timeout = 300 }, Call(ct));
        var checkpointMs = sw.Elapsed.TotalMilliseconds;
        var bytes = new FileInfo(archive).Length;
        var stats = Keep(keep, EntryOf(archive, "dump.log"), EntryOf(archive, "stats-dump"));
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = podId }, Call(ct));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = podId }, Call(ct));

        var pod2 = Pod(rt, $"restore-{mb}");
        var pod2Id = (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = pod2 }, Call(ct))).PodSandboxId;
        sw.Restart();
        var restored = (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = pod2Id, Config = Container(archive, ["sh", "-c", Workload(mb)]), SandboxConfig = pod2 }, Call(ct))).ContainerId;
        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = restored }, Call(ct));
        var restoreMs = sw.Elapsed.TotalMilliseconds;
        await c.Runtime.StopPodSandboxAsync(new StopPodSandboxRequest { PodSandboxId = pod2Id }, Call(ct));
        await c.Runtime.RemovePodSandboxAsync(new RemovePodSandboxRequest { PodSandboxId = pod2Id }, Call(ct));
        Directory.Delete(dir, recursive: true);
        // Written by now (the restore's calls came after it).
        var steps = StepTimes.Of(ReadShared(Path.Combine(ctx.Env.LogDir, "criruntime-ckpt.log")), "CheckpointContainer", id);
        return new Sample(checkpointMs, stats.StoppedMs, bytes, restoreMs, stats) { Steps = steps };
    }

    private static string ReadShared(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(f).ReadToEnd();
    }

    private static byte[] EntryOf(string archive, string name)
    {
        using var fs = File.OpenRead(archive);
        using var tar = new TarReader(fs);
        while (tar.GetNextEntry() is { } e)
            if (e.Name == name && e.DataStream is { } s)
            {
                var m = new MemoryStream();
                s.CopyTo(m);
                return m.ToArray();
            }
        throw new InvalidOperationException($"{archive}: no {name}");
    }

    /// <summary>Keeps the dump's log and stats beside the bench's logs and reads the stats.</summary>
    private static CriuStats Keep(string prefix, byte[] dumpLog, byte[] statsDump)
    {
        File.WriteAllBytes(prefix + ".dump.log", dumpLog);
        File.WriteAllBytes(prefix + ".stats-dump", statsDump);
        return ParseStats(statsDump, FrozenMs(System.Text.Encoding.UTF8.GetString(dumpLog)));
    }

    /// <summary>CRIU's stats-dump: IMG_SERVICE_MAGIC, STATS_MAGIC, then one stats_entry (a u32
    /// length and the protobuf) whose field 1 is the dump_stats_entry (images/stats.proto).</summary>
    private static CriuStats ParseStats(byte[] file, double frozenByLog)
    {
        if (file.Length < 12) throw new InvalidOperationException($"stats-dump of {file.Length} bytes");
        var len = (int)BitConverter.ToUInt32(file, 8);
        var entry = new Google.Protobuf.CodedInputStream(file, 12, len);
        uint freezing = 0, frozen = 0, memdump = 0, memwrite = 0;
        uint tag;
        while ((tag = entry.ReadTag()) != 0)
        {
            if (tag != 10) { entry.SkipLastField(); continue; }
            var dump = new Google.Protobuf.CodedInputStream(entry.ReadBytes().ToByteArray());
            while ((tag = dump.ReadTag()) != 0)
                switch (tag >> 3)
                {
                    case 1: freezing = dump.ReadUInt32(); break;
                    case 2: frozen = dump.ReadUInt32(); break;
                    case 3: memdump = dump.ReadUInt32(); break;
                    case 4: memwrite = dump.ReadUInt32(); break;
                    default: dump.SkipLastField(); break;
                }
        }
        return new CriuStats(freezing / 1000.0, frozen / 1000.0, memdump / 1000.0, memwrite / 1000.0, frozenByLog);
    }

    [GeneratedRegex(@"^\((\d+\.\d+)\)")]
    private static partial Regex Stamp();

    /// <summary>From CRIU's log: the first freeze (cgroup freezer) or seize (ptrace) to "Unfreezing tasks".</summary>
    private static double FrozenMs(string log)
    {
        double? start = null, end = null;
        foreach (var line in log.Split('\n'))
        {
            var m = Stamp().Match(line);
            if (!m.Success) continue;
            var t = double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            if (start is null && (line.Contains("freezing processes", StringComparison.Ordinal) || line.Contains("Seized task", StringComparison.Ordinal))) start = t;
            if (line.Contains("Unfreezing tasks", StringComparison.Ordinal)) end = t;
        }
        return start is { } s && end is { } e ? (e - s) * 1000 : double.NaN;
    }

    /// <summary>The busybox test image's layers, unpacked: the runc bundle's root (the same files
    /// our container runs on).</summary>
    private static void ExtractBusybox(BenchEnv env, string rootfs)
    {
        Directory.CreateDirectory(rootfs);
        var layout = Path.Combine(env.TestImagesDir, "busybox");
        foreach (var digest in env.LayerDigests(layout))
            Procs.Run("tar", "-xf", Path.Combine(layout, "blobs", "sha256", digest), "-C", rootfs);
    }

    /// <summary>`runc run -d` of the same workload in a bundle of the same busybox, its stdio
    /// pipes (CRIU cannot dump host files as stdio; containerd gives pipes too), then `runc
    /// checkpoint --leave-running` timed, the container deleted, `runc restore -d` timed.</summary>
    private static async Task<Sample> RuncOnceAsync(string cgroupParent, string rootfs, int mb, string dir, int i, string keep, CancellationToken ct)
    {
        Directory.CreateDirectory(dir);
        var root = Path.Combine(dir, "runc-root");
        var bundle = Path.Combine(dir, "bundle");
        Directory.CreateDirectory(bundle);
        Procs.Run("runc", "spec", "--bundle", bundle);
        var specPath = Path.Combine(bundle, "config.json");
        var spec = JsonNode.Parse(File.ReadAllText(specPath))!;
        spec["root"]!["path"] = rootfs;
        spec["root"]!["readonly"] = false;
        spec["process"]!["terminal"] = false;
        spec["process"]!["args"] = new JsonArray("sh", "-c", Workload(mb));
        spec["linux"]!["cgroupsPath"] = $"{cgroupParent}/runc-{mb}-{i}";
        File.WriteAllText(specPath, spec.ToJsonString());
        var id = $"ckpt-{mb}-{i}";
        var held = new List<Process>();
        try
        {
            held.Add(await RuncDetachedAsync(["--root", root, "run", "-d", "--bundle", bundle, id], ct));
            // Waited for inside the container, as for ours (its own sleep, not ours).
            var (waited, _, waitErr) = await RunCriuEnvAsync("runc", ["--root", root, "exec", id, .. WaitResident(mb)], ct);
            if (waited != 0) throw new InvalidOperationException($"runc: the {mb} MB process never became resident: {waitErr.Trim()}");

            var images = Path.Combine(dir, "images");
            var work = Path.Combine(dir, "work");
            var sw = Stopwatch.StartNew();
            var (code, _, err) = await RunCriuEnvAsync("runc", ["--root", root, "checkpoint", "--leave-running", "--image-path", images, "--work-path", work, id], ct);
            var checkpointMs = sw.Elapsed.TotalMilliseconds;
            if (code != 0) throw new InvalidOperationException($"runc checkpoint: exit {code}: {err.Trim()}");
            var bytes = Directory.EnumerateFiles(images, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            var stats = Keep(keep, File.ReadAllBytes(Path.Combine(work, "dump.log")), File.ReadAllBytes(Path.Combine(work, "stats-dump")));
            Procs.TryRun("runc", "--root", root, "delete", "-f", id);

            sw.Restart();
            held.Add(await RuncDetachedAsync(["--root", root, "restore", "-d", "--image-path", images, "--work-path", work, "--bundle", bundle, id], ct));
            var restoreMs = sw.Elapsed.TotalMilliseconds;
            var state = Procs.TryRun("runc", "--root", root, "state", id).Stdout;
            if (!state.Contains("\"running\"", StringComparison.Ordinal)) throw new InvalidOperationException($"runc restore: not running: {state}");
            return new Sample(checkpointMs, stats.StoppedMs, bytes, restoreMs, stats);
        }
        finally
        {
            Procs.TryRun("runc", "--root", root, "delete", "-f", id);
            foreach (var p in held) p.Dispose();
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>runc with pipes as stdio (kept open by the returned process object, never read:
    /// the workload writes nothing), waited for; CRIU_FAULT=130 and /usr/local/sbin first on the PATH.</summary>
    private static async Task<Process> RuncDetachedAsync(string[] args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("runc") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        CriuEnv(psi);
        var p = Process.Start(psi)!;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(TimeSpan.FromMinutes(5));
        await p.WaitForExitAsync(timeout.Token);
        if (p.ExitCode != 0) throw new InvalidOperationException($"runc {string.Join(' ', args.Skip(2).Take(2))}: exit {p.ExitCode}");
        return p;
    }

    private static async Task<(int Code, string Out, string Err)> RunCriuEnvAsync(string file, string[] args, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        CriuEnv(psi);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync(ct);
        var stderr = p.StandardError.ReadToEndAsync(ct);
        await p.WaitForExitAsync(ct);
        return (p.ExitCode, await stdout, await stderr);
    }

    private static void CriuEnv(ProcessStartInfo psi)
    {
        psi.Environment["CRIU_FAULT"] = "130";
        psi.Environment["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    }

    public string Markdown(BenchContext ctx)
    {
        string F(double v) => double.IsNaN(v) ? "n/a" : v.ToString("F0", CultureInfo.InvariantCulture);
        double P50(IEnumerable<double> v) => v.ToList() is { Count: > 0 } l ? Stats.Percentile(l, 50) : double.NaN;
        var sb = new System.Text.StringBuilder();
        sb.AppendLine($"A busybox `sh -c '{Workload(0).Replace("bs=0M", "bs=NM")}'`: dd holds an N MB buffer it filled from /dev/zero (resident, waited for) while it blocks on the pipe. " +
            $"criruntime: CheckpointContainer (CRIU dump `--leave-running`, then the archive: CRIU images, rootfs diff, logs, one uncompressed tar, fsynced) and restore = CreateContainer with the archive as image + StartContainer in a new pod. " +
            $"runc: `runc checkpoint --leave-running` into an image directory (no archive: containerd and CRI-O tar it afterwards) and `runc restore -d` in the same busybox files as bundle. " +
            $"Same CRIU for both ({_criuVersion}, `CRIU_FAULT=130`), {_runcVersion}. Frozen: CRIU's stats-dump, freezing_time + frozen_time: from CRIU's first interrupt (ptrace, ours) or freeze (cgroup freezer, runc's) of the tasks until it resumes them; " +
            $"under runc that includes CRIU's first 100 ms wait for the freezer to report FROZEN, with the container frozen (a count from the dump.log line \"freezing processes\", written after that wait, left it out). " +
            $"Each dump's dump.log and stats-dump are kept in artifacts/bench/checkpoint-RUNTIME-MB-I.*. p50 of {Iterations} runs; milliseconds.");
        sb.AppendLine();
        sb.AppendLine("| process | runtime | checkpoint | frozen | checkpoint size | restore (create + start) |");
        sb.AppendLine("|---|---|---|---|---|---|");
        foreach (var mb in SizesMb)
            foreach (var rt in new[] { "criruntime", "runc" })
            {
                var s = _samples.TryGetValue((rt, mb), out var l) ? l : [];
                var size = s.Count > 0 ? $"{P50(s.Select(x => (double)x.Bytes)) / 1e6:F1} MB" : "n/a";
                sb.AppendLine($"| {mb} MB | {rt} | {F(P50(s.Select(x => x.CheckpointMs)))} | {F(P50(s.Select(x => x.FrozenMs)))} | {size} | {F(P50(s.Select(x => x.RestoreMs)))} |");
            }
        sb.AppendLine();
        foreach (var mb in SizesMb)
        {
            var steps = (_samples.TryGetValue(("criruntime", mb), out var l) ? l : []).SelectMany(x => x.Steps).GroupBy(x => x.Step, StringComparer.Ordinal).ToList();
            if (steps.Count == 0) continue;
            sb.AppendLine($"Where CheckpointContainer's time goes, {mb} MB (the daemon's Debug line per call; p50 ms of each step: they need not add up): " +
                string.Join(", ", steps.Select(g => $"{g.Key} {F(P50(g.Select(x => x.Ms)))}")) + ".");
        }
        sb.AppendLine("(target: the container's state and spec; prepare: the archive, the image streamer, the post-dump hook; criu: `criu dump` from its start to its exit, " +
            "the pages in the archive's page cache before the container runs again; streamer: the last images; parts: the other files of the archive; close: the tar's end; fsync: what the writeback during the dump left.)");
        sb.AppendLine();
        foreach (var mb in SizesMb)
        {
            var ours = _samples.TryGetValue(("criruntime", mb), out var o) ? o : [];
            var runc = _samples.TryGetValue(("runc", mb), out var r) ? r : [];
            if (ours.Count == 0 || runc.Count == 0) continue;
            var ratio = P50(ours.Select(x => x.CheckpointMs)) / P50(runc.Select(x => x.CheckpointMs));
            var frozen = P50(ours.Select(x => x.FrozenMs)) <= P50(runc.Select(x => x.FrozenMs));
            sb.AppendLine($"- {mb} MB: CheckpointContainer / runc checkpoint = {ratio:F2}× (target ≤ 1.2×: {(ratio <= 1.2 ? "**met**" : "**missed**")}); frozen no longer than under runc: {(frozen ? "**met**" : "**missed**")}.");
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
