using CriRuntime.Containers;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Pods;

namespace CriRuntime.Tests.Unit.Pods;

/// <summary>The per-pod limits the CRI does not carry, by annotation: parsed, checked (a bad value
/// is InvalidArgument naming the annotation) and put into the container's OCI spec.</summary>
public class PartitionLimitsTests
{
    private static Dictionary<string, string> A(params (string K, string V)[] kv) => kv.ToDictionary(x => x.K, x => x.V);

    private static void Refused(Action a, string annotation)
    {
        var e = Assert.Throws<CriException>(a);
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(annotation, e.Message);
    }

    [Fact]
    public void PodPids_IsTheAnnotationsNumber_OrNone()
    {
        Assert.Equal(64, PartitionLimits.PodPids(A(("pids-limit.criruntime.io/pod", "64"))));
        Assert.Null(PartitionLimits.PodPids(A()));
        foreach (var bad in new[] { "0", "-1", "ten", "64k", "99999999" })
            Refused(() => PartitionLimits.PodPids(A(("pids-limit.criruntime.io/pod", bad))), "pids-limit.criruntime.io/pod");
    }

    [Fact]
    public void ShmBytes_IsAQuantity_DefaultingTo64Mi()
    {
        Assert.Equal(16UL << 20, PartitionLimits.ShmBytes(A(("shm-size.criruntime.io/pod", "16Mi"))));
        Assert.Equal(64UL << 20, PartitionLimits.ShmBytes(A()));
        foreach (var bad in new[] { "0", "1k", "lots", "-5Mi" })
            Refused(() => PartitionLimits.ShmBytes(A(("shm-size.criruntime.io/pod", bad))), "shm-size.criruntime.io/pod");
    }

    [Fact]
    public void Nofile_ContainersOwnAnnotationWins_OverThePods_WithinTheRuntimesHardLimit()
    {
        var pod = A(("nofile-limit.criruntime.io/container.web", "100:200"));
        Assert.Equal((100UL, 200UL), PartitionLimits.Nofile("web", A(), pod, () => 1024));
        Assert.Equal((50UL, 50UL), PartitionLimits.Nofile("web", A(("nofile-limit.criruntime.io/container.web", "50")), pod, () => 1024));
        Assert.Null(PartitionLimits.Nofile("db", A(), pod, () => 1024));
        foreach (var bad in new[] { "2048", "10:2048", "200:100", "0", "a:b", "1:2:3", "" })
            Refused(() => PartitionLimits.Nofile("web", A(), A(("nofile-limit.criruntime.io/container.web", bad)), () => 1024), "nofile-limit.criruntime.io/container.web");
    }

    [Fact]
    public void ValidatePod_ChecksEveryContainersNofileAnnotation()
    {
        PartitionLimits.ValidatePod(A(("nofile-limit.criruntime.io/container.a", "10"), ("other", "x")), () => 1024);
        Refused(() => PartitionLimits.ValidatePod(A(("nofile-limit.criruntime.io/container.b", "4096")), () => 1024), "nofile-limit.criruntime.io/container.b");
        Refused(() => PartitionLimits.ValidatePod(A(("nofile-limit.criruntime.io/container.", "10")), () => 1024), "nofile-limit.criruntime.io/container.");
    }

    [Fact]
    public void RuntimeHard_IsTheHardColumnOfProcSelfLimits()
    {
        const string limits = "Limit                     Soft Limit           Hard Limit           Units     \n" +
            "Max processes             63471                63471                processes \nMax open files            1024                 524288               files     \n";
        Assert.Equal(524288UL, PartitionLimits.ParseLimitsHard(limits, "Max open files"));
        Assert.Equal(ulong.MaxValue, PartitionLimits.ParseLimitsHard("Max open files  unlimited  unlimited  files\n", "Max open files"));
        Assert.True(PartitionLimits.RuntimeNofileHard() >= 1024);
    }

    private static SpecInput Input((ulong, ulong)? nofile, ulong? shm) => new()
    {
        ContainerId = "c1",
        Config = new ContainerConfig { Metadata = new ContainerMetadata { Name = "c" }, Image = new ImageSpec { Image = "busybox" }, Command = { "sleep", "1" } },
        PodConfig = new PodSandboxConfig { Metadata = new PodSandboxMetadata { Name = "p", Namespace = "n", Uid = "u" } },
        User = new UserResolver.Resolved(0, 0, [], null),
        PodDir = "/run/criruntime-test/pod",
        CgroupsPath = "/criruntime/p/c1",
        RuntimeCapabilities = SpecBuilder.AllCapabilities,
        Nofile = nofile,
        ShmBytes = shm ?? PartitionLimits.DefaultShmBytes,
    };

    [Fact]
    public void Spec_CarriesNofileAsAnRlimit_AndTheShmSizeOnDevShm()
    {
        var spec = SpecBuilder.Build(Input((100, 200), 16UL << 20));
        var rlimit = Assert.Single(spec.Process!.Rlimits!);
        Assert.Equal(("RLIMIT_NOFILE", 100UL, 200UL), (rlimit.Type, rlimit.Soft, rlimit.Hard));
        Assert.Contains("size=16384k", spec.Mounts!.Single(m => m.Destination == "/dev/shm").Options!);

        var plain = SpecBuilder.Build(Input(null, null));
        Assert.Null(plain.Process!.Rlimits);
        Assert.Contains("size=65536k", plain.Mounts!.Single(m => m.Destination == "/dev/shm").Options!);
        Assert.Equal("size=5000", SpecBuilder.ShmSize(5000));
    }
}
