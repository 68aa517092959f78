using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<ListContainersResponse> ListContainers(ListContainersRequest request, ServerCallContext context)
    {
        var response = new ListContainersResponse();
        response.Containers.AddRange(FilterContainers(request.Filter).Select(ToContainer));
        return Task.FromResult(response);
    }

    private IEnumerable<ContainerRecord> FilterContainers(ContainerFilter? f)
    {
        IEnumerable<ContainerRecord> all = _containers.All.OrderBy(c => c.CreatedAtNanos);
        if (f is null) return all;
        if (f.Id.Length > 0) all = all.Where(c => c.Id.StartsWith(f.Id, StringComparison.Ordinal));
        if (f.PodSandboxId.Length > 0) all = all.Where(c => c.PodId.StartsWith(f.PodSandboxId, StringComparison.Ordinal));
        if (f.State is not null) all = all.Where(c => ToCri(c.State) == f.State.State);
        if (f.LabelSelector.Count > 0)
            all = all.Where(c => f.LabelSelector.All(kv => c.Labels.TryGetValue(kv.Key, out var v) && v == kv.Value));
        return all;
    }

    private static Container ToContainer(ContainerRecord c)
    {
        var item = new Container
        {
            Id = c.Id,
            PodSandboxId = c.PodId,
            Metadata = c.Metadata,
            Image = new ImageSpec { Image = c.ImageRef },
            ImageRef = c.ImageId,
            ImageId = c.ImageId,
            State = ToCri(c.State),
            CreatedAt = c.CreatedAtNanos,
        };
        item.Labels.Add(c.Labels);
        item.Annotations.Add(c.Annotations);
        return item;
    }
}
