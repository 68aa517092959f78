using CriRuntime.Cri.V1;
using CriRuntime.Streaming.Host;
using CriRuntime.Streaming.PortForward;
using CriRuntime.Streaming.RemoteCommand;

namespace CriRuntime.Streaming;

/// <summary>Hands out single-use streaming URLs for registered exec/attach/port-forward requests
/// and serves them: GET or POST /exec/TOKEN, /attach/TOKEN, /portforward/TOKEN on the streaming
/// listener only. An unknown, used or expired token is 404, as kubelet's streaming server answers.
/// Runs in the stream server process (<see cref="StreamServerHost"/>); every served session is
/// counted in <see cref="StreamSessions"/>, which decides when that process may exit.</summary>
public sealed class StreamingServer(StreamingListener listener, StreamingRequestCache cache,
    RemoteCommandServer remoteCommand, PortForwardServer portForward, StreamSessions sessions)
{
    /// <summary>Open sessions end when the stream server is told to stop (SIGTERM), not when a
    /// daemon goes away or the server drains.</summary>
    private CancellationToken Aborting => sessions.Aborting;

    public StreamingRequestCache Cache => cache;
    public string BaseUrl => listener.BaseUrl;

    public string Url(string kind, string token) => $"{listener.BaseUrl}/{kind}/{token}";

    /// <summary>A single-use URL for <paramref name="registration"/>, valid for <paramref name="ttl"/>
    /// (the cache's default when null).</summary>
    public string Register(StreamRegistration registration, TimeSpan? ttl = null)
    {
        var kind = registration.Request switch
        {
            ExecRequest => "exec",
            AttachRequest => "attach",
            PortForwardRequest => "portforward",
            _ => throw new ArgumentException($"not a streaming request: {registration.Request.Descriptor.Name}", nameof(registration)),
        };
        if (kind == "portforward" ? registration.Pod is null : registration.Container is null)
            throw new ArgumentException($"{kind} registration without its target", nameof(registration));
        return Url(kind, cache.Insert(registration, ttl));
    }

    public ExecResponse Exec(ExecRequest request, ContainerTarget? target = null) =>
        new() { Url = Register(new StreamRegistration(request, target ?? new ContainerTarget(request.ContainerId), null)) };
    public AttachResponse Attach(AttachRequest request, ContainerTarget? target = null) =>
        new() { Url = Register(new StreamRegistration(request, target ?? new ContainerTarget(request.ContainerId), null)) };
    public PortForwardResponse PortForward(PortForwardRequest request, PodTarget? target = null) =>
        new() { Url = Register(new StreamRegistration(request, null, target ?? new PodTarget(request.PodSandboxId))) };

    public void Map(IEndpointRouteBuilder endpoints)
    {
        string[] methods = ["GET", "POST"];
        endpoints.MapMethods("/exec/{token}", methods, ServeExecAsync);
        endpoints.MapMethods("/attach/{token}", methods, ServeAttachAsync);
        endpoints.MapMethods("/portforward/{token}", methods, ServePortForwardAsync);
    }

    private async Task ServeExecAsync(HttpContext context)
    {
        if (Take<ExecRequest>(context) is not { } r) { await NotFound(context); return; }
        using var session = sessions.Begin();
        await remoteCommand.ServeAsync(context, RemoteCommandRequest.From((ExecRequest)r.Request, r.Container!), Aborting);
    }

    private async Task ServeAttachAsync(HttpContext context)
    {
        if (Take<AttachRequest>(context) is not { } r) { await NotFound(context); return; }
        using var session = sessions.Begin();
        await remoteCommand.ServeAsync(context, RemoteCommandRequest.From((AttachRequest)r.Request, r.Container!), Aborting);
    }

    private async Task ServePortForwardAsync(HttpContext context)
    {
        if (Take<PortForwardRequest>(context) is not { } r) { await NotFound(context); return; }
        using var session = sessions.Begin();
        await portForward.ServeAsync(context, (PortForwardRequest)r.Request, r.Pod!, Aborting);
    }

    /// <summary>The registration behind the URL's token, consumed when it is of the URL's kind;
    /// null for other listeners and for tokens unknown, used or expired.</summary>
    private StreamRegistration? Take<T>(HttpContext context) where T : class, Google.Protobuf.IMessage
    {
        if (context.Connection.LocalPort != listener.EndPoint.Port) return null;
        return context.Request.RouteValues["token"] is string token && cache.Consume<StreamRegistration>(token) is { Request: T } r ? r : null;
    }

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return context.Response.WriteAsync("404 page not found\n");
    }
}
