using CriRuntime.Cri.V1;
using CriRuntime.Namespaces;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    /// <summary>Removes a pod and everything it owned (stopping it first if needed). Idempotent.</summary>
    public override async Task<RemovePodSandboxResponse> RemovePodSandbox(RemovePodSandboxRequest request, ServerCallContext context)
    {
        var pod = _pods.TryGet(request.PodSandboxId);
        if (pod is null) return new RemovePodSandboxResponse();
        using (await _pods.LockAsync(pod.Id, context.CancellationToken))
        {
            pod = _pods.Find(pod.Id);
            if (pod is null) return new RemovePodSandboxResponse();
            await StopPodLockedAsync(pod, context.CancellationToken);
            foreach (var c in _containers.InPod(pod.Id).ToList())
                await RemoveContainerAsync(c, context.CancellationToken);
            var podConfig = PodSandboxConfig.Parser.ParseFrom(pod.Config);
            if (pod.PodInitPid is not null) Cgroups.CgroupManagers.Create(PodInitCgroup(pod, podConfig)).Destroy();
            // The pod cgroup is ours only when the kubelet gave no parent (it manages its own).
            if (string.IsNullOrEmpty(podConfig.Linux?.CgroupParent))
                Cgroups.CgroupManagers.Create(PodCgroup(pod, podConfig)).Destroy();
            foreach (var ns in new[] { pod.NetNs, pod.IpcNs, pod.UtsNs, pod.PidNs, pod.UserNs })
                if (ns is not null) NamespacePinner.Unpin(ns);
            var stateDir = Path.Combine(_config.State, "pods", pod.Id);
            if (Directory.Exists(stateDir)) Directory.Delete(stateDir, recursive: true);
            _pods.Delete(pod.Id);
        }
        return new RemovePodSandboxResponse();
    }
}
