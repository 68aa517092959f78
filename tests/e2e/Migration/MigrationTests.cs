using CriRuntime.Cri.V1;
using CriRuntime.Migration.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Migration;

/// <summary>Cold migration of a kubelet-shaped counter pod between two real daemons
/// (docs/migration.md), on the image umoci built, counting in its /srv/umoci. The container runs
/// as root (runAsUser: 0) instead of the image's user "app" (uid 1000): CRIU cannot read the
/// rlimits of another uid's process without CAP_SYS_RESOURCE, which this machine's root lacks
/// ("Can't get rlimit 0: Operation not permitted"). Needs criu >= 4.2 (hack/deps.sh).</summary>
[Collection(RegistryCollection.Name)]
public partial class MigrationTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private string Umoci => _registry.Image("umoci");

    /// <summary>Counts in /srv/umoci/count (replaced by a rename) and on stdout five times a second.</summary>
    private static readonly string[] Counter =
        ["sh", "-c", "i=0; while true; do echo $i > /srv/umoci/count.new; mv /srv/umoci/count.new /srv/umoci/count; echo $i; i=$((i+1)); sleep 0.2; done"];

    /// <summary><see cref="Counter"/> with a dd holding <paramref name="mb"/> MB it filled (blocked
    /// on its pipe to sleep) beside it: a lazy migration's pages then take a while to arrive.</summary>
    private static string[] HoldingCounter(int mb) =>
        ["sh", "-c", $"dd if=/dev/zero bs={mb}M count=1 2>/dev/null | sleep 100000 & {Counter[2]}"];

    /// <summary>Waits until the dd of <see cref="HoldingCounter"/> has its <paramref name="mb"/> MB resident.</summary>
    private static Task WaitResidentAsync(CriClient c, string id, int mb) =>
        c.ExecOkAsync(id, "sh", "-c", $"until p=$(pidof dd) && [ \"$(awk '/VmRSS/{{print $2}}' /proc/$p/status)\" -ge {mb * 1000} ]; do sleep 0.05; done");

    private sealed record CounterPod(KubePod Pod, string PodId, string ContainerId);

    private async Task<string> ImageIdAsync(MigrationNode n) =>
        (await n.C.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = Umoci } })).Image.Id;

    private static KubePod On(MigrationNode n, KubePod pod) => pod with { LogRoot = Path.Combine(n.D.Dir, "kubelet", "logs") };

    private ContainerConfig CounterContainer(KubePod pod, string imageId, int holdMb = 0)
    {
        var c = Kubelet.Container(pod, "counter", imageId, Umoci, holdMb > 0 ? HoldingCounter(holdMb) : Counter);
        c.Linux.SecurityContext.RunAsUser = new Int64Value { Value = 0 };
        return c;
    }

    private async Task<CounterPod> CounterPodAsync(MigrationNode n, string name, int holdMb = 0)
    {
        var pod = new KubePod { Name = name, LogRoot = Path.Combine(n.D.Dir, "kubelet", "logs") };
        var sandbox = Kubelet.Sandbox(pod);
        var podId = await n.C.RunPodAsync(sandbox);
        n.Node.Track(podId);
        var id = await n.C.StartNewAsync(podId, sandbox, CounterContainer(pod, await ImageIdAsync(n), holdMb));
        if (holdMb > 0) await WaitResidentAsync(n.C, id, holdMb);
        await WaitCountAsync(n.C, id, 3);
        return new CounterPod(pod, podId, id);
    }

    /// <summary>PrepareTarget on <paramref name="target"/> for the pod <paramref name="source"/> runs.</summary>
    private async Task<PrepareTargetRequest> PrepareRequestAsync(MigrationNode target, CounterPod source, string migrationId, int holdMb = 0)
    {
        var pod = On(target, source.Pod);
        return new PrepareTargetRequest
        {
            MigrationId = migrationId,
            Config = Kubelet.Sandbox(pod),
            ContainerConfigs = { CounterContainer(pod, await ImageIdAsync(target), holdMb) },
        };
    }

    private static async Task<string> PrepareAsync(MigrationNode target, PrepareTargetRequest request)
    {
        var prepared = await target.Migration.PrepareTargetAsync(request);
        target.Node.Track(prepared.PodSandboxId);
        return prepared.PodSandboxId;
    }

    private async Task<string> PrepareAsync(MigrationNode target, CounterPod source, string migrationId) =>
        await PrepareAsync(target, await PrepareRequestAsync(target, source, migrationId));

    private static async Task<int> CountAsync(CriClient c, string id) => int.Parse((await c.ExecOkAsync(id, "cat", "/srv/umoci/count")).Trim());

    private static Task WaitCountAsync(CriClient c, string id, int n) =>
        c.ExecOkAsync(id, "sh", "-c", $"until [ \"$(cat /srv/umoci/count 2>/dev/null)\" -ge {n} ] 2>/dev/null; do sleep 0.05; done");

    /// <summary>The values the counter wrote to its CRI log, in order.</summary>
    private static List<int> Logged(KubePod pod) =>
        [.. File.ReadAllLines(Path.Combine(Kubelet.LogDirectory(pod), "counter", "0.log")).Select(l => l.Split(' ', 4))
            .Where(f => f.Length == 4 && f[1] == "stdout").Select(f => int.Parse(f[3]))];

    /// <summary>The container's v1 freezer state, read from the host (this node has the v1 freezer).</summary>
    private static string FreezerState(MigrationNode n, string containerId)
    {
        var root = Path.Combine("/sys/fs/cgroup/freezer", Path.GetFileName(n.D.Dir));
        var dir = Directory.EnumerateDirectories(root, containerId, SearchOption.AllDirectories).Single();
        return File.ReadAllText(Path.Combine(dir, "freezer.state")).Trim();
    }

    /// <param name="allowNewIp">Migrate's allow_new_ip: on <see cref="TwoNodes.StartAsync"/>'s nodes
    /// (one network namespace, a subnet each) the target's pod always has another address.</param>
    private static async Task<List<MigrationStatus>> MigrateAsync(MigrationNode source, string migrationId, string podId, string to, string mode = "", bool allowNewIp = true)
    {
        var seen = new List<MigrationStatus>();
        using var call = source.Migration.Migrate(new MigrateRequest { MigrationId = migrationId, PodSandboxId = podId, TargetAddress = to, Mode = mode, AllowNewIp = allowNewIp });
        await foreach (var s in call.ResponseStream.ReadAllAsync()) seen.Add(s);
        return seen;
    }

    private static async Task<List<PodSandbox>> PodsAsync(MigrationNode n) =>
        [.. (await n.C.Runtime.ListPodSandboxAsync(new ListPodSandboxRequest())).Items];

    private static async Task<List<Container>> ContainersAsync(MigrationNode n, string podId) =>
        [.. (await n.C.Runtime.ListContainersAsync(new ListContainersRequest { Filter = new ContainerFilter { PodSandboxId = podId } })).Containers];

    [Fact]
    public async Task ColdMigration_TheCounterContinuesOnTheTargetFromWhereItStopped_AndCommitRemovesTheSourcePod()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-cold");
        var prepare = await PrepareRequestAsync(b, source, "m-cold");
        var targetPodId = await PrepareAsync(b, prepare);
        // Ready before any downtime; a repeated PrepareTarget answers the same pod.
        Assert.Equal(PodSandboxState.SandboxReady, (await b.C.Runtime.PodSandboxStatusAsync(new PodSandboxStatusRequest { PodSandboxId = targetPodId })).Status.State);
        Assert.Equal(targetPodId, await PrepareAsync(b, prepare));
        var before = await CountAsync(a.C, source.ContainerId);

        var seen = await MigrateAsync(a, "m-cold", source.PodId, b.Address);

        var done = seen[^1];
        Assert.True(done.Phase == "DONE", $"{done.Phase}: {done.Error}");
        Assert.Contains("FREEZING", seen.Select(s => s.Phase));
        Assert.Contains("TRANSFERRING", seen.Select(s => s.Phase));
        Assert.True(done.BytesTotal > 0 && done.BytesSent == done.BytesTotal, $"{done.BytesSent} of {done.BytesTotal}");
        Assert.InRange(done.DowntimeMs, 1, 120_000);
        Assert.Equal(targetPodId, done.TargetPodSandboxId);
        // The source is frozen, not removed, until Commit.
        Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        var lastOnSource = Logged(source.Pod)[^1];
        Assert.True(lastOnSource >= before, $"source logged {lastOnSource}, counted {before} before");

        var restored = Assert.Single(await ContainersAsync(b, targetPodId));
        Assert.Equal(ContainerState.ContainerRunning, restored.State);
        // From where it stopped: not 0, not a value it had already passed before the freeze.
        var first = await CountAsync(b.C, restored.Id);
        Assert.True(first >= before, $"target counter at {first}, source at {before} before the migration");
        await WaitCountAsync(b.C, restored.Id, first + 3);
        var loggedOnTarget = Logged(On(b, source.Pod));
        Assert.InRange(loggedOnTarget[0], before, lastOnSource + 1);

        var committed = await a.Migration.CommitAsync(new CommitRequest { MigrationId = "m-cold" });
        Assert.Equal("COMMITTED", committed.Phase);
        Assert.Empty(await PodsAsync(a));
        Assert.Equal("COMMITTED", (await a.Migration.CommitAsync(new CommitRequest { MigrationId = "m-cold" })).Phase);
        Assert.Equal("COMMITTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-cold" })).Phase);
        // Migrate repeated answers as the migration ended.
        Assert.Equal("COMMITTED", (await MigrateAsync(a, "m-cold", source.PodId, b.Address))[^1].Phase);
        var now = await CountAsync(b.C, restored.Id);
        await WaitCountAsync(b.C, restored.Id, now + 2);
    }

    [Fact]
    public async Task AbortAfterTheTargetRuns_LeavesTheSourceCountingOnAndTheTargetEmpty_AndTheCliPrintsTheDowntime()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-abort");
        await PrepareAsync(b, source, "m-abort");

        var (code, stdout, stderr) = await DaemonProcess.RunCliAsync("migrate", source.PodId, "--to", b.Address, "--id", "m-abort", "--no-commit", "--allow-new-ip",
            "--config", a.D.ConfigFile, "--socket", a.D.Socket);

        Assert.True(code == 0, $"exit {code}\n{stdout}\n{stderr}");
        Assert.Contains("TRANSFERRING", stdout);
        Assert.Contains("DONE", stdout);
        Assert.Matches(@"downtime \d+ ms", stdout);
        Assert.Matches(@"\d+ bytes moved", stdout);
        Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));
        var targetPod = Assert.Single(await PodsAsync(b));
        Assert.Equal(ContainerState.ContainerRunning, Assert.Single(await ContainersAsync(b, targetPod.Id)).State);

        var aborted = await a.Migration.AbortAsync(new AbortRequest { MigrationId = "m-abort" });

        Assert.Equal("ABORTED", aborted.Phase);
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 3);
        Assert.Empty(await PodsAsync(b));
        Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-abort" })).Phase);
        Assert.Equal("ABORTED", (await a.Migration.AbortAsync(new AbortRequest { MigrationId = "m-abort" })).Phase);
        var commit = await Assert.ThrowsAsync<RpcException>(async () => await a.Migration.CommitAsync(new CommitRequest { MigrationId = "m-abort" }));
        Assert.Equal(StatusCode.FailedPrecondition, commit.StatusCode);

        // Abort of a target that was only prepared: its pod goes.
        await PrepareAsync(b, source, "m-prepared-only");
        Assert.Single(await PodsAsync(b));
        Assert.Equal("ABORTED", (await b.Migration.AbortAsync(new AbortRequest { MigrationId = "m-prepared-only" })).Phase);
        Assert.Empty(await PodsAsync(b));
        // (The leak check of each daemon's Dispose finds any cgroup, mount or process left.)
    }

    [Fact]
    public async Task AMigrationTheTargetDidNotPrepare_IsRefusedBeforeTheSourceFreezes_AndPeersOutsideTheCaAreRefused()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        var source = await CounterPodAsync(a, "counter-refused");

        var e = await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-unprepared", source.PodId, b.Address));

        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("not prepared", e.Status.Detail);
        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 2);
        Assert.Equal("FAILED", (await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-unprepared" })).Phase);
        Assert.Empty(await PodsAsync(b));

        // A transfer straight to the target from a peer the CA signed: refused, nothing prepared.
        using (var cert = nodes.Certificates.Issue("node-c"))
        {
            var (channel, peer) = TwoNodes.Peer(b, cert, nodes.Certificates.Ca);
            using (channel)
            {
                using var call = peer.Transfer();
                await call.RequestStream.WriteAsync(new TransferChunk { MigrationId = "m-unprepared", File = "pod.dump", Data = Google.Protobuf.ByteString.CopyFromUtf8("{}") });
                await call.RequestStream.CompleteAsync();
                var refused = await Assert.ThrowsAsync<RpcException>(async () => await call.ResponseAsync);
                Assert.Equal(StatusCode.FailedPrecondition, refused.StatusCode);
                Assert.Contains("not prepared", refused.Status.Detail);
            }
        }
        // A peer whose certificate another CA signed: the TLS handshake fails, no call is served.
        using (var otherCa = new TestCertificates("another-ca"))
        using (var cert = otherCa.Issue("intruder"))
        {
            var (channel, peer) = TwoNodes.Peer(b, cert, nodes.Certificates.Ca);
            using (channel)
            {
                var refused = await Assert.ThrowsAsync<RpcException>(async () => await peer.CheckAsync(new PeerRequest { MigrationId = "m-unprepared" }));
                // A transport error, never an answer of the service: Unavailable when the client sees
                // the handshake refused, Internal when the server's TLS alert arrives after the
                // client had sent its request (both seen here, from run to run).
                Assert.True(refused.StatusCode is StatusCode.Unavailable or StatusCode.Internal, $"{refused.StatusCode}: {refused.Status.Detail}");
                Assert.DoesNotContain("prepared", refused.Status.Detail);
            }
        }
        // The peer service is not on the CRI socket.
        var onSocket = await Assert.ThrowsAsync<RpcException>(async () =>
            await new MigrationPeer.MigrationPeerClient(b.C.Invoker).CheckAsync(new PeerRequest { MigrationId = "m-unprepared" }));
        Assert.Equal(StatusCode.PermissionDenied, onSocket.StatusCode);
    }

    /// <summary>kill -9 of the source daemon once the pod is dumped and left frozen (fault point
    /// migrate-after-dump): the pod stays frozen while no daemon runs, the restarted daemon thaws
    /// it before serving (the migration FAILED, the counter counting on), and the target, when its
    /// daemon restarts, removes the pod it prepared and never started.</summary>
    [Fact]
    public async Task SourceDaemonKilledWithThePodFrozen_TheRestartThawsIt_AndARestartedTargetRemovesItsUnstartedPod()
    {
        await using var nodes = await TwoNodes.StartAsync(_registry, Umoci);
        var (a, b) = (nodes.Source, nodes.Target);
        a.D.Environment["CRIRUNTIME_FAULT"] = "migrate-after-dump";
        await a.D.RestartAsync();
        var source = await CounterPodAsync(a, "counter-crash");
        await PrepareAsync(b, source, "m-crash");

        await Assert.ThrowsAsync<RpcException>(async () => await MigrateAsync(a, "m-crash", source.PodId, b.Address));
        await a.D.WaitForExitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal("FROZEN", FreezerState(a, source.ContainerId));

        a.D.Environment.Clear();
        await a.D.StartAsync();

        Assert.Equal("THAWED", FreezerState(a, source.ContainerId));
        var now = await CountAsync(a.C, source.ContainerId);
        await WaitCountAsync(a.C, source.ContainerId, now + 2);
        var status = await a.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-crash" });
        Assert.Equal("FAILED", status.Phase);
        Assert.Contains("restarted", status.Error);

        Assert.Single(await PodsAsync(b));
        await b.D.RestartAsync();
        Assert.Empty(await PodsAsync(b));
        Assert.Equal("ABORTED", (await b.Migration.GetMigrationAsync(new GetMigrationRequest { MigrationId = "m-crash" })).Phase);
    }
}
