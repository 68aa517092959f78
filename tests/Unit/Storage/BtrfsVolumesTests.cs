using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Kernel;
using CriRuntime.Storage;
using CriRuntime.Tests.Unit.Kernel;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>The btrfs backend's ioctls against the recording kernel: subvolumes, qgroups, limits,
/// the pod's level-1 qgroup, and the list of pod qgroups the cleaner still holds.</summary>
public sealed class BtrfsVolumesTests : IDisposable
{
    private const ulong Size = 64UL << 20, PodSize = 128UL << 20;
    private const ulong Pod1 = (1UL << 48) | 256;
    private readonly string _root = Directory.CreateTempSubdirectory("btrfs-").FullName;
    private readonly RecordingHostKernel _kernel = new();
    private readonly BtrfsVolumes _volumes;
    private readonly string _dir;

    public BtrfsVolumesTests()
    {
        _volumes = new BtrfsVolumes(new CriRuntimeConfig { Root = _root }, _kernel, NullLogger<BtrfsVolumes>.Instance);
        _dir = Path.Combine(_root, "containers", "c1");
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    [Fact]
    public void Create_EnablesQuotasOnce_MakesASubvolume_AndLimitsItsQgroupsReferencedBytes()
    {
        var v = _volumes.Create("", Path.Combine(_dir, "volume"), Size);
        _volumes.Create("", Path.Combine(_root, "containers", "c2", "volume"), Size);

        Assert.Equal(
        [
            $"ioctl BTRFS_IOC_QUOTA_CTL enable {_root}",
            $"ioctl BTRFS_IOC_SUBVOL_CREATE {_dir}/volume",
            $"ioctl BTRFS_IOC_QGROUP_LIMIT 0/256 max_rfer={Size}",
            $"ioctl BTRFS_IOC_SUBVOL_CREATE {_root}/containers/c2/volume",
            $"ioctl BTRFS_IOC_QGROUP_LIMIT 0/257 max_rfer={Size}",
        ], _kernel.Calls);
        Assert.Equal(new WritableVolume("", $"{_dir}/volume", Size) { Qgroup = 256 }, v);
        Assert.True(Directory.Exists(v.Upper) && Directory.Exists(v.Work));
    }

    [Fact]
    public void Create_LeavesQuotasAlone_WhenTheyAreOnAlready()
    {
        _kernel.BtrfsQuotas = true;

        _volumes.Create("", Path.Combine(_dir, "volume"), Size);

        Assert.DoesNotContain(_kernel.Calls, c => c.Contains("QUOTA_CTL"));
    }

    [Fact]
    public void Create_WhenTheLimitFails_DeletesTheSubvolume_AndThrows()
    {
        _kernel.Failures["ioctl BTRFS_IOC_QGROUP_LIMIT"] = Errno.EINVAL;

        Assert.Throws<KernelException>(() => _volumes.Create("", Path.Combine(_dir, "volume"), Size));

        Assert.Equal($"ioctl BTRFS_IOC_SNAP_DESTROY {_dir}/volume", _kernel.Calls[^1]);
        Assert.False(Directory.Exists(Path.Combine(_dir, "volume")));
    }

    [Fact]
    public void PodVolume_IsALevel1Qgroup_NamedAfterThePodsSubvolume_HoldingItsContainersSubvolumes()
    {
        _kernel.BtrfsQuotas = true;
        var podDir = Path.Combine(_root, "pods", "p1");
        var pod = _volumes.CreateForPod("", Path.Combine(podDir, "volume"), PodSize);
        _volumes.Create("", Path.Combine(_dir, "volume"), Size, pod);
        _volumes.MakeLayerDir(Path.Combine(pod.MountPoint, "layers", "c2"), pod);

        Assert.Equal(Pod1, pod.Qgroup);
        Assert.Equal(
        [
            $"ioctl BTRFS_IOC_SUBVOL_CREATE {podDir}/volume",
            "ioctl BTRFS_IOC_QGROUP_CREATE create 1/256",
            $"ioctl BTRFS_IOC_QGROUP_LIMIT 1/256 max_rfer={PodSize}",
            $"ioctl BTRFS_IOC_SUBVOL_CREATE {_dir}/volume",
            $"ioctl BTRFS_IOC_QGROUP_LIMIT 0/257 max_rfer={Size}",
            "ioctl BTRFS_IOC_QGROUP_ASSIGN 0/257 1/256",
            $"ioctl BTRFS_IOC_SUBVOL_CREATE {podDir}/volume/layers/c2",
            "ioctl BTRFS_IOC_QGROUP_ASSIGN 0/258 1/256",
        ], _kernel.Calls);
    }

    [Fact]
    public void Release_DeletesTheSubvolume_AndLeavesItsLevel0QgroupToTheKernel()
    {
        _kernel.BtrfsQuotas = true;
        var v = _volumes.Create("", Path.Combine(_dir, "volume"), Size);
        _kernel.Calls.Clear();

        _volumes.Release(v);
        Assert.Equal([$"ioctl BTRFS_IOC_SNAP_DESTROY {_dir}/volume"], _kernel.Calls);
        Assert.False(Directory.Exists(v.MountPoint));

        _volumes.Release(v); // gone already (ENOENT): idempotent
        Assert.DoesNotContain(_kernel.Calls, c => c.Contains("QGROUP"));
    }

    [Fact]
    public void ReleaseOfAPod_KeepsItsQgroupListed_WhileTheCleanerHoldsIt_AndRemovesItOnTheNextCreate()
    {
        _kernel.BtrfsQuotas = true;
        var pod = _volumes.CreateForPod("", Path.Combine(_root, "pods", "p1", "volume"), PodSize);
        _volumes.MakeLayerDir(Path.Combine(pod.MountPoint, "layers", "c2"), pod);
        _kernel.Calls.Clear();
        _kernel.Failures["ioctl BTRFS_IOC_QGROUP_CREATE remove"] = Errno.EBUSY;

        _volumes.Release(pod);

        Assert.Equal(
        [
            $"ioctl BTRFS_IOC_SNAP_DESTROY {pod.MountPoint}/layers/c2",
            $"ioctl BTRFS_IOC_SNAP_DESTROY {pod.MountPoint}",
        ], _kernel.Calls);
        Assert.Equal("281474976710912\n", File.ReadAllText(_volumes.StaleFile));

        _kernel.Failures.Clear();
        _kernel.Calls.Clear();
        _volumes.Create("", Path.Combine(_dir, "volume"), Size);

        Assert.Equal("ioctl BTRFS_IOC_QGROUP_CREATE remove 1/256", _kernel.Calls[0]);
        Assert.False(File.Exists(_volumes.StaleFile));
    }

    [Fact]
    public void TheSweepOfAHalfMadePod_DeletesItsSubvolume_AndRemovesItsQgroup()
    {
        _kernel.BtrfsQuotas = true;
        var pod = _volumes.CreateForPod("", Path.Combine(_root, "pods", "p1", "volume"), PodSize);
        _kernel.Calls.Clear();

        _volumes.Unmount(pod.MountPoint);

        Assert.Equal(
        [
            $"ioctl BTRFS_IOC_SNAP_DESTROY {pod.MountPoint}",
            "ioctl BTRFS_IOC_QGROUP_CREATE remove 1/256",
        ], _kernel.Calls);
    }

    [Fact]
    public void TheSweepOfAHalfMadeContainer_DeletesItsSubvolume_AndNoQgroupByNumber()
    {
        _kernel.BtrfsQuotas = true;
        var v = _volumes.Create("", Path.Combine(_dir, "volume"), Size);
        _kernel.Calls.Clear();

        _volumes.Unmount(v.MountPoint);
        _volumes.Unmount(v.MountPoint); // gone: nothing to do

        Assert.Equal([$"ioctl BTRFS_IOC_SNAP_DESTROY {_dir}/volume"], _kernel.Calls);
    }

    [Fact]
    public void Usage_IsTheQgroupsReferencedBytes_NotAWalk()
    {
        var v = new WritableVolume("", Path.Combine(_dir, "volume"), Size) { Qgroup = 256 };
        _kernel.Qgroups[256] = (5UL << 20, 4UL << 20);

        var u = _volumes.Usage(v);

        Assert.Equal(5UL << 20, u!.Value.UsedBytes);
        Assert.Equal(Size, u.Value.TotalBytes);
        Assert.Null(_volumes.Usage(v with { Qgroup = 257 }));
    }

    [Fact]
    public void RemoveLayerDir_DeletesAPlainDirectory_WhenItIsNoSubvolume()
    {
        var layer = Path.Combine(_root, "pods", "p1", "volume", "layers", "c3");
        Directory.CreateDirectory(Path.Combine(layer, "upper"));
        _kernel.Failures["ioctl BTRFS_IOC_SNAP_DESTROY"] = Errno.EINVAL;

        _volumes.RemoveLayerDir(layer);

        Assert.False(Directory.Exists(layer));
    }
}
