using Microsoft.AspNetCore.Http.Features;

namespace CriRuntime.Streaming.Spdy;

/// <summary>The server half of the Kubernetes SPDY upgrade (apimachinery httpstream/spdy and
/// httpstream.Handshake): the client sends Connection: Upgrade, Upgrade: SPDY/3.1 and one or more
/// X-Stream-Protocol-Version headers in its order of preference; we answer 101 with the first one
/// we support (or, when it names none, with none: the oldest protocol), else 400/403 saying why.</summary>
public static class SpdyUpgrade
{
    public const string ProtocolHeader = "X-Stream-Protocol-Version";
    public const string AcceptedProtocolsHeader = "X-Accepted-Stream-Protocol-Versions";

    public static bool IsSpdyRequest(HttpContext context) =>
        context.Request.Headers.Upgrade.Any(u => string.Equals(u?.Trim(), "SPDY/3.1", StringComparison.OrdinalIgnoreCase));

    /// <summary>The session and negotiated protocol, or null when the response already says why not.</summary>
    public static async Task<(SpdyConnection Connection, string Protocol)?> AcceptAsync(HttpContext context, IReadOnlyList<string> supported)
    {
        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        if (upgrade is not { IsUpgradableRequest: true } || !IsSpdyRequest(context))
        {
            await RefuseAsync(context, StatusCodes.Status400BadRequest, "unable to upgrade: missing upgrade headers in request").ConfigureAwait(false);
            return null;
        }
        var offered = context.Request.Headers[ProtocolHeader]
            .SelectMany(v => (v ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)).ToList();
        // A client that names no protocol gets the oldest one ("" here), as kubelet does.
        var protocol = offered.Count == 0 ? "" : offered.FirstOrDefault(p => supported.Contains(p, StringComparer.Ordinal));
        if (protocol is null)
        {
            foreach (var p in supported) context.Response.Headers.Append(AcceptedProtocolsHeader, p);
            await RefuseAsync(context, StatusCodes.Status403Forbidden,
                $"unable to upgrade: unable to negotiate protocol: client supports [{string.Join(' ', offered)}], server accepts [{string.Join(' ', supported)}]").ConfigureAwait(false);
            return null;
        }
        if (protocol.Length > 0) context.Response.Headers[ProtocolHeader] = protocol;
        context.Response.Headers.Upgrade = "SPDY/3.1";
        var transport = await upgrade.UpgradeAsync().ConfigureAwait(false);
        return (new SpdyConnection(transport, isServer: true), protocol);
    }

    private static Task RefuseAsync(HttpContext context, int status, string message)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(message + "\n");
    }
}
