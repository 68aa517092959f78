using CriRuntime.Containers;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>Stop signals as image configs (Dockerfile STOPSIGNAL, umoci --config.stopsignal) and
/// the CRI Signal enum spell them.</summary>
public class StopSignalTests
{
    [Theory]
    [InlineData("SIGTERM", 15)]
    [InlineData("term", 15)]
    [InlineData("Sigterm", 15)]   // the CRI enum's name
    [InlineData("9", 9)]
    [InlineData("SIGQUIT", 3)]
    [InlineData("SIGPWR", 30)]
    [InlineData("SIGIOT", 6)]
    [InlineData("SIGRTMIN", 34)]
    [InlineData("SIGRTMIN+3", 37)]  // systemd's halt signal, set by systemd-based images (kind's node image)
    [InlineData("RTMIN+3", 37)]
    [InlineData("Sigrtminplus3", 37)]
    [InlineData("SIGRTMAX-1", 63)]
    [InlineData("Sigrtmaxminus1", 63)]
    [InlineData("SIGRTMAX", 64)]
    public void SignalNumber_ParsesNamesAndRealTimeOffsets(string name, int number) =>
        Assert.Equal(number, StopSignals.Number(name));
}
