using System.Buffers.Binary;

namespace CriRuntime.Streaming.Spdy;

/// <summary>SPDY/3.1 frames (draft 3.1, section 2.2). Control frames: C bit, version 3, type,
/// flags, 24-bit length. Data frames: stream id, flags, 24-bit length.</summary>
public abstract record SpdyFrame;

public sealed record DataFrame(uint StreamId, bool Fin, ReadOnlyMemory<byte> Data) : SpdyFrame;
public sealed record SynStreamFrame(uint StreamId, uint AssociatedStreamId, byte Priority, bool Fin, bool Unidirectional, SpdyHeaders Headers) : SpdyFrame;
public sealed record SynReplyFrame(uint StreamId, bool Fin, SpdyHeaders Headers) : SpdyFrame;
public sealed record RstStreamFrame(uint StreamId, RstStatus Status) : SpdyFrame;
public sealed record SettingsFrame(bool ClearSettings, IReadOnlyList<SpdySetting> Settings) : SpdyFrame;
public sealed record PingFrame(uint Id) : SpdyFrame;
public sealed record GoAwayFrame(uint LastGoodStreamId, uint Status) : SpdyFrame;
public sealed record HeadersFrame(uint StreamId, bool Fin, SpdyHeaders Headers) : SpdyFrame;
public sealed record WindowUpdateFrame(uint StreamId, uint DeltaWindowSize) : SpdyFrame;

public readonly record struct SpdySetting(byte Flags, uint Id, uint Value);

public enum RstStatus : uint
{
    ProtocolError = 1, InvalidStream, RefusedStream, UnsupportedVersion, Cancel, InternalError,
    FlowControlError, StreamInUse, StreamAlreadyClosed, InvalidCredentials, FrameTooLarge,
}

public enum ControlType : ushort
{
    SynStream = 1, SynReply = 2, RstStream = 3, Settings = 4, Ping = 6, GoAway = 7, Headers = 8, WindowUpdate = 9,
}

/// <summary>Turns frames into bytes and back for one connection: owns the two header compression
/// contexts (one per direction), so frames must be encoded and decoded in wire order.</summary>
public sealed class SpdyFramer : IDisposable
{
    public const ushort Version = 3;
    public const int MaxLength = (1 << 24) - 1;
    /// <summary>Control frames larger than this are refused; headers of a stream are small.</summary>
    public const int MaxControlLength = 1 << 20;

    private readonly HeaderCompressor _compressor = new();
    private readonly HeaderDecompressor _decompressor = new();

    public byte[] Encode(SpdyFrame frame) => frame switch
    {
        DataFrame d => Data(d),
        SynStreamFrame s => Control(ControlType.SynStream, Flags(s.Fin, s.Unidirectional), w =>
        {
            w.U32(s.StreamId & 0x7fffffff);
            w.U32(s.AssociatedStreamId & 0x7fffffff);
            w.Byte((byte)(s.Priority << 5));
            w.Byte(0); // slot
            w.Bytes(_compressor.Compress(s.Headers.Encode()));
        }),
        SynReplyFrame r => Control(ControlType.SynReply, Flags(r.Fin, false), w =>
        {
            w.U32(r.StreamId & 0x7fffffff);
            w.Bytes(_compressor.Compress(r.Headers.Encode()));
        }),
        HeadersFrame h => Control(ControlType.Headers, Flags(h.Fin, false), w =>
        {
            w.U32(h.StreamId & 0x7fffffff);
            w.Bytes(_compressor.Compress(h.Headers.Encode()));
        }),
        RstStreamFrame r => Control(ControlType.RstStream, 0, w => { w.U32(r.StreamId & 0x7fffffff); w.U32((uint)r.Status); }),
        SettingsFrame s => Control(ControlType.Settings, (byte)(s.ClearSettings ? 1 : 0), w =>
        {
            w.U32((uint)s.Settings.Count);
            foreach (var e in s.Settings) { w.U32(((uint)e.Flags << 24) | (e.Id & 0xffffff)); w.U32(e.Value); }
        }),
        PingFrame p => Control(ControlType.Ping, 0, w => w.U32(p.Id)),
        GoAwayFrame g => Control(ControlType.GoAway, 0, w => { w.U32(g.LastGoodStreamId & 0x7fffffff); w.U32(g.Status); }),
        WindowUpdateFrame u => Control(ControlType.WindowUpdate, 0, w => { w.U32(u.StreamId & 0x7fffffff); w.U32(u.DeltaWindowSize & 0x7fffffff); }),
        _ => throw new ArgumentOutOfRangeException(nameof(frame), frame.GetType().Name),
    };

    private static byte Flags(bool fin, bool unidirectional) => (byte)((fin ? 1 : 0) | (unidirectional ? 2 : 0));

