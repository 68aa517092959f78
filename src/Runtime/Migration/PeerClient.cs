using CriRuntime.Errors;
using CriRuntime.Migration.V1;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;

namespace CriRuntime.Migration;

/// <summary>The source's connection to a target's [migration] listener: gRPC over TCP with mutual
/// TLS (<see cref="PeerTls"/>). The target's answers come back as typed errors naming it.</summary>
public sealed class PeerClient : IDisposable
{
    /// <summary>The size of a transfer chunk: well under gRPC's message limit, large enough that
    /// the per-message cost vanishes next to the copy.</summary>
    public const int ChunkBytes = 1 << 20;

    private readonly GrpcChannel _channel;
    private readonly MigrationPeer.MigrationPeerClient _client;
    public string Address { get; }

    public PeerClient(string address, PeerTls tls)
    {
        Address = address;
        var handler = new SocketsHttpHandler
        {
            SslOptions = tls.ClientOptions(),
            ConnectTimeout = TimeSpan.FromSeconds(10),
            EnableMultipleHttp2Connections = true,
        };
        _channel = GrpcChannel.ForAddress($"https://{address}", new GrpcChannelOptions
        {
            HttpHandler = handler,
            MaxSendMessageSize = 4 * ChunkBytes,
            MaxReceiveMessageSize = 4 * ChunkBytes,
        });
        _client = new MigrationPeer.MigrationPeerClient(_channel);
    }

    /// <summary>"HOST:PORT" with a port: what a target address must look like.</summary>
    public static bool IsAddress(string address)
    {
        var colon = address.LastIndexOf(':');
        return colon > 0 && int.TryParse(address.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= 65535 && Uri.CheckHostName(address[..colon].Trim('[', ']')) != UriHostNameType.Unknown;
    }

    /// <summary>HOST and PORT of an address <see cref="IsAddress"/> accepted (brackets of an IPv6 host removed).</summary>
    public static (string Host, int Port) Split(string address)
    {
        var colon = address.LastIndexOf(':');
        return (address[..colon].Trim('[', ']'), int.Parse(address.AsSpan(colon + 1), System.Globalization.CultureInfo.InvariantCulture));
    }

    public Task<PeerResponse> CheckAsync(string id, CancellationToken ct) => Call(() => _client.CheckAsync(new PeerRequest { MigrationId = id }, cancellationToken: ct).ResponseAsync);
    /// <summary>Restore; <paramref name="pageServers"/> (lazy): where the target pulls each container's
    /// memory pages; <paramref name="keepConnections"/>: the target's pod has the source's addresses,
    /// the TCP connections are restored established.</summary>
    public Task<PeerResponse> RestoreAsync(string id, IEnumerable<PageServer> pageServers, bool keepConnections, CancellationToken ct) =>
        Call(() => _client.RestoreAsync(new PeerRequest { MigrationId = id, PageServers = { pageServers }, KeepConnections = keepConnections }, cancellationToken: ct).ResponseAsync);
    public Task<PeerResponse> PagesArrivedAsync(string id, CancellationToken ct) => Call(() => _client.PagesArrivedAsync(new PeerRequest { MigrationId = id }, cancellationToken: ct).ResponseAsync);
    public Task<PeerResponse> CommitAsync(string id, CancellationToken ct) => Call(() => _client.CommitAsync(new PeerRequest { MigrationId = id }, cancellationToken: ct).ResponseAsync);
    public Task<PeerResponse> AbortAsync(string id, CancellationToken ct) => Call(() => _client.AbortAsync(new PeerRequest { MigrationId = id }, cancellationToken: ct).ResponseAsync);

    /// <summary>Sends every file of the pod checkpoint at <paramref name="dir"/> (paths relative
    /// to it) in chunks of <see cref="ChunkBytes"/>; <paramref name="sent"/> gets the running total.</summary>
    public Task<PeerResponse> TransferAsync(string id, string dir, IReadOnlyList<string> files, Action<long> sent, CancellationToken ct) => Call(async () =>
    {
        using var call = _client.Transfer(cancellationToken: ct);
        var buffer = new byte[ChunkBytes];
        long total = 0;
        var first = true;
        foreach (var file in files)
        {
            await using var input = new FileStream(Path.Combine(dir, file), FileMode.Open, FileAccess.Read, FileShare.Read, 0, FileOptions.SequentialScan);
            long offset = 0;
            do
            {
                var n = await input.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, ct);
                // An empty file is still sent, as one empty chunk, so the target creates it.
                if (n == 0 && offset > 0) break;
                await call.RequestStream.WriteAsync(new TransferChunk
                {
                    MigrationId = first ? id : "", File = file, Offset = offset, Data = ByteString.CopyFrom(buffer, 0, n),
                }, ct);
                first = false;
                offset += n;
                total += n;
                sent(total);
                if (n < buffer.Length) break;
            }
            while (true);
        }
        await call.RequestStream.CompleteAsync();
        return await call.ResponseAsync;
    });

    private async Task<T> Call<T>(Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (RpcException e)
        {
            var detail = $"target {Address}: {e.Status.Detail}";
            throw e.StatusCode switch
            {
                StatusCode.InvalidArgument => Fail.InvalidArgument(detail),
                StatusCode.NotFound => Fail.NotFound(detail),
                StatusCode.FailedPrecondition => Fail.FailedPrecondition(detail),
                StatusCode.DeadlineExceeded => Fail.DeadlineExceeded(detail),
                StatusCode.Cancelled => new OperationCanceledException(detail),
                _ => Fail.Unavailable($"target {Address}: {e.StatusCode}: {e.Status.Detail}", e),
            };
        }
    }

    public void Dispose() => _channel.Dispose();
}
