using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<ListPodSandboxResponse> ListPodSandbox(ListPodSandboxRequest request, ServerCallContext context)
    {
        var response = new ListPodSandboxResponse();
        response.Items.AddRange(FilterPods(request.Filter).Select(ToPodSandbox));
        return Task.FromResult(response);
    }

    private IEnumerable<PodSandboxRecord> FilterPods(PodSandboxFilter? filter)
    {
        IEnumerable<PodSandboxRecord> pods = _pods.All.OrderBy(p => p.CreatedAtNanos);
        if (filter is null) return pods;
        if (filter.Id.Length > 0) pods = pods.Where(p => p.Id.StartsWith(filter.Id, StringComparison.Ordinal));
        if (filter.State is not null)
        {
            var want = filter.State.State == PodSandboxState.SandboxReady ? PodState.Ready : PodState.NotReady;
            pods = pods.Where(p => p.State == want);
        }
        if (filter.LabelSelector.Count > 0)
        {
            pods = pods.Where(p => filter.LabelSelector.All(kv => p.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value));
        }
        return pods;
    }

    private static PodSandbox ToPodSandbox(PodSandboxRecord p)
    {
        var item = new PodSandbox
        {
            Id = p.Id,
            Metadata = p.Metadata,
            State = p.State == PodState.Ready ? PodSandboxState.SandboxReady : PodSandboxState.SandboxNotready,
            CreatedAt = p.CreatedAtNanos,
            RuntimeHandler = p.RuntimeHandler,
        };
        item.Labels.Add(p.Labels);
        item.Annotations.Add(p.Annotations);
        return item;
    }
}
