using CriRuntime.Cri.V1;
using CriRuntime.Namespaces;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<PodSandboxStatsResponse> PodSandboxStats(PodSandboxStatsRequest request, ServerCallContext context)
    {
        var pod = _pods.Get(request.PodSandboxId);
        return Task.FromResult(new PodSandboxStatsResponse { Stats = CollectPodStats(pod) });
    }

    public override Task<ListPodSandboxStatsResponse> ListPodSandboxStats(ListPodSandboxStatsRequest request, ServerCallContext context)
    {
        var f = request.Filter;
        var filter = f is null ? null : new PodSandboxFilter { Id = f.Id, LabelSelector = { f.LabelSelector } };
        var response = new ListPodSandboxStatsResponse();
        response.Stats.AddRange(FilterPods(filter).Where(p => p.State == PodState.Ready).Select(CollectPodStats));
        return Task.FromResult(response);
    }

    /// <summary>The pod cgroup's usage (all its containers), its network interfaces read from inside
    /// its network namespace, and each container's own stats.</summary>
    private Cri.V1.PodSandboxStats CollectPodStats(PodSandboxRecord pod)
    {
        var now = NowNanos();
        var linux = new LinuxPodSandboxStats();
        if (TryCgroupStats(pod.CgroupPath) is { } s)
        {
            linux.Cpu = Cpu(s, now);
            linux.Memory = Memory(s, now);
            linux.Io = Io(s, now);
            linux.Process = new ProcessUsage { Timestamp = now, ProcessCount = new UInt64Value { Value = s.PidsCurrent } };
        }
        if (pod.NetNs is not null && NamespacePinner.IsPinned(pod.NetNs))
        {
            var network = new NetworkUsage { Timestamp = now };
            foreach (var i in Network.NetDev.Read(pod.NetNs))
            {
                var usage = new NetworkInterfaceUsage
                {
                    Name = i.Name,
                    RxBytes = new UInt64Value { Value = i.RxBytes },
                    RxErrors = new UInt64Value { Value = i.RxErrors },
                    TxBytes = new UInt64Value { Value = i.TxBytes },
                    TxErrors = new UInt64Value { Value = i.TxErrors },
                };
                if (i.Name == Network.CniNetwork.IfName) network.DefaultInterface = usage;
                else if (i.Name != "lo") network.Interfaces.Add(usage);
            }
            linux.Network = network;
        }
        linux.Containers.AddRange(_containers.InPod(pod.Id).Where(c => c.State == ContainerPhase.Running).Select(CollectStats));
        return new Cri.V1.PodSandboxStats
        {
            Attributes = new PodSandboxAttributes { Id = pod.Id, Metadata = pod.Metadata, Labels = { pod.Labels }, Annotations = { pod.Annotations } },
            Linux = linux,
        };
    }
}
