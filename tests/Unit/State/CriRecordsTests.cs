using CriRuntime.Cri.V1;
using CriRuntime.State;

namespace CriRuntime.Tests.Unit.State;

/// <summary>The typed copies of CRI messages a record keeps come back as the CRI messages they
/// were made from, every field, after a trip through the store's JSON.</summary>
public sealed class CriRecordsTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("criruntime-records-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static LinuxContainerResources Resources() => new()
    {
        CpuPeriod = 100000, CpuQuota = 50000, CpuShares = 512, MemoryLimitInBytes = 64 << 20, OomScoreAdj = 900,
        CpusetCpus = "0-1", CpusetMems = "0", MemorySwapLimitInBytes = 128 << 20,
        HugepageLimits = { new HugepageLimit { PageSize = "2MB", Limit = 4 << 20 } },
        Unified = { ["memory.high"] = "50000000" },
    };

    private static Mount AMount() => new()
    {
        ContainerPath = "/data", HostPath = "/srv/data", Readonly = true, SelinuxRelabel = true,
        Propagation = MountPropagation.PropagationHostToContainer, RecursiveReadOnly = true,
        UidMappings = { new IDMapping { HostId = 100000, ContainerId = 0, Length = 65536 } },
        GidMappings = { new IDMapping { HostId = 200000, ContainerId = 0, Length = 65536 } },
        MountOptions = { "noexec" },
        Image = new ImageSpec { Image = "sha256:" + new string('d', 64) },
        ImageSubPath = "sub",
    };

    [Fact]
    public void AContainersMountsAndResources_SurviveTheStore_AsTheCriMessagesTheyCameFrom()
    {
        var store = new ContainerStore(_root);
        store.Add(new ContainerRecord
        {
            Version = ContainerRecord.CurrentVersion, Id = new string('e', 64), PodId = "p", Name = "app", Attempt = 0, CreatedAtNanos = 1,
            Config = [], ImageId = "i", ImageRef = "r", LogPath = "l", BundleDir = "b", StateDir = "s", CgroupsPath = "/c",
            Mounts = [MountRecord.From(AMount())], Resources = ResourcesRecord.From(Resources()), UserSpecifiedImage = "busybox",
        });

        var c = new ContainerStore(_root).Find(new string('e', 64))!;

        Assert.Equal(AMount(), Assert.Single(c.Mounts).ToCri());
        Assert.Equal(Resources(), c.Resources!.ToCri());
        Assert.Equal("busybox", c.UserSpecifiedImage);
    }

    [Fact]
    public void APodsNamespaceModes_ComeBackAsTheNamespaceOptionsSent()
    {
        var options = new NamespaceOption
        {
            Network = NamespaceMode.Node, Pid = NamespaceMode.Target, Ipc = NamespaceMode.Pod, TargetId = "abc",
            UsernsOptions = new UserNamespace
            {
                Mode = NamespaceMode.Pod,
                Uids = { new IDMapping { HostId = 1 << 16, ContainerId = 0, Length = 65536 } },
                Gids = { new IDMapping { HostId = 1 << 17, ContainerId = 0, Length = 65536 } },
            },
        };

        Assert.Equal(options, NamespaceModesRecord.From(options).ToCri());
        Assert.Equal(new NamespaceOption(), NamespaceModesRecord.From(null).ToCri());
    }
}
