using CriRuntime.Images;

namespace CriRuntime.Tests.Unit.Images;

public class SharedWorkTests
{
    [Fact]
    public async Task SameKey_RunsOnce_ForConcurrentCallers()
    {
        var work = new SharedWork();
        var runs = 0;
        var gate = new TaskCompletionSource();
        Task Op(CancellationToken ct) { Interlocked.Increment(ref runs); return gate.Task.WaitAsync(ct); }
        var a = work.RunAsync("k", Op, CancellationToken.None);
        var b = work.RunAsync("k", Op, CancellationToken.None);
        gate.SetResult();
        await Task.WhenAll(a, b);
        Assert.Equal(1, runs);
        Assert.Equal(0, work.Running);
    }

    [Fact]
    public async Task OneCallerLeaving_DoesNotCancelTheOther()
    {
        var work = new SharedWork();
        var gate = new TaskCompletionSource();
        CancellationToken seen = default;
        Task Op(CancellationToken ct) { seen = ct; return gate.Task.WaitAsync(ct); }
        using var leaves = new CancellationTokenSource();
        var a = work.RunAsync("k", Op, leaves.Token);
        var b = work.RunAsync("k", Op, CancellationToken.None);
        leaves.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        Assert.False(seen.IsCancellationRequested);
        gate.SetResult();
        await b;
    }

    [Fact]
    public async Task AllCallersLeaving_CancelsTheWork()
    {
        var work = new SharedWork();
        var cancelled = new TaskCompletionSource();
        Task Op(CancellationToken ct) { ct.Register(() => cancelled.TrySetResult()); return Task.Delay(Timeout.Infinite, ct); }
        using var cts = new CancellationTokenSource();
        var a = work.RunAsync("k", Op, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => a);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task Failure_ReachesEveryCaller_AndTheNextCallRetries()
    {
        var work = new SharedWork();
        var gate = new TaskCompletionSource();
        async Task Fails(CancellationToken ct) { await gate.Task; throw new InvalidOperationException("boom"); }
        var a = work.RunAsync("k", Fails, CancellationToken.None);
        var b = work.RunAsync("k", Fails, CancellationToken.None);
        gate.SetResult();
        await Assert.ThrowsAsync<InvalidOperationException>(() => a);
        await Assert.ThrowsAsync<InvalidOperationException>(() => b);
        await work.RunAsync("k", _ => Task.CompletedTask, CancellationToken.None);
    }
}
