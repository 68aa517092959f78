using CriRuntime.Accounting;
using CriRuntime.Cgroups;
using CriRuntime.Cri.V1;
using CriRuntime.Metrics;
using CriRuntime.Namespaces;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<ListMetricDescriptorsResponse> ListMetricDescriptors(ListMetricDescriptorsRequest request, ServerCallContext context) =>
        Task.FromResult(new ListMetricDescriptorsResponse { Descriptors = { CadvisorMetrics.Descriptors() } });

    /// <summary>cAdvisor-style samples of every ready pod: the pod cgroup and network namespace,
    /// and each running container's cgroup and writable layer, and the beancounters of each cgroup.
    /// See <see cref="CadvisorMetrics"/>.</summary>
    public override Task<ListPodSandboxMetricsResponse> ListPodSandboxMetrics(ListPodSandboxMetricsRequest request, ServerCallContext context)
    {
        var response = new ListPodSandboxMetricsResponse();
        response.PodMetrics.AddRange(_pods.All.Where(p => p.State == PodState.Ready).Select(CollectPodMetrics));
        return Task.FromResult(response);
    }

    public override async Task StreamPodSandboxMetrics(StreamPodSandboxMetricsRequest request, IServerStreamWriter<StreamPodSandboxMetricsResponse> responseStream, ServerCallContext context)
    {
        var list = await ListPodSandboxMetrics(new ListPodSandboxMetricsRequest(), context);
        foreach (var chunk in list.PodMetrics.Chunk(StreamBatch))
            await responseStream.WriteAsync(new StreamPodSandboxMetricsResponse { PodSandboxMetrics = { chunk } }, context.CancellationToken);
    }

    private PodSandboxMetrics CollectPodMetrics(PodSandboxRecord pod)
    {
        var now = NowNanos();
        var result = new PodSandboxMetrics { PodSandboxId = pod.Id };
        foreach (var c in _containers.InPod(pod.Id).Where(c => c.State == ContainerPhase.Running))
        {
            var samples = new CadvisorMetrics.Samples([c.Name, c.Id, c.ImageRef, pod.Namespace, pod.Name], now);
            var cgroup = CgroupManagers.Create(c.CgroupsPath);
            try
            {
                samples.AddCgroup(cgroup.Stats());
                samples.Add("container_processes", (ulong)cgroup.Processes().Count);
            }
            catch (IOException) { continue; } // exited between the listing and the read
            samples.AddBeancounters(BeancounterSource.Host.Read(c.CgroupsPath));
            var (bytes, inodes) = Containers.DiskUsage.Measure(Path.Combine(_containers.ContainerDir(c.Id), "upper"));
            samples.Add("container_fs_usage_bytes", bytes);
            samples.Add("container_fs_inodes_used", inodes);
            samples.Add("container_start_time_seconds", (ulong)(c.StartedAtNanos / 1_000_000_000));
            result.ContainerMetrics.Add(new ContainerMetrics { ContainerId = c.Id, Metrics = { samples.Metrics } });
        }
        // The pod's cgroup after its containers': its counters then never read below their sum.
        var podSamples = new CadvisorMetrics.Samples(["", pod.Id, "", pod.Namespace, pod.Name], now);
        if (TryCgroupStats(pod.CgroupPath) is { } s) podSamples.AddCgroup(s);
        podSamples.AddBeancounters(BeancounterSource.Host.Read(pod.CgroupPath));
        if (pod.NetNs is not null && NamespacePinner.IsPinned(pod.NetNs)) podSamples.AddNetwork(Network.NetDev.Read(pod.NetNs));
        result.Metrics.AddRange(podSamples.Metrics);
        return result;
    }
}
