using System.Text;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Streaming;
using CriRuntime.Streaming.Host;
using Google.Protobuf;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>The stream server's control protocol (one JSON line per message), the daemon's
/// adopt-or-drain decision and the server's rule for when it may exit.</summary>
public sealed class StreamServerControlTests
{
    /// <summary>A stream that hands out what it holds in reads of at most <paramref name="chunk"/> bytes.</summary>
    private sealed class ChunkedStream(byte[] data, int chunk) : MemoryStream(data)
    {
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) =>
            base.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], ct);
    }

    private static StreamControlRequest Registration(string arg) => new()
    {
        Op = StreamControlOps.Register,
        Kind = "exec",
        Request = new ExecRequest { ContainerId = "c1", Cmd = { "sh", "-c", arg }, Stdin = true, Tty = true }.ToByteArray(),
        Container = new ContainerTarget("c1", "/run/criruntime/containers/c1", Stdin: true, Tty: true, StdinOnce: false),
        TtlSeconds = 30,
    };

    [Fact]
    public void Encode_IsOneLine_EvenWhenTheCommandHoldsNewlines()
    {
        var line = StreamControlCodec.Encode(Registration("echo a\necho b\r\n"));
        Assert.Equal((byte)'\n', line[^1]);
        Assert.Equal(1, line.Count(b => b == (byte)'\n'));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(100000)]
    public async Task Messages_RoundTrip_WhateverTheReadBoundaries(int chunk)
    {
        var first = Registration("echo a\necho b");
        var second = new StreamControlRequest { Op = StreamControlOps.Bye };
        var bytes = StreamControlCodec.Encode(first).Concat(StreamControlCodec.Encode(second)).Concat("{\"op\":\"hel"u8.ToArray()).ToArray();
        var reader = new ControlLineReader(new ChunkedStream(bytes, chunk));

        var a = StreamControlCodec.DecodeRequest(await reader.ReadLineAsync(CancellationToken.None));
        Assert.Equal("register", a.Op);
        Assert.Equal(first.Container, a.Container);
        Assert.Equal(30, a.TtlSeconds);
        var exec = ExecRequest.Parser.ParseFrom(a.Request);
        Assert.Equal(["sh", "-c", "echo a\necho b"], exec.Cmd);
        Assert.True(exec.Tty);
        Assert.Equal("bye", StreamControlCodec.DecodeRequest(await reader.ReadLineAsync(CancellationToken.None)).Op);
        // The peer died mid-message: end of stream, not half a message.
        Assert.Null(await reader.ReadLineAsync(CancellationToken.None));
    }

    [Fact]
    public async Task ALineLongerThanTheLimit_IsRefused()
    {
        var reader = new ControlLineReader(new MemoryStream(new byte[StreamControlCodec.MaxLine + 10]));
        await Assert.ThrowsAsync<InvalidDataException>(() => reader.ReadLineAsync(CancellationToken.None));
    }

    [Fact]
    public void Response_RoundTrips_AndLeavesOutWhatIsUnset()
    {
        var line = StreamControlCodec.Encode(new StreamControlResponse { Ok = true, Url = "http://127.0.0.1:1/exec/t" });
        Assert.Equal("{\"ok\":true,\"url\":\"http://127.0.0.1:1/exec/t\"}\n", Encoding.UTF8.GetString(line));
        var back = StreamControlCodec.DecodeResponse(line.AsSpan(0, line.Length - 1));
        Assert.True(back.Ok);
        Assert.Null(back.Pid);
    }

    private static StreamControlResponse Running(string address = "127.0.0.1", int port = 41234, string version = "1.0") =>
        new() { Ok = true, Pid = 42, Version = version, Address = address, Port = port, BaseUrl = $"http://{address}:{port}" };

    [Fact]
    public void Fit_AdoptsAServerOnTheConfiguredAddress_AnyPortWhenThePortIs0()
    {
        Assert.Null(StreamServerFit.Mismatch(Running(), new StreamingSection { Address = "127.0.0.1", Port = 0 }, "1.0"));
        Assert.Null(StreamServerFit.Mismatch(Running(port: 10010), new StreamingSection { Address = "127.0.0.1", Port = 10010 }, "1.0"));
        Assert.Null(StreamServerFit.Mismatch(Running(address: "::1"), new StreamingSection { Address = "0:0::1" }, "1.0"));
    }

    [Theory]
    [InlineData("127.0.0.2", 0, "1.0", "listens on 127.0.0.1")]
    [InlineData("127.0.0.1", 10010, "1.0", "port 41234, streaming.port is 10010")]
    [InlineData("127.0.0.1", 0, "2.0", "version 1.0, the daemon 2.0")]
    public void Fit_DrainsAServerThatNoLongerFits(string address, int port, string version, string reason)
    {
        var mismatch = StreamServerFit.Mismatch(Running(), new StreamingSection { Address = address, Port = port }, version);
        Assert.NotNull(mismatch);
        Assert.Contains(reason, mismatch);
    }

    [Fact]
    public void Fit_DrainsAServerThatRefusesDaemons()
    {
        var mismatch = StreamServerFit.Mismatch(new StreamControlResponse { Error = "draining" }, new StreamingSection(), "1.0");
        Assert.Contains("draining", mismatch);
    }

    [Fact]
    public void Sessions_KeepTheServer_AfterItsDaemonIsKilled_UntilTheLastEnds()
    {
        var s = new StreamSessions();
        s.DaemonConnected();
        var session = s.Begin();
        s.DaemonLeft(); // kill -9 of the daemon: its control connection ends
        Assert.False(s.Done.IsCompleted);
        s.DaemonConnected(); // the restarted daemon adopts it
        session.Dispose();
        Assert.False(s.Done.IsCompleted);
        s.DaemonLeft();
        Assert.True(s.Done.IsCompleted);
    }

    [Fact]
    public void Sessions_ANewServer_WaitsForItsFirstDaemon()
    {
        var s = new StreamSessions();
        Assert.False(s.Done.IsCompleted);
        s.DaemonConnected();
        s.NoDaemonCame(); // the timer fires after the daemon came: no effect
        Assert.False(s.Done.IsCompleted);
        var orphan = new StreamSessions();
        orphan.NoDaemonCame();
        Assert.True(orphan.Done.IsCompleted);
    }

    [Fact]
    public void Sessions_Draining_ExitsAfterTheLastSession_EvenWithADaemonConnected()
    {
        var s = new StreamSessions();
        s.DaemonConnected();
        var a = s.Begin();
        var b = s.Begin();
        s.Drain();
        a.Dispose();
        a.Dispose(); // ending twice counts once
        Assert.False(s.Done.IsCompleted);
        b.Dispose();
        Assert.True(s.Done.IsCompleted);
    }

    [Fact]
    public void Sessions_Bye_TellsWhetherTheServerExits()
    {
        var s = new StreamSessions();
        s.DaemonConnected();
        Assert.True(s.IdleWithout(1));
        var session = s.Begin();
        Assert.False(s.IdleWithout(1));
        session.Dispose();
        s.DaemonConnected();
        Assert.False(s.IdleWithout(1)); // another daemon is still connected
    }

    [Fact]
    public void Sessions_Abort_CancelsTheOpenSessions_AndEnds()
    {
        var s = new StreamSessions();
        s.DaemonConnected();
        using var session = s.Begin();
        s.Abort();
        Assert.True(s.Aborting.IsCancellationRequested);
        Assert.True(s.Done.IsCompleted);
    }
}