    private static byte[] Data(DataFrame d)
    {
        if (d.Data.Length > MaxLength) throw new ArgumentException($"data frame of {d.Data.Length} bytes exceeds {MaxLength}");
        var bytes = new byte[8 + d.Data.Length];
        BinaryPrimitives.WriteUInt32BigEndian(bytes, d.StreamId & 0x7fffffff);
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), ((d.Fin ? 1u : 0u) << 24) | (uint)d.Data.Length);
        d.Data.Span.CopyTo(bytes.AsSpan(8));
        return bytes;
    }

    private static byte[] Control(ControlType type, byte flags, Action<Writer> body)
    {
        var w = new Writer();
        w.U32(0x80000000u | ((uint)Version << 16) | (ushort)type);
        w.U32(0); // length, patched below
        body(w);
        var bytes = w.ToArray();
        BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4), ((uint)flags << 24) | (uint)(bytes.Length - 8));
        return bytes;
    }

    /// <summary>Decodes one frame from its 8-byte header and payload. Unknown control frame types
    /// return null (SPDY says to ignore them).</summary>
    public SpdyFrame? Decode(ReadOnlySpan<byte> header, ReadOnlySpan<byte> payload)
    {
        var first = BinaryPrimitives.ReadUInt32BigEndian(header);
        var second = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
        var flags = (byte)(second >> 24);
        if ((first & 0x80000000) == 0)
        {
            var id = first & 0x7fffffff;
            if (id == 0) throw new SpdyProtocolException("data frame on stream 0");
            return new DataFrame(id, (flags & 1) != 0, payload.ToArray());
        }
        var version = (ushort)((first >> 16) & 0x7fff);
        if (version != Version) throw new SpdyProtocolException($"unsupported SPDY version {version}");
        var fin = (flags & 1) != 0;
        var r = new Reader(payload);
        switch ((ControlType)(first & 0xffff))
        {
            case ControlType.SynStream:
            {
                var id = r.StreamId();
                var assoc = r.U32() & 0x7fffffff;
                var priority = (byte)(r.Byte() >> 5);
                r.Byte(); // slot
                var headers = SpdyHeaders.Decode(_decompressor.Decompress(r.Rest()));
                if (id == 0) throw new SpdyProtocolException("SYN_STREAM for stream 0");
                return new SynStreamFrame(id, assoc, priority, fin, (flags & 2) != 0, headers);
            }
            case ControlType.SynReply:
            {
                var id = r.StreamId();
                return new SynReplyFrame(id, fin, SpdyHeaders.Decode(_decompressor.Decompress(r.Rest())));
            }
            case ControlType.Headers:
            {
                var id = r.StreamId();
                return new HeadersFrame(id, fin, SpdyHeaders.Decode(_decompressor.Decompress(r.Rest())));
            }
            case ControlType.RstStream:
                return new RstStreamFrame(r.StreamId(), (RstStatus)r.U32());
            case ControlType.Settings:
            {
                var count = r.U32();
                if (count > payload.Length / 8) throw new SpdyProtocolException($"SETTINGS claims {count} entries in {payload.Length} bytes");
                var settings = new List<SpdySetting>((int)count);
                for (var i = 0; i < count; i++)
                {
                    var idFlags = r.U32();
                    settings.Add(new SpdySetting((byte)(idFlags >> 24), idFlags & 0xffffff, r.U32()));
                }
                return new SettingsFrame((flags & 1) != 0, settings);
            }
            case ControlType.Ping:
                return new PingFrame(r.U32());
            case ControlType.GoAway:
                return new GoAwayFrame(r.U32() & 0x7fffffff, r.U32());
            case ControlType.WindowUpdate:
                return new WindowUpdateFrame(r.StreamId(), r.U32() & 0x7fffffff);
            default:
                return null;
        }
    }

    /// <summary>Reads one frame; null at a clean end of the transport (between frames).</summary>
    public async Task<SpdyFrame?> ReadAsync(Stream transport, CancellationToken ct)
    {
        while (true)
        {
            var header = new byte[8];
            var got = await transport.ReadAtLeastAsync(header, 8, throwOnEndOfStream: false, ct).ConfigureAwait(false);
            if (got == 0) return null;
            if (got < 8) throw new SpdyProtocolException("connection closed inside a frame header");
            var control = (header[0] & 0x80) != 0;
            var length = (int)(BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4)) & 0xffffff);
            if (control && length > MaxControlLength) throw new SpdyProtocolException($"control frame of {length} bytes");
            var payload = new byte[length];
            await transport.ReadExactlyAsync(payload, ct).ConfigureAwait(false);
            var frame = Decode(header, payload);
            if (frame is not null) return frame;
        }
    }

    public void Dispose()
    {
        _compressor.Dispose();
        _decompressor.Dispose();
    }

    private sealed class Writer
    {
        private readonly MemoryStream _s = new();
        public void U32(uint v) { Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); _s.Write(b); }
        public void Byte(byte v) => _s.WriteByte(v);
        public void Bytes(ReadOnlySpan<byte> v) => _s.Write(v);
        public byte[] ToArray() => _s.ToArray();
    }

    private ref struct Reader(ReadOnlySpan<byte> span)
    {
        private ReadOnlySpan<byte> _s = span;
        public uint U32()
        {
            if (_s.Length < 4) throw new SpdyProtocolException("control frame truncated");
            var v = BinaryPrimitives.ReadUInt32BigEndian(_s);
            _s = _s[4..];
            return v;
        }
        public uint StreamId()
        {
            var id = U32() & 0x7fffffff;
            return id == 0 ? throw new SpdyProtocolException("stream id 0 in a stream frame") : id;
        }
        public byte Byte()
        {
            if (_s.Length < 1) throw new SpdyProtocolException("control frame truncated");
            var v = _s[0];
            _s = _s[1..];
            return v;
        }
        public ReadOnlySpan<byte> Rest() => _s;
    }
}
