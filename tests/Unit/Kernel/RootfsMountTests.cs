using CriRuntime.Containers;
using CriRuntime.Interop;

namespace CriRuntime.Tests.Unit.Kernel;

/// <summary>A container's overlay root and its idmapped variant, against the recording kernel:
/// no root needed, the calls are asserted in order.</summary>
public sealed class RootfsMountTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-rootfs-").FullName;
    private readonly RecordingHostKernel _k = new();
    public void Dispose() => Directory.Delete(_dir, recursive: true);
    private string P(string name) => Path.Combine(_dir, name);

    [Fact]
    public void Mount_IsOneOverlayMount_WithTheTopLayerFirst()
    {
        RootfsMount.Mount(["/l/bottom", "/l/top"], P("upper"), P("work"), P("rootfs"), _k);

        Assert.Equal([$"mount overlay {P("rootfs")} overlay 0x0 lowerdir=/l/top:/l/bottom,upperdir={P("upper")},workdir={P("work")}"], _k.Calls);
        Assert.True(Directory.Exists(P("upper")) && Directory.Exists(P("work")) && Directory.Exists(P("rootfs")));
    }

    [Theory]
    [InlineData(Errno.EINVAL)]
    [InlineData(Errno.ENOENT)]
    public void Unmount_IsIdempotent_WhenNotMountedOrGone(int errno)
    {
        _k.Failures["umount2"] = errno;
        RootfsMount.Unmount(P("rootfs"), _k);
    }

    [Fact]
    public void Unmount_Fails_NamingThePath_WhenTheKernelRefuses()
    {
        _k.Failures["umount2"] = Errno.EBUSY;
        var e = Assert.Throws<KernelException>(() => RootfsMount.Unmount(P("rootfs"), _k));
        Assert.Equal(Errno.EBUSY, e.Errno);
        Assert.Contains(P("rootfs"), e.Message);
    }

    [Fact]
    public void IdmappedMount_ChownsUpper_IdmapsEachLayer_MountsOverlayOnThem_ThenDetachesThem()
    {
        var staging = P("idmap");
        IdmappedRootfs.Mount(["/l/0", "/l/1"], P("upper"), P("work"), P("rootfs"), "/run/pod/ns/user", staging, 200000, 200000, _k);

        Assert.Equal(
        [
            $"chown {P("upper")} 200000:200000",
            "open /run/pod/ns/user",
            "open_tree /l/0 clone; mount_setattr idmap",
            $"move_mount tree {staging}/0",
            "open_tree /l/1 clone; mount_setattr idmap",
            $"move_mount tree {staging}/1",
            $"mount overlay {P("rootfs")} overlay 0x0 lowerdir={staging}/1:{staging}/0,upperdir={P("upper")},workdir={P("work")}",
            $"umount2 {staging}/0 2",
            $"umount2 {staging}/1 2",
        ], _k.Calls);
        Assert.False(Directory.Exists(staging));
    }

    [Fact]
    public void IdmappedMount_DetachesWhatWasStaged_WhenTheOverlayMountFails()
    {
        var staging = P("idmap");
        _k.Failures["mount overlay"] = Errno.EINVAL;

        Assert.Throws<KernelException>(() =>
            IdmappedRootfs.Mount(["/l/0"], P("upper"), P("work"), P("rootfs"), "/run/pod/ns/user", staging, 1, 1, _k));

        Assert.Equal($"umount2 {staging}/0 2", _k.Calls[^1]);
        Assert.False(Directory.Exists(staging));
    }
}
