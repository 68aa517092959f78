namespace CriRuntime.Testing;

/// <summary>Crash points for e2e tests of recovery: when $CRIRUNTIME_FAULT names a point, the
/// daemon SIGKILLs itself on reaching it, mid-operation, exactly as a crash or an OOM kill
/// would. Unset (always, outside tests) this is one string comparison.</summary>
public static class FaultPoints
{
    /// <summary>CreateContainer, after the rootfs is mounted and the bundle written, before the
    /// container record is written.</summary>
    public const string CreateContainerBeforeRecord = "create-container-before-record";

    /// <summary>StartContainer, once the shim created the container (set up, waiting for the
    /// start), before it is told to start.</summary>
    public const string StartContainerAfterShim = "start-container-after-shim";

    /// <summary>RunPodSandbox of a pod with a shared pid namespace, once its pod init runs,
    /// before the pod record is written.</summary>
    public const string RunPodSandboxAfterPodInit = "run-pod-sandbox-after-pod-init";

    /// <summary>StopPodSandbox, after the CNI DEL of the pod's network, before its network
    /// namespace is unpinned.</summary>
    public const string StopPodSandboxAfterNetworkTeardown = "stop-pod-sandbox-after-network-teardown";

    /// <summary>CheckpointPod, once every selected container is frozen, before the first dump.</summary>
    public const string CheckpointPodAfterFreeze = "checkpoint-pod-after-freeze";

    /// <summary>A migration's source, once every container to migrate is frozen (FREEZING), before the first dump.</summary>
    public const string MigrateAfterFreeze = "migrate-after-freeze";

    /// <summary>A migration's source, once the pod is dumped and left frozen, before the transfer.</summary>
    public const string MigrateAfterDump = "migrate-after-dump";

    /// <summary>A migration's source, once the first chunk of the transfer was sent (TRANSFERRING).</summary>
    public const string MigrateMidTransfer = "migrate-mid-transfer";

    /// <summary>A migration's source, once the target answered that it restored and started the
    /// pod, before DONE is recorded (the source still TRANSFERRED).</summary>
    public const string MigrateAfterRestore = "migrate-after-restore";

    /// <summary>A lazy migration's source, once PAGING is recorded (the target runs the pod), before
    /// it waits for its page servers to have served every page.</summary>
    public const string MigratePaging = "migrate-paging";

    /// <summary>Commit on a migration's source, once COMMITTED is recorded, before the frozen
    /// source pod is killed and removed.</summary>
    public const string CommitAfterRecord = "commit-after-record";

    /// <summary>PrepareTarget, once the pod is made and PREPARED recorded, before the answer.</summary>
    public const string PrepareTargetAfterRecord = "prepare-target-after-record";

    /// <summary>A migration's target, once every file arrived and RECEIVED is recorded, before
    /// Transfer answers.</summary>
    public const string TransferAfterReceived = "transfer-after-received";

    /// <summary>A migration's target, once the containers are created from their archives, before
    /// they are started.</summary>
    public const string RestoreBeforeStart = "restore-before-start";

    /// <summary>A migration's target, once the containers run and STARTED is recorded, before
    /// Restore answers.</summary>
    public const string RestoreAfterStart = "restore-after-start";

    /// <summary>A lazy migration's target, STARTED recorded and Restore answered, when the source
    /// asks whether every memory page arrived (PagesArrived), before they all did.</summary>
    public const string RestorePaging = "restore-paging";

    private static readonly string? Armed = Environment.GetEnvironmentVariable("CRIRUNTIME_FAULT");
    private static readonly string? Held = Environment.GetEnvironmentVariable("CRIRUNTIME_HOLD");

    /// <summary>For e2e tests of Abort: when $CRIRUNTIME_HOLD names <paramref name="point"/>, the
    /// operation waits there until it is cancelled (an Abort), so a test can abort in a phase that
    /// otherwise lasts milliseconds. It says so on stderr first. Unset (always, outside tests) this
    /// is one string comparison.</summary>
    public static void Hold(string point, CancellationToken ct)
    {
        if (Held != point) return;
        Console.Error.WriteLine($"fault point {point}: holding until cancelled (CRIRUNTIME_HOLD)");
        Console.Error.Flush();
        ct.WaitHandle.WaitOne();
        ct.ThrowIfCancellationRequested();
    }

    public static void Crash(string point)
    {
        if (Armed != point) return;
        Console.Error.WriteLine($"fault point {point}: killing the daemon (CRIRUNTIME_FAULT)");
        Console.Error.Flush();
        System.Diagnostics.Process.GetCurrentProcess().Kill();
    }
}
