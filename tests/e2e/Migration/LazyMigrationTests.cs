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
}
