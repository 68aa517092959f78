using System.Diagnostics;
using CriRuntime.Containers;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>ProcessExitWatcher with real processes: each watched process's callback runs once it
/// exits and not before, one that has exited already is reported at once, and after Dispose
/// nothing more is called.</summary>
public sealed class ProcessExitWatcherTests
{
    private static (Process P, FdHandle Pidfd) Sleeper()
    {
        var p = Process.Start(new ProcessStartInfo("sleep", "600"))!;
        return (p, Libc.PidfdOpen(p.Id)!);
    }

    [Fact]
    public async Task EachCallback_RunsWhenItsProcessExits_AndOnlyThen()
    {
        using var watcher = new ProcessExitWatcher();
        var (a, aFd) = Sleeper();
        var (b, bFd) = Sleeper();
        using (a) using (b)
        {
            var aExited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var bExited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            watcher.Watch(aFd, aExited.SetResult);
            watcher.Watch(bFd, bExited.SetResult);
            Assert.Equal(2, watcher.Count);

            a.Kill();
            await aExited.Task.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.False(bExited.Task.IsCompleted);
            Assert.Equal(1, watcher.Count);

            b.Kill();
            await bExited.Task.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal(0, watcher.Count);
        }
    }

    [Fact]
    public async Task AProcessThatHasExitedAlready_IsReportedAtOnce()
    {
        using var watcher = new ProcessExitWatcher();
        var (p, pidfd) = Sleeper();
        using (p)
        {
            p.Kill();
            await p.WaitForExitAsync();
            var exited = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            watcher.Watch(pidfd, exited.SetResult);
            await exited.Task.WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    [Fact]
    public void AfterDispose_NothingIsCalled_AndALaterWatchClosesItsPidfd()
    {
        var watcher = new ProcessExitWatcher();
        var (p, pidfd) = Sleeper();
        using (p)
        {
            var called = 0;
            watcher.Watch(pidfd, () => Interlocked.Increment(ref called));
            watcher.Dispose();
            Assert.True(pidfd.IsClosed);
            var (q, late) = Sleeper();
            using (q)
            {
                watcher.Watch(late, () => Interlocked.Increment(ref called));
                Assert.True(late.IsClosed);
                p.Kill();
                q.Kill();
                p.WaitForExit();
                q.WaitForExit();
            }
            Assert.Equal(0, Volatile.Read(ref called));
        }
    }
}
