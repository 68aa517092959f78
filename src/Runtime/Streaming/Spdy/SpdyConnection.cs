using System.Collections.Concurrent;
using System.Threading.Channels;

namespace CriRuntime.Streaming.Spdy;

/// <summary>A SPDY/3.1 session over an upgraded HTTP connection, either end. The peer's new streams
/// arrive on <see cref="IncomingStreams"/> (already answered with SYN_REPLY, as spdystream does);
/// <see cref="OpenStreamAsync"/> starts one of ours and waits for the peer's reply. Flow control is
/// not enforced in either direction: Go's spdystream, the other end in Kubernetes, sends no
/// WINDOW_UPDATE frames either.</summary>
public sealed class SpdyConnection : IAsyncDisposable
{
    private readonly Stream _transport;
    private readonly SpdyFramer _framer = new();
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly ConcurrentDictionary<uint, SpdyStream> _streams = new();
    private readonly Channel<SpdyStream> _incoming = Channel.CreateUnbounded<SpdyStream>();
    private readonly CancellationTokenSource _closed = new();
    private readonly bool _isServer;
    private uint _nextStreamId;
    private uint _nextPingId;
    private uint _lastPeerStreamId;
    private int _disposed;
    private readonly ConcurrentDictionary<uint, TaskCompletionSource> _pings = new();

    public SpdyConnection(Stream transport, bool isServer)
    {
        _transport = transport;
        _isServer = isServer;
        _nextStreamId = isServer ? 2u : 1u;
        _nextPingId = isServer ? 2u : 1u;
    }

    /// <summary>Streams the peer opened, in order.</summary>
    public ChannelReader<SpdyStream> IncomingStreams => _incoming.Reader;

    /// <summary>Cancelled when the session ends (peer closed, GOAWAY, protocol error, dispose).</summary>
    public CancellationToken Closed => _closed.Token;

