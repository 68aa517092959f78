using CriRuntime.Checkpoint;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>CRIU's uts image, rewritten before a restore into the new pod's uts namespace so that
/// CRIU writes the names that namespace already has (not the old pod's).</summary>
public sealed class UtsImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("uts-image-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>What CRIU 4.2 writes for hostname "counter-a", domainname "(none)": the common
    /// magic, the utsns magic, the entry's length, then utsns_entry {1: nodename, 2: domainname}.</summary>
    private static readonly byte[] Dumped =
    [
        0x19, 0x43, 0x56, 0x54, 0x03, 0x32, 0x47, 0x54, 0x13, 0x00, 0x00, 0x00,
        0x0A, 0x09, .. "counter-a"u8, 0x12, 0x06, .. "(none)"u8,
    ];

    [Fact]
    public void Rewrite_ReplacesTheDumpedNames_InCriusFormat()
    {
        var path = Path.Combine(_dir, "utsns-12.img");
        File.WriteAllBytes(path, Dumped);
        Assert.Equal(("counter-a", "(none)"), UtsImage.Read(path));

        UtsImage.Rewrite(path, "counter-b", "(none)");

        Assert.Equal(("counter-b", "(none)"), UtsImage.Read(path));
        var expected = Dumped.ToArray();
        "counter-b"u8.CopyTo(expected.AsSpan(14));
        Assert.Equal(expected, File.ReadAllBytes(path));
        Assert.Equal([path], UtsImage.Find(_dir));
    }

    [Theory]
    [InlineData("magic")]
    [InlineData("length")]
    [InlineData("field")]
    public void Rewrite_RefusesAFileThatIsNoUtsImage_AndLeavesItAlone(string kind)
    {
        var bytes = Dumped.ToArray();
        switch (kind)
        {
            case "magic": bytes[4] = 0x04; break;
            case "length": bytes[8] = 0x7F; break;
            default: bytes[13] = 0x7F; break; // the nodename runs past the entry
        }
        var path = Path.Combine(_dir, "utsns-1.img");
        File.WriteAllBytes(path, bytes);

        var e = Assert.Throws<InvalidDataException>(() => UtsImage.Rewrite(path, "x", "y"));

        Assert.Contains("utsns-1.img", e.Message);
        Assert.Equal(bytes, File.ReadAllBytes(path));
    }
}
