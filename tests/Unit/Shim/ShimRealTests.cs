using System.Diagnostics;
using Process = CriRuntime.Oci.Process;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>A [Fact] that runs only as root: these tests create real namespaces and mounts.</summary>
public sealed partial class RootFactAttribute : FactAttribute
{
    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint Geteuid();

    public RootFactAttribute()
    {
        if (Geteuid() != 0) Skip = "needs root (creates namespaces and mounts); run the unit tests as root to include it";
        else if (!File.Exists("/bin/busybox")) Skip = "needs /bin/busybox (Debian busybox-static) for the container rootfs";
    }
}

/// <summary>Runs the real shim on a busybox bundle and asserts from inside the container, with
/// a shell script as the probe.</summary>
public sealed partial class ShimRealTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("shim-e2e");
    private string Bundle => Path.Combine(_dir.FullName, "bundle");
    private string State => Path.Combine(_dir.FullName, "state");
    private string Log => Path.Combine(_dir.FullName, "ctr.log");

    public void Dispose()
    {
        // The container's mounts live in its own mount namespace, gone with it: plain delete.
        try { _dir.Delete(recursive: true); } catch (IOException) { }
    }

    /// <summary>CRIRUNTIME_SHIM (e.g. the NativeAOT artifacts/publish/Shim/release/criruntime-shim),
    /// else the JIT build this project's reference copies next to the tests: always as fresh as
    /// the code under test, where a publish output could be stale.</summary>
    private static string ShimPath() =>
        Environment.GetEnvironmentVariable("CRIRUNTIME_SHIM") is { Length: > 0 } env ? env : Path.Combine(AppContext.BaseDirectory, "criruntime-shim");

    private static readonly string[] Applets = ["tr", "unshare", "mkdir", "sh", "cat", "ls", "hostname", "touch", "readlink", "grep", "echo", "sleep", "wc", "id", "printf", "true"];

    private void WriteBundle(string[] args, Action<Spec>? check = null, Func<Spec, Spec>? edit = null)
    {
        var rootfs = Path.Combine(Bundle, "rootfs");
        foreach (var d in new[] { "bin", "proc", "sys", "dev", "tmp", "etc" }) Directory.CreateDirectory(Path.Combine(rootfs, d));
        File.Copy("/bin/busybox", Path.Combine(rootfs, "bin/busybox"), overwrite: true);
        foreach (var a in Applets)
            if (!File.Exists(Path.Combine(rootfs, "bin", a))) File.CreateSymbolicLink(Path.Combine(rootfs, "bin", a), "busybox");
        string[] caps = ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"];
        var spec = new Spec
        {
            Process = new Process
            {
                Args = args,
                Env = ["PATH=/bin"],
                Cwd = "/",
                Capabilities = new LinuxCapabilities { Bounding = caps, Effective = caps, Permitted = caps },
                Rlimits = [new Rlimit { Type = "RLIMIT_NOFILE", Soft = 1024, Hard = 1024 }],
                NoNewPrivileges = true,
                OomScoreAdj = 100,
            },
            Root = new Root { Path = "rootfs", Readonly = true },
            Hostname = "shim-e2e",
            Mounts =
            [
                new() { Destination = "/proc", Type = "proc", Source = "proc", Options = ["nosuid", "noexec", "nodev"] },
                new() { Destination = "/dev", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                new() { Destination = "/dev/pts", Type = "devpts", Source = "devpts", Options = ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
                new() { Destination = "/dev/shm", Type = "tmpfs", Source = "shm", Options = ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                new() { Destination = "/dev/mqueue", Type = "mqueue", Source = "mqueue", Options = ["nosuid", "noexec", "nodev"] },
                new() { Destination = "/sys", Type = "sysfs", Source = "sysfs", Options = ["nosuid", "noexec", "nodev", "ro"] },
                new() { Destination = "/tmp", Type = "tmpfs", Source = "tmpfs", Options = ["nosuid", "nodev"] },
            ],
            Linux = new Linux
            {
                Namespaces = [new() { Type = "pid" }, new() { Type = "network" }, new() { Type = "ipc" }, new() { Type = "uts" }, new() { Type = "mount" }, new() { Type = "cgroup" }],
                MaskedPaths = ["/proc/kcore", "/proc/timer_list", "/proc/acpi", "/sys/firmware"],
                ReadonlyPaths = ["/proc/sys", "/proc/sysrq-trigger"],
            },
        };
        if (edit is not null) spec = edit(spec);
        File.WriteAllBytes(Path.Combine(Bundle, "config.json"), SpecFile.Serialize(spec));
    }

    private async Task<(int ShimPid, int Pid)> CreateAsync()
    {
        var psi = new ProcessStartInfo(ShimPath(), ["create", "--id", "e2e", "--bundle", Bundle, "--state", State, "--log", Log])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        // The helper for user namespaces, built from this checkout (the JIT shim has none next to it).
        if (Environment.GetEnvironmentVariable("CRIRUNTIME_NSEXEC") is null) psi.Environment["CRIRUNTIME_NSEXEC"] = NsExecTests.Binary;
        using var p = System.Diagnostics.Process.Start(psi)!;
        // Reads to end of file: the daemonised shim must not hold create's stdout open.
        var stdout = await p.StandardOutput.ReadToEndAsync();
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"create failed ({p.ExitCode}): {stderr}\nshim.log: {ShimLog()}");
        using var doc = JsonDocument.Parse(stdout);
        return (doc.RootElement.GetProperty("shimPid").GetInt32(), doc.RootElement.GetProperty("pid").GetInt32());
    }

    private string ShimLog() => File.Exists(Path.Combine(State, StateFiles.ShimLog)) ? File.ReadAllText(Path.Combine(State, StateFiles.ShimLog)) : "";

    private async Task<ShimState> RunToExitAsync()
    {
        await CreateAsync();
        var client = new ShimClient(State);
        var started = await client.SendAsync(new ShimRequest { Op = ShimOps.Start });
        Assert.True(started.Ok, started.Error);
        var waited = await client.SendAsync(new ShimRequest { Op = ShimOps.Wait, Timeout = 30 });
        Assert.True(waited.Ok, waited.Error);
        return waited.State!;
    }

    /// <summary>The container's stdout, from the CRI log.</summary>
    private string[] Stdout() => File.ReadAllLines(Log)
        .Select(l => l.Split(' ', 4)).Where(p => p[1] == "stdout").Select(p => p[3]).ToArray();

    [RootFact]
    public async Task Container_SeesItsOwnNamespaces_RestrictedCaps_NoNewPrivs_AndReadonlyRoot()
    {
        WriteBundle(["sh", "-c", """
            echo pid=$$
            grep -E '^(NoNewPrivs|CapEff|CapBnd):' /proc/self/status
            echo host=$(hostname)
            echo net=$(readlink /proc/self/ns/net)
            echo procs=$(ls /proc | grep -E '^[0-9]+$' | wc -l)
            touch /x 2>/dev/null && echo root=rw || echo root=ro
            touch /tmp/x && echo tmp=rw
            echo 1 2>/dev/null > /proc/sys/kernel/domainname && echo procsys=rw || echo procsys=ro
            echo timer_list=$(cat /proc/timer_list | wc -c)
            echo nofile=$(ulimit -n)
            test -c /dev/null && echo devnull=ok
            echo to-stderr >&2
            """]);
        var state = await RunToExitAsync();
        Assert.Equal(0, state.ExitCode);

        var output = Stdout();
        Assert.Contains("pid=1", output);
        Assert.Contains("NoNewPrivs:\t1", output);
        Assert.Contains("CapEff:\t0000000000000421", output); // CHOWN | KILL | NET_BIND_SERVICE
        Assert.Contains("CapBnd:\t0000000000000421", output);
        Assert.Contains("host=shim-e2e", output);
        var hostNet = File.ResolveLinkTarget("/proc/self/ns/net", false)!.ToString();
        var net = Assert.Single(output, l => l.StartsWith("net=", StringComparison.Ordinal));
        Assert.StartsWith("net=net:[", net);
        Assert.NotEqual("net=" + hostNet, net);
        Assert.Contains("root=ro", output);
        Assert.Contains("tmp=rw", output);
        Assert.Contains("procsys=ro", output);
        Assert.Contains("timer_list=0", output);
        Assert.Contains("nofile=1024", output);
        Assert.Contains("devnull=ok", output);
        // Only the shell and the pipeline's children exist in the pid namespace.
        var procs = int.Parse(Assert.Single(output, l => l.StartsWith("procs=", StringComparison.Ordinal))[6..]);
        Assert.InRange(procs, 1, 5);
    }

    [RootFact]
    public async Task DefaultSeccompProfile_IsLoaded_LetsAShellRun_AndBlocksUnshare()
    {
        WriteBundle(["sh", "-c", """
            grep -E '^Seccomp:' /proc/self/status
            unshare -U true 2>/dev/null && echo userns=allowed || echo userns=blocked
            echo still-running
            """], edit: s => s with { Linux = s.Linux! with { Seccomp = DefaultSeccompProfile.Build(s.Process!.Capabilities!.Bounding!) } });
        var state = await RunToExitAsync();
        Assert.Equal(0, state.ExitCode);
        var output = Stdout();
        Assert.Contains("Seccomp:\t2", output);
        Assert.Contains("userns=blocked", output); // no capability is needed for a user namespace: this is seccomp
        Assert.Contains("still-running", output);
    }

    [RootFact]
    public async Task SeccompRules_FromTheSpec_AreEnforced()
    {
        WriteBundle(["sh", "-c", "mkdir /tmp/d 2>&1; unshare -U true && echo userns=allowed"], edit: s => s with
        {
            Linux = s.Linux! with
            {
                Seccomp = new LinuxSeccomp
                {
                    DefaultAction = "SCMP_ACT_ALLOW",
                    Architectures = ["SCMP_ARCH_X86_64"],
                    Syscalls = [new LinuxSyscall { Names = ["mkdir", "mkdirat"], Action = "SCMP_ACT_ERRNO", ErrnoRet = 38 }],
                },
            },
        });
        await RunToExitAsync();
        var output = Stdout();
        Assert.Contains(output, l => l.Contains("mkdir", StringComparison.Ordinal) && l.Contains("not implemented", StringComparison.OrdinalIgnoreCase));
        Assert.Contains("userns=allowed", output); // and nothing else is blocked
    }

    [RootFact]
    public async Task CriLog_HasTimestampStreamAndTag_OnEveryLine_WithPartialLast()
    {
        WriteBundle(["sh", "-c", "echo out; echo err >&2; printf no-newline"]);
        await RunToExitAsync();
        var lines = File.ReadAllLines(Log);
        Assert.All(lines, l => Assert.Matches(CriLine(), l));
        Assert.Contains(lines, l => l.EndsWith(" stdout F out", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.EndsWith(" stderr F err", StringComparison.Ordinal));
        Assert.EndsWith(" stdout P no-newline", lines.Last(l => l.Contains(" stdout ", StringComparison.Ordinal)));
    }

    [GeneratedRegex(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z (stdout|stderr) [FP] ")]
    private static partial Regex CriLine();

    [RootFact]
    public async Task ExitCode_Propagates_AndIsRecordedDurably()
    {
        WriteBundle(["sh", "-c", "exit 7"]);
        var state = await RunToExitAsync();
        Assert.Equal(7, state.ExitCode);
        Assert.Equal(ShimStatus.Stopped, state.Status);
        Assert.Equal("Error", state.Reason);
        Assert.NotNull(state.StartedAt);
        Assert.NotNull(state.FinishedAt);
        var onDisk = ShimClient.ReadStateFile(State)!;
        Assert.Equal(7, onDisk.ExitCode);
        Assert.Equal(ShimStatus.Stopped, onDisk.Status);
    }

    [RootFact]
    public async Task Stop_EscalatesToSigkill_WhenPid1IgnoresSigterm()
    {
        WriteBundle(["sleep", "1000"]); // pid 1 without a SIGTERM handler ignores SIGTERM
        await CreateAsync();
        var client = new ShimClient(State);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);
        var stopped = await client.SendAsync(new ShimRequest { Op = ShimOps.Stop, Timeout = 0.5 });
        Assert.True(stopped.Ok, stopped.Error);
        Assert.Equal(137, stopped.State!.ExitCode);
        Assert.Equal(9, stopped.State.Signal);
    }

    [RootFact]
    public async Task Start_OfAMissingCommand_FailsWithItsName()
    {
        WriteBundle(["no-such-command"]);
        await CreateAsync();
        var client = new ShimClient(State);
        var started = await client.SendAsync(new ShimRequest { Op = ShimOps.Start });
        Assert.False(started.Ok);
        Assert.Contains("no-such-command", started.Error);
        var state = (await client.SendAsync(new ShimRequest { Op = ShimOps.Wait, Timeout = 30 })).State!;
        Assert.Equal("StartError", state.Reason);
    }

    [RootFact]
    public async Task Exec_RunsInTheContainersNamespaces_WithItsIdentity_AndReturnsOutputAndStatus()
    {
        WriteBundle(["sleep", "1000"]);
        await CreateAsync();
        var client = new ShimClient(State);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);

        var r = await client.SendAsync(new ShimRequest
        {
            Op = ShimOps.Exec,
            Args = ["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; grep NoNewPrivs /proc/self/status; echo oops >&2; exit 3"],
        });
        Assert.True(r.Ok, r.Error);
        var stdout = System.Text.Encoding.UTF8.GetString(r.Exec!.Stdout);
        Assert.Contains("sleep 1000", stdout);       // same pid namespace: pid 1 is the container's command
        Assert.Contains("shim-e2e", stdout);         // same uts namespace
        Assert.Contains("NoNewPrivs:\t1", stdout);   // the container's process settings
        Assert.Equal("oops\n", System.Text.Encoding.UTF8.GetString(r.Exec.Stderr));
        Assert.Equal(3, r.Exec.ExitCode);

        var slow = await client.SendAsync(new ShimRequest { Op = ShimOps.Exec, Args = ["sleep", "100"], Timeout = 0.5 });
        Assert.True(slow.Exec!.TimedOut);
        Assert.Equal(137, slow.Exec.ExitCode);

        var missing = await client.SendAsync(new ShimRequest { Op = ShimOps.Exec, Args = ["no-such-tool"] });
        Assert.False(missing.Ok);
        Assert.Contains("no-such-tool", missing.Error);

        var stopped = await client.SendAsync(new ShimRequest { Op = ShimOps.Kill, Signal = 9 });
        Assert.True(stopped.Ok);
    }

    [RootFact]
    public async Task NamespaceWithAPath_IsJoined_NotCreated()
    {
        // A pinned network namespace, as the daemon will pin a pod's (util-linux unshare
        // bind-mounts the new namespace onto the file).
        var pin = Path.Combine(_dir.FullName, "netns");
        File.WriteAllText(pin, "");
        using (var p = System.Diagnostics.Process.Start("unshare", [$"--net={pin}", "true"])) await p.WaitForExitAsync();
        try
        {
            WriteBundle(["sh", "-c", "readlink /proc/self/ns/net"], edit: s => s with
            {
                Linux = s.Linux! with
                {
                    Namespaces = [.. s.Linux!.Namespaces!.Where(n => n.Type != "network"), new LinuxNamespace { Type = "network", Path = pin }],
                },
            });
            await RunToExitAsync();
            var ino = StatInode(pin); // the namespace's inode, through the bind mount
            Assert.Equal($"net:[{ino}]", Assert.Single(Stdout()));
        }
        finally
        {
            Umount2(pin, 2 /* MNT_DETACH */);
        }
    }

    [RootFact]
    public async Task UserNamespace_RootInside_MappedOutside_IdmappedRootfs_AndExecJoinsIt()
    {
        // Files of the "image" belong to host root; the bundle dir is private to host root
        // (0700, as the daemon's are): the container's root, host uid 200000, reaches neither by path.
        File.WriteAllText(Path.Combine(_dir.FullName, "hostfile"), "from the host\n");
        WriteBundle(["sh", "-c", """
            echo uid=$(id -u) gid=$(id -g)
            echo map=$(cat /proc/self/uid_map)
            echo owner=$(ls -ln /bin/busybox | tr -s ' ' | cut -d' ' -f3)
            echo bind=$(cat /etc/hostfile)
            touch /written && echo wrote
            echo pid=$$
            sleep 1000
            """], edit: s => s with
        {
            Root = new Root { Path = "rootfs" },
            Mounts = [.. s.Mounts!, new Mount { Destination = "/etc/hostfile", Type = "bind", Source = Path.Combine(_dir.FullName, "hostfile"), Options = ["rbind", "ro"] }],
            Linux = s.Linux! with
            {
                Namespaces = [.. s.Linux!.Namespaces!, new LinuxNamespace { Type = "user" }],
                UidMappings = [new IdMapping { ContainerId = 0, HostId = 200000, Size = 65536 }],
                GidMappings = [new IdMapping { ContainerId = 0, HostId = 200000, Size = 65536 }],
            },
        });
        foreach (var a in new[] { "cut", "tr", "id" })
            if (!File.Exists(Path.Combine(Bundle, "rootfs/bin", a))) File.CreateSymbolicLink(Path.Combine(Bundle, "rootfs/bin", a), "busybox");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(_dir.FullName));

        var (_, pid) = await CreateAsync();
        var client = new ShimClient(State);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);
        string[] output = [];
        for (var i = 0; i < 100 && !output.Any(l => l.StartsWith("pid=", StringComparison.Ordinal)); i++)
        {
            await Task.Delay(50); // the log is a file: nothing to wait on but its growth
            output = File.Exists(Log) ? Stdout() : [];
        }
        Assert.True(output.Contains("uid=0 gid=0"), string.Join('\n', output) + ShimLog());
        Assert.Contains("map= 0 200000 65536", output); // the fields of uid_map, split by the shell
        Assert.Contains("owner=0", output);          // host root's file, through the idmapped rootfs
        Assert.Contains("bind=from the host", output); // a bind mount of a source it could not reach
        Assert.Contains("wrote", output);
        Assert.Contains("pid=1", output);
        // From the host: the container runs as 200000.
        Assert.Contains(File.ReadAllLines($"/proc/{pid}/status"), l => l.StartsWith("Uid:\t200000\t200000\t200000", StringComparison.Ordinal));
        // What it wrote lands in the rootfs owned by the id it had inside (0): the mapping is the mount's, not the files'.
        Assert.Equal(0, Stat(Path.Combine(Bundle, "rootfs/written")));

        var r = await client.SendAsync(new ShimRequest { Op = ShimOps.Exec, Args = ["sh", "-c", "id -u; readlink /proc/self/ns/user; readlink /proc/1/ns/user"] });
        Assert.True(r.Ok, r.Error);
        var lines = System.Text.Encoding.UTF8.GetString(r.Exec!.Stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("0", lines[0]);
        Assert.Equal(lines[2], lines[1]); // the exec joined the container's user namespace
        Assert.Equal(new FileInfo($"/proc/{pid}/ns/user").LinkTarget, lines[1]);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Kill, Signal = 9 })).Ok);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Wait, Timeout = 10 })).Ok);
    }

    [RootFact]
    public async Task UserNamespace_WithoutMappings_IsRefused_ByField()
    {
        WriteBundle(["true"], edit: s => s with { Linux = s.Linux! with { Namespaces = [.. s.Linux!.Namespaces!, new LinuxNamespace { Type = "user" }] } });
        var psi = new ProcessStartInfo(ShimPath(), ["create", "--id", "e2e", "--bundle", Bundle, "--state", State, "--log", Log]) { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.Environment["CRIRUNTIME_NSEXEC"] = NsExecTests.Binary;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.Equal(1, p.ExitCode);
        Assert.Contains("linux.uidMappings: required for a new user namespace", stderr);
    }

    private static long Stat(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%u", path]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return long.Parse(text);
    }

    [LibraryImport("libc", EntryPoint = "umount2", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);

    private static ulong StatInode(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("stat", ["-L", "-c", "%i", path]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var text = p.StandardOutput.ReadToEnd().Trim();
        p.WaitForExit();
        return ulong.Parse(text);
    }

    [RootFact]
    public async Task ReopenLog_AfterRotation_WritesToTheNewFile()
    {
        WriteBundle(["sh", "-c", "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two"]);
        await CreateAsync();
        var client = new ShimClient(State);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);
        File.Move(Log, Log + ".1"); // what the kubelet does before asking for a reopen
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.ReopenLog })).Ok);
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Exec, Args = ["touch", "/tmp/go"] })).Ok);
        var final = (await client.SendAsync(new ShimRequest { Op = ShimOps.Wait, Timeout = 30 })).State!;
        Assert.Equal(0, final.ExitCode);
        Assert.EndsWith(" stdout F two", File.ReadAllLines(Log).Last());
        Assert.DoesNotContain(File.ReadAllLines(Log + ".1"), l => l.EndsWith(" two", StringComparison.Ordinal));
        // Stop and kill of an exited container succeed (the CRI's stop is idempotent).
        Assert.True((await client.SendAsync(new ShimRequest { Op = ShimOps.Stop, Timeout = 1 })).Ok);
    }

    [RootFact]
    public async Task KillingTheShim_KillsTheContainer()
    {
        WriteBundle(["sleep", "1000"]);
        var (shimPid, pid) = await CreateAsync();
        Assert.True((await new ShimClient(State).SendAsync(new ShimRequest { Op = ShimOps.Start })).Ok);
        using var container = PidFd.Open(pid);
        Assert.False(container.WaitExit(TimeSpan.Zero));
        using (var shim = PidFd.Open(shimPid))
        {
            Assert.Equal(0, Kill(shimPid, 9));
            Assert.True(shim.WaitExit(TimeSpan.FromSeconds(10)));
        }
        Assert.True(container.WaitExit(TimeSpan.FromSeconds(10)), "the container outlived its shim");
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int sig);
}

/// <summary>A pidfd to wait for the exit of a process that is not our child (poll(2) reports it
/// readable once the process has exited).</summary>
internal sealed partial class PidFd : IDisposable
{
    private readonly int _fd;
    private PidFd(int fd) => _fd = fd;

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long n, long a, long b);
    [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
    private static partial int Poll(ref PollFd fds, ulong n, int timeout);
    [LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

    [StructLayout(LayoutKind.Sequential)]
    private struct PollFd { public int Fd; public short Events; public short Revents; }

    public static PidFd Open(int pid)
    {
        var fd = (int)Syscall(434 /* pidfd_open */, pid, 0);
        if (fd < 0) throw new IOException($"pidfd_open {pid}: errno {Marshal.GetLastPInvokeError()}");
        return new PidFd(fd);
    }

    public bool WaitExit(TimeSpan timeout)
    {
        var p = new PollFd { Fd = _fd, Events = 1 /* POLLIN */ };
        return Poll(ref p, 1, (int)timeout.TotalMilliseconds) == 1;
    }

    public void Dispose() => Close(_fd);
}
