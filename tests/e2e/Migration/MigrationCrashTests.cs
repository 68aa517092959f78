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
    private static (bool OnTarget, bool TargetOwns) Plan(string faultPoint, string mode) => (faultPoint, mode) switch
    {
        // Lazy: the target answered that it runs the pod, but its pages need the page servers that
        // died with the source's daemon: the restart has it abort and thaws the source.
        ("migrate-after-restore", "lazy") => (false, false),
        _ => Plan(faultPoint),
    };

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
    public Task DaemonKilledAtAFaultPoint_LeavesExactlyOneRunningCopyAfterItsRestart_NeverZeroNeverTwo(string faultPoint) =>
        // PAGING is lazy mode's own phase (the target runs the pod, its pages still follow).
        KilledAtAFaultPointAsync(faultPoint, faultPoint is "migrate-paging" or "restore-paging" ? "lazy" : "");

    /// <summary>The phases lazy mode shares with cold, where it differs: the page servers run from
    /// the dump on (and outlive their daemon), the target's restore needs them.</summary>
    [Theory]
    [InlineData("migrate-mid-transfer")]
    [InlineData("migrate-after-restore")]
    [InlineData("restore-before-start")]
    [InlineData("restore-after-start")]
    public Task DaemonKilledAtAFaultPointOfALazyMigration_LeavesExactlyOneRunningCopyAfterItsRestart_NeverZeroNeverTwo(string faultPoint) =>
        KilledAtAFaultPointAsync(faultPoint, "lazy");

    private async Task KilledAtAFaultPointAsync(string faultPoint, string mode)
    {
        var (onTarget, targetOwns) = Plan(faultPoint, mode);
        // Killing the target in PAGING needs pages that take a while: 200 MB held beside the counter.
        var holdMb = faultPoint == "restore-paging" ? 200 : 0;
        using var pipes = mode == "lazy" ? PipeMaxSize.Set(PipeMaxSize.Lazy) : null;
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var faulty = onTarget ? b : a;
        faulty.D.Environment["CRIRUNTIME_FAULT"] = faultPoint;
        await faulty.D.RestartAsync();
        var id = $"m-{faultPoint}{(mode == "lazy" ? "-lazy" : "")}";
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
        if (faultPoint is "restore-before-start" or "restore-after-start" or "restore-paging")
        {
            // The source asked the target to restore (and, lazy, served it pages) and cannot tell it
            // to remove its copy now: it must stay frozen (its failed Migrate killed any page server,
            // whose tasks must not run then), whatever the target's surviving shims and CRIUs do.
            var failed = await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id });
            Assert.True(failed.Phase == "FAILED", $"source {failed.Phase}: {failed.Error}");
            Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        }
        if (!onTarget)
            // The phase the source's record holds while its daemon is down: the one the point names.
            Assert.Equal(RecordedPhase(faultPoint), SourceRecordPhase(a, id));
        faulty.D.Environment.Clear();
        await faulty.D.StartAsync();

        // What docs/migration.md tells the operator to do next.
        switch (faultPoint)
        {
            case "prepare-target-after-record":
                // The restart removed the prepared pod; the source never took part.
                Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id })).Phase);
                break;
            case "migrate-after-restore" when mode == "lazy":
            {
                // TRANSFERRED, lazy: the target runs the pod but its page servers died with the daemon
                // (killed as leftovers if they had not finished): the restart has the target abort and
                // thaws the source (FAILED); Migrate again follows that and answers its error.
                var err = await Assert.ThrowsAsync<RpcException>(migrate);
                Assert.Contains("lazily", err.Status.Detail);
                var here = await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id });
                Assert.True(here.Phase == "FAILED", $"source {here.Phase}: {here.Error}");
                Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
                Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = id })).Phase);
                Assert.Empty(await PodsAsync(b));
                Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = id })).Phase);
                break;
            }
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

    /// <summary>The source's phase at a source fault point (for a point the source reaches in it).</summary>
    private static string RecordedPhase(string faultPoint) => faultPoint switch
    {
        "migrate-after-freeze" or "migrate-after-dump" => "FREEZING",
        "migrate-mid-transfer" => "TRANSFERRING",
        "migrate-after-restore" => "TRANSFERRED",
        "migrate-paging" => "PAGING",
        "commit-after-record" => "COMMITTED",
        _ => throw new ArgumentOutOfRangeException(nameof(faultPoint), faultPoint, null),
    };

    /// <summary>The phase in the source's migration record on disk (read while its daemon is down).</summary>
    private static string SourceRecordPhase(MigrationNode n, string id)
    {
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(n.D.Root, "migrations", id, "migration.json")));
        return json.RootElement.GetProperty("phase").GetString()!;
    }
}
