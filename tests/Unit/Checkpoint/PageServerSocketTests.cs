using System.Net;
using System.Net.Sockets;
using CriRuntime.Checkpoint;

namespace CriRuntime.Tests.Unit.Checkpoint;

public sealed class PageServerSocketTests
{
    private const string Tables = """
          sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 0100007F:9C40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
           1: 0100007F:9C41 0100007F:A000 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
           2: 0100007F:A000 0100007F:9C41 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 20 4 30 10 -1
          sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
           0: 00000000000000000000000001000000:9C41 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 444 1 0000000000000000 100 0 0 10 0
        """;

    [Theory]
    [InlineData(40000, "111")]
    [InlineData(40001, "444")] // tcp6's listener; 40001's established socket is not one
    [InlineData(40960, null)] // only a connection's local port, nothing listens on it
    [InlineData(1, null)]
    public void ListeningInode_IsTheListenersOnThatPortOnly(int port, string? inode) =>
        Assert.Equal(inode, PageServerSocket.ListeningInode(Tables, port));

    /// <summary>On a real listener of this process (pidfd_getfd works on oneself): the listener gets
    /// TCP_NODELAY, and so does the connection it accepts afterwards, as CRIU's would.</summary>
    [Fact]
    public async Task SetNoDelay_ReachesTheListener_AndTheConnectionsItAccepts()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        Assert.False(listener.NoDelay);

        PageServerSocket.SetNoDelay(Environment.ProcessId, port);

        Assert.True(listener.NoDelay);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(IPAddress.Loopback, port);
        using var accepted = await listener.AcceptAsync();
        Assert.True(accepted.NoDelay);
    }

    [Fact]
    public void SetNoDelay_OnAPortNothingListensOn_IsAnIOException()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        Assert.Throws<IOException>(() => PageServerSocket.SetNoDelay(Environment.ProcessId, port));
    }
}