    /// <summary>Reads frames until the transport ends; then every stream sees end of input.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        // Dispose must end a pending read too: not every transport aborts reads when disposed
        // (Kestrel's upgraded stream does not).
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _closed.Token);
        try
        {
            while (!linked.IsCancellationRequested)
            {
                var frame = await _framer.ReadAsync(_transport, linked.Token).ConfigureAwait(false);
                if (frame is null) break;
                if (!await HandleAsync(frame, linked.Token).ConfigureAwait(false)) break;
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ObjectDisposedException or SpdyProtocolException)
        {
            if (e is SpdyProtocolException) await TryWriteAsync(new GoAwayFrame(_lastPeerStreamId, 1)).ConfigureAwait(false);
        }
        finally
        {
            Shutdown();
            // Nothing decodes any more and nothing encodes after Shutdown (writes check _closed
            // under the lock): the zlib contexts can go.
            await _writeLock.WaitAsync(CancellationToken.None).ConfigureAwait(false);
            _framer.Dispose();
            _writeLock.Release();
        }
    }

    private async Task<bool> HandleAsync(SpdyFrame frame, CancellationToken ct)
    {
        switch (frame)
        {
            case SynStreamFrame syn:
                if (_streams.ContainsKey(syn.StreamId) || IsOurs(syn.StreamId))
                {
                    await WriteAsync(new RstStreamFrame(syn.StreamId, RstStatus.ProtocolError), ct).ConfigureAwait(false);
                    return true;
                }
                _lastPeerStreamId = syn.StreamId;
                var stream = new SpdyStream(this, syn.StreamId, syn.Headers, replied: true);
                _streams[syn.StreamId] = stream;
                await WriteAsync(new SynReplyFrame(syn.StreamId, false, new SpdyHeaders()), ct).ConfigureAwait(false);
                if (syn.Fin) stream.ReceiveFin();
                _incoming.Writer.TryWrite(stream);
                return true;
            case SynReplyFrame reply:
                if (_streams.TryGetValue(reply.StreamId, out var mine))
                {
                    mine.ReceiveReply(reply.Headers);
                    if (reply.Fin) mine.ReceiveFin();
                }
                return true;
            case DataFrame data:
                if (_streams.TryGetValue(data.StreamId, out var target))
                {
                    await target.ReceiveDataAsync(data.Data, ct).ConfigureAwait(false);
                    if (data.Fin) target.ReceiveFin();
                }
                else
                {
                    await WriteAsync(new RstStreamFrame(data.StreamId, RstStatus.InvalidStream), ct).ConfigureAwait(false);
                }
                return true;
            case HeadersFrame headers:
                if (headers.Fin && _streams.TryGetValue(headers.StreamId, out var h)) h.ReceiveFin();
                return true;
            case RstStreamFrame rst:
                if (_streams.TryRemove(rst.StreamId, out var reset)) reset.ReceiveReset(rst.Status);
                return true;
            case PingFrame ping:
                // Our own pings come back; the peer's are echoed.
                if (IsOurs(ping.Id))
                {
                    if (_pings.TryRemove(ping.Id, out var tcs)) tcs.TrySetResult();
                }
                else
                {
                    await WriteAsync(ping, ct).ConfigureAwait(false);
                }
                return true;
            case GoAwayFrame:
                return false;
            default:
                return true; // SETTINGS, WINDOW_UPDATE: no flow control, see the class comment
        }
    }

    private bool IsOurs(uint id) => id % 2 == (_isServer ? 0u : 1u);

    /// <summary>Opens a stream with <paramref name="headers"/> and waits for the peer's SYN_REPLY.</summary>
    public async Task<SpdyStream> OpenStreamAsync(SpdyHeaders headers, CancellationToken ct)
    {
        SpdyStream stream;
        await _writeLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var id = _nextStreamId;
            _nextStreamId += 2;
            stream = new SpdyStream(this, id, headers, replied: false);
            _streams[id] = stream;
            await WriteLockedAsync(new SynStreamFrame(id, 0, 0, false, false, headers), ct).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
        // No race with the session closing: Shutdown fails every unanswered stream's reply.
        await stream.Replied.WaitAsync(ct).ConfigureAwait(false);
        return stream;
    }

    /// <summary>Round trip to the peer (keeps idle connections alive through proxies; tests liveness).</summary>
    public async Task PingAsync(CancellationToken ct)
    {
        var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var id = Interlocked.Add(ref _nextPingId, 2) - 2;
        _pings[id] = tcs;
        await WriteAsync(new PingFrame(id), ct).ConfigureAwait(false);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, _closed.Token);
        await tcs.Task.WaitAsync(linked.Token).ConfigureAwait(false);
    }

    internal async Task WriteAsync(SpdyFrame frame, CancellationToken ct)
    {
        await _writeLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await WriteLockedAsync(frame, ct).ConfigureAwait(false);
        }
        finally
        {
            _writeLock.Release();
        }
    }

    private async Task WriteLockedAsync(SpdyFrame frame, CancellationToken ct)
    {
        if (_closed.IsCancellationRequested) throw new IOException("the SPDY connection is closed");
        // Header compression state advances here, under the lock, in the order frames hit the wire.
        var bytes = _framer.Encode(frame);
        await _transport.WriteAsync(bytes, ct).ConfigureAwait(false);
        await _transport.FlushAsync(ct).ConfigureAwait(false);
    }

    private async Task TryWriteAsync(SpdyFrame frame)
    {
        try { await WriteAsync(frame, CancellationToken.None).ConfigureAwait(false); }
        catch (Exception e) when (e is IOException or ObjectDisposedException) { }
    }

    internal void Forget(uint id) => _streams.TryRemove(id, out _);

    private void Shutdown()
    {
        if (!_closed.IsCancellationRequested) _closed.Cancel();
        _incoming.Writer.TryComplete();
        foreach (var s in _streams.Values) s.ReceiveReset(null);
        _streams.Clear();
        foreach (var p in _pings.Values) p.TrySetCanceled();
    }

    /// <summary>Says GOAWAY and closes the transport.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1) return;
        if (!_closed.IsCancellationRequested) await TryWriteAsync(new GoAwayFrame(_lastPeerStreamId, 0)).ConfigureAwait(false);
        Shutdown();
        await _transport.DisposeAsync().ConfigureAwait(false);
    }
}
