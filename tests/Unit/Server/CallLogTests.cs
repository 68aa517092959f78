using CriRuntime.Server;
using Grpc.Core;
using Microsoft.Extensions.Logging;

namespace CriRuntime.Tests.Unit.Server;

/// <summary>The one Debug line per call: a call the GC stopped says for how long, so a slow
/// Status on a loaded node shows whether the time went to the GC or elsewhere.</summary>
public sealed class CallLogTests
{
    [Fact]
    public async Task ACallDuringWhichTheGcPaused_SaysHowLongItWasStopped()
    {
        var log = new RecordingLogger();
        var boundary = new CriErrorInterceptor(log);
        await boundary.UnaryServerHandler(new object(), new Controllers.TestCallContext("/runtime.v1.RuntimeService/Status"), (_, _) =>
        {
            // Blocking collections until the process has been stopped at least 1 ms in all.
            var before = GC.GetTotalPauseDuration();
            for (var i = 0; i < 10_000 && (GC.GetTotalPauseDuration() - before).TotalMilliseconds < 1; i++)
            {
                _ = new byte[64 << 10];
                GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
            }
            Assert.True((GC.GetTotalPauseDuration() - before).TotalMilliseconds >= 1, "the GC never paused 1 ms");
            return Task.FromResult(new object());
        });
        var line = Assert.Single(log.Lines);
        Assert.Matches(@"^/runtime\.v1\.RuntimeService/Status ok in [0-9.]+ ms \([0-9.]+ ms of it stopped by the GC\)", line);
    }

    private sealed class RecordingLogger : ILogger<CriErrorInterceptor>
    {
        public List<string> Lines { get; } = [];
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Lines.Add(formatter(state, exception));
    }
}
