using System.Formats.Tar;
using System.Text;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Tests.Unit.Kernel;

/// <summary>What layer extraction asks of the kernel (owners, modes, whiteouts, opaque markers,
/// links, times), recorded instead of done, so it runs without root. Files and directories are
/// still made in a temporary directory: only the calls that need privileges are faked.</summary>
public sealed class LayerExtractorKernelTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-extract-k-").FullName;
    private readonly RecordingHostKernel _k = new();
    private static readonly DateTimeOffset Time = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static PaxTarEntry Entry(TarEntryType type, string name, int uid = 0, UnixFileMode mode = (UnixFileMode)0x1ED, string? link = null, string? content = null)
    {
        var e = new PaxTarEntry(type, name) { ModificationTime = Time, Mode = mode, Uid = uid, Gid = uid };
        if (link is not null) e.LinkName = link;
        if (content is not null) e.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
        return e;
    }

    private void Extract(params TarEntry[] entries)
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms, TarEntryFormat.Pax, leaveOpen: true))
            foreach (var e in entries) w.WriteEntry(e);
        ms.Position = 0;
        LayerExtractor.Extract(ms, _root, "sha256:test", kernel: _k);
    }

    private string P(string rel) => Path.Combine(_root, rel);

    [Fact]
    public void Extract_SetsOwnerThenModeThenTime_OfEachEntry()
    {
        Extract(Entry(TarEntryType.RegularFile, "bin/su", uid: 1000, mode: (UnixFileMode)0x9ED /* 04755 */, content: "x"));

        Assert.Equal(
        [
            $"lchown {P("bin/su")} 1000:1000",
            $"chmod {P("bin/su")} 4755", // after lchown, which would clear setuid
            $"utimensat {P("bin/su")} {Time.ToUnixTimeSeconds()}",
        ], _k.Calls);
        Assert.Equal("x", File.ReadAllText(P("bin/su")));
    }

    [Fact]
    public void Extract_TurnsWhiteoutsIntoCharDevicesAndOpaqueMarkersIntoTheXattr()
    {
        Extract(
            Entry(TarEntryType.Directory, "etc/"),
            Entry(TarEntryType.RegularFile, "etc/.wh..wh..opq", content: ""),
            Entry(TarEntryType.RegularFile, "etc/.wh.passwd", content: ""));

        Assert.Contains($"lsetxattr {P("etc")} trusted.overlay.opaque=y", _k.Calls);
        Assert.Contains($"mknod {P("etc/passwd")} 20000 0", _k.Calls); // S_IFCHR, 0:0
        Assert.DoesNotContain(_k.Calls, c => c.Contains(".wh.", StringComparison.Ordinal));
    }

    [Fact]
    public void Extract_MakesHardLinksThroughTheKernel_AndSymlinksWithoutChmod()
    {
        Extract(
            Entry(TarEntryType.RegularFile, "a", content: "a"),
            Entry(TarEntryType.HardLink, "b", link: "a"),
            Entry(TarEntryType.SymbolicLink, "c", link: "/anywhere"));

        Assert.Contains($"link {P("b")} -> {P("a")}", _k.Calls);
        Assert.Contains($"lchown {P("c")} 0:0", _k.Calls);
        Assert.DoesNotContain($"chmod {P("c")} 755", _k.Calls);
    }

    [Fact]
    public void Extract_FailsNamingTheCall_WhenTheKernelRefuses()
    {
        _k.Failures["lchown"] = Interop.Errno.EPERM;
        var e = Assert.Throws<Interop.KernelException>(() => Extract(Entry(TarEntryType.RegularFile, "f", content: "")));
        Assert.Contains($"lchown {P("f")}", e.Message);
    }
}
