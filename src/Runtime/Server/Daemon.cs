using CriRuntime.Config;
using CriRuntime.Cri;
using CriRuntime.Images;
using CriRuntime.Network;
using CriRuntime.Pods;
using CriRuntime.State;
using CriRuntime.Streaming;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace CriRuntime.Server;

/// <summary>Wires the daemon together and serves until SIGTERM/SIGINT.</summary>
public static partial class Daemon
{
    public static async Task<int> RunAsync(CriRuntimeConfig config)
    {
        try
        {
            Directory.CreateDirectory(config.Root);
            Directory.CreateDirectory(config.State);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new StartupException($"cannot create root {config.Root} or state {config.State}: {e.Message}", e);
        }

        HostChecks.CgroupDriver(config);
        StreamingListener.Address(config.Streaming);
        using var socket = CriSocket.Bind(config.Socket);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        ConfigureLogging(builder.Logging, config.LogLevel);
        // Kestrel and ASP.NET log every request at Information; the interceptor already logs each RPC once.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);

        builder.WebHost.ConfigureKestrel(k =>
        {
            // Kestrel closes the descriptor it is given; CriSocket closes its own: give Kestrel a duplicate.
            k.ListenHandle(socket.DuplicateForKestrel(), l => l.Protocols = HttpProtocols.Http2);
            k.Limits.Http2.MaxStreamsPerConnection = 1000;
        });

        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(new RuntimeConfigStore(config.Root));
        builder.Services.AddSingleton<CniConfigProbe>();
        builder.Services.AddSingleton<CniPlugins>();
        builder.Services.AddSingleton<CniNetwork>();
        builder.Services.AddSingleton<IPodNetwork>(sp => sp.GetRequiredService<CniNetwork>());
        builder.Services.AddSingleton(new PodSandboxStore(config.Root, config.Runtime.CgroupRoot));
        builder.Services.AddSingleton<PodRecovery>();
        builder.Services.AddSingleton(new ContainerStore(config.Root));
        builder.Services.AddSingleton<Containers.ShimRunner>();
        builder.Services.AddSingleton<Containers.ContainerEvents>();
        builder.Services.AddSingleton<Containers.ExitMonitor>();
        builder.Services.AddSingleton<Containers.ContainerRecovery>();
        builder.Services.AddSingleton<Containers.IShimRunner>(sp => sp.GetRequiredService<Containers.ShimRunner>());
        builder.Services.AddSingleton<Containers.IContainerExits>(sp => sp.GetRequiredService<Containers.ExitMonitor>());
        builder.Services.AddSingleton<Containers.IContainerRootfs, Containers.HostRootfs>();
        builder.Services.AddSingleton<PartitionView.Lxcfs>();
        builder.Services.AddSingleton<PartitionView.IProcViewSource>(sp => sp.GetRequiredService<PartitionView.Lxcfs>());
        builder.Services.AddSingleton<Kernel.IHostKernel>(Kernel.HostKernel.Instance);
        builder.Services.AddSingleton<Storage.FileVolumes>();
        builder.Services.AddSingleton<Storage.IWritableVolumes>(sp => sp.GetRequiredService<Storage.FileVolumes>());
        builder.Services.AddSingleton<Containers.ContainerController>();
        builder.Services.AddSingleton<Namespaces.IPodNamespaces, Namespaces.HostNamespaces>();
        builder.Services.AddSingleton<Pods.IPodInit, Pods.PodInitProcesses>();
        builder.Services.AddSingleton<Cgroups.ICgroupManagerFactory>(Cgroups.HostCgroupManagers.Instance);
        builder.Services.AddSingleton<Pods.PodSandboxController>();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddImageService(config);
        // exec/attach/port-forward are served by the stream server process (Streaming/Host), so
        // that sessions outlive this daemon; the daemon resolves and registers them.
        builder.Services.AddSingleton<StreamTargets>();
        builder.Services.AddSingleton<StreamServerClient>();
        builder.Services.AddSingleton<CriRuntimeService>();
        builder.Services.AddSingleton<CriImageService>();
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<CriErrorInterceptor>();
            o.MaxReceiveMessageSize = 16 * 1024 * 1024;
            o.MaxSendMessageSize = 16 * 1024 * 1024;
        });

        var app = builder.Build();
        // Before serving: drop what an unclean stop left half-written and collect orphaned content.
        // Image use is not persisted: re-mark what every known container is built from first, so
        // neither pruning nor the collector can take layers from under a container.
        var usage = app.Services.GetRequiredService<IImageUsage>();
        foreach (var c in app.Services.GetRequiredService<ContainerStore>().All) usage.MarkInUse(c.ImageId, c.Id);
        app.Services.GetRequiredService<ImageStore>().PruneUnused();
        app.Services.GetRequiredService<ImageGarbageCollector>().Recover();
        // The partition /proc view: adopt the lxcfs a previous daemon left, else start one.
        app.Services.GetRequiredService<PartitionView.Lxcfs>().Start();
        // A checkpoint the previous daemon did not finish: its CRIU must not hold the container.
        Checkpoint.Criu.RemoveLeftovers(Checkpoint.Criu.ScratchRoot(config.Root));
        // Through definitions whose request parsing answers InvalidArgument (see CriServiceDefinitions);
        // the services hold no per-call state, so one instance each serves every call.
        app.MapGrpcService(sp => CriServiceDefinitions.Runtime(sp.GetRequiredService<CriRuntimeService>()));
        app.MapGrpcService(sp => CriServiceDefinitions.Images(sp.GetRequiredService<CriImageService>()));

        await app.Services.GetRequiredService<Containers.ContainerRecovery>().RunAsync(CancellationToken.None);
        await app.Services.GetRequiredService<PodRecovery>().RunAsync(CancellationToken.None);
        // Before serving: no ADD may run between GC's list of attachments in use and the plugins acting on it.
        await app.Services.GetRequiredService<CniNetwork>().GarbageCollectAsync(CancellationToken.None);
        await app.Services.GetRequiredService<Containers.ExitMonitor>().ResumeAsync(CancellationToken.None);
        app.Lifetime.ApplicationStopping.Register(app.Services.GetRequiredService<Containers.ExitMonitor>().StopAll);
        var streamServer = app.Services.GetRequiredService<StreamServerClient>();
        await streamServer.AdoptAsync(CancellationToken.None);

        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("criruntime");
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            LogServing(log, CriRuntimeService.BuildVersion, config.Socket, config.Root, config.State);
            LogStreaming(log, streamServer.BaseUrl ?? "(started with the first Exec, Attach or PortForward)");
        });
        await app.RunAsync();
        await streamServer.DetachAsync();
        LogStopped(log);
        return 0;
    }

    /// <summary>One line per record, UTC timestamps, on stderr: the daemon's and the stream server's.</summary>
    internal static void ConfigureLogging(ILoggingBuilder logging, string level)
    {
        logging.ClearProviders();
        logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        logging.SetMinimumLevel(ToLevel(level));
    }

    internal static LogLevel ToLevel(string level) => level switch
    {
        "trace" => LogLevel.Trace,
        "debug" => LogLevel.Debug,
        "warn" => LogLevel.Warning,
        "error" => LogLevel.Error,
        _ => LogLevel.Information,
    };

    [LoggerMessage(EventId = 100, Level = LogLevel.Information, Message = "criruntime {Version} serving CRI on {Socket} (root {Root}, state {State})")]
    private static partial void LogServing(ILogger log, string version, string socket, string root, string state);

    [LoggerMessage(EventId = 102, Level = LogLevel.Information, Message = "streaming server on {Url}")]
    private static partial void LogStreaming(ILogger log, string url);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "criruntime stopped")]
    private static partial void LogStopped(ILogger log);
}
