using CriRuntime.Streaming.Http;

namespace CriRuntime.Streaming.Spdy;

/// <summary>The server half of the Kubernetes SPDY upgrade (apimachinery httpstream/spdy and
/// httpstream.Handshake): the client sends Connection: Upgrade, Upgrade: SPDY/3.1 and one or more
/// X-Stream-Protocol-Version headers in its order of preference; we answer 101 with the first one
/// we support (or, when it names none, with none: the oldest protocol), else 400/403 saying why.</summary>
public static class SpdyUpgrade
{
    public const string ProtocolHeader = "X-Stream-Protocol-Version";
    public const string AcceptedProtocolsHeader = "X-Accepted-Stream-Protocol-Versions";

    public static bool IsSpdyRequest(HttpExchange exchange) => exchange.Request.HasToken("Upgrade", "SPDY/3.1");

    /// <summary>The session and negotiated protocol, or null when the response already says why not.</summary>
    public static async Task<(SpdyConnection Connection, string Protocol)?> AcceptAsync(HttpExchange exchange, IReadOnlyList<string> supported)
    {
        if (!exchange.IsUpgradeRequest || !IsSpdyRequest(exchange))
        {
            await exchange.RespondAsync(400, "unable to upgrade: missing upgrade headers in request\n").ConfigureAwait(false);
            return null;
        }
        var offered = exchange.Request.Values(ProtocolHeader);
        // A client that names no protocol gets the oldest one ("" here), as kubelet does.
        var protocol = offered.Count == 0 ? "" : offered.FirstOrDefault(p => supported.Contains(p, StringComparer.Ordinal));
        if (protocol is null)
        {
            await exchange.RespondAsync(403,
                $"unable to upgrade: unable to negotiate protocol: client supports [{string.Join(' ', offered)}], server accepts [{string.Join(' ', supported)}]\n",
                supported.Select(p => KeyValuePair.Create(AcceptedProtocolsHeader, p))).ConfigureAwait(false);
            return null;
        }
        var transport = await exchange.UpgradeAsync("SPDY/3.1", protocol.Length > 0 ? [KeyValuePair.Create(ProtocolHeader, protocol)] : []).ConfigureAwait(false);
        return (new SpdyConnection(transport, isServer: true), protocol);
    }
}
