using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using CriRuntime.Images;
using CriRuntime.Images.Snapshots;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Images;

/// <summary>Extraction into overlay form and refusal of hostile layers. Needs root (chown, mknod,
/// trusted.* xattrs), as the daemon does.</summary>
public sealed class LayerExtractorTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-extract-").FullName;
    private string Root => Path.Combine(_dir, "fs");
    private static readonly DateTimeOffset Time = new(2024, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public LayerExtractorTests() => Directory.CreateDirectory(Root);
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static PaxTarEntry File_(string name, string content, int uid = 0, int gid = 0, UnixFileMode mode = (UnixFileMode)0x1A4,
        Dictionary<string, string>? pax = null)
    {
        var e = pax is null ? new PaxTarEntry(TarEntryType.RegularFile, name) : new PaxTarEntry(TarEntryType.RegularFile, name, pax);
        e.DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content));
        e.Uid = uid; e.Gid = gid; e.Mode = mode; e.ModificationTime = Time;
        return e;
    }

    private static PaxTarEntry Entry(TarEntryType type, string name, string? link = null)
    {
        var e = new PaxTarEntry(type, name) { ModificationTime = Time, Mode = (UnixFileMode)0x1ED };
        if (link is not null) e.LinkName = link;
        return e;
    }

    private static byte[] Tar(params TarEntry[] entries)
    {
        var ms = new MemoryStream();
        using (var w = new TarWriter(ms, TarEntryFormat.Pax, leaveOpen: true))
            foreach (var e in entries) w.WriteEntry(e);
        return ms.ToArray();
    }

    private Digest Extract(byte[] tar) => LayerExtractor.Extract(new MemoryStream(tar), Root, "sha256:test");

    private void AssertRejected(byte[] tar, string entryName)
    {
        var e = Assert.Throws<InvalidDataException>(() => Extract(tar));
        Assert.Contains("sha256:test", e.Message);
        Assert.Contains(entryName, e.Message);
    }

    [Fact]
    public void Extract_KeepsOwnersModesTimesLinksAndXattrs()
    {
        var tar = Tar(
            Entry(TarEntryType.Directory, "data/"),
            File_("data/a.txt", "a"),
            File_("data/owned.txt", "secret", 1000, 1000, (UnixFileMode)0x1A0 /* 0640 */,
                new Dictionary<string, string> { ["SCHILY.xattr.user.test"] = "v" }),
            File_("bin/suid", "x", mode: (UnixFileMode)0x9ED /* 04755 */),
            Entry(TarEntryType.HardLink, "data/hard", "data/a.txt"),
            Entry(TarEntryType.SymbolicLink, "data/link", "a.txt"),
            Entry(TarEntryType.SymbolicLink, "data/abs", "/etc/passwd"));
        var diffId = Extract(tar);

        Assert.Equal(Digest.Of(tar), diffId);
        var owned = Path.Combine(Root, "data/owned.txt");
        Assert.Equal("secret", File.ReadAllText(owned));
        Assert.Equal((UnixFileMode)0x1A0, File.GetUnixFileMode(owned));
        Assert.Equal("v", Encoding.UTF8.GetString(Libc.Lgetxattr(owned, "user.test")!));
        Assert.Equal((UnixFileMode)0x9ED, File.GetUnixFileMode(Path.Combine(Root, "bin/suid")));
        Assert.Equal(Time, File.GetLastWriteTimeUtc(Path.Combine(Root, "data/a.txt")));
        Assert.Equal(Time, File.GetLastWriteTimeUtc(Path.Combine(Root, "data")));
        Assert.Equal("a.txt", new FileInfo(Path.Combine(Root, "data/link")).LinkTarget);
        Assert.Equal("/etc/passwd", new FileInfo(Path.Combine(Root, "data/abs")).LinkTarget);
        Assert.Equal(Inode(Path.Combine(Root, "data/a.txt")), Inode(Path.Combine(Root, "data/hard")));
        Assert.Equal("1000:1000", Owner(owned));
    }

    [Fact]
    public void Extract_TranslatesWhiteoutsAndOpaqueDirs()
    {
        Extract(Tar(
            Entry(TarEntryType.Directory, "data/"),
            File_("data/.wh.b.txt", ""),
            Entry(TarEntryType.Directory, "data/dir/"),
            File_("data/dir/.wh..wh..opq", ""),
            File_("data/dir/y.txt", "y"),
            File_("data/.wh..wh.plnk", "")));

        var whiteout = Path.Combine(Root, "data/b.txt");
        Assert.Equal(Libc.S_IFCHR, Libc.FileType(whiteout));
        Assert.Equal("0:0", RunStat("%t:%T", whiteout));
        Assert.Equal("y", Encoding.ASCII.GetString(Libc.Lgetxattr(Path.Combine(Root, "data/dir"), "trusted.overlay.opaque")!));
        Assert.False(File.Exists(Path.Combine(Root, "data/dir/.wh..wh..opq")));
        Assert.False(File.Exists(Path.Combine(Root, "data/.wh..wh.plnk")));
        Assert.True(File.Exists(Path.Combine(Root, "data/dir/y.txt")));
    }

    [Fact]
    public void Extract_IgnoresForgedOverlayXattrs()
    {
        Extract(Tar(File_("f", "x", pax: new Dictionary<string, string> { ["SCHILY.xattr.trusted.overlay.opaque"] = "y" })));
        Assert.Null(Libc.Lgetxattr(Path.Combine(Root, "f"), "trusted.overlay.opaque"));
    }

    [Fact]
    public void Extract_SkipsXattrsWhoseBinaryValueWasLostInDecoding()
    {
        Extract(Tar(File_("f", "x", pax: new Dictionary<string, string> { ["SCHILY.xattr.user.bin"] = "a\uFFFDb", ["SCHILY.xattr.user.ok"] = "v" })));
        Assert.Null(Libc.Lgetxattr(Path.Combine(Root, "f"), "user.bin"));
        Assert.NotNull(Libc.Lgetxattr(Path.Combine(Root, "f"), "user.ok"));
    }

    [Fact]
    public void Extract_BinaryXattrFromGnuTar_IsSetByteForByte_WithTheSecondPass()
    {
        var src = Path.Combine(_dir, "src");
        Directory.CreateDirectory(src);
        var file = Path.Combine(src, "cap-binary");
        File.WriteAllText(file, "x");
        byte[] raw = [0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0x00, 0x20, 0xc3];
        Libc.Lsetxattr(file, "user.bin", raw);
        var tarPath = Path.Combine(_dir, "layer.tar");
        using (var p = System.Diagnostics.Process.Start("tar", ["--format=posix", "--xattrs", "--xattrs-include=user.*", "-C", src, "-cf", tarPath, "cap-binary"]))
        {
            p.WaitForExit();
            Assert.Equal(0, p.ExitCode);
        }
        var tar = File.ReadAllBytes(tarPath);

        Assert.Equal("user.bin", Assert.Single(PaxXattrScanner.Scan(new MemoryStream(tar))).Name);
        Assert.Equal(raw, PaxXattrScanner.Scan(new MemoryStream(tar)).Single().Value);

        LayerExtractor.Extract(new MemoryStream(tar), Root, "sha256:test", reopen: () => new MemoryStream(tar));
        Assert.Equal(raw, Libc.Lgetxattr(Path.Combine(Root, "cap-binary"), "user.bin"));

        var root2 = Path.Combine(_dir, "fs2");
        Directory.CreateDirectory(root2);
        LayerExtractor.Extract(new MemoryStream(tar), root2, "sha256:test");
        Assert.Null(Libc.Lgetxattr(Path.Combine(root2, "cap-binary"), "user.bin")); // skipped, never mangled
    }

    [Fact]
    public void PaxScanner_FollowsLongPathsAndSkipsData()
    {
        var longName = string.Join('/', Enumerable.Repeat("directory-name", 12)) + "/file";
        var tar = Tar(
            File_("first", new string('a', 1500), pax: new Dictionary<string, string> { ["SCHILY.xattr.user.a"] = "1" }),
            File_(longName, "b", pax: new Dictionary<string, string> { ["SCHILY.xattr.user.b"] = "2" }));
        var found = PaxXattrScanner.Scan(new MemoryStream(tar)).ToList();
        Assert.Equal([("first", "user.a", "1"), (longName, "user.b", "2")],
            found.Select(x => (x.Path, x.Name, Encoding.UTF8.GetString(x.Value))));
    }

    [Fact]
    public void Extract_HandlesGzipAndZstd()
    {
        var tar = Tar(File_("hello", "world"));
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true)) z.Write(tar);
        Assert.Equal(Digest.Of(tar), LayerExtractor.Extract(new MemoryStream(gz.ToArray()), Root, "gz"));

        using var zstd = new ZstdSharp.Compressor();
        var root2 = Path.Combine(_dir, "fs2");
        Directory.CreateDirectory(root2);
        Assert.Equal(Digest.Of(tar), LayerExtractor.Extract(new MemoryStream(zstd.Wrap(tar).ToArray()), root2, "zst"));
        Assert.Equal("world", File.ReadAllText(Path.Combine(root2, "hello")));
    }

    [Fact]
    public void Extract_Rejects_DotDot() => AssertRejected(Tar(File_("../escape", "x")), "../escape");

    [Fact]
    public void Extract_Rejects_DotDotInTheMiddle() => AssertRejected(Tar(File_("a/../../escape", "x")), "a/../../escape");

    [Fact]
    public void Extract_AbsoluteNames_StayInside()
    {
        Extract(Tar(File_("/etc/inside", "x")));
        Assert.True(File.Exists(Path.Combine(Root, "etc/inside")));
    }

    [Fact]
    public void Extract_Rejects_WriteThroughAbsoluteSymlink()
    {
        var outside = Path.Combine(_dir, "outside");
        Directory.CreateDirectory(outside);
        AssertRejected(Tar(Entry(TarEntryType.SymbolicLink, "evil", outside), File_("evil/pwned", "x")), "evil/pwned");
        Assert.False(File.Exists(Path.Combine(outside, "pwned")));
    }

    [Fact]
    public void Extract_Rejects_WriteThroughEscapingRelativeSymlink()
    {
        AssertRejected(Tar(Entry(TarEntryType.SymbolicLink, "up", "../.."), File_("up/pwned", "x")), "up/pwned");
        Assert.False(File.Exists(Path.Combine(_dir, "pwned")));
    }

    [Fact]
    public void Extract_ReplacesSymlinkAtTarget_InsteadOfFollowingIt()
    {
        var outside = Path.Combine(_dir, "victim");
        File.WriteAllText(outside, "original");
        Extract(Tar(Entry(TarEntryType.SymbolicLink, "f", outside), File_("f", "new")));
        Assert.Equal("original", File.ReadAllText(outside));
        Assert.Equal("new", File.ReadAllText(Path.Combine(Root, "f")));
        Assert.Null(new FileInfo(Path.Combine(Root, "f")).LinkTarget);
    }

    [Fact]
    public void Extract_Rejects_HardLinkOutside()
    {
        AssertRejected(Tar(Entry(TarEntryType.HardLink, "h", "../outside")), "\"h\"");
        var victim = Path.Combine(_dir, "victim");
        File.WriteAllText(victim, "x");
        AssertRejected(Tar(Entry(TarEntryType.SymbolicLink, "d", _dir), Entry(TarEntryType.HardLink, "h2", "d/victim")), "h2");
        AssertRejected(Tar(Entry(TarEntryType.HardLink, "h3", "/etc/passwd")), "h3"); // inside-relative, and not in the layer
    }

    [Theory]
    [InlineData(TarEntryType.CharacterDevice)]
    [InlineData(TarEntryType.BlockDevice)]
    public void Extract_Rejects_DeviceNodes(TarEntryType type)
    {
        var dev = new PaxTarEntry(type, "dev/sda") { DeviceMajor = 8, DeviceMinor = 0, ModificationTime = Time };
        AssertRejected(Tar(dev), "dev/sda");
    }

    [Fact]
    public void Extract_Rejects_WhiteoutOfDotDot() => AssertRejected(Tar(File_("a/.wh...", "")), "a/.wh...");

    [Fact]
    public void Extract_Rejects_GarbageAsMalformedTar()
    {
        var e = Assert.Throws<InvalidDataException>(() => Extract(Enumerable.Repeat((byte)'x', 1024).ToArray()));
        Assert.Contains("sha256:test", e.Message);
    }

    [Fact]
    public void Unpack_RemovesHalfWrittenSnapshot_OnHostileEntry()
    {
        var store = new SnapshotStore(_dir);
        var tar = Tar(File_("ok", "x"), File_("../bad", "y"));
        var blob = Path.Combine(_dir, "blob");
        File.WriteAllBytes(blob, tar);
        var chain = Digest.Of(tar);
        Assert.Throws<InvalidDataException>(() => store.Unpack(chain, chain, chain, blob, CancellationToken.None));
        Assert.False(store.Has(chain));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "snapshots")));
    }

    [Fact]
    public void Unpack_RejectsWrongDiffId_AndKeepsNothing()
    {
        var store = new SnapshotStore(_dir);
        var tar = Tar(File_("ok", "x"));
        var blob = Path.Combine(_dir, "blob");
        File.WriteAllBytes(blob, tar);
        var wrong = Digest.Of("other"u8);
        Assert.ThrowsAny<Exception>(() => store.Unpack(wrong, wrong, wrong, blob, CancellationToken.None));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_dir, "snapshots")));
        store.Unpack(Digest.Of(tar), Digest.Of(tar), Digest.Of(tar), blob, CancellationToken.None);
        Assert.True(File.Exists(Path.Combine(store.FsPath(Digest.Of(tar)), "ok")));
    }

    private static string Inode(string path) => RunStat("%i", path);
    private static string Owner(string path) => RunStat("%u:%g", path);

    private static string RunStat(string format, string path)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", format, path]) { RedirectStandardOutput = true })!;
        var output = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return output;
    }
}
