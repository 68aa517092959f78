using System.Net.Sockets;
using System.Text;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>Descriptors passed with SCM_RIGHTS arrive with the line they were sent with, usable,
/// and the lines before and after get none, though the kernel may join the earlier line to the
/// same read (the framing exec-stream and attach rely on).</summary>
public class FdPassingTests
{
    private static (Socket A, Socket B) Pair()
    {
        var dir = Directory.CreateTempSubdirectory("fdpass");
        var path = Path.Combine(dir.FullName, "s");
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(path));
        listener.Listen(1);
        var a = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        a.Connect(new UnixDomainSocketEndPoint(path));
        var b = listener.Accept();
        dir.Delete(recursive: true);
        return (a, b);
    }

    [Fact]
    public async Task Descriptors_ArriveWithTheirLine_AndWork()
    {
        var (shim, daemon) = Pair();
        var (stdoutTheirs, stdoutOurs) = Pair();
        using (shim) using (daemon) using (stdoutOurs)
        {
            FdPassing.Send((int)shim.Handle, "{\"first\":1}\n"u8, []);
            FdPassing.Send((int)shim.Handle, "{\"ok\":true,\"fds\":[\"stdout\"]}\n"u8, [(int)stdoutTheirs.Handle]);
            FdPassing.Send((int)shim.Handle, "{\"exit\":0}\n"u8, []);
            stdoutTheirs.Dispose(); // the receiver now holds its own descriptor of it

            var reader = new FdLineReader(daemon);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var first = await reader.ReadLineAsync(cts.Token);
            Assert.Equal("{\"first\":1}", first!.Value.Line);
            Assert.Empty(first.Value.Fds);

            var second = await reader.ReadLineAsync(cts.Token);
            Assert.Equal("{\"ok\":true,\"fds\":[\"stdout\"]}", second!.Value.Line);
            var fd = Assert.Single(second.Value.Fds);
            using var received = new Socket(new SafeSocketHandle(fd, ownsHandle: true));
            received.Send("hello"u8);
            var buffer = new byte[16];
            var n = stdoutOurs.Receive(buffer);
            Assert.Equal("hello", Encoding.UTF8.GetString(buffer, 0, n));

            var third = await reader.ReadLineAsync(cts.Token);
            Assert.Equal("{\"exit\":0}", third!.Value.Line);
            Assert.Empty(third.Value.Fds);

            shim.Shutdown(SocketShutdown.Send);
            Assert.Null(await reader.ReadLineAsync(cts.Token));
        }
    }

    [Fact]
    public async Task ReadLine_WaitsForALineThatArrivesLater()
    {
        var (shim, daemon) = Pair();
        using (shim) using (daemon)
        {
            var reader = new FdLineReader(daemon);
            var pending = reader.ReadLineAsync(CancellationToken.None);
            Assert.False(pending.IsCompleted);
            FdPassing.Send((int)shim.Handle, "par"u8, []);
            FdPassing.Send((int)shim.Handle, "tial\n"u8, []);
            var line = await pending.WaitAsync(TimeSpan.FromSeconds(10));
            Assert.Equal("partial", line!.Value.Line);
        }
    }

    [Fact]
    public void Send_RefusesDescriptorsWithoutData()
    {
        Assert.Throws<ArgumentException>(() => FdPassing.Send(0, [], [1]));
    }
}
