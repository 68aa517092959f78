using System.IO.Pipelines;
using System.Net.WebSockets;

namespace CriRuntime.Streaming.WebSockets;

/// <summary>Multiplexes numbered channels over one WebSocket with a <see cref="ChannelProtocol"/>:
/// inbound data goes to a per-channel pipe (read with <see cref="Input"/>), outbound data is framed
/// and sent under one lock. <see cref="RunAsync"/> reads until the peer closes.</summary>
public sealed class ChannelWebSocket
{
    private readonly WebSocket _socket;
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Pipe[] _inputs;

    public ChannelWebSocket(WebSocket socket, ChannelProtocol protocol, int channels)
    {
        _socket = socket;
        Protocol = protocol;
        _inputs = new Pipe[channels];
        for (var i = 0; i < channels; i++) _inputs[i] = new Pipe(new PipeOptions(pauseWriterThreshold: 0, useSynchronizationContext: false));
    }

    public ChannelProtocol Protocol { get; }

    /// <summary>What the peer sent on <paramref name="channel"/>; ends when the socket closes or
    /// (v5) the peer closes that channel.</summary>
    public Stream Input(int channel) => _inputs[channel].Reader.AsStream();

    /// <summary>A write-only stream that frames everything written as <paramref name="channel"/>.</summary>
    public Stream Output(byte channel) => new ChannelOutput(this, channel);

    /// <summary>A duplex stream: reads channel <paramref name="channel"/>'s input, writes to it.</summary>
    public Stream Duplex(byte channel) => new ChannelDuplex(Input(channel), Output(channel));

    /// <summary>Sends one message on <paramref name="channel"/>. <paramref name="ct"/> stops a send
    /// that has not started; one already on the wire is finished. .NET's WebSocket aborts the whole
    /// connection when a send's token fires mid-send, and one channel's writer that is cancelled
    /// (its session ending as the peer closes) must not take the close handshake of every channel
    /// with it. A peer that stops reading is cut by aborting the socket, not by this token.</summary>
    public async Task SendAsync(byte channel, ReadOnlyMemory<byte> data, CancellationToken ct)
    {
        var message = Protocol.Encode(channel, data.Span);
        await _sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            ct.ThrowIfCancellationRequested();
            await _socket.SendAsync(message, Protocol.Base64 ? WebSocketMessageType.Text : WebSocketMessageType.Binary, true, CancellationToken.None).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    public async Task RunAsync(CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        var message = new MemoryStream();
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var result = await _socket.ReceiveAsync(buffer, ct).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, result.Count);
                if (!result.EndOfMessage) continue;
                var bytes = message.ToArray();
                message.SetLength(0);
                if (bytes.Length == 0) continue;
                if (Protocol.SupportsClose && bytes[0] == ChannelProtocol.CloseChannel)
                {
                    if (bytes.Length == 2 && bytes[1] < _inputs.Length) await _inputs[bytes[1]].Writer.CompleteAsync().ConfigureAwait(false);
                    continue;
                }
                var (channel, data) = Protocol.Decode(bytes);
                if (channel >= _inputs.Length || data.Length == 0) continue;
                await _inputs[channel].Writer.WriteAsync(data, ct).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or InvalidDataException or IOException) { }
        finally
        {
            foreach (var p in _inputs) await p.Writer.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Ends the session with a normal close.</summary>
    public async Task CloseAsync(CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (_socket.State is WebSocketState.Open or WebSocketState.CloseReceived)
                await _socket.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, null, ct).ConfigureAwait(false);
        }
        catch (WebSocketException) { }
        finally
        {
            _sendLock.Release();
        }
    }

    private sealed class ChannelOutput(ChannelWebSocket socket, byte channel) : IO.NonSeekableStream
    {
        public override bool CanWrite => true;
        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            if (buffer.IsEmpty) return;
            try
            {
                await socket.SendAsync(channel, buffer, ct).ConfigureAwait(false);
            }
            catch (WebSocketException e)
            {
                throw new IOException($"websocket channel {channel}: {e.Message}", e);
            }
        }
    }

    private sealed class ChannelDuplex(Stream input, Stream output) : IO.NonSeekableStream
    {
        public override bool CanRead => true;
        public override bool CanWrite => true;
        public override int Read(byte[] buffer, int offset, int count) => input.Read(buffer, offset, count);
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => input.ReadAsync(buffer, ct);
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => input.ReadAsync(buffer, offset, count, ct);
        public override void Write(byte[] buffer, int offset, int count) => output.Write(buffer, offset, count);
        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => output.WriteAsync(buffer, ct);
        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => output.WriteAsync(buffer, offset, count, ct);
    }
}
