using CriRuntime.State;

namespace CriRuntime.Tests.Unit.State;

/// <summary>A record's lock serialises its lifecycle changes, and exists only while someone holds
/// or waits for it: a node that runs through many pods keeps no lock per record it ever had.</summary>
public sealed class RecordLockTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-locks-").FullName;
    private readonly RecordStore<ContainerRecord> _store;

    public RecordLockTests() =>
        _store = new RecordStore<ContainerRecord>(_root, "container.json", ContainerJson.Default.ContainerRecord, c => c.Id, "container");

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public async Task ManyIdsLockedAndReleased_LeaveNoLockBehind()
    {
        for (var i = 0; i < 1000; i++)
        {
            using (await _store.LockAsync($"c{i}", CancellationToken.None))
                Assert.Equal(1, _store.LocksInUse);
        }
        Assert.Equal(0, _store.LocksInUse);
    }

    [Fact]
    public async Task ASecondCaller_WaitsForTheFirst_AndTheLockGoesWithTheLast()
    {
        var first = await _store.LockAsync("c", CancellationToken.None);
        var second = _store.LockAsync("c", CancellationToken.None);
        Assert.False(second.IsCompleted);
        Assert.Equal(1, _store.LocksInUse);

        first.Dispose();
        first.Dispose(); // twice: released once
        var held = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, _store.LocksInUse);
        var third = _store.LockAsync("c", CancellationToken.None);
        Assert.False(third.IsCompleted); // the second still holds it

        held.Dispose();
        (await third.WaitAsync(TimeSpan.FromSeconds(10))).Dispose();
        Assert.Equal(0, _store.LocksInUse);
    }

    [Fact]
    public async Task AWaiterThatGivesUp_LeavesNoLockBehind_AndDoesNotTakeIt()
    {
        var held = await _store.LockAsync("c", CancellationToken.None);
        using var cts = new CancellationTokenSource();
        var waiting = _store.LockAsync("c", cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        Assert.Equal(1, _store.LocksInUse);

        held.Dispose();
        Assert.Equal(0, _store.LocksInUse);
        using (await _store.LockAsync("c", CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)))
            Assert.Equal(1, _store.LocksInUse);
    }

    [Fact]
    public async Task ConcurrentCallers_OnOneId_NeverOverlap()
    {
        var inside = 0;
        var most = 0;
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            for (var i = 0; i < 200; i++)
            {
                using (await _store.LockAsync("c", CancellationToken.None))
                {
                    var now = Interlocked.Increment(ref inside);
                    InterlockedMax(ref most, now);
                    await Task.Yield();
                    Interlocked.Decrement(ref inside);
                }
            }
        })));
        Assert.Equal(1, most);
        Assert.Equal(0, _store.LocksInUse);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen) { }
    }
}
