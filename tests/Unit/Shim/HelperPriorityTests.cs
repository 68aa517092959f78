using CriRuntime.Interop;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>The shim's way back from the helpers' nice value before it creates the container's
/// processes, on this (multi-threaded) test process.</summary>
public sealed class HelperPriorityTests
{
    private static int NiceOf(string task) => int.Parse(File.ReadAllText(Path.Combine(task, "stat")).Split(") ")[1].Split(' ')[16],
        System.Globalization.CultureInfo.InvariantCulture);

    [Theory]
    [InlineData(0, 5)]
    [InlineData(-10, -5)] // a daemon run at a higher priority keeps its helpers above the default
    [InlineData(17, 19)]
    public void Helpers_Run5NiceStepsBelowTheDaemon(int daemon, int helpers) => Assert.Equal(helpers, HelperPriority.For(daemon));

    [Fact]
    public void ResetProcess_BringsEveryThreadBackTo0()
    {
        // Two threads at the helpers' nice: this one and one that waits.
        Assert.Equal(0, Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), HelperPriority.For(0)));
        using var niced = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var other = new Thread(() =>
        {
            _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), HelperPriority.For(0));
            niced.Set();
            release.Wait();
        });
        other.Start();
        niced.Wait();
        try
        {
            var tasks = Directory.GetDirectories("/proc/self/task");
            Assert.Contains(tasks, t => NiceOf(t) == HelperPriority.For(0));

            Assert.True(HelperPriority.ResetProcess(0, out var errno), $"errno {errno}");
            Assert.All(Directory.GetDirectories("/proc/self/task"), t => Assert.Equal(0, NiceOf(t)));
        }
        finally
        {
            _ = Libc.Setpriority(Libc.PRIO_PROCESS, (uint)Libc.Gettid(), 0);
            release.Set();
            other.Join();
        }
    }
}
