using CriRuntime.Checkpoint;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary><see cref="Criu.PrepareProbeCache"/>: CRIU, running as root, reads its kernel probes
/// from that directory, so it must be root's own with mode 0700 whatever was there before.</summary>
public sealed class ProbeCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("kdat-").FullName;
    private string Cache => Path.Combine(_dir, "criu");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void AssertRootsOwn()
    {
        var st = Libc.StatOwner(Cache);
        Assert.NotNull(st);
        Assert.Equal(Libc.S_IFDIR, st.Value.Mode & Libc.S_IFMT);
        Assert.Equal(0u, st.Value.Uid);
        Assert.Equal(0x1C0u, st.Value.Mode & 0x1FF); // 0700
    }

    [Fact]
    public void Missing_IsMadeRootsOwn_AndAKeptOneStaysWithItsCache_ButNotAHalfWrittenOne()
    {
        Assert.Null(Criu.PrepareProbeCache(Cache));
        AssertRootsOwn();
        File.WriteAllText(Path.Combine(Cache, "criu.kdat"), "probes");
        File.WriteAllText(Path.Combine(Cache, "criu.kdat.tmp"), "half");
        Assert.Null(Criu.PrepareProbeCache(Cache));
        Assert.Equal("probes", File.ReadAllText(Path.Combine(Cache, "criu.kdat")));
        Assert.False(File.Exists(Path.Combine(Cache, "criu.kdat.tmp")), "a half-written cache stops CRIU from writing it again");
    }

    [Fact]
    public void SomeoneElsesDirectory_IsReplaced_WithNothingOfTheirsInside()
    {
        Directory.CreateDirectory(Cache);
        File.WriteAllText(Path.Combine(Cache, "criu.kdat"), "forged");
        Assert.Equal(0, Libc.Chown(Cache, 65534, 65534));
        Assert.Null(Criu.PrepareProbeCache(Cache));
        AssertRootsOwn();
        Assert.Empty(Directory.EnumerateFileSystemEntries(Cache));
    }

    [Fact]
    public void RootsDirectoryOthersMayWrite_IsReplaced()
    {
        Directory.CreateDirectory(Cache);
        File.SetUnixFileMode(Cache, (UnixFileMode)0x1FF); // 0777
        File.WriteAllText(Path.Combine(Cache, "criu.kdat"), "forged");
        Assert.Null(Criu.PrepareProbeCache(Cache));
        AssertRootsOwn();
        Assert.Empty(Directory.EnumerateFileSystemEntries(Cache));
    }

    [Fact]
    public void ASymlink_IsRemovedNotFollowed_AndAFileIsReplaced()
    {
        var elsewhere = Directory.CreateDirectory(Path.Combine(_dir, "elsewhere")).FullName;
        File.WriteAllText(Path.Combine(elsewhere, "keep"), "x");
        File.CreateSymbolicLink(Cache, elsewhere);
        Assert.Null(Criu.PrepareProbeCache(Cache));
        AssertRootsOwn();
        Assert.True(File.Exists(Path.Combine(elsewhere, "keep")));

        Directory.Delete(Cache);
        File.WriteAllText(Cache, "a file");
        Assert.Null(Criu.PrepareProbeCache(Cache));
        AssertRootsOwn();
    }
}
