using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.Controllers;

/// <summary>The container controller over fakes: create's steps and their undo, start (which
/// starts the shim), and idempotent stop and remove.</summary>
public sealed class ContainerControllerTests : IDisposable
{
    private readonly ControllerFixture _f = new();
    private readonly string _podId;

    public ContainerControllerTests() =>
        _podId = _f.PodController.RunAsync(ControllerFixture.Plan(), CancellationToken.None).GetAwaiter().GetResult();

    public void Dispose() => _f.Dispose();

    internal static CreateContainerRequest Request(string podId, string name = "app") => new()
    {
        PodSandboxId = podId,
        Config = new ContainerConfig
        {
            Metadata = new ContainerMetadata { Name = name, Attempt = 0 },
            Image = new ImageSpec { Image = "busybox" },
            Command = { "sleep", "1000" },
        },
    };

    private PodSandboxRecord Pod => _f.Pods.Find(_podId)!;

    private Task<string> CreateAsync() => _f.ContainerController.CreateAsync(Request(_podId), Pod, CancellationToken.None);

    [Fact]
    public async Task Create_MountsTheRootfsAndWritesTheBundle_AndRecordsTheContainer_WithoutStartingAShim()
    {
        _f.Log.Steps.Clear();

        var id = await CreateAsync();

        Assert.Equal(["rootfs mount"], _f.Log.Named);
        var c = _f.Containers.Find(id)!;
        Assert.Equal(ContainerPhase.Created, c.State);
        Assert.Equal($"/criruntime/{_podId}/{id}", c.CgroupsPath);
        Assert.True(File.Exists(Path.Combine(c.BundleDir, "config.json")));
        Assert.False(Directory.Exists(c.StateDir));
        Assert.Empty(_f.Exits.Watched);
        Assert.True(_f.Usage.IsInUse(FakeImages.Id));
    }

