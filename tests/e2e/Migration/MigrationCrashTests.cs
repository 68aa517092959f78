using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>kill -9 of either daemon at each phase of a cold migration, and of either in lazy
/// mode's PAGING (docs/migration.md, "Who owns the pod"): after the killed daemon restarts and the operator does what the docs say
/// (Abort, or the call the crash cut short again), exactly one copy of the counter runs, on the
/// node the rule table names, and keeps counting; the other node has no pod left.</summary>
public partial class MigrationTests
{
    /// <summary>The faulted daemon's node, and who owns the pod once recovered.</summary>
    private static (bool OnTarget, bool TargetOwns) Plan(string faultPoint) => faultPoint switch
    {
        "migrate-after-freeze" or "migrate-after-dump" or "migrate-mid-transfer" or "migrate-paging" => (false, false),
        "migrate-after-restore" or "commit-after-record" => (false, true),
        "prepare-target-after-record" or "transfer-after-received" or "restore-before-start" or "restore-after-start" or "restore-paging" => (true, false),
        _ => throw new ArgumentOutOfRangeException(nameof(faultPoint), faultPoint, null),
    };

    [Theory]
    [InlineData("migrate-after-freeze")]
    [InlineData("migrate-after-dump")]
    [InlineData("migrate-mid-transfer")]
    [InlineData("migrate-after-restore")]
    [InlineData("migrate-paging")]
    [InlineData("commit-after-record")]
    [InlineData("prepare-target-after-record")]
    [InlineData("transfer-after-received")]
    [InlineData("restore-before-start")]
    [InlineData("restore-after-start")]
    [InlineData("restore-paging")]
    public async Task DaemonKilledAtAFaultPoint_LeavesExactlyOneRunningCopyAfterItsRestart_NeverZeroNeverTwo(string faultPoint)
    {
        var (onTarget, targetOwns) = Plan(faultPoint);
        // PAGING is lazy mode's own phase (the target runs the pod, its pages still follow). Killing
        // the target in it needs pages that take a while: 200 MB held beside the counter.
        var mode = faultPoint is "migrate-paging" or "restore-paging" ? "lazy" : "";
        var holdMb = faultPoint == "restore-paging" ? 200 : 0;
        using var pipes = mode == "lazy" ? PipeMaxSize.Set(PipeMaxSize.Lazy) : null;
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var faulty = onTarget ? b : a;
        faulty.D.Environment["CRIRUNTIME_FAULT"] = faultPoint;
        await faulty.D.RestartAsync();
        var id = $"m-{faultPoint}";
        var source = await CounterPodAsync(a, $"counter-{faultPoint}", holdMb);
        var before = await CountAsync(a.C, source.ContainerId);
        var prepare = await PrepareRequestAsync(b, source, id, holdMb);
        var migrate = () => MigrateAsync(a, id, source.PodId, b.Address, mode);
        var commit = async () => await a.Migration.CommitAsync(new CommitRequest { MigrationId = id });

        // The operator's calls, up to the one the fault cuts short.
        if (faultPoint == "prepare-target-after-record")
            await Assert.ThrowsAsync<RpcException>(() => PrepareAsync(b, prepare));
        else
        {
            await PrepareAsync(b, prepare);
            if (faultPoint == "commit-after-record")
            {
                Assert.Equal("DONE", (await migrate())[^1].Phase);
                await Assert.ThrowsAsync<RpcException>(commit);
            }
            else
                await Assert.ThrowsAsync<RpcException>(migrate);
        }
        await faulty.D.WaitForExitAsync(TimeSpan.FromSeconds(60));
        faulty.D.Environment.Clear();
        await faulty.D.StartAsync();

        // What docs/migration.md tells the operator to do next.
        switch (faultPoint)
        {
            case "prepare-target-after-record":
                // The restart removed the prepared pod; the source never took part.
                Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id })).Phase);
                break;
            case "migrate-after-restore":
                // Migrate again: the source asks the target, which runs the pod: DONE, then Commit.
                var again = (await migrate())[^1];
                Assert.True(again.Phase == "DONE", $"{again.Phase}: {again.Error}");
                Assert.Equal("COMMITTED", (await commit()).Phase);
                break;
            case "migrate-paging":
            {
                // The restart asks the target whether every page arrived (a counter's few may have,
                // before the kill): DONE if so, else FAILED (the target told to abort, the source
                // thawed); Migrate again follows that question. Either way Abort then leaves the
                // source the one copy.
                try { await migrate(); } catch (RpcException) { }
                var here = await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id });
                Assert.True(here.Phase is "DONE" or "FAILED", $"source {here.Phase}: {here.Error}");
                // DONE: frozen for Commit or Abort; FAILED: the target's copy is gone, the source runs.
                Assert.Equal(here.Phase == "DONE" ? "FROZEN" : "THAWED", FreezerState(a, source.ContainerId));
                Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);
                break;
            }
            case "restore-paging":
                // The restart removed the copy whose memory pages had not all arrived (they never can
                // now); the source, frozen, still holds the pod: Abort thaws it.
                var there = await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id });
                Assert.True(there.Phase == "ABORTED", $"target {there.Phase}: {there.Error}");
                Assert.Contains("memory page", there.Error);
                Assert.Empty(await PodsAsync(b));
                Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);
                break;
            case "commit-after-record":
                // The restart finished the commit; Commit again answers it.
                Assert.Equal("COMMITTED", (await commit()).Phase);
                break;
            default:
                // The migration failed: Abort removes whatever the target holds and leaves the source running.
                Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);
                break;
        }

        var (owner, other) = targetOwns ? (b, a) : (a, b);
        var running = new List<(MigrationNode Node, Container Container)>();
        foreach (var n in new[] { a, b })
            foreach (var c in (await n.C.Runtime.ListContainersAsync(new ListContainersRequest())).Containers)
                if (c.State == ContainerState.ContainerRunning) running.Add((n, c));
        var (node, copy) = Assert.Single(running);
        Assert.Same(owner, node);
        Assert.Equal("THAWED", FreezerState(owner, copy.Id));
        var now = await CountAsync(owner.C, copy.Id);
        Assert.True(now >= before, $"counter at {now}, {before} before the migration");
        await WaitCountAsync(owner.C, copy.Id, now + 2);
        Assert.Single(await PodsAsync(owner));
        Assert.Empty(await PodsAsync(other));
        // (Each daemon's leak check, at Dispose, finds any cgroup, mount or process left.)
    }
}
