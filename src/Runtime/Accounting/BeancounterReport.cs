using CriRuntime.Cgroups;
using CriRuntime.Config;
using CriRuntime.Server;
using CriRuntime.State;

namespace CriRuntime.Accounting;

/// <summary>`criruntime beancounters [POD]`: the beancounters of every pod the daemon's records
/// know (or of one, by id, id prefix or name), the pod's cgroup first, then each of its
/// containers'. Read from the records and the cgroup files directly: it works whether or not a
/// daemon serves, and never changes anything.</summary>
public static class BeancounterReport
{
    public static string For(CriRuntimeConfig config, string? pod)
    {
        var pods = new PodSandboxStore(config.Root, config.Runtime.CgroupRoot).All
            .Where(p => pod is null || p.Id.StartsWith(pod, StringComparison.Ordinal) || p.Name == pod)
            .OrderBy(p => p.CreatedAtNanos).ToList();
        if (pod is not null && pods.Count == 0) throw new StartupException($"beancounters: no pod {pod}");
        var containers = new ContainerStore(config.Root);
        var layout = CgroupLayout.Detect();
        var sizes = Beancounters.HugePageSizes();
        var sb = new System.Text.StringBuilder("Version: criruntime beancounters 1 (held, maxheld, limit, failcnt; docs/partition-view.md)\n");
        foreach (var p in pods)
        {
            sb.Append(Beancounters.Format($"pod {p.Id} ({p.Namespace}/{p.Name}) cgroup {p.CgroupPath}", Beancounters.Read(layout, p.CgroupPath, BeancounterSource.ReadFile, sizes)));
            foreach (var c in containers.InPod(p.Id).Where(c => c.State is ContainerPhase.Created or ContainerPhase.Running).OrderBy(c => c.CreatedAtNanos))
                sb.Append(Beancounters.Format($"container {c.Id} ({c.Name}) cgroup {c.CgroupsPath}", Beancounters.Read(layout, c.CgroupsPath, BeancounterSource.ReadFile, sizes)));
        }
        return sb.ToString();
    }
}
