using CriRuntime.Cri.V1;
using CriRuntime.Namespaces;
using CriRuntime.Pods;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Stops every container of the pod and releases its network. Idempotent: an unknown
    /// or already stopped pod is success, and teardown is attempted again each time until it worked.</summary>
    public override async Task<StopPodSandboxResponse> StopPodSandbox(StopPodSandboxRequest request, ServerCallContext context)
    {
        var pod = _pods.TryGet(request.PodSandboxId);
        if (pod is null) return new StopPodSandboxResponse();
        using (await _pods.LockAsync(pod.Id, context.CancellationToken))
        {
            pod = _pods.Find(pod.Id);
            if (pod is null) return new StopPodSandboxResponse();
            await StopPodLockedAsync(pod, context.CancellationToken);
        }
        return new StopPodSandboxResponse();
    }

    private async Task StopPodLockedAsync(PodSandboxRecord pod, CancellationToken ct)
    {
        // NotReady, durably, before anything is torn down (as containerd and CRI-O do): a crash at
        // any later point leaves a pod reported NotReady, never a Ready one whose network (and IP,
        // back in the pool) is gone; the kubelet's retried stop or remove finishes the teardown,
        // each step of which is idempotent.
        if (pod.State != PodState.NotReady)
            _pods.Save(pod with { State = PodState.NotReady });
        // Containers first (killed: the kubelet has already given them their grace period).
        foreach (var c in _containers.InPod(pod.Id).ToList())
            await StopContainerAsync(c, TimeSpan.Zero, ct);
        // Then the pod init (the kernel kills whatever is left in the shared pid namespace with it).
        if (pod.PodInitPid is { } initPid) await PodInit.StopAsync(initPid, pod.Id, _config.State);
        if (pod.PidNs is not null) NamespacePinner.Unpin(pod.PidNs);
        if (pod.NetNs is not null)
        {
            await _network.TearDownAsync(pod.Id, ct);
            Testing.FaultPoints.Crash(Testing.FaultPoints.StopPodSandboxAfterNetworkTeardown);
            NamespacePinner.Unpin(pod.NetNs);
        }
    }
}
