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

    private static SelectedBlockioClass Class(string yaml) =>
        new(BlockioClasses.Parse("Classes:\n  c:\n" + yaml, "/etc/b.yaml").Classes["c"], BlockioClasses.ContainerAnnotation, "/etc/b.yaml");

    [Fact]
    public void Apply_Class_ThenUnified_ThenPodAnnotation_LaterWinsPerDeviceAndKey()
    {
        var cls = Class("""
                - Weight: 300
                - Devices: [rootfs]
                  ThrottleWriteBps: 2Mi
                  ThrottleReadBps: 1Mi
                  ThrottleReadIOPS: 10
            """);
        var pod = new Dictionary<string, string> { [IoLimits.PodAnnotationPrefix + "app"] = "rootfs riops=30" };

        var r = IoLimits.Apply(WithUnified("rootfs rbps=4194304"), "u", "app", pod, Devices, cls)!;

        Assert.Equal((ushort)300, r.BlockIo!.Weight);
        Assert.Equal(2UL << 20, Assert.Single(r.BlockIo.ThrottleWriteBpsDevice!).Rate); // class
        Assert.Equal(4UL << 20, Assert.Single(r.BlockIo.ThrottleReadBpsDevice!).Rate); // unified over class
        Assert.Equal(30UL, Assert.Single(r.BlockIo.ThrottleReadIopsDevice!).Rate); // annotation over class
        Assert.Equal(new Dictionary<string, string> { ["memory.high"] = "100000000" }, r.Unified);
    }

    [Fact]
    public void Apply_ClassOnly_GivesBlockIoWithoutAnyUnifiedMap()
    {
        var r = IoLimits.Apply(null, "u", "app", NoAnnotations, Devices, Class("    - Devices: [\"/dev/vda\"]\n      ThrottleWriteIOPS: 1k\n"))!;

        Assert.Equal([new LinuxThrottleDevice { Major = 254, Minor = 0, Rate = 1000 }], r.BlockIo!.ThrottleWriteIopsDevice);
        Assert.Null(r.Unified);
    }

    [Fact]
    public void Apply_ClassPatterns_CoverEveryMatchingBlockDevice_AndMayMatchNone()
    {
        var cls = Class("    - Devices: [/dev/vd*, /dev/sd*]\n      ThrottleReadBps: 1M\n");
        IEnumerable<string> Expand(string p) => p == "/dev/vd*" ? ["/dev/vda", "/dev/vda-not-a-device"] : [];

        var r = IoLimits.Apply(null, "u", "app", NoAnnotations, Devices, cls, Expand)!;

        Assert.Equal([new LinuxThrottleDevice { Major = 254, Minor = 0, Rate = 1_000_000 }], r.BlockIo!.ThrottleReadBpsDevice);
    }

    [Fact]
    public void Apply_AClassDeviceThatIsNoBlockDevice_IsInvalidArgumentNamingTheAnnotationAndClass()
    {
        var e = Assert.Throws<CriException>(() => IoLimits.Apply(null, "u", "app", NoAnnotations, Devices, Class("    - Devices: [/dev/sdz]\n      ThrottleReadBps: 1M\n")));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(BlockioClasses.ContainerAnnotation, e.Message);
        Assert.Contains("blockio class c", e.Message);
        Assert.Contains("/dev/sdz", e.Message);
    }

    [Fact]
    public void Apply_IoWeight_SetsTheDefaultAndDeviceWeights_OnTheOciScale()
    {
        var r = IoLimits.Apply(new LinuxResources { Unified = new Dictionary<string, string> { ["io.weight"] = "default 100\nrootfs 10000" } },
            "u", "app", NoAnnotations, Devices, scheduler: (_, _) => "bfq")!;

        Assert.Equal((ushort)20, r.BlockIo!.Weight); // 10 + 99*990/9999: the v2 manager writes ~100 back
        Assert.Equal([new LinuxWeightDevice { Major = 7, Minor = 3, Weight = 1000 }], r.BlockIo.WeightDevice);
        Assert.Null(r.Unified);
    }

    [Theory]
    [InlineData("default 0")]
    [InlineData("default 10001")]
    [InlineData("rootfs heavy")]
    [InlineData("a b c")]
    public void Apply_BadIoWeight_IsInvalidArgumentNamingTheKey(string weight)
    {
        var e = Assert.Throws<CriException>(() => IoLimits.Apply(new LinuxResources { Unified = new Dictionary<string, string> { ["io.weight"] = weight } },
            "linux.unified", "app", NoAnnotations, Devices));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("linux.unified[io.weight]", e.Message);
    }

    [Fact]
    public void Apply_ADeviceWeight_WhereBfqDoesNotSchedule_IsInvalidArgumentSayingWhy()
    {
        var cls = Class("    - Devices: [\"/dev/vda\"]\n      Weight: 50\n");

        var e = Assert.Throws<CriException>(() => IoLimits.Apply(null, "u", "app", NoAnnotations, Devices, cls, scheduler: (_, _) => "mq-deadline"));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("needs the bfq I/O scheduler", e.Message);
        Assert.Contains("mq-deadline", e.Message);
        Assert.Contains("blockio class c", e.Message);
    }

    [Fact]
    public void Apply_MajorMinor_GoesThroughTheResolver_SoAPartitionBecomesItsDisk()
    {
        (long, long)? Resolve(string d) => d == "8:1" ? (8, 0) : null;

        var r = IoLimits.Apply(WithUnified("8:1 wbps=1\n8:16 wbps=2"), "u", "app", NoAnnotations, Resolve)!;

        Assert.Equal([new LinuxThrottleDevice { Major = 8, Minor = 0, Rate = 1 }, new LinuxThrottleDevice { Major = 8, Minor = 16, Rate = 2 }], r.BlockIo!.ThrottleWriteBpsDevice);
    }

    [Fact]
    public void PodLimits_ReadThePodWideAnnotation()
    {
        var pod = new Dictionary<string, string> { [IoLimits.PodWideAnnotation] = "/dev/vda wbps=1048576" };

        var b = IoLimits.PodLimits(pod, Devices)!;

        Assert.Equal([new LinuxThrottleDevice { Major = 254, Minor = 0, Rate = 1048576 }], b.ThrottleWriteBpsDevice);
        Assert.Null(IoLimits.PodLimits(NoAnnotations, Devices));
    }
}
