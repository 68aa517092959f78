using CriRuntime.Errors;
using CriRuntime.Oci;
using CriRuntime.Storage;

namespace CriRuntime.Tests.Unit.Storage;

public class IoLimitsTests
{
    private static readonly Dictionary<string, string> NoAnnotations = [];

    private static (long, long)? Devices(string d) => d switch { "rootfs" => (7, 3), "/dev/vda" => (254, 0), _ => null };

    private static LinuxResources WithUnified(string ioMax) =>
        new() { Unified = new Dictionary<string, string> { ["io.max"] = ioMax, ["memory.high"] = "100000000" } };

    [Fact]
    public void Apply_MovesIoMaxOutOfUnified_IntoBlockIoThrottles_ResolvingRootfsAndPaths()
    {
        var r = IoLimits.Apply(WithUnified("rootfs wbps=2097152 riops=100\n/dev/vda rbps=max\n8:16 wiops=50"), "u", "app", NoAnnotations, Devices)!;

        Assert.Equal(new Dictionary<string, string> { ["memory.high"] = "100000000" }, r.Unified);
        Assert.Equal([new LinuxThrottleDevice { Major = 7, Minor = 3, Rate = 2097152 }], r.BlockIo!.ThrottleWriteBpsDevice);
        Assert.Equal([new LinuxThrottleDevice { Major = 7, Minor = 3, Rate = 100 }], r.BlockIo.ThrottleReadIopsDevice);
        Assert.Equal([new LinuxThrottleDevice { Major = 254, Minor = 0, Rate = 0 }], r.BlockIo.ThrottleReadBpsDevice);
        Assert.Equal([new LinuxThrottleDevice { Major = 8, Minor = 16, Rate = 50 }], r.BlockIo.ThrottleWriteIopsDevice);
    }

    [Fact]
    public void Apply_ThePodAnnotationWins_PerDeviceAndKey()
    {
        var pod = new Dictionary<string, string> { [IoLimits.PodAnnotationPrefix + "app"] = "rootfs wbps=8388608" };

        var r = IoLimits.Apply(WithUnified("rootfs wbps=2097152 rbps=1048576"), "u", "app", pod, Devices)!;

        Assert.Equal(8388608UL, Assert.Single(r.BlockIo!.ThrottleWriteBpsDevice!).Rate);
        Assert.Equal(1048576UL, Assert.Single(r.BlockIo.ThrottleReadBpsDevice!).Rate);
    }

    [Fact]
    public void Apply_WithoutIoLimits_ChangesNothing()
    {
        var r = new LinuxResources { Unified = new Dictionary<string, string> { ["memory.high"] = "1" } };
        Assert.Same(r, IoLimits.Apply(r, "u", "app", NoAnnotations, Devices));
    }

    [Theory]
    [InlineData("rootfs wbps=fast", "config.linux.resources.unified[io.max]")]
    [InlineData("rootfs speed=1", "config.linux.resources.unified[io.max]")]
    [InlineData("/dev/nothing wbps=1", "/dev/nothing")]
    [InlineData("disk wbps=1", "'disk'")]
    [InlineData("rootfs", "names no limit")]
    public void Apply_BadEntries_AreInvalidArgumentNamingTheKey(string ioMax, string named)
    {
        var e = Assert.Throws<CriException>(() => IoLimits.Apply(WithUnified(ioMax), "config.linux.resources.unified", "app", NoAnnotations, Devices));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(named, e.Message);
    }

    [Fact]
    public void Apply_Rootfs_WithoutAVolume_IsInvalidArgumentNamingTheAnnotation()
    {
        var pod = new Dictionary<string, string> { [IoLimits.PodAnnotationPrefix + "app"] = "rootfs wbps=1" };
        var e = Assert.Throws<CriException>(() => IoLimits.Apply(null, "u", "app", pod, _ => null));
        Assert.Contains(IoLimits.PodAnnotationPrefix + "app", e.Message);
        Assert.Contains("disk quota", e.Message);
    }
}
