using CriRuntime.Cgroups;
using CriRuntime.Checkpoint;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Checkpoint;

public sealed class PodCheckpointerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("podckpt-").FullName;
    private readonly List<string> _log = [];
    private readonly HashSet<string> _failThaw = [];
    private readonly HashSet<string> _gone = [];

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private FreezeLedger Ledger => new(Path.Combine(_dir, "checkpoints"));

    private PodCheckpointer Checkpointer() => new(Ledger, new Cgroups(this), NullLogger.Instance);

    private static readonly PodCheckpointer.Member[] Members = [new("a", "pods/p/a"), new("b", "pods/p/b")];

    /// <summary>A dump as CheckpointPod's: it waits at its gate (CRIU at pre-dump), then dumps.</summary>
    private async Task<int> Dump(int i, PodCheckpointer.DumpGate gate, CancellationToken ct)
    {
        await gate.ArriveAsync();
        _log.Add($"dump {i}");
        return i;
    }

    private int Frozen => _log.Count(l => l.StartsWith("freeze ", StringComparison.Ordinal));

    [Fact]
    public async Task DumpFrozen_StartsEveryDumpBeforeTheFreeze_AndLetsNoneThroughItsGateUntilAllAreFrozen()
    {
        var atGate = new int[2];
        var through = new int[2];
        var bothStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var started = 0;
        await Checkpointer().DumpFrozenAsync(Members, async (i, g, _) =>
        {
            // Both dumps run before anything is frozen (CRIU starting up is not frozen time).
            if (Interlocked.Increment(ref started) == 2) bothStarted.SetResult();
            await bothStarted.Task;
            atGate[i] = Frozen;
            await g.ArriveAsync();
            through[i] = Frozen;
            return i;
        }, _ => { }, CancellationToken.None);

        Assert.Equal([0, 0], atGate);
        Assert.Equal([2, 2], through);
    }

    [Fact]
    public async Task DumpFrozen_WhenADumpFailsBeforeItsGate_FreezesNothing_AndTheOtherDumpIsTurnedAwayAtItsGate()
    {
        var turnedAway = false;
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Checkpointer().DumpFrozenAsync(Members, async (i, g, _) =>
        {
            if (i == 1) throw new InvalidOperationException("criu failed at start");
            try { await g.ArriveAsync(); }
            catch (OperationCanceledException) { turnedAway = true; throw; }
            return i;
        }, d => _log.Add($"discard {d}"), CancellationToken.None));

        Assert.Equal("criu failed at start", e.Message);
        Assert.True(turnedAway);
        Assert.Equal(0, Frozen);
        Assert.DoesNotContain(_log, l => l.StartsWith("discard", StringComparison.Ordinal));
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public async Task DumpFrozen_ADumpThatNeverWaitsAtItsGate_IsRefused_AndDiscarded()
    {
        await Assert.ThrowsAsync<InvalidOperationException>(() => Checkpointer().DumpFrozenAsync(Members,
            (i, g, _) => i == 0 ? Task.FromResult(i) : Dump(i, g, CancellationToken.None), d => _log.Add($"discard {d}"), CancellationToken.None));

        Assert.Equal(0, Frozen);
        Assert.Contains("discard 0", _log);
    }

    [Fact]
    public async Task DumpFrozen_FreezesEveryContainerBeforeTheFirstDump_AndThawsAllBeforeReturning()
    {
        var dumps = await Checkpointer().DumpFrozenAsync(Members, Dump, _ => _log.Add("discard"), CancellationToken.None);

        Assert.Equal([0, 1], dumps);
        Assert.Equal(["freeze pods/p/a", "freeze pods/p/b", "dump 0", "dump 1", "thaw pods/p/a", "thaw pods/p/b"], _log);
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public async Task DumpFrozen_LeavingFrozen_KeepsEveryContainerFrozenAfterTheDumps_AndForgetsItsOwnRecord()
    {
        var dumps = await Checkpointer().DumpFrozenAsync(Members, Dump,
            _ => _log.Add("discard"), CancellationToken.None, leaveFrozen: true);

        Assert.Equal([0, 1], dumps);
        Assert.Equal(["freeze pods/p/a", "freeze pods/p/b", "dump 0", "dump 1"], _log);
        // The migration that asked for it owns the freeze now: a restart must not thaw it behind its back.
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public async Task DumpFrozen_LeavingFrozen_WhenADumpFails_StillThawsEveryContainer()
    {
        await Assert.ThrowsAsync<InvalidOperationException>(() => Checkpointer().DumpFrozenAsync(Members,
            async (i, g, _) => { await g.ArriveAsync(); return i == 1 ? throw new InvalidOperationException("criu failed") : i; }, d => _log.Add($"discard {d}"),
            CancellationToken.None, leaveFrozen: true));

        Assert.Equal(["freeze pods/p/a", "freeze pods/p/b", "thaw pods/p/a", "thaw pods/p/b", "discard 0"], _log);
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public async Task DumpFrozen_RecordsTheFreezeDurablyBeforeFreezing()
    {
        IReadOnlyList<string>? recorded = null;
        var ledger = Ledger;
        var checkpointer = new PodCheckpointer(ledger, new Cgroups(this, onFreeze: () => recorded ??= ledger.Leftovers().Single().CgroupPaths), NullLogger.Instance);

        await checkpointer.DumpFrozenAsync(Members, Dump, _ => { }, CancellationToken.None);

        Assert.Equal(["pods/p/a", "pods/p/b"], recorded);
    }

    [Fact]
    public async Task DumpFrozen_WhenTheSecondDumpFails_ThawsEveryContainer_AndDiscardsTheFirstDump()
    {
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => Checkpointer().DumpFrozenAsync(Members,
            async (i, g, _) => { await g.ArriveAsync(); return i == 1 ? throw new InvalidOperationException("criu failed") : i; }, d => _log.Add($"discard {d}"), CancellationToken.None));

        Assert.Equal("criu failed", e.Message);
        Assert.Equal(["freeze pods/p/a", "freeze pods/p/b", "thaw pods/p/a", "thaw pods/p/b", "discard 0"], _log);
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public async Task DumpFrozen_WhenTheDeadlinePassesDuringADump_ThawsEveryContainer()
    {
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Checkpointer().DumpFrozenAsync(Members, async (i, g, ct) =>
        {
            await g.ArriveAsync();
            cts.Cancel();
            await Task.Delay(Timeout.Infinite, ct);
            return i;
        }, _ => { }, cts.Token));

        Assert.Equal(["freeze pods/p/a", "freeze pods/p/b", "thaw pods/p/a", "thaw pods/p/b"], _log);
    }

    [Fact]
    public async Task DumpFrozen_WhenAFreezeFails_ThawsEveryContainer_AndDumpsNone()
    {
        var checkpointer = new PodCheckpointer(Ledger, new Cgroups(this, failFreeze: "pods/p/b"), NullLogger.Instance);

        await Assert.ThrowsAsync<CgroupException>(() => checkpointer.DumpFrozenAsync(Members, Dump, _ => { }, CancellationToken.None));

        Assert.Equal(["freeze pods/p/a", "thaw pods/p/a", "thaw pods/p/b"], _log);
    }

    [Fact]
    public async Task DumpFrozen_WhenAThawFails_KeepsTheRecord_AndTheNextStartThawsIt()
    {
        _failThaw.Add("pods/p/a");
        await Checkpointer().DumpFrozenAsync(Members, Dump, _ => { }, CancellationToken.None);
        Assert.Equal(["pods/p/a", "pods/p/b"], Ledger.Leftovers().Single().CgroupPaths);

        _failThaw.Clear();
        _log.Clear();
        var failures = new List<string>();
        var thawed = Ledger.ThawLeftovers(new Cgroups(this), (path, _) => failures.Add(path));

        Assert.Equal(2, thawed);
        Assert.Empty(failures);
        Assert.Equal(["thaw pods/p/a", "thaw pods/p/b"], _log);
        Assert.Empty(Ledger.Leftovers());
    }

    [Fact]
    public void ThawLeftovers_ForgetsACgroupThatIsGone_AndKeepsARecordWhoseThawFails()
    {
        var gone = Ledger.Record(["pods/p/gone"]);
        _gone.Add("pods/p/gone");
        Ledger.ThawLeftovers(new Cgroups(this), (_, _) => { });
        Assert.False(File.Exists(gone));

        var stuck = Ledger.Record(["pods/p/stuck"]);
        _failThaw.Add("pods/p/stuck");
        var failures = new List<string>();
        Ledger.ThawLeftovers(new Cgroups(this), (path, _) => failures.Add(path));
        Assert.True(File.Exists(stuck));
        Assert.Equal(["pods/p/stuck"], failures);
    }

    private sealed class Cgroups(PodCheckpointerTests t, Action? onFreeze = null, string? failFreeze = null) : ICgroupManagerFactory
    {
        public ICgroupManager Create(string path) => new Manager(t, path, onFreeze, failFreeze);
    }

    private sealed class Manager(PodCheckpointerTests t, string path, Action? onFreeze, string? failFreeze) : ICgroupManager
    {
        public string Path => path;
        public void Freeze()
        {
            onFreeze?.Invoke();
            if (path == failFreeze) throw new CgroupException($"freeze {path}: still FREEZING; thawed again");
            t._log.Add($"freeze {path}");
        }
        public void Thaw()
        {
            if (t._gone.Contains(path)) throw new CgroupException($"open {path}/freezer.state: No such file or directory (errno 2)", 2);
            if (t._failThaw.Contains(path)) throw new CgroupException($"write {path}/freezer.state: Device or resource busy (errno 16)", 16);
            t._log.Add($"thaw {path}");
        }
        public void Create(CgroupResources resources) => throw new NotSupportedException();
        public void AddProcess(int pid) => throw new NotSupportedException();
        public void Update(CgroupResources resources) => throw new NotSupportedException();
        public CgroupStats Stats() => throw new NotSupportedException();
        public IReadOnlyList<int> Processes() => [];
        public void KillAll() => throw new NotSupportedException();
        public void Destroy() => throw new NotSupportedException();
        public bool OomKilled() => false;
    }
}
