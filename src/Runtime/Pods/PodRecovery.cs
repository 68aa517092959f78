using CriRuntime.Config;
using CriRuntime.Namespaces;
using CriRuntime.Network;
using CriRuntime.State;

namespace CriRuntime.Pods;

/// <summary>Runs once at start, before serving: whatever a crash left half-made is removed
/// (namespace pins and directories without a pod record, network attachments of pods that
/// never got recorded), and pods whose pinned namespaces vanished (a reboot clears /run) are
/// marked NotReady so the kubelet recreates them.</summary>
public sealed partial class PodRecovery(CriRuntimeConfig config, PodSandboxStore pods, CniNetwork network, ILogger<PodRecovery> log)
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
        var stateDir = Path.Combine(config.State, "pods");
        foreach (var dir in Directory.Exists(stateDir) ? Directory.GetDirectories(stateDir) : [])
        {
            var id = Path.GetFileName(dir);
            if (known.Contains(id)) continue;
            foreach (var ns in new[] { "net", "ipc", "uts" }) NamespacePinner.Unpin(Path.Combine(dir, "ns", ns));
            Directory.Delete(dir, recursive: true);
            LogSwept("namespace pins", id);
        }
        foreach (var dir in pods.Orphans().ToList())
        {
            Directory.Delete(dir, recursive: true);
            LogSwept("pod directory", Path.GetFileName(dir));
        }
        foreach (var pod in pods.All.Where(p => p.State == PodState.Ready))
        {
            var pins = new[] { pod.NetNs, pod.IpcNs, pod.UtsNs }.Where(p => p is not null);
            if (pins.All(p => NamespacePinner.IsPinned(p!))) continue;
            pods.Save(pod with { State = PodState.NotReady });
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
