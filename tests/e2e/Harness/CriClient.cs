using System.Net.Sockets;
using CriRuntime.Cri.V1;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>A typed CRI client over the daemon's unix socket: what the kubelet and crictl use.</summary>
public sealed class CriClient : IDisposable
{
    private readonly GrpcChannel _channel;
    public RuntimeService.RuntimeServiceClient Runtime { get; }
    public ImageService.ImageServiceClient Images { get; }
    /// <summary>The channel's invoker, for calls the typed clients cannot make (raw request bytes).</summary>
    public CallInvoker Invoker { get; }

    /// <summary>A unary call the test gave no deadline gets this one: a daemon that never answers
    /// fails the test with DeadlineExceeded, naming the call, instead of hanging the whole run.
    /// Longer than any call a test makes on purpose (a 200 MB checkpoint, a pull).</summary>
    public static readonly TimeSpan DefaultUnaryDeadline = TimeSpan.FromMinutes(3);

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
        Invoker = _channel.CreateCallInvoker().Intercept(new DefaultDeadline(DefaultUnaryDeadline));
        Runtime = new RuntimeService.RuntimeServiceClient(Invoker);
        Images = new ImageService.ImageServiceClient(Invoker);
    }

    /// <summary>Gives unary calls without a deadline <paramref name="deadline"/> from now.
    /// Streams (events, exec, attach) end when the test cancels them, so they keep none.</summary>
    private sealed class DefaultDeadline(TimeSpan deadline) : Interceptor
    {
        public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
            TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            if (context.Options.Deadline is null)
                context = new ClientInterceptorContext<TRequest, TResponse>(
                    context.Method, context.Host, context.Options.WithDeadline(DateTime.UtcNow + deadline));
            return continuation(request, context);
        }

        public override TResponse BlockingUnaryCall<TRequest, TResponse>(
            TRequest request, ClientInterceptorContext<TRequest, TResponse> context, BlockingUnaryCallContinuation<TRequest, TResponse> continuation)
        {
            if (context.Options.Deadline is null)
                context = new ClientInterceptorContext<TRequest, TResponse>(
                    context.Method, context.Host, context.Options.WithDeadline(DateTime.UtcNow + deadline));
            return continuation(request, context);
        }
    }

    public void Dispose() => _channel.Dispose();
}
