using System.Runtime.InteropServices;
using CriRuntime.Bench;

// make bench: our daemon and containerd side by side. Every phase runs for each runtime in
// turn (ours first), so slow drifts of a shared machine hit both alike.
Options opts;
try { opts = Options.Parse(args); }
catch (HelpRequested) { Console.Out.Write(Options.Usage); return 0; }
catch (Exception e) when (e is ArgumentException or FormatException) { Console.Error.WriteLine(e.Message); Console.Error.Write(Options.Usage); return 2; }

var repo = FindRepo();
using var cts = new CancellationTokenSource();
void Interrupt(PosixSignalContext ctx)
{
    if (cts.IsCancellationRequested) return; // a second signal: default action
    ctx.Cancel = true;
    Console.Error.WriteLine($"{ctx.Signal}: stopping and cleaning up ...");
    cts.Cancel();
}
using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Interrupt);
using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Interrupt);

var env = new BenchEnv(repo);
var runtimes = new List<RuntimeUnderTest>();
var report = new Report(opts, repo);
var status = 0;
try
{
    env.Prepare();
    var ct = cts.Token;
    var extras = Sections.Extra(opts).Where(s => opts.Runs(s.Name)).ToList();
    var sharedRuntimes = Sections.BuiltIn.Any(opts.Runs) || extras.Any(s => s.UsesRuntimes);
    foreach (var name in sharedRuntimes ? opts.Runtimes : [])
    {
        var dir = Path.Combine(env.Dir, name);
        if (name == "criruntime")
        {
            var bin = Path.GetFullPath(opts.Daemon, repo);
            if (!File.Exists(bin)) throw new InvalidOperationException($"{bin} not found: run make build");
            var ours = new OurRuntime(dir, bin, env.CniConfDir);
            runtimes.Add(ours);
            await ours.StartAsync(Path.Combine(env.LogDir, "criruntime.log"));
        }
        else
        {
            var ctd = new Containerd(dir, env.CniConfDir, env.RegistryHost, env.Image("pause"));
            runtimes.Add(ctd);
            await ctd.StartAsync(Path.Combine(env.LogDir, "containerd.log"));
        }
        var v = await new Workloads(runtimes[^1], env).VersionAsync(ct);
        runtimes[^1].Version = $"{v.RuntimeName} {v.RuntimeVersion}";
        Console.WriteLine($"started {runtimes[^1].Version} (pid {runtimes[^1].DaemonPid})");
    }
    report.Runtimes = runtimes;

    var ctx = new BenchContext(opts, env, runtimes, repo);
    report.Extras = extras;
    report.Context = ctx;

    // 1. Cold pulls first: no image shares the multi-layer image's busybox layer yet. The
    // runtimes take turns, pull by pull, so neither gets the quieter moments of a shared machine.
    if (opts.Runs("pull"))
    {
        var multilayer = env.Image("multilayer");
        var layers = env.LayerDigests(Path.Combine(env.TestImagesDir, "multilayer"));
        Console.WriteLine($"{opts.PullIterations} cold pulls of {multilayer} per runtime, in turns ...");
        foreach (var rt in runtimes) report.Pull[rt.Name] = new PullSamples();
        // Iteration -1 is a warm-up (first-call costs such as our JIT) and is not counted.
        for (var i = -1; i < opts.PullIterations; i++)
            foreach (var rt in runtimes) await new Workloads(rt, env).PullColdOnceAsync(multilayer, layers, i < 0 ? new PullSamples() : report.Pull[rt.Name], ct);
        foreach (var rt in runtimes)
        {
            using var c = new Workloads(rt, env).Client();
            await new Workloads(rt, env).RemoveImageAsync(c, multilayer, ct);
        }
    }

    foreach (var rt in runtimes)
    {
        var w = new Workloads(rt, env);
        await w.PullAsync(env.Image("busybox"), ct);
        if (rt is Containerd) await w.PullAsync(env.Image("pause"), ct);
    }

    // 2. Lifecycle, one client.
    foreach (var rt in opts.Runs("lifecycle") ? runtimes : [])
    {
        Console.WriteLine($"[{rt.Name}] {opts.LifecycleIterations} sequential pod lifecycles ...");
        var logStart = rt is OurRuntime ? new FileInfo(Path.Combine(env.LogDir, "criruntime.log")).Length : 0;
        report.Sequential[rt.Name] = await new Workloads(rt, env).SequentialAsync(opts.LifecycleIterations, ct);
        // Where our daemon's time went: its Debug lines of these lifecycles (docs/benchmarks.md).
        if (rt is OurRuntime) report.Steps = StepTimes.Parse(ReadFrom(Path.Combine(env.LogDir, "criruntime.log"), logStart));
    }
    // 3. Lifecycle, N clients at once.
    foreach (var rt in opts.Runs("lifecycle") ? runtimes : [])
    {
        Console.WriteLine($"[{rt.Name}] {opts.Clients} clients x {opts.ConcurrentIterations} pod lifecycles ...");
        report.Concurrent[rt.Name] = await new Workloads(rt, env).ConcurrentAsync(opts.Clients, opts.ConcurrentIterations, ct);
    }
    // 4. Density.
    foreach (var n in opts.Runs("density") ? opts.Density : [])
        foreach (var rt in runtimes)
        {
            if (rt is Containerd && n > opts.ContainerdDensityMax)
            {
                Console.WriteLine($"[{rt.Name}] density: {n} pods skipped (--containerd-density-max {opts.ContainerdDensityMax})");
                continue;
            }
            Console.WriteLine($"[{rt.Name}] density: {n} pods ...");
            var densityLogStart = rt is OurRuntime ? new FileInfo(Path.Combine(env.LogDir, "criruntime.log")).Length : 0;
            var d = await new Workloads(rt, env).DensityAsync(n, opts.DensityParallelism, ct);
            // How long our daemon itself took for each Status (its Debug line per call): what the
            // client measured minus this is the client's own wait for a CPU on a loaded node.
            if (rt is OurRuntime)
            {
                var log = ReadFrom(Path.Combine(env.LogDir, "criruntime.log"), densityLogStart);
                d = d with
                {
                    DaemonStatusMaxMs = StepTimes.CallMs(log, "RuntimeService/Status").DefaultIfEmpty(double.NaN).Max(),
                    DaemonManagedHeapKb = StepTimes.ManagedHeapKbAfterTrim(log, d.SettledAt),
                };
            }
            report.Density.Add((rt.Name, d));
            Console.WriteLine($"  running {d.Running}/{n}, start {d.StartSeconds:F1}s, teardown {d.TeardownSeconds:F1}s, errors {d.Errors.Count}");
            foreach (var e in d.Errors.Take(5)) Console.WriteLine("    " + e);
        }

    // 5. The sections in files of their own.
    foreach (var section in extras)
    {
        Console.WriteLine($"[{section.Name}] ...");
        await section.RunAsync(ctx, ct);
    }

    report.Complete = true;
}
catch (OperationCanceledException) when (cts.IsCancellationRequested)
{
    Console.Error.WriteLine("interrupted");
    status = 130;
}
catch (Exception e)
{
    Console.Error.WriteLine($"bench failed: {e}");
    status = 1;
}
finally
{
    using var cleanupCts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
    foreach (var rt in runtimes)
    {
        try { if (rt.DaemonPid != 0) await new Workloads(rt, env).RemoveAllPodsAsync(cleanupCts.Token); }
        catch (Exception e) { Console.Error.WriteLine($"cleanup of {rt.Name}'s pods: {e.Message}"); }
        await rt.DisposeAsync();
    }
    env.CleanUp();
}

if (report.Complete)
{
    var text = report.Markdown();
    Console.WriteLine();
    Console.WriteLine(text);
    if (opts.Doc is not null)
    {
        var doc = Path.Combine(repo, opts.Doc);
        if (opts.Only is not null && File.Exists(doc)) text = DocMerge.Merge(File.ReadAllText(doc), text);
        File.WriteAllText(doc, text);
        Console.WriteLine($"wrote {opts.Doc}");
    }
}
return status;

static string FindRepo()
{
    for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        if (File.Exists(Path.Combine(dir.FullName, "CriRuntime.sln"))) return dir.FullName;
    throw new InvalidOperationException($"CriRuntime.sln not found above {AppContext.BaseDirectory}");
}

static string ReadFrom(string path, long offset)
{
    using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
    f.Seek(offset, SeekOrigin.Begin);
    return new StreamReader(f).ReadToEnd();
}
