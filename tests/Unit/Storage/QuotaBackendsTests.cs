using CriRuntime.Config;
using CriRuntime.Kernel;
using CriRuntime.Storage;
using CriRuntime.Tests.Unit.Kernel;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>Which disk-quota backend [storage] quota_backend and the storage root's file system give.</summary>
public sealed class QuotaBackendsTests
{
    private const string Root = "/var/lib/criruntime";
    private readonly RecordingHostKernel _kernel = new();

    private string Choose(string configured, long fsType, bool projectQuotas = false)
    {
        _kernel.FileSystems[Root] = new FsUsage(fsType, 1UL << 30, 1UL << 29, 100, 50);
        _kernel.ProjectQuotas = projectQuotas;
        return QuotaBackends.Choose(configured, Root, _kernel);
    }

    [Theory]
    [InlineData(FsUsage.BtrfsMagic, false, "btrfs")]
    [InlineData(FsUsage.XfsMagic, true, "project")]
    [InlineData(FsUsage.Ext4Magic, true, "project")]
    [InlineData(FsUsage.XfsMagic, false, "volume")]
    [InlineData(FsUsage.Ext4Magic, false, "volume")]
    [InlineData(0x01021994L, false, "volume")] // tmpfs
    public void Auto_PicksFromTheStorageRootsFileSystem(long fsType, bool projectQuotas, string expected) =>
        Assert.Equal(expected, Choose("auto", fsType, projectQuotas));

    [Fact]
    public void Volume_IsAlwaysPossible() => Assert.Equal("volume", Choose("volume", FsUsage.BtrfsMagic));

    [Fact]
    public void Btrfs_OnAnotherFileSystem_StopsTheStart_NamingTheKey()
    {
        var e = Assert.Throws<ConfigException>(() => Choose("btrfs", FsUsage.Ext4Magic));
        Assert.StartsWith("storage.quota_backend", e.Message);
        Assert.Contains("ext4", e.Message);
    }

    [Fact]
    public void Project_WithoutProjectQuotasOn_StopsTheStart_NamingTheKey()
    {
        var e = Assert.Throws<ConfigException>(() => Choose("project", FsUsage.XfsMagic, projectQuotas: false));
        Assert.StartsWith("storage.quota_backend", e.Message);
        Assert.Equal("project", Choose("project", FsUsage.XfsMagic, projectQuotas: true));
    }
}
