using System.Text;
using System.Text.Json;
using CriRuntime.Cgroups;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Kernel;
using L = CriRuntime.Shim.Kernel.Abi;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Container;

/// <summary>`criruntime-shim exec-init --pid N`: a process exec'd into a running container. The
/// supervisor spawned it inside the container's pid/net/ipc/uts/cgroup namespaces and cgroup but
/// in the host's mount namespace (so this binary and its libraries could load). It reads the
/// process to run (one JSON line on fd 3: the spec with it), joins the container's mount
/// namespace on its own main thread (unshare(CLONE_FS) first: the kernel refuses setns(mnt) to a
/// thread sharing its fs with others), takes the container's identity and execs, like the init
/// after "start".
///
/// `exec-init --pid N --bundle DIR --id ID`: started so by criruntime-monitor (src/Monitor), which
/// serves ExecSync itself: only in the pid/ipc/uts/net namespaces, the request as the control
/// socket had it on fd 3. It reads the spec from the bundle, joins the container's cgroup (from the
/// host's cgroup namespace, as the supervisor would have placed it) and then the cgroup namespace,
/// and goes on as above.</summary>
public static class ExecInit
{
    public static int Run(int containerPid, string? bundle = null, string? id = null)
    {
        var sync = new SyncChannel(new FdHandle(ContainerInit.SyncFd));
        var k = LinuxKernel.Instance;
        try
        {
            var line = sync.Receive() ?? throw new InvalidDataException("no process received");
            Spec spec;
            if (bundle is null)
            {
                spec = SpecFile.Parse(Encoding.UTF8.GetBytes(line));
            }
            else
            {
                var bytes = Encoding.UTF8.GetBytes(line);
                var request = ShimRequestReader.TryRead(bytes) ?? JsonSerializer.Deserialize(bytes, ShimJsonContext.Default.ShimRequest)
                    ?? throw new InvalidDataException("null request");
                var container = SpecFile.Load(bundle);
                spec = ForExec(container, request);
                CgroupManagers.Create(container.Linux?.CgroupsPath ?? id ?? throw new ArgumentException("--id is required")).AddProcess(Environment.ProcessId);
                if (container.Linux?.Namespaces?.Any(n => n.Type == "cgroup") == true)
                    k.SetNs($"/proc/{containerPid}/ns/cgroup", L.CLONE_NEWCGROUP);
            }
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

    /// <summary>The container's spec with the process an exec request runs: its args, and its
    /// env and cwd where given (else the container process's), never on a terminal (ExecSync).</summary>
    public static Spec ForExec(Spec container, ShimRequest request)
    {
        if (request.Args is not { Count: > 0 }) throw new InvalidDataException("exec: args is empty");
        var p = container.Process ?? throw new InvalidDataException("spec without process");
        return container with { Process = p with { Args = request.Args, Env = request.Env ?? p.Env, Cwd = request.Cwd ?? p.Cwd, Terminal = false } };
    }
}
