using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>Lazy (post-copy) migration between two real daemons (docs/migration.md, "Lazy mode").</summary>
public partial class MigrationTests
{
    [Fact]
    public async Task LazyMigration_IsRefusedBeforeTheFreeze_WhenPipeMaxSizeIsTheDefaultOneMiB()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-lazy-refused");
        await PrepareAsync(b, source, "m-lazy-refused");

        RpcException refused;
        using (PipeMaxSize.Set(PipeMaxSize.Default))
            refused = await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-lazy-refused", source.PodId, b.Address, "lazy"));

        Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
        Assert.Contains("fs.pipe-max-size is 1048576", refused.Status.Detail);
        Assert.Contains("4194304", refused.Status.Detail);
        // Nothing happened: no migration recorded, the source never frozen and counting on.
        var none = await Assert.ThrowsAsync<RpcException>(async () => await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-refused" }));
        Assert.Equal(StatusCode.NotFound, none.StatusCode);
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 2);
        Assert.Equal("PREPARED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-refused" })).Phase);
        Assert.Equal("ABORTED", (await b.Migration.AbortAsync(new AbortRequest { MigrationId = "m-lazy-refused" })).Phase);
    }

    [Fact]
    public async Task LazyMigration_TheCounterContinuesOnTheTargetWhileItsPagesFollow_AndCommitRemovesTheSourceOnlyOnceAllArrived()
    {
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-lazy");
        var targetPodId = await PrepareAsync(b, source, "m-lazy");
        var before = await CountAsync(a.C, source.ContainerId);

        var seen = await MigrateAsync(a, "m-lazy", source.PodId, b.Address, "lazy");

        var done = seen[^1];
        Assert.True(done.Phase == "DONE", $"{done.Phase}: {done.Error}");
        // In order (a phase that passes quickly may not be streamed): the target runs the pod
        // (PAGING) before the source's page servers have served every page (DONE).
        string[] order = ["FREEZING", "TRANSFERRING", "TRANSFERRED", "PAGING", "DONE"];
        var phases = seen.Select(s => Array.IndexOf(order, s.Phase)).ToList();
        Assert.True(phases.All(i => i >= 0) && phases.SequenceEqual(phases.Order()), string.Join(", ", seen.Select(s => s.Phase)));
        Assert.InRange(done.DowntimeMs, 1, 120_000);
        Assert.Equal(targetPodId, done.TargetPodSandboxId);
        Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        var lastOnSource = Logged(source.Pod)[^1];

        var restored = Assert.Single(await ContainersAsync(b, targetPodId));
        Assert.Equal(ContainerState.ContainerRunning, restored.State);
        var first = await CountAsync(b.C, restored.Id);
        Assert.True(first >= before, $"target counter at {first}, source at {before} before the migration");
        await WaitCountAsync(b.C, restored.Id, first + 3);
        Assert.InRange(Logged(On(b, source.Pod))[0], before, lastOnSource + 1);

        Assert.Equal("COMMITTED", (await a.Migration.CommitAsync(new CommitRequest { MigrationId = "m-lazy" })).Phase);
        Assert.Empty(await PodsAsync(a));
        var now = await CountAsync(b.C, restored.Id);
        await WaitCountAsync(b.C, restored.Id, now + 2);
        // The pages came over CRIU's page server (logged once the target ran the pod, before DONE),
        // and the target's criu lazy-pages ended successfully, having injected them all.
        Assert.Contains("memory pages follow from 1 page servers on 127.0.0.1", a.D.Output);
        Assert.Matches(@"criu lazy-pages of container [0-9a-f]+ exited 0 \(killed: False\)", b.D.Output);
    }

    [Fact]
    public async Task LazyMigration_AbortedAfterTheTargetRuns_LeavesTheSourceCountingOnAndTheTargetEmpty()
    {
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-lazy-abort");
        await PrepareAsync(b, source, "m-lazy-abort");

        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("migrate", source.PodId, "--to", b.Address, "--id", "m-lazy-abort", "--mode", "lazy", "--allow-new-ip",
            "--no-commit", "--config", a.D.ConfigFile, "--socket", a.D.Socket);

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains("DONE", stdout);
        Assert.Matches(@"downtime \d+ ms", stdout);
        Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        var targetPod = Assert.Single(await PodsAsync(b));
        Assert.Equal(ContainerState.ContainerRunning, Assert.Single(await ContainersAsync(b, targetPod.Id)).State);

        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = "m-lazy-abort" })).Phase);

        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 3);
        Assert.Empty(await PodsAsync(b));
    }

    /// <summary>Abort in the phases that last milliseconds, held open by the source's
    /// $CRIRUNTIME_HOLD: FREEZING once the pod is dumped (lazy: its page servers already serve,
    /// holding the tasks seized), TRANSFERRING once the first chunk went, TRANSFERRED once the
    /// target answered that the pod runs. The page servers go, the target removes its pod (and
    /// whatever it restored), and the source counts on.</summary>
    [Theory]
    [InlineData("migrate-after-dump", "FREEZING", "lazy")]
    [InlineData("migrate-mid-transfer", "TRANSFERRING", "lazy")]
    [InlineData("migrate-after-restore", "TRANSFERRED", "lazy")]
    [InlineData("migrate-after-dump", "FREEZING", "cold")]
    [InlineData("migrate-mid-transfer", "TRANSFERRING", "cold")]
    [InlineData("migrate-after-restore", "TRANSFERRED", "cold")]
    public async Task Migration_AbortedInAShortPhase_LeavesTheSourceCountingOnAndTheTargetEmpty(string holdAt, string phase, string mode)
    {
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        a.D.Environment["CRIRUNTIME_HOLD"] = holdAt;
        await a.D.RestartAsync();
        var id = $"m-{mode}-hold-{phase.ToLowerInvariant()}";
        var source = await CounterPodAsync(a, $"counter-{mode}-hold-{phase.ToLowerInvariant()}");
        await PrepareAsync(b, source, id);
        var before = await CountAsync(a.C, source.ContainerId);

        using var call = a.Migration.Migrate(new MigrateRequest { MigrationId = id, PodSandboxId = source.PodId, TargetAddress = b.Address, Mode = mode, AllowNewIp = true });
        await a.D.WaitForOutputAsync($"fault point {holdAt}: holding", TimeSpan.FromSeconds(120));
        Assert.Equal(phase, (await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id })).Phase);
        // Lazy: the page servers serve; they hold the tasks seized (CRIU thawed the cgroup to
        // seize them). Cold: the pod stays frozen.
        if (mode == "lazy") Assert.NotEmpty(PageServers(a));
        else Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        // TRANSFERRED: the target's copy runs already.
        if (phase == "TRANSFERRED")
            Assert.Equal(ContainerState.ContainerRunning, Assert.Single(await ContainersAsync(b, Assert.Single(await PodsAsync(b)).Id)).State);

        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);

        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None)) { }
        });
        Assert.Empty(PageServers(a));
        Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id })).Phase);
        Assert.Empty(await PodsAsync(b));
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        Assert.True(now >= before, $"counter at {now}, {before} before the migration ({ended.Status.Detail})");
        await WaitCountAsync(a.C, source.ContainerId, now + 3);
    }

    /// <summary>Abort while the target runs the pod and its memory pages still follow (PAGING):
    /// the page servers go, the target's copy goes, and only then does the source run again. The
    /// pages are held: 500 MB beside the counter (seconds of paging), and the source's page server
    /// is stopped (SIGSTOP) as soon as PAGING is streamed, so the pages cannot all arrive before the
    /// Abort whatever the machine's speed.</summary>
    [Fact]
    public async Task LazyMigration_AbortedWhilePaging_LeavesTheSourceCountingOnAndTheTargetEmpty_AndTheTwoNeverRanAtOnce()
    {
        const int holdMb = 500;
        using var pipes = PipeMaxSize.Set(PipeMaxSize.Lazy);
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-lazy-paging-abort", holdMb);
        var targetPodId = await PrepareAsync(b, await PrepareRequestAsync(b, source, "m-lazy-paging-abort", holdMb));
        var before = await CountAsync(a.C, source.ContainerId);

        using var call = a.Migration.Migrate(new MigrateRequest { MigrationId = "m-lazy-paging-abort", PodSandboxId = source.PodId, TargetAddress = b.Address, Mode = "lazy", AllowNewIp = true });
        var seen = new List<MigrationStatus>();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            seen.Add(call.ResponseStream.Current);
            if (seen[^1].Phase is "PAGING" or "DONE" or "FAILED") break;
        }
        Assert.True(seen.Count > 0 && seen[^1].Phase == "PAGING", string.Join(", ", seen.Select(s => $"{s.Phase} {s.Error}")));
        // The target's copy runs (it counts past where the source was frozen), its dd's pages still
        // coming; then they stop coming.
        var restored = Assert.Single(await ContainersAsync(b, targetPodId));
        await WaitCountAsync(b.C, restored.Id, before + 1);
        // The count file came over with the rootfs: the copy may not have written a line of its own
        // yet, and once the page servers stop it may never (its next line can need a page). Its
        // first line is waited for in its log before they stop (CI once found none).
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (Stamped(On(b, source.Pod)).Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the target's copy logged no line in 30 s");
            await Task.Delay(50);
        }
        var pageServers = PageServers(a);
        Assert.NotEmpty(pageServers);
        foreach (var pid in pageServers) Assert.Equal(0, ProcState.Signal(pid, ProcState.SigStop));
        Assert.Equal("PAGING", (await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-paging-abort" })).Phase);
        Assert.Equal(ContainerState.ContainerRunning, restored.State);

        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = "m-lazy-paging-abort" })).Phase);

        // The Migrate stream ends with the Abort, never DONE.
        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None)) seen.Add(call.ResponseStream.Current);
        });
        Assert.DoesNotContain(seen, s => s.Phase == "DONE");
        Assert.Empty(PageServers(a));
        Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-lazy-paging-abort" })).Phase);
        Assert.Empty(await PodsAsync(b));
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        Assert.True(now >= before, $"counter at {now}, {before} before the migration ({ended.Status.Detail})");
        await WaitCountAsync(a.C, source.ContainerId, now + 3);

        // Never two at once: the source counted on only after the target's copy last counted. The
        // target continued from the value the source was frozen at, so the source's lines from the
        // target's first value on are those it wrote once resumed.
        var onTarget = Stamped(On(b, source.Pod));
        Assert.NotEmpty(onTarget);
        var resumed = Stamped(source.Pod).Where(l => l.Value >= onTarget[0].Value).ToList();
        Assert.NotEmpty(resumed);
        Assert.True(resumed[0].At > onTarget[^1].At,
            $"the source counted {resumed[0].Value} at {resumed[0].At:O}, before the target's copy last counted {onTarget[^1].Value} at {onTarget[^1].At:O}");
    }

    /// <summary>The counter's CRI log lines: when each value was written.</summary>
    private static List<(DateTimeOffset At, int Value)> Stamped(KubePod pod) =>
        [.. File.ReadAllLines(Path.Combine(Kubelet.LogDirectory(pod), "counter", "0.log")).Select(l => l.Split(' ', 4))
            .Where(f => f.Length == 4 && f[1] == "stdout")
            .Select(f => (DateTimeOffset.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture), int.Parse(f[3], System.Globalization.CultureInfo.InvariantCulture)))];

    /// <summary>The node's lazy dumps still serving pages: `criu dump --lazy-pages` whose images
    /// are under the node's root.</summary>
    private static List<int> PageServers(MigrationNode n)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid)) continue;
            string[] args;
            try { args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0'); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            if (args.Contains("dump") && args.Contains("--lazy-pages") && args.Any(x => x.StartsWith(n.D.Dir + "/", StringComparison.Ordinal)))
                found.Add(pid);
        }
        return found;
    }
}
