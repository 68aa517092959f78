using System.Buffers.Binary;
using System.Text;
using CriRuntime.Streaming.Spdy;

namespace CriRuntime.Tests.Unit.Streaming;

public class SpdyFramingTests
{
    private static uint Adler32(ReadOnlySpan<byte> data)
    {
        uint a = 1, b = 0;
        foreach (var x in data) { a = (a + x) % 65521; b = (b + a) % 65521; }
        return (b << 16) | a;
    }

    [Fact]
    public void Dictionary_IsTheSpdy3One_ByLengthAndAdler32()
    {
        var dict = SpdyDictionary.Bytes.Span;
        Assert.Equal(1423, dict.Length);
        // The dictionary id SPDY/3 peers put in the zlib header (Chromium's kV3DictionaryId).
        Assert.Equal(0xE3C6A7C2u, Adler32(dict));
        Assert.Equal("\0\0\0\u0007options"u8.ToArray(), dict[..11].ToArray());
        Assert.EndsWith(",enq=0.", Encoding.ASCII.GetString(dict));
    }

    [Fact]
    public void FirstHeaderBlock_StartsWithAZlibHeaderNamingTheDictionary()
    {
        using var c = new HeaderCompressor();
        var block = c.Compress(new SpdyHeaders().Add("streamtype", "error").Encode());
        // CMF 0x78 (deflate, 32K window); FLG: FLEVEL 3 (level 9), FDICT, FCHECK making 0x78xx % 31 == 0.
        Assert.Equal(0x78, block[0]);
        Assert.Equal(0xF9, block[1]);
        Assert.Equal(0, (0x78 * 256 + block[1]) % 31);
        Assert.Equal(0xE3C6A7C2u, BinaryPrimitives.ReadUInt32BigEndian(block.AsSpan(2)));
        // A sync flush ends every block: an empty stored block, 00 00 FF FF.
        Assert.Equal(new byte[] { 0x00, 0x00, 0xFF, 0xFF }, block[^4..]);
    }

