using System.Text;
using System.Text.Json;
using CriRuntime.Oci;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>`criruntime-shim exec-init --pid N`: a process exec'd into a running container. The
/// supervisor spawned it inside the container's pid/net/ipc/uts/cgroup namespaces but in the
/// host's mount namespace (so this binary and its libraries could load). It reads the process
/// to run (one JSON line on fd 3), joins the container's mount namespace on its own main thread
/// (unshare(CLONE_FS) first: the kernel refuses setns(mnt) to a thread sharing its fs with
/// others), takes the container's identity and execs, like the init after "start".</summary>
public static class ExecInit
{
    public static int Run(int containerPid)
    {
        var sync = new SyncChannel(new FdHandle(ContainerInit.SyncFd));
        var k = LinuxKernel.Instance;
        try
        {
            var line = sync.Receive() ?? throw new InvalidDataException("no process received");
            var spec = JsonSerializer.Deserialize(Encoding.UTF8.GetBytes(line), OciJsonContext.Default.Spec)
                ?? throw new InvalidDataException("null spec");
            var process = spec.Process ?? throw new InvalidDataException("spec without process");
            var seccomp = spec.Linux?.Seccomp;
            if (seccomp is not null) Seccomp.SeccompFilter.Preload(); // before the host's libraries go out of view

            AssemblyPreload.All();
            k.Unshare(L.CLONE_FS);
            k.SetNs($"/proc/{containerPid}/ns/mnt", L.CLONE_NEWNS);
            k.Chdir("/");
            ProcessPlan.ApplyLimits(k, process, _ => { });
            if (process.Terminal) Terminal.Setup(k, sync.Handle);

            if (seccomp is not null && !process.NoNewPrivileges) Seccomp.SeccompFilter.Load(seccomp);
            ProcessPlan.CheckHeld(process, Capabilities.HeldBounding());
            ProcessPlan.ApplyIdentity(k, process, Capabilities.KernelLast());
            var exe = ProcessPlan.ResolveExecutable(process, ContainerInit.IsExecutable);
            if (seccomp is not null && process.NoNewPrivileges) Seccomp.SeccompFilter.Load(seccomp);
            Libc.SetCloexec(ContainerInit.SyncFd, true);
            ContainerInit.Exec(exe, process.Args, process.Env ?? [$"PATH={ProcessPlan.DefaultPath}"]);
            return 127;
        }
        // The process's error boundary, as in ContainerInit: the supervisor must hear why.
        catch (Exception e)
        {
            try { Libc.SetCloexec(ContainerInit.SyncFd, false); sync.Send("error " + e.Message); } catch (IOException) { }
            return 127;
        }
    }
}
