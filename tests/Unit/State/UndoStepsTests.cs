using CriRuntime.Operations;

namespace CriRuntime.Tests.Unit.State;

/// <summary>The undo list shared by the daemon's Rollback and the shim's create.</summary>
public sealed class UndoStepsTests
{
    [Fact]
    public void Dispose_UndoesInReverse_AndAttemptsEveryStepWhenOneFails()
    {
        var done = new List<string>();
        var failed = new List<string>();
        using (var undo = new UndoSteps((step, e) => failed.Add($"{step}: {e.Message}")))
        {
            undo.Add("first", () => done.Add("first"));
            undo.Add("second", () => throw new IOException("busy"));
            undo.Add("third", () => done.Add("third"));
        }

        Assert.Equal(["third", "first"], done);
        Assert.Equal(["second: busy"], failed);
    }

    [Fact]
    public void Commit_KeepsEverything()
    {
        var done = new List<string>();
        using (var undo = new UndoSteps((_, _) => { }))
        {
            undo.Add("step", () => done.Add("step"));
            undo.Commit();
        }

        Assert.Empty(done);
    }

    [Fact]
    public async Task DisposeAsync_AwaitsAsynchronousSteps_InReverse()
    {
        var done = new List<string>();
        await using (var undo = new UndoSteps((_, _) => { }))
        {
            undo.Add("sync", () => done.Add("sync"));
            undo.Add("async", async () => { await Task.Yield(); done.Add("async"); });
        }

        Assert.Equal(["async", "sync"], done);
    }

    [Fact]
    public void Dispose_ReportsAnAsynchronousStepThatHasNotFinished_InsteadOfBlockingOnIt()
    {
        var pending = new TaskCompletionSource();
        var failed = new List<string>();
        var done = new List<string>();
        using (var undo = new UndoSteps((step, e) => failed.Add(step)))
        {
            undo.Add("sync", () => done.Add("sync"));
            undo.Add("async", () => pending.Task);
        }

        Assert.Equal(["async"], failed);
        Assert.Equal(["sync"], done); // the others still ran
    }

    [Fact]
    public void DisposingTwice_UndoesOnce()
    {
        var count = 0;
        var undo = new UndoSteps((_, _) => { });
        undo.Add("count", () => count++);
        undo.Dispose();
        undo.Dispose();
        Assert.Equal(1, count);
    }
}
