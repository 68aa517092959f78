using CriRuntime.Checkpoint;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Oci;
using CriRuntime.Shim.Client;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    private Criu? _criu;
    /// <summary>The criu binary's runner, as configured now (migration's lazy-pages daemons use it too).</summary>
    internal Criu Criu => CriuTool;
    /// <summary>Made on first use from [checkpoint] (no constructor change for an optional tool).</summary>
    private Criu CriuTool => _criu is { } c && ReferenceEquals(_criuSettings, InForce.Checkpoint) ? c : _criu = new Criu(_criuSettings = InForce.Checkpoint);
    private Config.CheckpointSection? _criuSettings;

    /// <summary>KEP-2008's forensic checkpoint: CRIU dumps the running container (which keeps
    /// running), then the archive the kubelet and checkpointctl read is written at `location`
    /// (docs/checkpoint.md). The daemon runs CRIU itself: a dump needs no parent relationship
    /// with the container, only its init pid, rootfs and spec, and the shim stays out of the way.</summary>
    public override async Task<CheckpointContainerResponse> CheckpointContainer(CheckpointContainerRequest request, ServerCallContext context)
    {
        if (request.Location.Length == 0) throw Fail.InvalidArgument("location: required");
        if (!Path.IsPathRooted(request.Location)) throw Fail.InvalidArgument($"location: '{request.Location}' must be an absolute path");
        if (request.Timeout < 0) throw Fail.InvalidArgument($"timeout: {request.Timeout} is negative");
        var location = Path.GetFullPath(request.Location);
        if (Directory.Exists(location)) throw Fail.InvalidArgument($"location: {location} is a directory");
        if (!Directory.Exists(Path.GetDirectoryName(location))) throw Fail.InvalidArgument($"location: directory {Path.GetDirectoryName(location)} does not exist");
        var timeout = request.Timeout > 0 ? TimeSpan.FromSeconds(request.Timeout) : InForce.Checkpoint.DumpTimeout;

        var c = _containers.Get(request.ContainerId);
        using (await _containers.LockAsync(c.Id, context.CancellationToken))
        {
            c = _containers.Find(c.Id) ?? throw Fail.NotFound($"container {request.ContainerId} not found");
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var ok = false;
            var steps = new Containers.StepTimes();
            var target = await DumpTargetAsync(c);
            steps.Mark("target");
            DumpedContainer? dumped = null;
            try
            {
                dumped = await DumpAsync(target, null, timeout, context.CancellationToken, streamInto: location, steps: steps);
                await Task.Run(() => WriteArchive(dumped, location, steps), CancellationToken.None);
                CheckpointLog.Checkpointed(_log, c.Id, location, dumped.CriuTime.TotalMilliseconds);
                CheckpointLog.Steps(_log, c.Id, steps);
                ok = true;
            }
            finally
            {
                _metrics?.Checkpoint(ok, System.Diagnostics.Stopwatch.GetElapsedTime(started));
                if (dumped is not null) DiscardDump(dumped);
            }
        }
        return new CheckpointContainerResponse();
    }

    /// <summary>What a dump of a running container starts from, checked: FailedPrecondition when
    /// it is not running or cannot be checkpointed. The caller holds the container's lock.</summary>
    private async Task<DumpTarget> DumpTargetAsync(ContainerRecord c)
    {
        var state = await _shims.StateAsync(c.Id, c.StateDir, CancellationToken.None);
        if (c.State != ContainerPhase.Running || state.Status != ShimStatus.Running || state.Pid <= 0)
            throw Fail.FailedPrecondition($"container {c.Id} is not running");
        CriuTool.Require();
        var specBytes = await File.ReadAllBytesAsync(Path.Combine(c.BundleDir, SpecFile.ConfigName), CancellationToken.None);
        var spec = SpecFile.Parse(specBytes);
        if (spec.Linux?.Namespaces?.Any(n => n.Type == "user") == true)
            throw Fail.FailedPrecondition($"container {c.Id}: checkpoint of a container in a user namespace is not supported");
        return new DumpTarget(c, state.Pid, specBytes, spec);
    }

    /// <summary>Runs `criu dump` (leave-running) into a scratch directory of its own; the archive
    /// is written from it afterwards (<see cref="WriteArchive"/>), then it is discarded
    /// (<see cref="DiscardDump"/>, also on failure). <paramref name="freezerDir"/>: the cgroup the
    /// caller froze, handed to CRIU (which then leaves it frozen as it found it).
    /// <paramref name="streamInto"/>: the archive's final name when it is known before the dump
    /// (CheckpointContainer): CRIU then streams its images straight into the archive's temporary
    /// file (<see cref="ImageStreamer"/>), which <see cref="WriteArchive"/> completes; there is no
    /// copy of the images. <paramref name="lazy"/>: a lazy migration's dump (no memory pages in
    /// the images): this returns once CRIU's post-dump ran, with CRIU still serving the pages
    /// (registered in <paramref name="lazy"/>; the scratch directory goes when it exits).
    /// <paramref name="gate"/>: a pod checkpoint's, where CRIU waits (at pre-dump, started up and
    /// about to seize the tasks) until the whole pod is frozen.</summary>
    private async Task<DumpedContainer> DumpAsync(DumpTarget t, string? freezerDir, TimeSpan timeout, CancellationToken ct, string? streamInto = null,
        LazyDump? lazy = null, PodCheckpointer.DumpGate? gate = null, Containers.StepTimes? steps = null, bool networkLockedOutside = false)
    {
        var (c, pid, specBytes, spec) = (t.Container, t.Pid, t.SpecBytes, t.Spec);
        var criu = CriuTool.Require();
        var scratch = Path.Combine(Criu.ScratchRoot(_config.Root), $"{c.Id[..20]}-{Guid.NewGuid():N}");
        var images = Path.Combine(scratch, CheckpointArchive.CheckpointDirectory);
        Directory.CreateDirectory(images);
        var ok = false;
        Task<CriuResult>? serving = null;
        ArchiveWriter? archive = null;
        try
        {
            ImageStreamer? streamer = null;
            if (streamInto is not null)
            {
                archive = ArchiveWriter.Create(streamInto);
                archive.Tar.WriteEntry(images, CheckpointArchive.CheckpointDirectory);
                streamer = ImageStreamer.Start(images, archive, CheckpointArchive.CheckpointDirectory, scratch);
            }
            using var streaming = streamer;
            var mounts = DumpPlan.ParseMountInfo(await File.ReadAllTextAsync($"/proc/{pid}/mountinfo", CancellationToken.None));
            var rootfs = Path.GetFullPath(Path.Combine(c.BundleDir, spec.Root?.Path ?? "rootfs"));
            // The writable layer is read at CRIU's post-dump, while the tasks are still frozen: the
            // files match the memory and the open files CRIU recorded.
            var upper = Storage.WritableLayer.UpperDir(c, _containers.ContainerDir(c.Id));
            // Mount points the shim made in the writable layer for the spec's mounts are not the container's changes.
            var mountPoints = new HashSet<string>((spec.Mounts ?? []).Select(m => "/" + m.Destination.Trim('/')), StringComparer.Ordinal);
            CheckpointArchive.RootfsDiff? diff = null;
            // The container's own tmpfs mounts are declared external: their content is captured
            // here, with the writable layer, while the tasks are frozen (TmpfsContent).
            Func<string, bool> isDirectory = point => Directory.Exists($"/proc/{pid}/root{point}");
            var tmpfsMounts = TmpfsContent.Declared(DumpPlan.ExternalMounts(spec, mounts, isDirectory), mounts);
            // The pod's /dev/shm is a bind (external by its destination): its content too.
            var podShm = TmpfsContent.PodShm(spec, mounts);
            TmpfsDump? tmpfs = null;
            var postDumped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var pageServer = lazy is null ? ((string, int)?)null : (lazy.Address, LazyDump.FreePort(lazy.Address));
            // A lazy dump's hook lives as long as its CRIU (which may still be reading the answer).
            var hook = PostDumpHook.Start(scratch, () =>
            {
                // The pages CRIU streamed are references to the process's memory until they are
                // in the archive: all of them must be before CRIU resumes the tasks.
                streamer?.WaitForPages(TimeSpan.FromSeconds(30));
                archive?.Hurry();
                using var span = Telemetry.Tracing.Start("rootfs diff");
                try
                {
                    diff = CheckpointArchive.WriteRootfsDiff(upper, Path.Combine(scratch, CheckpointArchive.RootFsDiffTar), mountPoints);
                    if (tmpfsMounts.Count > 0 || podShm is not null)
                        tmpfs = TmpfsContent.Capture($"/proc/{pid}/root", tmpfsMounts,
                            [.. DumpPlan.ParseMountInfo(File.ReadAllText($"/proc/{pid}/mountinfo")).Select(m => m.MountPoint)], scratch, podShm);
                }
                finally { postDumped.TrySetResult(); }
            }, gate: gate, listening: lazy is null ? null : criuPid => PageServerListening(c.Id, criuPid, pageServer!.Value.Item2));
            using var hookUntilReturn = lazy is null ? hook : null;
            var args = DumpPlan.Args(pid, images, scratch, rootfs, spec, mounts, kind => NamespaceInode(pid, kind), freezerDir, hook.ScriptPath,
                stream: streamer is not null, pageServer: pageServer, isDirectory: isDirectory, networkLockedOutside: networkLockedOutside);
            if (lazy is not null) args = [.. args, .. lazy.ServerArgs];
            // Read before the dump: restore hands CRIU new pipes in place of these (--inherit-fd).
            var stdio = new StdioDump { Fds = [.. Enumerable.Range(0, 3).Select(fd => new FileInfo($"/proc/{pid}/fd/{fd}").LinkTarget ?? "")] };
            var checkpointedAt = _clock.GetUtcNow();
            steps?.Mark("prepare");
            CriuResult result;
            if (lazy is not null)
            {
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                var run = CriuTool.RunAsync(criu, args, LazyDump.ServeTimeout, scratch, lazy.Stopping);
                serving = run.ContinueWith(r => { hook.Dispose(); return r.Result; }, TaskScheduler.Default);
                try { await Task.WhenAny(postDumped.Task, run).WaitAsync(timeout, ct); }
                catch (Exception e) when (e is TimeoutException or OperationCanceledException)
                {
                    await lazy.StopAsync();
                    throw Fail.DeadlineExceeded($"checkpoint of container {c.Id}: criu dump (lazy) did not reach post-dump within {Config.Duration.Format(timeout)} and was killed");
                }
                if (run.IsCompleted)
                {
                    result = await run;
                    if (result.ExitCode == 0) result = result with { ExitCode = -1, Output = "exited before serving the memory pages: " + result.Output };
                    throw Fail.FailedPrecondition($"checkpoint of container {c.Id}: criu dump (lazy) failed (exit {result.ExitCode}){Criu.LogTail(scratch, result.Output)}");
                }
                result = new CriuResult(0, "", System.Diagnostics.Stopwatch.GetElapsedTime(started), TimedOut: false);
                lazy.Add(new LazyDump.Server(c.Name, pageServer!.Value.Item2, serving, scratch));
            }
            else
            using (var span = Telemetry.Tracing.Start("criu dump"))
            {
                span?.SetTag("container.id", c.Id);
                result = await CriuTool.RunAsync(criu, args, timeout, scratch, ct);
                span?.SetTag("process.exit.code", result.ExitCode);
                if (result.TimedOut || result.ExitCode != 0) span?.SetStatus(System.Diagnostics.ActivityStatusCode.Error, result.TimedOut ? "timed out" : $"exit {result.ExitCode}");
            }
            steps?.Mark("criu");
            // CRIU has exited: every image it streamed has ended (or the dump failed anyway).
            Exception? streamFailure = null;
            try { streamer?.Finish(TimeSpan.FromSeconds(10)); }
            catch (IOException e) { streamFailure = e; }
            steps?.Mark("streamer");
            bool captured;
            // (Lazy: CRIU runs on, serving pages; this waits only for the hook's answer.)
            try { captured = hook.Finish(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw Fail.Unavailable($"checkpoint of container {c.Id}: reading its writable layer {upper} or its tmpfs mounts while it was frozen failed: {e.Message}", e);
            }
            if (result.TimedOut)
                throw Fail.DeadlineExceeded(ct.IsCancellationRequested
                    ? $"checkpoint of container {c.Id}: the call's deadline passed during criu dump, which was killed{Criu.LogTail(scratch, result.Output)}"
                    : $"checkpoint of container {c.Id}: criu dump did not finish within {Config.Duration.Format(timeout)} and was killed{Criu.LogTail(scratch, result.Output)}");
            if (result.ExitCode != 0)
                throw Fail.FailedPrecondition($"checkpoint of container {c.Id}: criu dump failed (exit {result.ExitCode}){Criu.LogTail(scratch, result.Output)}");
            if (streamFailure is not null)
                throw Fail.Unavailable($"checkpoint of container {c.Id}: writing CRIU's images into the archive failed: {streamFailure.Message}", streamFailure);
            if (!captured || diff is null || ((tmpfsMounts.Count > 0 || podShm is not null) && tmpfs is null))
                throw new InvalidOperationException($"checkpoint of container {c.Id}: criu dump succeeded without running its post-dump action script ({hook.ScriptPath})");

            var parts = new CheckpointArchive.Parts(
                new ConfigDump
                {
                    Id = c.Id, Name = c.Name, RootfsImage = c.ImageRef, RootfsImageRef = c.ImageId, RootfsImageName = c.ImageRef,
                    OciRuntime = "criruntime", CreatedTime = DateTimeOffset.FromUnixTimeMilliseconds(c.CreatedAtNanos / 1_000_000),
                    CheckpointedAt = checkpointedAt,
                },
                specBytes,
                new StatusDump { Id = c.Id, State = "running", Pid = pid, CreatedAt = c.CreatedAtNanos, StartedAt = c.StartedAtNanos },
                images, c.LogPath, Path.Combine(scratch, "dump.log"), stdio, diff, Path.Combine(scratch, CheckpointArchive.StatsDumpFile),
                tmpfs is null ? null : new CheckpointArchive.Tmpfs(tmpfs, scratch));
            ok = true;
            return new DumpedContainer(c, scratch, parts, result.Elapsed, archive, serving);
        }
        finally
        {
            if (!ok)
            {
                archive?.Dispose();
                if (serving is not null)
                {
                    await lazy!.StopAsync();
                    await serving.ContinueWith(_ => { }, TaskScheduler.Default);
                }
                DiscardScratch(scratch);
            }
        }
    }

    /// <summary>Writes the archive at <paramref name="location"/>, or completes the one the
    /// images were streamed into (then <paramref name="location"/> is the name it was opened for).</summary>
    private static void WriteArchive(DumpedContainer d, string location, Containers.StepTimes? steps = null, bool durable = true)
    {
        using var span = Telemetry.Tracing.Start("checkpoint archive")?.SetTag("criruntime.checkpoint_archive", location);
        if (d.Archive is { } streamed) CheckpointArchive.Complete(streamed, d.Parts, steps, durable);
        else CheckpointArchive.Write(location, d.Parts, durable);
    }

    private void DiscardDump(DumpedContainer d)
    {
        d.Archive?.Dispose();
        // A lazy dump's CRIU still serves pages from there (its log): removed when it exits.
        if (d.Serving is { IsCompleted: false } serving) _ = serving.ContinueWith(_ => DiscardScratch(d.Scratch), TaskScheduler.Default);
        else DiscardScratch(d.Scratch);
    }

    private void DiscardScratch(string scratch)
    {
        try { Directory.Delete(scratch, recursive: true); }
        catch (IOException e) { CheckpointLog.ScratchLeft(_log, scratch, e.Message); }
    }

    /// <summary>The inode of a namespace of the container's init ("net:[4026532290]" as
    /// /proc/PID/ns/net reads): the one CRIU records for it.</summary>
    private static ulong? NamespaceInode(int pid, string kind)
    {
        var target = new FileInfo($"/proc/{pid}/ns/{kind}").LinkTarget;
        if (target is null || !target.EndsWith(']')) return null;
        var open = target.IndexOf('[');
        return ulong.TryParse(target.AsSpan(open + 1, target.Length - open - 2), out var inode) ? inode : null;
    }

    /// <summary>The last lines of CRIU's log, for the error the caller sees.</summary>
    /// <summary>A lazy dump's page server listens (CRIU waits in its status-ready action script):
    /// its socket gets TCP_NODELAY before the target connects (<see cref="PageServerSocket"/>).
    /// Best effort: without it the pages still flow, the TLS handshake may just take 40 ms longer.</summary>
    private void PageServerListening(string containerId, int criuPid, int port)
    {
        try { PageServerSocket.SetNoDelay(criuPid, port); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or Interop.KernelException or System.Net.Sockets.SocketException)
        {
            CheckpointLog.NoDelayFailed(_log, containerId, port, e.Message);
        }
    }

    private static partial class CheckpointLog
    {
        [LoggerMessage(EventId = 1203, Level = LogLevel.Warning, Message = "container {ContainerId}: cannot set TCP_NODELAY on its page server's socket (port {Port}); its TLS handshake may stall: {Reason}")]
        public static partial void NoDelayFailed(ILogger logger, string containerId, int port, string reason);

        [LoggerMessage(EventId = 1200, Level = LogLevel.Information, Message = "checkpointed container {ContainerId} to {Location} (criu dump {Milliseconds} ms)")]
        public static partial void Checkpointed(ILogger logger, string containerId, string location, double milliseconds);

        /// <summary>Where the call's time went (the bench's checkpoint section reads it).</summary>
        [LoggerMessage(EventId = 1202, Level = LogLevel.Debug, Message = "CheckpointContainer {ContainerId}: {Steps}")]
        public static partial void Steps(ILogger logger, string containerId, Containers.StepTimes steps);

        [LoggerMessage(EventId = 1201, Level = LogLevel.Warning, Message = "checkpoint scratch directory {Dir} left behind: {Reason}")]
        public static partial void ScratchLeft(ILogger logger, string dir, string reason);
    }
}

/// <summary>A running container about to be dumped: its record, init pid and spec.</summary>
internal sealed record DumpTarget(ContainerRecord Container, int Pid, byte[] SpecBytes, Spec Spec);

/// <summary>A container CRIU dumped into <see cref="Scratch"/>: what its archive is written from.
/// <see cref="Archive"/>: the archive CRIU's images were streamed into, not committed yet.
/// <see cref="Serving"/>: a lazy dump's CRIU, serving the memory pages until it exits.</summary>
internal sealed record DumpedContainer(ContainerRecord Container, string Scratch, CheckpointArchive.Parts Parts, TimeSpan CriuTime,
    ArchiveWriter? Archive = null, Task<CriuResult>? Serving = null);
