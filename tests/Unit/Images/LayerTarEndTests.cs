using System.Text;
using CriRuntime.Images;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Tests.Unit.Images;

/// <summary>Where a layer tar may end. Byte streams are put together block by block (ustar
/// headers, data, padding, zero blocks) so each case is exactly the one named: umoci 0.4.7 ends
/// its layers right after the last entry's data, with no padding and no end-of-archive blocks.</summary>
public sealed class LayerTarEndTests : IDisposable
{
    private const int Block = 512;
    private const string Layer = "sha256:layer-under-test";
    private static readonly byte[] Content = "hello\n"u8.ToArray();

    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-tarend-").FullName;
    private string Root => Path.Combine(_dir, "fs");

    public LayerTarEndTests() => Directory.CreateDirectory(Root);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A ustar header block, as Go's archive/tar writes one for short names.</summary>
    private static byte[] Header(string name, char type, long size, int mode = 0x1A4)
    {
        var h = new byte[Block];
        void Put(int offset, string s) => Encoding.ASCII.GetBytes(s).CopyTo(h, offset);
        void Octal(int offset, int width, long value) => Put(offset, Convert.ToString(value, 8).PadLeft(width - 1, '0'));
        Put(0, name);
        Octal(100, 8, mode);
        Octal(108, 8, 0);
        Octal(116, 8, 0);
        Octal(124, 12, size);
        Octal(136, 12, 1704067200);
        h[156] = (byte)type;
        Put(257, "ustar\0");
        Put(263, "00");
        "        "u8.CopyTo(h.AsSpan(148)); // the checksum counts its own field as spaces
        var sum = h.Sum(b => b);
        Put(148, Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
        return h;
    }

    /// <summary>A directory "etc/" and a file "etc/last.txt" (6 bytes) as the last entry, with
    /// neither padding nor zero blocks after the data.</summary>
    private static byte[] UpToLastData() =>
        [.. Header("etc/", '5', 0, 0x1ED), .. Header("etc/last.txt", '0', Content.Length), .. Content];

    private static byte[] Zeros(int n) => new byte[n];

    private Digest Extract(byte[] tar) => LayerExtractor.Extract(new MemoryStream(tar), Root, Layer);

    private void AssertExtracted(byte[] tar)
    {
        Assert.Equal(Digest.Of(tar), Extract(tar)); // the diff_id covers exactly the bytes given
        Assert.Equal(Content, File.ReadAllBytes(Path.Combine(Root, "etc", "last.txt")));
        Assert.True(Directory.Exists(Path.Combine(Root, "etc")));
    }

    private string AssertRejected(byte[] tar)
    {
        var e = Assert.Throws<InvalidDataException>(() => Extract(tar));
        Assert.Contains(Layer, e.Message);
        return e.Message;
    }

    [Fact]
    public void Extract_Accepts_TarEndingRightAfterLastEntrysData() => AssertExtracted(UpToLastData());

    [Fact]
    public void Extract_Accepts_TarEndingInsideLastEntrysPadding() => AssertExtracted([.. UpToLastData(), .. Zeros(100)]);

    [Fact]
    public void Extract_Accepts_PaddingButNoZeroBlocks() => AssertExtracted([.. UpToLastData(), .. Zeros(Block - Content.Length)]);

    [Fact]
    public void Extract_Accepts_OneZeroBlock() => AssertExtracted([.. UpToLastData(), .. Zeros(Block - Content.Length + Block)]);

    [Fact]
    public void Extract_Accepts_BothZeroBlocks() => AssertExtracted([.. UpToLastData(), .. Zeros(Block - Content.Length + 2 * Block)]);

    [Fact]
    public void Extract_Accepts_TarEndingAfterLastHeader_WhenTheEntryHasNoData()
    {
        // umoci's first layer of a rootfs ends like this: a directory header, then nothing.
        byte[] tar = [.. Header("etc/last.txt", '0', Content.Length), .. Content, .. Zeros(Block - Content.Length), .. Header("var/", '5', 0, 0x1ED)];
        Assert.Equal(Digest.Of(tar), Extract(tar));
        Assert.True(Directory.Exists(Path.Combine(Root, "var")));
        Assert.Equal(Content, File.ReadAllBytes(Path.Combine(Root, "etc", "last.txt")));
    }

    [Fact]
    public void Extract_Accepts_EmptyTar() => Assert.Equal(Digest.Of([]), Extract([]));

    [Fact]
    public void Extract_Rejects_TarEndingInsideAHeader()
    {
        byte[] tar = [.. Header("etc/", '5', 0, 0x1ED), .. Header("etc/last.txt", '0', Content.Length).AsSpan(0, 100)];
        Assert.Contains("inside the header that follows entry \"etc/\"", AssertRejected(tar));
    }

    [Fact]
    public void Extract_Rejects_TarEndingInsideTheFirstHeader() =>
        Assert.Contains("first header", AssertRejected(Header("etc/", '5', 0, 0x1ED)[..300]));

    [Fact]
    public void Extract_Rejects_TarEndingInsideAnEntrysData()
    {
        byte[] tar = [.. Header("etc/", '5', 0, 0x1ED), .. Header("etc/last.txt", '0', Content.Length), .. Content.AsSpan(0, 3)];
        var message = AssertRejected(tar);
        Assert.Contains("etc/last.txt", message);
        Assert.Contains("3 of 6 bytes", message);
    }

    [Fact]
    public void Extract_Rejects_TarEndingInsideAnEntrysData_OneByteShort()
    {
        byte[] tar = [.. Header("etc/last.txt", '0', Content.Length), .. Content.AsSpan(0, Content.Length - 1)];
        Assert.Contains("etc/last.txt", AssertRejected(tar));
    }

    [Fact]
    public void Extract_Rejects_TarEndingInsideAZeroBlock() =>
        AssertRejected([.. UpToLastData(), .. Zeros(Block - Content.Length + 100)]);

    [Fact]
    public void Extract_Rejects_TarEndingAfterAHeaderThatAnnouncesMore()
    {
        // A whole header block for a PAX record whose data never comes.
        byte[] tar = [.. UpToLastData(), .. Zeros(Block - Content.Length), .. Header("PaxHeaders/x", 'x', 30)];
        AssertRejected(tar);
    }
}
