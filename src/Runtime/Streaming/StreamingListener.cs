using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CriRuntime.Config;
using CriRuntime.Server;

namespace CriRuntime.Streaming;

/// <summary>The [streaming] HTTP/1.1 listener, bound before the host starts so the port (0 = any
/// free one) is known when the first URL is handed out. The stream server serves it
/// (<see cref="Http.StreamingHttpServer"/>).</summary>
public sealed partial class StreamingListener : IDisposable
{
    public Socket Socket { get; }
    public IPEndPoint EndPoint { get; }
    /// <summary>http://ADDR:PORT (IPv6 in brackets), the prefix of every streaming URL.</summary>
    public string BaseUrl { get; }

    private StreamingListener(Socket socket)
    {
        Socket = socket;
        EndPoint = (IPEndPoint)socket.LocalEndPoint!;
        BaseUrl = "http://" + (EndPoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{EndPoint.Address}]" : EndPoint.Address.ToString())
            + ":" + EndPoint.Port.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>streaming.address as an IP address; checked by the daemon at start too, before any
    /// stream server (which binds it) exists.</summary>
    public static IPAddress Address(StreamingSection config) =>
        IPAddress.TryParse(config.Address, out var address)
            ? address
            : throw new StartupException($"streaming.address: \"{config.Address}\" is not an IP address");

    public static StreamingListener Bind(StreamingSection config)
    {
        var address = Address(config);
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            socket.Bind(new IPEndPoint(address, config.Port));
            socket.Listen(512);
            return new StreamingListener(socket);
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new StartupException($"streaming: cannot listen on {config.Address}:{config.Port}: {e.Message}", e);
        }
    }

    public void Dispose() => Socket.Dispose();

}