    [Theory]
    [InlineData("rootfs mount")]
    public async Task Create_WhenAStepFails_UndoesEveryCompletedStep_AndLeavesNoContainer(string failing)
    {
        _f.Log.FailAt = failing;

        await Assert.ThrowsAnyAsync<Exception>(CreateAsync);

        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("rootfs", StringComparison.Ordinal) || l.StartsWith("shim", StringComparison.Ordinal));
        Assert.Empty(_f.Containers.All);
        Assert.Empty(Directory.GetDirectories(_f.Containers.Dir));
        Assert.Empty(_f.Exits.Watched);
    }

    [Fact]
    public async Task Create_Retried_GetsTheSameContainer()
    {
        var first = await CreateAsync();
        var second = await CreateAsync();

        Assert.Equal(first, second);
        Assert.Single(_f.Containers.All);
    }

    [Fact]
    public async Task Start_RunsACreatedContainer_OnceOnly()
    {
        var id = await CreateAsync();

        _f.Log.Steps.Clear();

        await _f.ContainerController.StartAsync(id, "", CancellationToken.None);

        Assert.Equal(["shim create", "shim start"], _f.Log.Named);
        Assert.Equal(ContainerPhase.Running, _f.Containers.Find(id)!.State);
        Assert.Equal([id], _f.Exits.Watched);
        var e = await Assert.ThrowsAsync<CriException>(() => _f.ContainerController.StartAsync(id, "", CancellationToken.None));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
    }

    [Fact]
    public async Task Start_WhenTheShimCannotCreateTheContainer_RecordsItExitedWithStartError_AndLeavesNoShim()
    {
        var id = await CreateAsync();
        _f.Log.FailAt = "shim create";

        await Assert.ThrowsAnyAsync<Exception>(() => _f.ContainerController.StartAsync(id, "", CancellationToken.None));

        var c = _f.Containers.Find(id)!;
        Assert.Equal(ContainerPhase.Exited, c.State);
        Assert.Equal(128, c.ExitCode);
        Assert.Equal("StartError", c.Reason);
        Assert.Contains("injected failure: shim create", c.Message);
        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("shim", StringComparison.Ordinal));
        Assert.False(Directory.Exists(c.StateDir));
        Assert.Empty(_f.Exits.Watched);
    }

    [Fact]
    public async Task Start_AfterACrashBetweenShimCreateAndStart_StartsTheShimThatIsThere()
    {
        var id = await CreateAsync();
        var c = _f.Containers.Find(id)!;
        await _f.Shims.CreateAsync(id, c.BundleDir, c.StateDir, c.LogPath, "", CancellationToken.None);
        _f.Log.Steps.Clear();

        await _f.ContainerController.StartAsync(id, "", CancellationToken.None);

        Assert.Equal(["shim start"], _f.Log.Named);
        Assert.Equal(ContainerPhase.Running, _f.Containers.Find(id)!.State);
    }

    [Fact]
    public async Task Start_WhenTheShimDies_RecordsTheExit_AndIsFailedPrecondition()
    {
        var id = await CreateAsync();
        _f.Shims.DieOnStart = true;

        var e = await Assert.ThrowsAsync<CriException>(() => _f.ContainerController.StartAsync(id, "", CancellationToken.None));

        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.Contains("exited", e.Message);
        Assert.Equal(ContainerPhase.Exited, _f.Containers.Find(id)!.State);
    }

    [Fact]
    public async Task Stop_ARunningContainer_SendsTheImagesStopSignal_AndRecordsTheExit()
    {
        _f.Images.StopSignal = "SIGQUIT";
        var id = await CreateAsync();
        await _f.ContainerController.StartAsync(id, "", CancellationToken.None);
        _f.Log.Steps.Clear();

        await _f.ContainerController.StopAsync(_f.Containers.Find(id)!, TimeSpan.FromSeconds(5), CancellationToken.None);

        Assert.Equal(["shim stop 3", "shim wait", "record exit"], _f.Log.Named);
        Assert.Equal(ContainerPhase.Exited, _f.Containers.Find(id)!.State);
    }

    [Fact]
    public async Task Stop_ACreatedContainer_RecordsItExitedAsKilled_WithNoShimToAsk()
    {
        var id = await CreateAsync();
        _f.Log.Steps.Clear();

        await _f.ContainerController.StopAsync(_f.Containers.Find(id)!, TimeSpan.FromSeconds(5), CancellationToken.None);

        Assert.Equal(["record exit"], _f.Log.Named);
        var c = _f.Containers.Find(id)!;
        Assert.Equal(ContainerPhase.Exited, c.State);
        Assert.Equal(137, c.ExitCode);
    }

    [Fact]
    public async Task Stop_IsIdempotent_WhenTheContainerExited()
    {
        var id = await CreateAsync();
        await _f.ContainerController.StopAsync(_f.Containers.Find(id)!, TimeSpan.Zero, CancellationToken.None);
        _f.Log.Steps.Clear();

        await _f.ContainerController.StopAsync(_f.Containers.Find(id)!, TimeSpan.Zero, CancellationToken.None);

        Assert.Empty(_f.Log.Steps);
    }

    [Fact]
    public async Task Remove_UnmountsForgetsAndReleasesTheImage_AndIsIdempotent()
    {
        var id = await CreateAsync();
        await _f.ContainerController.StartAsync(id, "", CancellationToken.None);
        var c = _f.Containers.Find(id)!;

        await _f.ContainerController.RemoveAsync(c, CancellationToken.None);
        await _f.ContainerController.RemoveAsync(c, CancellationToken.None);

        Assert.Null(_f.Containers.Find(id));
        Assert.False(Directory.Exists(_f.Containers.ContainerDir(id)), "the container's directory is still there");
        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("rootfs", StringComparison.Ordinal) || l.StartsWith("shim", StringComparison.Ordinal));
        Assert.False(_f.Usage.IsInUse(FakeImages.Id));
        Assert.Single(_f.Log.Steps, s => s == "rootfs unmount");
        // A cgroup a dead shim left is the remove's to clean up, once.
        Assert.Single(_f.Log.Steps, s => s == "remove orphaned cgroup");
    }

    [Fact]
    public async Task Remove_AfterAnExitThatUnmountedTheRootfs_DoesNotUnmountAgain_AndForgetsTheRelease()
    {
        var id = await CreateAsync();
        await _f.ContainerController.StartAsync(id, "", CancellationToken.None);
        _f.Exits.Releases[id] = new ExitRelease(Rootfs: true, Cgroup: true);

        await _f.ContainerController.RemoveAsync(_f.Containers.Find(id)!, CancellationToken.None);

        Assert.DoesNotContain("rootfs unmount", _f.Log.Steps);
        // The cgroup is still looked at: something may have been left in it (ShimDeathTests).
        Assert.Single(_f.Log.Steps, s => s == "remove orphaned cgroup");
        Assert.Empty(_f.Exits.Releases);
        Assert.Null(_f.Containers.Find(id));
        Assert.False(Directory.Exists(_f.Containers.ContainerDir(id)), "the container's directory is still there");
        Assert.False(_f.Usage.IsInUse(FakeImages.Id));
    }

    private CreateContainerRequest QuotaRequest(string quota)
    {
        var r = Request(_podId);
        r.Config.Annotations[CriRuntime.Storage.DiskQuota.ContainerAnnotationPrefix + "app"] = quota;
        return r;
    }

    [Fact]
    public async Task Create_WithADiskQuota_PutsTheWritableLayerOnAVolumeOfThatSize_AndRecordsIt()
    {
        _f.Log.Steps.Clear();

        var id = await _f.ContainerController.CreateAsync(QuotaRequest("64Mi"), Pod, CancellationToken.None);

        Assert.Equal(["volume create 67108864", "rootfs mount"], _f.Log.Named);
        var c = _f.Containers.Find(id)!;
        Assert.Equal(64UL << 20, c.Volume!.SizeBytes);
        Assert.Equal(Path.Combine(_f.Containers.ContainerDir(id), "volume"), c.Volume.MountPoint);
    }

    [Theory]
    [InlineData("rootfs mount")]
    public async Task Create_WithADiskQuota_WhenALaterStepFails_ReleasesTheVolume(string failing)
    {
        _f.Log.FailAt = failing;

        await Assert.ThrowsAnyAsync<Exception>(() => _f.ContainerController.CreateAsync(QuotaRequest("64Mi"), Pod, CancellationToken.None));

        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("volume", StringComparison.Ordinal));
        Assert.Contains("volume release", _f.Log.Steps);
    }

    [Fact]
    public async Task Create_WithAnInvalidDiskQuota_IsInvalidArgumentNamingTheAnnotation_AndMakesNothing()
    {
        var e = await Assert.ThrowsAsync<CriException>(() => _f.ContainerController.CreateAsync(QuotaRequest("lots"), Pod, CancellationToken.None));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("disk-quota.criruntime.io/container.app", e.Message);
        Assert.Empty(_f.Containers.All);
    }

    [Fact]
    public async Task Remove_ReleasesTheDiskQuotaVolume()
    {
        var id = await _f.ContainerController.CreateAsync(QuotaRequest("64Mi"), Pod, CancellationToken.None);

        await _f.ContainerController.RemoveAsync(_f.Containers.Find(id)!, CancellationToken.None);

        Assert.DoesNotContain(_f.Log.Live, l => l.StartsWith("volume", StringComparison.Ordinal));
        Assert.Single(_f.Log.Steps, s => s == "volume release");
    }
}
