using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Harness;

/// <summary>Shorthands for the CRI calls most container tests make.</summary>
public static class PodHelpers
{
    public static PodSandboxConfig PodConfig(string name, string? logDir = null) => new()
    {
        Metadata = new PodSandboxMetadata { Name = name, Namespace = "e2e", Uid = Guid.NewGuid().ToString() },
        Hostname = name,
        LogDirectory = logDir ?? "",
        Linux = new LinuxPodSandboxConfig(),
    };

    public static async Task<string> RunPodAsync(this CriClient c, PodSandboxConfig config) =>
        (await c.Runtime.RunPodSandboxAsync(new RunPodSandboxRequest { Config = config })).PodSandboxId;

    public static async Task PullAsync(this CriClient c, string image) =>
        await c.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = image } });

    public static ContainerConfig Container(string name, string image, params string[] command) => new()
    {
        Metadata = new ContainerMetadata { Name = name },
        Image = new ImageSpec { Image = image },
        Command = { command },
        LogPath = name + ".log",
        Linux = new LinuxContainerConfig { SecurityContext = new LinuxContainerSecurityContext(), Resources = new LinuxContainerResources() },
    };

    public static async Task<string> CreateAsync(this CriClient c, string podId, PodSandboxConfig pod, ContainerConfig config) =>
        (await c.Runtime.CreateContainerAsync(new CreateContainerRequest { PodSandboxId = podId, Config = config, SandboxConfig = pod })).ContainerId;

    public static async Task<string> StartNewAsync(this CriClient c, string podId, PodSandboxConfig pod, ContainerConfig config)
    {
        var id = await c.CreateAsync(podId, pod, config);
        await c.Runtime.StartContainerAsync(new StartContainerRequest { ContainerId = id });
        return id;
    }

    public static async Task<ContainerStatus> StatusAsync(this CriClient c, string id) =>
        (await c.Runtime.ContainerStatusAsync(new ContainerStatusRequest { ContainerId = id })).Status;

    /// <summary>Waits for the container's STOPPED event (subscribed before checking, so none is missed).</summary>
    public static async Task<ContainerStatus> WaitExitedAsync(this CriClient c, string id, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(60));
        using var stream = c.Runtime.GetContainerEvents(new GetEventsRequest(), cancellationToken: cts.Token);
        // The server sends the response headers once it has subscribed: from then on no event is missed.
        await stream.ResponseHeadersAsync;
        var status = await c.StatusAsync(id);
        if (status.State == ContainerState.ContainerExited) return status;
        try
        {
            while (await stream.ResponseStream.MoveNext(cts.Token))
            {
                var e = stream.ResponseStream.Current;
                if (e.ContainerId == id && e.ContainerEventType == ContainerEventType.ContainerStoppedEvent) break;
                status = await c.StatusAsync(id);
                if (status.State == ContainerState.ContainerExited) return status;
            }
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Cancelled) { }
        return await c.StatusAsync(id);
    }

    /// <summary>ExecSync that must succeed: its stdout; a non-zero exit fails the test with stderr.</summary>
    public static async Task<string> ExecOkAsync(this CriClient c, string id, params string[] cmd)
    {
        var r = await c.Runtime.ExecSyncAsync(new ExecSyncRequest { ContainerId = id, Cmd = { cmd }, Timeout = 30 });
        if (r.ExitCode != 0)
            throw new Xunit.Sdk.XunitException($"{string.Join(' ', cmd)} in {id}: exit {r.ExitCode}: {r.Stderr.ToStringUtf8()}");
        return r.Stdout.ToStringUtf8();
    }

    /// <summary>The text of a CRI log file ("TIME STREAM TAG TEXT" lines), by stream.</summary>
    public static string LogText(string path, string stream = "stdout") =>
        string.Concat(File.ReadLines(path).Select(l => l.Split(' ', 4)).Where(p => p.Length == 4 && p[1] == stream)
            .Select(p => p[2] == "F" ? p[3] + "\n" : p[3]));

    /// <summary>The daemon answers and the host can still start processes.</summary>
    public static async Task AssertNodeHealthyAsync(CriClient c)
    {
        Assert.NotEmpty((await c.Runtime.VersionAsync(new VersionRequest())).RuntimeName);
        Assert.Equal(0, Shell.TryRun("true").Code);
    }


    /// <summary>Waits (on inotify, through FileSystemWatcher) until the file contains the text.</summary>
    public static async Task WaitForTextAsync(string path, string text)
    {
        var found = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var watcher = new FileSystemWatcher(Path.GetDirectoryName(path)!, Path.GetFileName(path));
        void Check()
        {
            try { if (File.Exists(path) && File.ReadAllText(path).Contains(text, StringComparison.Ordinal)) found.TrySetResult(); }
            catch (IOException) { }
        }
        watcher.Changed += (_, _) => Check();
        watcher.Created += (_, _) => Check();
        watcher.EnableRaisingEvents = true;
        Check();
        await found.Task.WaitAsync(TimeSpan.FromSeconds(60));
    }
}
