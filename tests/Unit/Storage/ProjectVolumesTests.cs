using CriRuntime.Config;
using CriRuntime.Kernel;
using CriRuntime.Storage;
using CriRuntime.Tests.Unit.Kernel;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>The project-quota backend against the recording kernel. This machine's kernel has
/// neither XFS quotas nor ext4 quota format v2, so these calls were never made for real here.</summary>
public sealed class ProjectVolumesTests : IDisposable
{
    private const ulong Size = 64UL << 20;
    private readonly string _root = Directory.CreateTempSubdirectory("prj-").FullName;
    private readonly RecordingHostKernel _kernel = new();
    private readonly string _dir;

    public ProjectVolumesTests()
    {
        _dir = Path.Combine(_root, "containers", "c1");
        _kernel.FileSystems[_root] = new FsUsage(FsUsage.Ext4Magic, 1UL << 30, 1UL << 29, 1000, 500);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private ProjectVolumes Volumes() => new(new CriRuntimeConfig { Root = _root }, _kernel, NullLogger<ProjectVolumes>.Instance);

    [Fact]
    public void Create_GivesTheDirectoryAnInheritedProjectId_BeforeTheUpperDir_AndSetsTheProjectsLimit()
    {
        var v = Volumes().Create("", Path.Combine(_dir, "volume"), Size);

        Assert.Equal(
        [
            $"ioctl FS_IOC_FSSETXATTR {_dir}/volume projid={ProjectVolumes.FirstId} projinherit",
            $"quotactl Q_SETQUOTA project {ProjectVolumes.FirstId} {Size}",
        ], _kernel.Calls);
        Assert.Equal(ProjectVolumes.FirstId, v.ProjectId);
        Assert.True(Directory.Exists(v.Upper) && Directory.Exists(v.Work));
    }

    [Fact]
    public void OnXfs_TheLimitIsSetWithQ_XSETQLIM()
    {
        _kernel.FileSystems[_root] = new FsUsage(FsUsage.XfsMagic, 1UL << 30, 1UL << 29, 1000, 500);

        Volumes().Create("", Path.Combine(_dir, "volume"), Size);

        Assert.Contains($"quotactl Q_XSETQLIM project {ProjectVolumes.FirstId} {Size}", _kernel.Calls);
    }

    [Fact]
    public void ProjectIds_AreRecorded_SoANewDaemonDoesNotHandOutOneInUse()
    {
        Volumes().Create("", Path.Combine(_dir, "volume"), Size);

        var after = Volumes().Create("", Path.Combine(_root, "containers", "c2", "volume"), Size);

        Assert.Equal(ProjectVolumes.FirstId + 1, after.ProjectId);
    }

    [Fact]
    public void Release_LiftsTheLimit_DeletesTheDirectory_AndFreesTheId()
    {
        var volumes = Volumes();
        var v = volumes.Create("", Path.Combine(_dir, "volume"), Size);
        _kernel.Calls.Clear();

        volumes.Release(v);

        Assert.Equal([$"quotactl Q_SETQUOTA project {v.ProjectId} 0"], _kernel.Calls);
        Assert.False(Directory.Exists(v.MountPoint));
        Assert.Empty(volumes.Allocated());
        Assert.Equal(ProjectVolumes.FirstId, volumes.Create("", Path.Combine(_dir, "volume"), Size).ProjectId);
    }

    [Fact]
    public void Start_FreesTheIdsOfDirectoriesThatAreGone()
    {
        var volumes = Volumes();
        var kept = volumes.Create("", Path.Combine(_dir, "volume"), Size);
        var lost = volumes.Create("", Path.Combine(_root, "containers", "c2", "volume"), Size);
        Directory.Delete(lost.MountPoint, recursive: true);
        _kernel.Calls.Clear();

        Volumes().Start();

        Assert.Equal([$"quotactl Q_SETQUOTA project {lost.ProjectId} 0"], _kernel.Calls);
        Assert.Equal([kept.ProjectId], volumes.Allocated().Select(a => a.Id));
    }

    [Fact]
    public void Usage_IsTheProjectsAccounting_BytesAndInodes()
    {
        var volumes = Volumes();
        var v = volumes.Create("", Path.Combine(_dir, "volume"), Size);
        _kernel.Projects[v.ProjectId] = (3UL << 20, 12);

        var u = volumes.Usage(v)!.Value;

        Assert.Equal(3UL << 20, u.UsedBytes);
        Assert.Equal(12UL, u.UsedInodes);
    }

    [Fact]
    public void Create_WhenTheLimitFails_RemovesTheDirectory_AndFreesTheId()
    {
        _kernel.Failures["quotactl"] = CriRuntime.Interop.Errno.EINVAL;
        var volumes = Volumes();

        Assert.Throws<CriRuntime.Interop.KernelException>(() => volumes.Create("", Path.Combine(_dir, "volume"), Size));

        Assert.False(Directory.Exists(Path.Combine(_dir, "volume")));
        Assert.Empty(volumes.Allocated());
    }
}
