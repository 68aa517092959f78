using System.Runtime.InteropServices;

namespace CriRuntime.Streaming.Spdy;

/// <summary>One direction's header compressor. SPDY/3 keeps a single zlib stream per direction for
/// the whole connection, primed with <see cref="SpdyDictionary"/>; each header block ends with a
/// sync flush so the peer can decode it without waiting for more. Not thread safe: the
/// connection compresses and writes a frame under one lock so blocks go out in order.</summary>
public sealed unsafe class HeaderCompressor : IDisposable
{
    private Zlib.ZStream* _z;

    /// <summary>Level 9, as Go's spdystream uses (zlib.BestCompression).</summary>
    public HeaderCompressor(int level = 9)
    {
        _z = (Zlib.ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(Zlib.ZStream));
        var rc = Zlib.DeflateInit2(_z, level, Zlib.Z_DEFLATED, 15, 8, 0, Zlib.Version(), sizeof(Zlib.ZStream));
        if (rc != Zlib.Z_OK) { Free(); throw new InvalidOperationException($"deflateInit2: zlib error {rc}"); }
        fixed (byte* dict = SpdyDictionary.Bytes.Span)
            rc = Zlib.DeflateSetDictionary(_z, dict, (uint)SpdyDictionary.Bytes.Length);
        if (rc != Zlib.Z_OK) { Zlib.DeflateEnd(_z); Free(); throw new InvalidOperationException($"deflateSetDictionary: zlib error {rc}"); }
    }

    public byte[] Compress(ReadOnlySpan<byte> block)
    {
        ObjectDisposedException.ThrowIf(_z is null, this);
        var output = new byte[block.Length + 64];
        var written = 0;
        fixed (byte* input = block)
        {
            _z->NextIn = input;
            _z->AvailIn = (uint)block.Length;
            while (true)
            {
                fixed (byte* outp = output)
                {
                    _z->NextOut = outp + written;
                    _z->AvailOut = (uint)(output.Length - written);
                    var rc = Zlib.Deflate(_z, Zlib.Z_SYNC_FLUSH);
                    if (rc != Zlib.Z_OK && rc != Zlib.Z_BUF_ERROR) throw new InvalidOperationException(Zlib.Message(_z, rc));
                    written = output.Length - (int)_z->AvailOut;
                    // Done when zlib had room left: the flush marker is out and all input taken.
                    if (_z->AvailOut > 0 && _z->AvailIn == 0) break;
                }
                Array.Resize(ref output, output.Length * 2);
            }
            _z->NextIn = null;
            _z->NextOut = null;
        }
        return output[..written];
    }

    public void Dispose()
    {
        if (_z is null) return;
        Zlib.DeflateEnd(_z);
        Free();
    }

    private void Free()
    {
        NativeMemory.Free(_z);
        _z = null;
    }
}

/// <summary>One direction's header decompressor: the counterpart of <see cref="HeaderCompressor"/>.
/// The zlib header of the first block names the dictionary (Z_NEED_DICT); it is supplied then.</summary>
public sealed unsafe class HeaderDecompressor : IDisposable
{
    /// <summary>A decompressed header block larger than this is refused (a zlib bomb, not headers).</summary>
    public const int MaxBlock = 1 << 20;
    private Zlib.ZStream* _z;

    public HeaderDecompressor()
    {
        _z = (Zlib.ZStream*)NativeMemory.AllocZeroed((nuint)sizeof(Zlib.ZStream));
        var rc = Zlib.InflateInit2(_z, 15, Zlib.Version(), sizeof(Zlib.ZStream));
        if (rc != Zlib.Z_OK) { NativeMemory.Free(_z); _z = null; throw new InvalidOperationException($"inflateInit2: zlib error {rc}"); }
    }

    public byte[] Decompress(ReadOnlySpan<byte> compressed)
    {
        ObjectDisposedException.ThrowIf(_z is null, this);
        var output = new byte[Math.Max(256, compressed.Length * 4)];
        var written = 0;
        fixed (byte* input = compressed)
        {
            _z->NextIn = input;
            _z->AvailIn = (uint)compressed.Length;
            while (true)
            {
                int rc;
                fixed (byte* outp = output)
                {
                    _z->NextOut = outp + written;
                    _z->AvailOut = (uint)(output.Length - written);
                    rc = Zlib.Inflate(_z, Zlib.Z_SYNC_FLUSH);
                    if (rc == Zlib.Z_NEED_DICT)
                    {
                        fixed (byte* dict = SpdyDictionary.Bytes.Span)
                            rc = Zlib.InflateSetDictionary(_z, dict, (uint)SpdyDictionary.Bytes.Length);
                        if (rc != Zlib.Z_OK) throw new SpdyProtocolException("header block names a dictionary other than SPDY/3's");
                        written = output.Length - (int)_z->AvailOut;
                        continue;
                    }
                    if (rc == Zlib.Z_STREAM_END) throw new SpdyProtocolException("header compression stream ended");
                    if (rc != Zlib.Z_OK && rc != Zlib.Z_BUF_ERROR) throw new SpdyProtocolException("header block: " + Zlib.Message(_z, rc));
                    written = output.Length - (int)_z->AvailOut;
                }
                if (_z->AvailIn == 0 && _z->AvailOut > 0) break;
                if (rc == Zlib.Z_BUF_ERROR && _z->AvailOut > 0) throw new SpdyProtocolException("header block: zlib made no progress");
                if (output.Length >= MaxBlock) throw new SpdyProtocolException($"header block larger than {MaxBlock} bytes");
                Array.Resize(ref output, Math.Min(MaxBlock, output.Length * 2));
            }
            _z->NextIn = null;
            _z->NextOut = null;
        }
        return output[..written];
    }

    public void Dispose()
    {
        if (_z is null) return;
        Zlib.InflateEnd(_z);
        NativeMemory.Free(_z);
        _z = null;
    }
}
