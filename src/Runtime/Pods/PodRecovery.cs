using CriRuntime.Config;
using CriRuntime.Namespaces;
using CriRuntime.Network;
using CriRuntime.State;

namespace CriRuntime.Pods;

/// <summary>Runs once at start, before serving: whatever a crash left half-made is removed
/// (namespace pins, pod inits and directories without a pod record, network attachments of
/// pods that never got recorded), and pods whose pinned namespaces (or pod init) vanished (a
/// reboot clears /run) are marked NotReady so the kubelet recreates them.</summary>
public sealed partial class PodRecovery(CriRuntimeConfig config, PodSandboxStore pods, CniNetwork network, Storage.IWritableVolumes volumes, ILogger<PodRecovery> log)
{
    public async Task RunAsync(CancellationToken ct)
    {
        var known = pods.All.Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
        foreach (var podId in network.AttachedPods().Where(id => !known.Contains(id)).ToList())
        {
            try
            {
                await network.TearDownAsync(podId, ct);
                LogSwept("network attachment", podId);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogSweepFailed(e, "network attachment", podId);
            }
        }
        foreach (var (pid, podId) in PodInit.Running(config.State).Where(p => !known.Contains(p.PodId)).ToList())
        {
            try
            {
                var cgroup = PodInit.CgroupOf(pid);
                await PodInit.StopAsync(pid, podId, config.State);
                if (cgroup is not null)
                {
                    Cgroups.CgroupManagers.Create(cgroup).Destroy();
                    // Its parent is the pod cgroup: ours to remove unless the kubelet gave it.
                    var parent = cgroup[..cgroup.LastIndexOf('/')];
                    if (parent == PodSandboxStore.CgroupPathFor(podId, "", config.Runtime.CgroupRoot)) Cgroups.CgroupManagers.Create(parent).Destroy();
                }
                LogSwept("pod init", podId);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                LogSweepFailed(e, "pod init", podId);
            }
        }
        var stateDir = Path.Combine(config.State, "pods");
        foreach (var dir in Directory.Exists(stateDir) ? Directory.GetDirectories(stateDir) : [])
        {
            var id = Path.GetFileName(dir);
            if (known.Contains(id)) continue;
            foreach (var ns in new[] { "net", "ipc", "uts", "pid", "user" }) NamespacePinner.Unpin(Path.Combine(dir, "ns", ns));
            Directory.Delete(dir, recursive: true);
            LogSwept("namespace pins", id);
        }
        foreach (var dir in pods.Orphans().ToList())
        {
            // A half-made pod's disk-quota volume: unmounted first, or the delete would empty it
            // and then fail on its mount point.
            var volume = Path.Combine(dir, Storage.FileVolumes.MountName);
            if (Directory.Exists(volume)) volumes.Unmount(volume);
            PodShm.Unmount(Kernel.HostKernel.Instance, dir);
            Directory.Delete(dir, recursive: true);
            LogSwept("pod directory", Path.GetFileName(dir));
        }
        foreach (var pod in pods.All.Where(p => p.State == PodState.Ready))
        {
            var pins = new[] { pod.NetNs, pod.IpcNs, pod.UtsNs, pod.PidNs, pod.UserNs }.Where(p => p is not null);
            // A shared pid namespace also needs its pid 1: once that is gone no process can start in it.
            var initAlive = pod.PodInitPid is not { } initPid || PodInit.IsRunning(initPid, pod.Id, config.State);
            if (initAlive && pins.All(p => NamespacePinner.IsPinned(p!))) continue;
            pods.Transition(pod.Id, PodState.NotReady);
            LogLostNamespaces(pod.Id);
        }
    }

    [LoggerMessage(EventId = 400, Level = LogLevel.Information, Message = "recovery: removed the {What} of half-created pod {PodId}")]
    private partial void LogSwept(string what, string podId);

    [LoggerMessage(EventId = 401, Level = LogLevel.Warning, Message = "recovery: could not remove the {What} of half-created pod {PodId}")]
    private partial void LogSweepFailed(Exception e, string what, string podId);

    [LoggerMessage(EventId = 402, Level = LogLevel.Warning, Message = "recovery: pod {PodId} lost its namespaces (reboot?); marked NotReady")]
    private partial void LogLostNamespaces(string podId);
}
