using CriRuntime.Streaming.Host;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>criruntime-stream-server's flags, as the daemon passes them (StreamServerClient).</summary>
public sealed class StreamServerArgsTests
{
    [Fact]
    public void TheDaemonsFlags_InBothForms()
    {
        Assert.Equal(new StreamServerOptions("/run/c", "127.0.0.1", 0, "debug"),
            StreamServerHost.ParseArgs(["--state", "/run/c", "--address", "127.0.0.1", "--port", "0", "--log-level", "debug"]));
        Assert.Equal(new StreamServerOptions("/run/c", "::1", 10010, "info"),
            StreamServerHost.ParseArgs(["--state=/run/c", "--address=::1", "--port=10010"]));
    }

    [Theory]
    [InlineData("--address 127.0.0.1 --port 0")] // no state
    [InlineData("--state /s --address 127.0.0.1 --port 65536")]
    [InlineData("--state /s --address 127.0.0.1 --port -1")]
    [InlineData("--state /s --address 127.0.0.1 --port")] // flag without its value
    [InlineData("stream-server --state /s --address 127.0.0.1 --port 0")] // the old subcommand
    [InlineData("--state /s --address 127.0.0.1 --port 0 --socket /x")]
    public void Refused(string args) => Assert.Null(StreamServerHost.ParseArgs(args.Split(' ')));
}