    [Fact]
    public void HeaderBlocks_RoundTrip_ThroughOneCompressionContext()
    {
        using var c = new HeaderCompressor();
        using var d = new HeaderDecompressor();
        for (var i = 0; i < 5; i++)
        {
            var h = new SpdyHeaders().Add("streamType", "data").Add("port", (8080 + i).ToString(System.Globalization.CultureInfo.InvariantCulture))
                .Add("requestID", i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Add("multi", "a").Add("multi", "b");
            var back = SpdyHeaders.Decode(d.Decompress(c.Compress(h.Encode())));
            Assert.Equal("data", back.Get("streamtype"));
            Assert.Equal((8080 + i).ToString(System.Globalization.CultureInfo.InvariantCulture), back.Get("port"));
            Assert.Equal(["a", "b"], back.GetAll("multi"));
        }
    }

    /// <summary>Our compressed blocks inflated by a different inflater (.NET's DeflateStream),
    /// which cannot take a preset dictionary: so the raw deflate data is preceded by a stored
    /// block holding the dictionary (putting it in the window, which is all a preset dictionary
    /// is) and followed by a final empty block.</summary>
    [Fact]
    public void OurHeaderBlocks_InflateWithAnIndependentInflater()
    {
        using var c = new HeaderCompressor();
        var first = new SpdyHeaders().Add("streamtype", "data").Add("port", "8080").Add("requestid", "0").Encode();
        var second = new SpdyHeaders().Add("streamtype", "error").Add("port", "8080").Add("requestid", "0").Encode();
        var z1 = c.Compress(first);
        var z2 = c.Compress(second); // same context: may point back into the first block
        Assert.True(z1.Length < first.Length && z2.Length < second.Length);

        var dict = SpdyDictionary.Bytes.ToArray();
        var raw = new MemoryStream();
        raw.Write([0x00, (byte)dict.Length, (byte)(dict.Length >> 8), (byte)~dict.Length, (byte)(~dict.Length >> 8)]);
        raw.Write(dict);
        raw.Write(z1.AsSpan(6)); // after CMF, FLG and the 4-byte dictionary id
        raw.Write(z2);
        raw.Write([0x01, 0x00, 0x00, 0xFF, 0xFF]);
        raw.Position = 0;
        using var inflater = new System.IO.Compression.DeflateStream(raw, System.IO.Compression.CompressionMode.Decompress);
        var output = new MemoryStream();
        inflater.CopyTo(output);
        Assert.Equal([.. dict, .. first, .. second], output.ToArray());
    }

    /// <summary>A SYN_STREAM built byte by byte the way a Go spdystream peer may send it (a zlib
    /// stream with the dictionary id and stored deflate blocks, sync flushed), decoded by us.</summary>
    [Fact]
    public void SynStream_AsAGoPeerWouldSendIt_Decodes()
    {
        // Uncompressed header block: 2 pairs, lower-case names.
        var block = new MemoryStream();
        void U32(uint v) { var b = new byte[4]; BinaryPrimitives.WriteUInt32BigEndian(b, v); block.Write(b); }
        void Str(string s) { U32((uint)s.Length); block.Write(Encoding.ASCII.GetBytes(s)); }
        U32(2); Str("streamtype"); Str("stdout"); Str("requestid"); Str("7");
        var raw = block.ToArray();
        Assert.Equal(4 + 4 + 10 + 4 + 6 + 4 + 9 + 4 + 1, raw.Length);

        // zlib: CMF 78, FLG 20 (FLEVEL 0, FDICT; 0x7820 % 31 == 0), DICTID, then a non-final
        // stored block (00, LEN, ~LEN little endian) and the sync flush's empty stored block.
        var z = new List<byte> { 0x78, 0x20, 0xE3, 0xC6, 0xA7, 0xC2, 0x00, (byte)raw.Length, 0x00, (byte)~raw.Length, 0xFF };
        z.AddRange(raw);
        z.AddRange([0x00, 0x00, 0x00, 0xFF, 0xFF]);

        // SYN_STREAM: 80 03 00 01, flags 0, length; stream 3, associated 0, priority 0, slot 0.
        var payload = new List<byte> { 0, 0, 0, 3, 0, 0, 0, 0, 0, 0 };
        payload.AddRange(z);
        var header = new byte[] { 0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, (byte)payload.Count };

        using var framer = new SpdyFramer();
        var frame = Assert.IsType<SynStreamFrame>(framer.Decode(header, payload.ToArray()));
        Assert.Equal(3u, frame.StreamId);
        Assert.Equal("stdout", frame.Headers.Get("streamType"));
        Assert.Equal("7", frame.Headers.Get("requestID"));
    }

    [Fact]
    public void ControlFrames_HaveTheDraftLayout_AndRoundTrip()
    {
        using var a = new SpdyFramer();
        using var b = new SpdyFramer();
        Assert.Equal(new byte[] { 0x80, 0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 5, 0, 0, 0, 5 },
            a.Encode(new RstStreamFrame(5, RstStatus.Cancel)));
        Assert.Equal(new byte[] { 0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 2 }, a.Encode(new PingFrame(2)));
        Assert.Equal(new byte[] { 0x00, 0x00, 0x00, 0x07, 0x01, 0x00, 0x00, 0x02, (byte)'h', (byte)'i' },
            a.Encode(new DataFrame(7, true, "hi"u8.ToArray())));

        SpdyFrame[] frames =
        [
            new SynStreamFrame(1, 0, 0, false, false, new SpdyHeaders().Add("streamtype", "error")),
            new SynReplyFrame(1, false, new SpdyHeaders()),
            new HeadersFrame(1, true, new SpdyHeaders().Add("x", "y")),
            new DataFrame(1, false, "payload"u8.ToArray()),
            new RstStreamFrame(1, RstStatus.RefusedStream),
            new SettingsFrame(false, [new SpdySetting(0, 7, 65536), new SpdySetting(1, 4, 100)]),
            new PingFrame(9),
            new GoAwayFrame(11, 0),
            new WindowUpdateFrame(1, 4096),
        ];
        foreach (var f in frames)
        {
            var bytes = a.Encode(f);
            var back = b.Decode(bytes.AsSpan(0, 8), bytes.AsSpan(8));
            Assert.NotNull(back);
            Assert.Equal(f.GetType(), back!.GetType());
            switch (f, back)
            {
                case (SynStreamFrame s, SynStreamFrame t): Assert.Equal(s.StreamId, t.StreamId); Assert.Equal("error", t.Headers.Get("streamType")); break;
                case (SynReplyFrame s, SynReplyFrame t): Assert.Equal(s.StreamId, t.StreamId); Assert.Equal(0, t.Headers.Count); break;
                case (HeadersFrame s, HeadersFrame t): Assert.True(t.Fin); Assert.Equal("y", t.Headers.Get("x")); break;
                case (DataFrame s, DataFrame t): Assert.Equal(s.Data.ToArray(), t.Data.ToArray()); break;
                case (SettingsFrame s, SettingsFrame t): Assert.Equal(s.Settings, t.Settings); break;
                default: Assert.Equal(f, back); break;
            }
        }
    }

    [Fact]
    public void TruncatedOrForeignInput_IsAProtocolError()
    {
        using var framer = new SpdyFramer();
        // Version 2 control frame.
        Assert.Throws<SpdyProtocolException>(() => framer.Decode(new byte[] { 0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4 }, new byte[] { 0, 0, 0, 1 }));
        // A header block claiming more pairs than it has.
        Assert.Throws<SpdyProtocolException>(() => SpdyHeaders.Decode(new byte[] { 0, 0, 0, 2, 0, 0, 0, 1, (byte)'a', 0, 0, 0, 0 }));
        // Data frame on stream 0.
        Assert.Throws<SpdyProtocolException>(() => framer.Decode(new byte[] { 0, 0, 0, 0, 0, 0, 0, 0 }, []));
    }

    [Fact]
    public async Task Connection_OpensStreams_CarriesDataBothWays_AndHalfCloses()
    {
        var (a, b) = TestDuplex.Pair();
        await using var client = new SpdyConnection(a, isServer: false);
        await using var server = new SpdyConnection(b, isServer: true);
        var runs = Task.WhenAll(client.RunAsync(CancellationToken.None), server.RunAsync(CancellationToken.None));
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));

        var mine = await client.OpenStreamAsync(new SpdyHeaders().Add("streamType", "stdin"), cts.Token);
        var theirs = await server.IncomingStreams.ReadAsync(cts.Token);
        Assert.Equal(1u, mine.Id);
        Assert.Equal("stdin", theirs.Headers.Get("streamtype"));

        var big = new byte[100_000];
        Random.Shared.NextBytes(big);
        await mine.WriteAsync(big, cts.Token);
        await mine.CloseWriteAsync(cts.Token);
        var got = new MemoryStream();
        await theirs.CopyToAsync(got, cts.Token);
        Assert.Equal(big, got.ToArray());

        await theirs.WriteAsync("back"u8.ToArray(), cts.Token);
        await theirs.CloseWriteAsync(cts.Token);
        var reply = new MemoryStream();
        await mine.CopyToAsync(reply, cts.Token);
        Assert.Equal("back", Encoding.ASCII.GetString(reply.ToArray()));

        await client.PingAsync(cts.Token);
        await client.DisposeAsync();
        await runs.WaitAsync(cts.Token);
    }
}
