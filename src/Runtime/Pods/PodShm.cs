using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Pods;

/// <summary>The pod's /dev/shm: one tmpfs per pod (PODDIR/shm, mode 1777, the size of the
/// <see cref="PartitionLimits.ShmAnnotation"/> annotation, else 64 MiB), mounted at RunPodSandbox
/// and bound into every container of the pod, as containerd and CRI-O do: the containers share
/// the pod's IPC namespace, so POSIX shared memory (shm_open, files in /dev/shm) must be one place
/// for all of them. A pod on the host's IPC namespace gets the host's /dev/shm. Unmounted at
/// StopPodSandbox (its containers are gone by then), again at RemovePodSandbox and by the sweep of
/// a half-made pod's directory.</summary>
public static class PodShm
{
    public const string DirName = "shm";

    public static string PathOf(string podDir) => Path.Combine(podDir, DirName);

    public static void Mount(IHostKernel k, string podDir, ulong bytes)
    {
        var path = PathOf(podDir);
        Directory.CreateDirectory(path);
        k.Mount("shm", path, "tmpfs", Libc.MS_NOSUID | Libc.MS_NODEV | Libc.MS_NOEXEC, $"mode=1777,size={bytes}");
    }

    /// <summary>Detaches the pod's shm tmpfs; nothing mounted is fine.</summary>
    public static void Unmount(IHostKernel k, string podDir)
    {
        var path = PathOf(podDir);
        if (Directory.Exists(path)) Containers.RootfsMount.Unmount(path, k); // not mounted (any more) is fine
    }
}
