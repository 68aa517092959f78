using CriRuntime.Config;

namespace CriRuntime.Pods;

/// <summary>The pod init of pods with a shared pid namespace (see <see cref="PodInit"/>), behind an
/// interface so the pod controller's unit tests need no process.</summary>
public interface IPodInit
{
    Task<int> StartAsync(string podId, string? userNs, CancellationToken ct);
    /// <summary>Idempotent: an init that already exited (or a reused pid) is left alone.</summary>
    Task StopAsync(int pid, string podId);
    bool IsRunning(int pid, string podId);
}

/// <summary>The real pod init processes, tracked below the daemon's state directory.</summary>
public sealed class PodInitProcesses(CriRuntimeConfig config) : IPodInit
{
    public Task<int> StartAsync(string podId, string? userNs, CancellationToken ct) => PodInit.StartAsync(podId, config.State, userNs, ct);
    public Task StopAsync(int pid, string podId) => PodInit.StopAsync(pid, podId, config.State);
    public bool IsRunning(int pid, string podId) => PodInit.IsRunning(pid, podId, config.State);
}
