using CriRuntime.Cri;
using CriRuntime.Cri.V1;
using Google.Protobuf;
using Grpc.Core;

namespace CriRuntime.Server;

/// <summary>The CRI services as gRPC sees them, with one change to the generated ones: a request
/// body that is not valid protobuf is InvalidArgument. Grpc.AspNetCore parses the request before
/// any interceptor runs and answers a parse failure Unknown ("Exception was thrown by handler"),
/// so the request marshallers are wrapped instead; everything else (handlers, interceptors,
/// Unimplemented for RPCs without a handler) is the generated binding's.</summary>
public static class CriServiceDefinitions
{
    public static ServerServiceDefinition Runtime(CriRuntimeService service)
    {
        var binder = new StrictBinder();
        RuntimeService.BindService(binder, service);
        return binder.Build();
    }

    public static ServerServiceDefinition Images(CriImageService service)
    {
        var binder = new StrictBinder();
        ImageService.BindService(binder, service);
        return binder.Build();
    }

    public static ServerServiceDefinition Migration(Migration.Api.MigrationService service)
    {
        var binder = new StrictBinder();
        CriRuntime.Migration.V1.Migration.BindService(binder, service);
        return binder.Build();
    }

    public static ServerServiceDefinition MigrationPeer(Migration.Peer.MigrationPeerService service)
    {
        var binder = new StrictBinder();
        CriRuntime.Migration.V1.MigrationPeer.BindService(binder, service);
        return binder.Build();
    }

    /// <summary><paramref name="method"/> with a request deserializer that turns malformed
    /// protobuf into InvalidArgument naming the method and the message type.</summary>
    public static Method<TRequest, TResponse> Strict<TRequest, TResponse>(Method<TRequest, TResponse> method)
    {
        var parse = method.RequestMarshaller.ContextualDeserializer;
        var request = Marshallers.Create(method.RequestMarshaller.ContextualSerializer, context =>
        {
            try
            {
                return parse(context);
            }
            catch (InvalidProtocolBufferException e)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument,
                    $"request: not a valid {typeof(TRequest).Name} for {method.FullName}: {e.Message}"));
            }
        });
        return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, request, method.ResponseMarshaller);
    }

    private sealed class StrictBinder : ServiceBinderBase
    {
        private readonly ServerServiceDefinition.Builder _builder = ServerServiceDefinition.CreateBuilder();

        public ServerServiceDefinition Build() => _builder.Build();

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler) =>
            _builder.AddMethod(Strict(method), handler ?? throw new ArgumentNullException(nameof(handler)));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler) =>
            _builder.AddMethod(Strict(method), handler ?? throw new ArgumentNullException(nameof(handler)));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler) =>
            _builder.AddMethod(Strict(method), handler ?? throw new ArgumentNullException(nameof(handler)));

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler) =>
            _builder.AddMethod(Strict(method), handler ?? throw new ArgumentNullException(nameof(handler)));
    }
}
