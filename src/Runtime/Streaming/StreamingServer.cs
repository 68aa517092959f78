using CriRuntime.Cri.V1;
using CriRuntime.Streaming.Host;
using CriRuntime.Streaming.Http;
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
        var kind = Kind(registration.Request);
        if (kind.Length == 0) throw new ArgumentException($"not a streaming request: {registration.Request.Descriptor.Name}", nameof(registration));
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

    /// <summary>Routes one request: GET or POST /exec/TOKEN, /attach/TOKEN, /portforward/TOKEN (as
    /// kubelet's streaming server); another method there is 405, any other path 404.</summary>
    public async Task ServeAsync(HttpExchange exchange)
    {
        Task NotFound() => exchange.RespondAsync(404, "404 page not found\n");
        var path = exchange.Request.Path.AsSpan();
        var slash = path.Length > 1 ? path[1..].IndexOf('/') : -1;
        var kind = slash < 0 ? "" : path[1..(slash + 1)].ToString();
        var token = slash < 0 ? "" : path[(slash + 2)..].ToString();
        if (kind is not ("exec" or "attach" or "portforward") || token.Length == 0 || token.Contains('/'))
        {
            await NotFound().ConfigureAwait(false);
            return;
        }
        if (exchange.Request.Method is not ("GET" or "POST"))
        {
            await exchange.RespondAsync(405, "405 method not allowed\n", [KeyValuePair.Create("Allow", "GET, POST")]).ConfigureAwait(false);
            return;
        }
        // Single use: a token presented on another kind's path is spent too, and refused.
        if (cache.Consume<StreamRegistration>(token) is not { } r || Kind(r.Request) != kind)
        {
            await NotFound().ConfigureAwait(false);
            return;
        }
        using var session = sessions.Begin();
        switch (r.Request)
        {
            case ExecRequest exec:
                await remoteCommand.ServeAsync(exchange, RemoteCommandRequest.From(exec, r.Container!), Aborting).ConfigureAwait(false);
                break;
            case AttachRequest attach:
                await remoteCommand.ServeAsync(exchange, RemoteCommandRequest.From(attach, r.Container!), Aborting).ConfigureAwait(false);
                break;
            case PortForwardRequest forward:
                await portForward.ServeAsync(exchange, forward, r.Pod!, Aborting).ConfigureAwait(false);
                break;
        }
    }

    private static string Kind(Google.Protobuf.IMessage request) => request switch
    {
        ExecRequest => "exec",
        AttachRequest => "attach",
        PortForwardRequest => "portforward",
        _ => "",
    };
}
