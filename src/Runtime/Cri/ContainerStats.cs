using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<ContainerStatsResponse> ContainerStats(ContainerStatsRequest request, ServerCallContext context)
    {
        var c = _containers.Get(request.ContainerId);
        return Task.FromResult(new ContainerStatsResponse { Stats = CollectStats(c) });
    }

    public override Task<ListContainerStatsResponse> ListContainerStats(ListContainerStatsRequest request, ServerCallContext context)
    {
        var f = request.Filter;
        var filter = f is null ? null : new ContainerFilter { Id = f.Id, PodSandboxId = f.PodSandboxId, LabelSelector = { f.LabelSelector } };
        var response = new ListContainerStatsResponse();
        response.Stats.AddRange(FilterContainers(filter).Where(c => c.State == ContainerPhase.Running).Select(CollectStats));
        return Task.FromResult(response);
    }

    /// <summary>Usage from the container's cgroup (whatever its version) and its writable layer.</summary>
    private Cri.V1.ContainerStats CollectStats(ContainerRecord c)
    {
        var stats = new Cri.V1.ContainerStats
        {
            Attributes = new ContainerAttributes { Id = c.Id, Metadata = c.Metadata, Labels = { c.Labels }, Annotations = { c.Annotations } },
        };
        var now = NowNanos();
        if (c.State == ContainerPhase.Running && TryCgroupStats(c.CgroupsPath) is { } s)
        {
            stats.Cpu = Cpu(s, now);
            stats.Memory = Memory(s, now);
            stats.Io = Io(s, now);
            stats.Swap = new SwapUsage { Timestamp = now, SwapUsageBytes = new UInt64Value { Value = s.SwapUsageBytes } };
        }
        var (bytes, inodes) = Storage.WritableLayer.Usage(c, _containers.ContainerDir(c.Id), _volumes);
        stats.WritableLayer = new FilesystemUsage
        {
            Timestamp = now,
            FsId = new FilesystemIdentifier { Mountpoint = c.Volume?.MountPoint ?? _containers.ContainerDir(c.Id) },
            UsedBytes = new UInt64Value { Value = bytes },
            InodesUsed = new UInt64Value { Value = inodes },
        };
        return stats;
    }

    private static CpuUsage Cpu(CgroupStats s, long now) =>
        new() { Timestamp = now, UsageCoreNanoSeconds = new UInt64Value { Value = s.CpuUsageNanos }, Psi = Psi(s.CpuPressure) };

    /// <summary>Only PSI so far; absent (not zero) where the kernel keeps no PSI for the cgroup.</summary>
    private static IoUsage? Io(CgroupStats s, long now) => s.IoPressure is null ? null : new IoUsage { Timestamp = now, Psi = Psi(s.IoPressure) };

    private static PsiStats? Psi(Cgroups.Pressure? p) => p is null ? null : new PsiStats { Some = Psi(p.Some), Full = Psi(p.Full) };

    private static PsiData? Psi(Cgroups.PsiLine? l) =>
        l is null ? null : new PsiData { Total = l.TotalMicros, Avg10 = l.Avg10, Avg60 = l.Avg60, Avg300 = l.Avg300 };

    private static MemoryUsage Memory(CgroupStats s, long now)
    {
        var m = new MemoryUsage
        {
            Timestamp = now,
            WorkingSetBytes = new UInt64Value { Value = s.MemoryWorkingSetBytes },
            UsageBytes = new UInt64Value { Value = s.MemoryUsageBytes },
            RssBytes = new UInt64Value { Value = s.MemoryRssBytes },
            Psi = Psi(s.MemoryPressure),
        };
        if (s.MemoryLimitBytes is > 0 and < ulong.MaxValue)
            m.AvailableBytes = new UInt64Value { Value = s.MemoryLimitBytes > s.MemoryWorkingSetBytes ? s.MemoryLimitBytes - s.MemoryWorkingSetBytes : 0 };
        return m;
    }

    /// <summary>Stats of a cgroup, or null when it is gone (the container just exited).</summary>
    private static CgroupStats? TryCgroupStats(string path)
    {
        try { return CgroupManagers.Create(path).Stats(); }
        catch (IOException) { return null; }
    }
}
