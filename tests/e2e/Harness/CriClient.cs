using System.Net.Sockets;
using CriRuntime.Cri.V1;
using Grpc.Net.Client;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>A typed CRI client over the daemon's unix socket: what the kubelet and crictl use.</summary>
public sealed class CriClient : IDisposable
{
    private readonly GrpcChannel _channel;
    public RuntimeService.RuntimeServiceClient Runtime { get; }
    public ImageService.ImageServiceClient Images { get; }
    /// <summary>The channel's invoker, for calls the typed clients cannot make (raw request bytes).</summary>
    public Grpc.Core.CallInvoker Invoker => _channel.CreateCallInvoker();

    public CriClient(string socketPath)
    {
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), ct);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
            EnableMultipleHttp2Connections = true,
        };
        _channel = GrpcChannel.ForAddress("http://localhost", new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxReceiveMessageSize = 16 * 1024 * 1024,
        });
        Runtime = new RuntimeService.RuntimeServiceClient(_channel);
        Images = new ImageService.ImageServiceClient(_channel);
    }

    public void Dispose() => _channel.Dispose();
}
