using System.IO.Pipelines;

namespace CriRuntime.Streaming.Spdy;

/// <summary>One SPDY stream as a .NET <see cref="Stream"/>: reads return the peer's DATA until its
/// FIN (then 0), writes send DATA frames, <see cref="CloseWriteAsync"/> half-closes with an empty
/// FIN frame (what spdystream's Close does), <see cref="Reset"/> aborts both halves.</summary>
public sealed class SpdyStream : CriRuntime.IO.NonSeekableStream
{
    /// <summary>Largest DATA payload sent in one frame.</summary>
    public const int MaxChunk = 32 * 1024;

    private readonly SpdyConnection _connection;
    // Unbounded: SPDY here has no flow control, and one slow reader must not stall the session.
    private readonly Pipe _input = new(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
    private readonly TaskCompletionSource _replied = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _writeClosed;
    private int _readClosed;

    internal SpdyStream(SpdyConnection connection, uint id, SpdyHeaders headers, bool replied)
    {
        _connection = connection;
        Id = id;
        Headers = headers;
        if (replied) _replied.TrySetResult();
    }

    public uint Id { get; }
    public SpdyHeaders Headers { get; }
    public SpdyHeaders? ReplyHeaders { get; private set; }
    public RstStatus? ResetStatus { get; private set; }
    internal Task Replied => _replied.Task;

    internal void ReceiveReply(SpdyHeaders headers)
    {
        ReplyHeaders = headers;
        _replied.TrySetResult();
    }

    internal async ValueTask ReceiveDataAsync(ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        if (Volatile.Read(ref _readClosed) == 1 || data.IsEmpty) return;
        await _input.Writer.WriteAsync(data, ct).ConfigureAwait(false);
    }

    internal void ReceiveFin()
    {
        if (Interlocked.Exchange(ref _readClosed, 1) == 0) _input.Writer.Complete();
        ForgetIfDone();
    }

    /// <summary>The peer reset the stream, or the session ended (<paramref name="status"/> null).</summary>
    internal void ReceiveReset(RstStatus? status)
    {
        ResetStatus = status;
        _replied.TrySetException(new IOException($"SPDY stream {Id} was reset ({status?.ToString() ?? "connection closed"})"));
        Interlocked.Exchange(ref _writeClosed, 1);
        if (Interlocked.Exchange(ref _readClosed, 1) == 0) _input.Writer.Complete();
    }

    private void ForgetIfDone()
    {
        if (Volatile.Read(ref _readClosed) == 1 && Volatile.Read(ref _writeClosed) == 1) _connection.Forget(Id);
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (buffer.IsEmpty) return 0;
        while (true)
        {
            var result = await _input.Reader.ReadAsync(ct).ConfigureAwait(false);
            var available = result.Buffer;
            if (!available.IsEmpty)
            {
                var n = (int)Math.Min(available.Length, buffer.Length);
                var slice = available.Slice(0, n);
                System.Buffers.BuffersExtensions.CopyTo(slice, buffer.Span);
                _input.Reader.AdvanceTo(slice.End);
                return n;
            }
            _input.Reader.AdvanceTo(available.Start, available.End);
            if (result.IsCompleted || result.IsCanceled) return 0;
        }
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
    {
        if (Volatile.Read(ref _writeClosed) == 1) throw new IOException($"SPDY stream {Id} is closed for writing");
        while (!buffer.IsEmpty)
        {
            var chunk = buffer[..Math.Min(MaxChunk, buffer.Length)];
            await _connection.WriteAsync(new DataFrame(Id, false, chunk.ToArray()), ct).ConfigureAwait(false);
            buffer = buffer[chunk.Length..];
        }
    }

    /// <summary>Sends FIN: the peer reads end of stream; we may still read.</summary>
    public async Task CloseWriteAsync(CancellationToken ct = default)
    {
        if (Interlocked.Exchange(ref _writeClosed, 1) == 1) return;
        try
        {
            await _connection.WriteAsync(new DataFrame(Id, true, ReadOnlyMemory<byte>.Empty), ct).ConfigureAwait(false);
        }
        catch (IOException) { } // the session is gone: the peer sees the end anyway
        catch (ObjectDisposedException) { }
        ForgetIfDone();
    }

    /// <summary>Aborts the stream in both directions with RST_STREAM.</summary>
    public async Task Reset(RstStatus status = RstStatus.Cancel)
    {
        Interlocked.Exchange(ref _writeClosed, 1);
        if (Interlocked.Exchange(ref _readClosed, 1) == 0) _input.Writer.Complete();
        _connection.Forget(Id);
        try { await _connection.WriteAsync(new RstStreamFrame(Id, status), CancellationToken.None).ConfigureAwait(false); }
        catch (IOException) { }
        catch (ObjectDisposedException) { }
    }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();
    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

    /// <summary>Disposing half-closes (FIN), as closing a spdystream stream does.</summary>
    public override async ValueTask DisposeAsync()
    {
        await CloseWriteAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && Volatile.Read(ref _writeClosed) == 0) _ = CloseWriteAsync();
        base.Dispose(disposing);
    }
}
