using System.Net.Sockets;

namespace CriRuntime.Streaming.Http;

/// <summary>The HTTP/1.1 side of the streaming listener: accepts connections, reads one request
/// head from each (bounded in size and time, as Kestrel bounds them), hands it to the handler as an
/// <see cref="HttpExchange"/>, and closes the connection when the handler is done. One request per
/// connection: every streaming request upgrades or is refused, so there is nothing to keep alive.
/// No timer runs while nobody is connected.</summary>
public sealed partial class StreamingHttpServer(Socket listener, Func<HttpExchange, Task> handler, ILogger log)
{
    /// <summary>Kestrel's RequestHeadersTimeout: a client that has not sent its head by then is cut.</summary>
    public TimeSpan HeadTimeout { get; init; } = TimeSpan.FromSeconds(30);

    private readonly Lock _lock = new();
    private readonly HashSet<Task> _connections = [];

    /// <summary>Accepts until <paramref name="ct"/> or until the listener is closed or shut down.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            Socket socket;
            try { socket = await listener.AcceptAsync(ct).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException) { return; }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.InvalidArgument or SocketError.OperationAborted or SocketError.Shutdown) { return; }
            catch (SocketException e)
            {
                // ECONNABORTED, EMFILE and the like are the one connection's, not the listener's.
                LogAcceptFailed(log, e.Message);
                continue;
            }
            Track(ServeConnectionAsync(socket));
        }
    }

    /// <summary>Waits for the connections being served, at most <paramref name="timeout"/>.</summary>
    public async Task DrainAsync(TimeSpan timeout)
    {
        Task[] open;
        lock (_lock) open = [.. _connections];
        await Task.WhenAny(Task.WhenAll(open), Task.Delay(timeout)).ConfigureAwait(false);
    }

    private void Track(Task connection)
    {
        lock (_lock) _connections.Add(connection);
        _ = connection.ContinueWith(t => { lock (_lock) _connections.Remove(t); }, TaskScheduler.Default);
    }

    private async Task ServeConnectionAsync(Socket socket)
    {
        await Task.Yield(); // off the accept loop
        socket.NoDelay = true;
        var network = new NetworkStream(socket, ownsSocket: true);
        await using var _ = network.ConfigureAwait(false);
        HttpExchange? exchange = null;
        try
        {
            var (head, rest) = await ReadHeadAsync(network).ConfigureAwait(false);
            if (head is null) return;
            Stream connection = rest.Length > 0 ? new PrefixedStream(rest, network) : network;
            HttpRequestHead request;
            try
            {
                request = HttpRequestHead.Parse(head);
            }
            catch (FormatException e)
            {
                await Refuse(network, 400, "bad request: " + e.Message + "\n").ConfigureAwait(false);
                return;
            }
            exchange = new HttpExchange(request, connection);
            await handler(exchange).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
        {
            LogConnectionEnded(log, e.Message);
        }
        catch (Exception e)
        {
            LogHandlerFailed(log, exchange?.Request.Path ?? "", e);
            if (exchange is { Responded: false })
                try { await exchange.RespondAsync(500, "internal error\n").ConfigureAwait(false); }
                catch (Exception e2) when (e2 is IOException or SocketException or ObjectDisposedException) { }
        }
    }

    private static readonly HttpRequestHead EmptyHead = new() { Method = "", Path = "", Query = "", Version = "", Headers = [] };

    /// <summary>The head's bytes and whatever came after them; a null head when the client left or
    /// the head was refused (its answer written).</summary>
    private async Task<(byte[]? Head, byte[] After)> ReadHeadAsync(NetworkStream connection)
    {
        var buffer = new byte[HttpRequestHead.MaxSize];
        var filled = 0;
        using var timeout = new CancellationTokenSource(HeadTimeout);
        while (true)
        {
            int n;
            try { n = await connection.ReadAsync(buffer.AsMemory(filled), timeout.Token).ConfigureAwait(false); }
            catch (OperationCanceledException)
            {
                await Refuse(connection, 408, "request head not received in time\n").ConfigureAwait(false);
                return (null, []);
            }
            if (n == 0) return (null, []);
            // Look again from just before the new bytes: the terminator may straddle two reads.
            var from = Math.Max(0, filled - 3);
            filled += n;
            var end = HttpRequestHead.EndOfHead(buffer.AsSpan(from, filled - from));
            if (end >= 0)
            {
                end += from;
                return (buffer[..end], buffer[end..filled]);
            }
            if (filled == buffer.Length)
            {
                await Refuse(connection, 431, $"request head larger than {HttpRequestHead.MaxSize} bytes\n").ConfigureAwait(false);
                return (null, []);
            }
        }
    }

    /// <summary>An answer to a request whose head could not be had (nothing else is known of it).</summary>
    private static Task Refuse(Stream connection, int status, string message) =>
        new HttpExchange(EmptyHead, connection).RespondAsync(status, message);

    [LoggerMessage(EventId = 660, Level = LogLevel.Warning, Message = "streaming listener: accept failed: {Message}")]
    private static partial void LogAcceptFailed(ILogger log, string message);

    [LoggerMessage(EventId = 661, Level = LogLevel.Debug, Message = "streaming connection ended: {Message}")]
    private static partial void LogConnectionEnded(ILogger log, string message);

    [LoggerMessage(EventId = 662, Level = LogLevel.Error, Message = "streaming request {Path} failed")]
    private static partial void LogHandlerFailed(ILogger log, string path, Exception e);

    /// <summary>The bytes that arrived with the head (a client that did not wait for the 101), then
    /// the connection.</summary>
    private sealed class PrefixedStream(byte[] prefix, Stream inner) : Stream
    {
        private int _offset;

        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            if (_offset >= prefix.Length) return inner.Read(buffer);
            var n = Math.Min(buffer.Length, prefix.Length - _offset);
            prefix.AsSpan(_offset, n).CopyTo(buffer);
            _offset += n;
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
        {
            if (_offset >= prefix.Length) return inner.ReadAsync(buffer, ct);
            return ValueTask.FromResult(Read(buffer.Span));
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);
        public override void Write(ReadOnlySpan<byte> buffer) => inner.Write(buffer);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => inner.WriteAsync(buffer, ct);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => inner.WriteAsync(buffer, offset, count, ct);
        public override void Flush() => inner.Flush();
        public override Task FlushAsync(CancellationToken ct) => inner.FlushAsync(ct);
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing) inner.Dispose();
            base.Dispose(disposing);
        }
    }
}
