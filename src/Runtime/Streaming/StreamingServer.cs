using CriRuntime.Cri.V1;
using CriRuntime.Streaming.PortForward;
using CriRuntime.Streaming.RemoteCommand;

namespace CriRuntime.Streaming;

/// <summary>Hands out single-use streaming URLs for Exec/Attach/PortForward and serves them:
/// GET or POST /exec/TOKEN, /attach/TOKEN, /portforward/TOKEN on the streaming listener only.
/// An unknown, used or expired token is 404, as kubelet's streaming server answers.</summary>
public sealed class StreamingServer(StreamingListener listener, StreamingRequestCache cache, IStreamingRuntime runtime,
    RemoteCommandServer remoteCommand, PortForwardServer portForward, IHostApplicationLifetime lifetime)
{
    /// <summary>Open sessions end when the daemon stops; they do not hold its shutdown.</summary>
    private CancellationToken Stopping => lifetime.ApplicationStopping;

    public IStreamingRuntime Runtime => runtime;
    public StreamingRequestCache Cache => cache;

    public string Url(string kind, string token) => $"{listener.BaseUrl}/{kind}/{token}";

    public ExecResponse Exec(ExecRequest request) => new() { Url = Url("exec", cache.Insert(request)) };
    public AttachResponse Attach(AttachRequest request) => new() { Url = Url("attach", cache.Insert(request)) };
    public PortForwardResponse PortForward(PortForwardRequest request) => new() { Url = Url("portforward", cache.Insert(request)) };

    public void Map(IEndpointRouteBuilder endpoints)
    {
        string[] methods = ["GET", "POST"];
        endpoints.MapMethods("/exec/{token}", methods, ServeExecAsync);
        endpoints.MapMethods("/attach/{token}", methods, ServeAttachAsync);
        endpoints.MapMethods("/portforward/{token}", methods, ServePortForwardAsync);
    }

    private Task ServeExecAsync(HttpContext context) =>
        Take<ExecRequest>(context) is { } r ? remoteCommand.ServeAsync(context, RemoteCommandRequest.From(r), Stopping) : NotFound(context);

    private Task ServeAttachAsync(HttpContext context) =>
        Take<AttachRequest>(context) is { } r ? remoteCommand.ServeAsync(context, RemoteCommandRequest.From(r), Stopping) : NotFound(context);

    private Task ServePortForwardAsync(HttpContext context) =>
        Take<PortForwardRequest>(context) is { } r ? portForward.ServeAsync(context, r, Stopping) : NotFound(context);

    /// <summary>The request behind the URL's token, consumed; null for other listeners (the CRI
    /// socket) and for tokens unknown, used or expired.</summary>
    private T? Take<T>(HttpContext context) where T : class, Google.Protobuf.IMessage
    {
        if (context.Connection.LocalPort != listener.EndPoint.Port) return null;
        return context.Request.RouteValues["token"] is string token ? cache.Consume<T>(token) : null;
    }

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return context.Response.WriteAsync("404 page not found\n");
    }
}
