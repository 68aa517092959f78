using CriRuntime.Config;
using CriRuntime.Errors;

namespace CriRuntime.PartitionView;

/// <summary>Whether a pod's containers see the partition's own /proc (lxcfs): the pod's
/// annotation decides first ("true" or "false"), then its runtime handler's proc_view, then the
/// node-wide [partition_view] proc.</summary>
public static class ProcView
{
    public const string Annotation = "partition-view.criruntime.io/proc";

    /// <summary>The files lxcfs serves that a container gets over its own, read-only: relative to
    /// the lxcfs mount and to the container's root alike.</summary>
    public static readonly IReadOnlyList<string> Files =
    [
        "proc/cpuinfo", "proc/diskstats", "proc/loadavg", "proc/meminfo", "proc/stat", "proc/swaps", "proc/uptime",
        "sys/devices/system/cpu/online",
    ];

    /// <exception cref="CriException">InvalidArgument naming the annotation when its value is
    /// neither "true" nor "false".</exception>
    public static bool Wanted(IReadOnlyDictionary<string, string> podAnnotations, string runtimeHandler, CriRuntimeConfig config, string field = "config.annotations")
    {
        if (podAnnotations.TryGetValue(Annotation, out var value))
        {
            return value switch
            {
                "true" => true,
                "false" => false,
                _ => throw Fail.InvalidArgument($"{field}[{Annotation}]: '{value}' must be \"true\" or \"false\""),
            };
        }
        if (runtimeHandler.Length > 0 && config.Runtime.Handlers.TryGetValue(runtimeHandler, out var h) && h.ProcView) return true;
        return config.PartitionView.Proc;
    }
}

/// <summary>What container creation asks of the /proc view: the lxcfs mount to bind its files
/// from, or FailedPrecondition saying why there is none.</summary>
public interface IProcViewSource
{
    /// <exception cref="CriException">FailedPrecondition when lxcfs is not installed or not healthy.</exception>
    string RequireMount();
}
