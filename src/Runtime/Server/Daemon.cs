using CriRuntime.Config;
using CriRuntime.Cri;
using CriRuntime.Images;
using CriRuntime.Network;
using CriRuntime.Pods;
using CriRuntime.State;
using CriRuntime.Streaming;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace CriRuntime.Server;

/// <summary>Wires the daemon together and serves until SIGTERM/SIGINT.</summary>
public static partial class Daemon
{
    /// <summary>The thread pool's minimum (see where it is set).</summary>
    private const int MinPoolThreads = 32;

    /// <param name="reload">Reads the config files again with the same flags (SIGHUP); null: no reload.</param>
    public static async Task<int> RunAsync(CriRuntimeConfig config, Func<CriRuntimeConfig>? reload = null)
    {
        var source = new ConfigSource(config, reload);
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
        // Disk quotas: from [storage] quota_backend and the storage root's file system, once.
        var quotaBackend = Storage.QuotaBackends.Choose(config.Storage.QuotaBackend, config.Root, Kernel.HostKernel.Instance);
        StreamingListener.Address(config.Streaming);
        using var socket = CriSocket.Bind(config.Socket);

        // A pod start does file system work synchronously (records fsynced, mounts, namespace
        // pins), so a burst of kubelet calls holds pool threads; with the default minimum (one per
        // core) every further call, Status included, then waits for the pool's starvation
        // injection (a thread per ~0.5 s): Status took 160-300 ms during 10-client bursts. Threads
        // up to this minimum are made at once when work waits, and only when it does.
        ThreadPool.GetMinThreads(out var minWorkers, out var minIo);
        ThreadPool.SetMinThreads(Math.Max(minWorkers, MinPoolThreads), Math.Max(minIo, MinPoolThreads));
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        ConfigureLogging(builder.Logging, config.LogLevel, config.LogFormat, () => source.Current.LogLevel);
        // Kestrel and ASP.NET log every request at Information; the interceptor already logs each RPC once.
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);

        var metricsEndpoint = config.Metrics.Address.Length > 0 ? System.Net.IPEndPoint.Parse(config.Metrics.Address) : null;
        // Live migration: the node-to-node listener, mutual TLS only (docs/migration.md).
        var migrationEndpoint = config.Migration.Listen.Length > 0 ? System.Net.IPEndPoint.Parse(config.Migration.Listen) : null;
        Migration.PeerTls? peerTls;
        try { peerTls = Migration.PeerTls.Load(config.Migration); }
        catch (ConfigException e) { throw new StartupException(e.Message, e); }
        builder.WebHost.ConfigureKestrel(k =>
        {
            // Kestrel closes the descriptor it is given; CriSocket closes its own: give Kestrel a duplicate.
            k.ListenHandle(socket.DuplicateForKestrel(), l => l.Protocols = HttpProtocols.Http2);
            k.Limits.Http2.MaxStreamsPerConnection = 1000;
            // Prometheus scrapes over plain HTTP/1.1; gRPC (HTTP/2 only) is not served there.
            if (metricsEndpoint is not null) k.Listen(metricsEndpoint, l => l.Protocols = HttpProtocols.Http1);
            if (migrationEndpoint is not null)
                k.Listen(migrationEndpoint, l =>
                {
                    l.Protocols = HttpProtocols.Http2;
                    l.UseHttps(peerTls!.ServerOptions());
                });
        });

        builder.Services.AddMetrics();
        builder.Services.AddSingleton<IdleTrim>();
        builder.Services.AddSingleton<Metrics.RuntimeMetrics>();
        builder.Services.AddSingleton<Metrics.StateGauges>();
        builder.Services.AddSingleton<Metrics.BeancounterGauges>();
        // Tracing only with an endpoint: otherwise nothing listens to the ActivitySource and spans cost a null check.
        var tracing = config.Telemetry.OtlpEndpoint.Length > 0;
        if (metricsEndpoint is not null || tracing)
        {
            var otel = builder.Services.AddOpenTelemetry()
                .ConfigureResource(r => r.AddService("criruntime", serviceVersion: CriRuntimeService.BuildVersion));
            if (metricsEndpoint is not null)
                otel.WithMetrics(m => m
                    .AddMeter(Metrics.RuntimeMetrics.MeterName)
                    .AddRuntimeInstrumentation()
                    .AddPrometheusExporter());
            if (tracing)
                otel.WithTracing(t => Telemetry.TraceExport.Configure(t, config.Telemetry, () => source.Current.Telemetry.SamplingRatio));
        }

        builder.Services.AddSingleton(config);
        builder.Services.AddSingleton(source);
        builder.Services.AddSingleton(_ => new CniConfigProbe(() => source.Current.Cni));
        builder.Services.AddSingleton(new RuntimeConfigStore(config.Root));
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
        builder.Services.AddSingleton<Storage.VolumePool>();
        builder.Services.AddSingleton<Storage.BtrfsVolumes>();
        builder.Services.AddSingleton<Storage.ProjectVolumes>();
        builder.Services.AddSingleton<Storage.IWritableVolumes>(sp => quotaBackend switch
        {
            Storage.QuotaBackends.Btrfs => sp.GetRequiredService<Storage.BtrfsVolumes>(),
            Storage.QuotaBackends.Project => sp.GetRequiredService<Storage.ProjectVolumes>(),
            _ => sp.GetRequiredService<Storage.VolumePool>(),
        });
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
        builder.Services.AddSingleton(new Migration.MigrationStore(config.Root));
        builder.Services.AddSingleton<Migration.MigrationController>();
        builder.Services.AddSingleton<Migration.Api.MigrationService>();
        builder.Services.AddSingleton<Migration.Peer.MigrationPeerService>();
        builder.Services.AddGrpc(o =>
        {
            o.Interceptors.Add<CriErrorInterceptor>();
            o.MaxReceiveMessageSize = 16 * 1024 * 1024;
            o.MaxSendMessageSize = 16 * 1024 * 1024;
        });

        var app = builder.Build();
        if (metricsEndpoint is not null)
        {
            app.Services.GetRequiredService<Metrics.StateGauges>();
            app.Services.GetRequiredService<Metrics.BeancounterGauges>();
            // Only on the metrics listener: the CRI socket's connections have no local port.
            var port = metricsEndpoint.Port;
            app.UseOpenTelemetryPrometheusScrapingEndpoint(ctx => ctx.Connection.LocalPort == port && ctx.Request.Path == "/metrics");
        }
        // Before serving: drop what an unclean stop left half-written and collect orphaned content.
        // Image use is not persisted: re-mark what every known container is built from first, so
        // neither pruning nor the collector can take layers from under a container.
        var usage = app.Services.GetRequiredService<IImageUsage>();
        foreach (var c in app.Services.GetRequiredService<ContainerStore>().All) usage.MarkInUse(c.ImageId, c.Id);
        app.Services.GetRequiredService<ImageStore>().PruneUnused();
        app.Services.GetRequiredService<ImageGarbageCollector>().Recover();
        // The partition /proc view: adopt the lxcfs a previous daemon left, else start one.
        app.Services.GetRequiredService<PartitionView.Lxcfs>().Start();
        // A migration's source kept frozen: frozen again first, as a lazy dump's page server holds
        // its tasks seized in a thawed cgroup and its kill below would let them run.
        // (Not through MigrationController: it would build the CRI service before the recoveries.)
        Migration.MigrationController.RefreezeSources(app.Services.GetRequiredService<Migration.MigrationStore>(),
            app.Services.GetRequiredService<Cgroups.ICgroupManagerFactory>(),
            app.Services.GetRequiredService<ILoggerFactory>().CreateLogger<Migration.MigrationController>());
        // A checkpoint the previous daemon did not finish: its CRIU must not hold the container.
        Checkpoint.Criu.RemoveLeftovers(Checkpoint.Criu.ScratchRoot(config.Root));
        // A CheckpointPod it did not finish: thaw every container it froze (recorded before freezing).
        var startLog = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("criruntime.checkpoint");
        // Where our CRIU build keeps its kernel probes: root's own, so that no one else's reaches it.
        if (Checkpoint.Criu.PrepareProbeCache() is { } noCache) LogNoProbeCache(startLog, noCache);
        new Checkpoint.FreezeLedger(Checkpoint.Criu.ScratchRoot(config.Root)).ThawLeftovers(
            app.Services.GetRequiredService<Cgroups.ICgroupManagerFactory>(),
            (cgroup, e) => LogThawFailed(startLog, cgroup, e.Message));
        // Through definitions whose request parsing answers InvalidArgument (see CriServiceDefinitions);
        // the services hold no per-call state, so one instance each serves every call.
        app.MapGrpcService(sp => CriServiceDefinitions.Runtime(sp.GetRequiredService<CriRuntimeService>()));
        app.MapGrpcService(sp => CriServiceDefinitions.Images(sp.GetRequiredService<CriImageService>()));
        app.MapGrpcService(sp => CriServiceDefinitions.Migration(sp.GetRequiredService<Migration.Api.MigrationService>()));
        app.MapGrpcService(sp => CriServiceDefinitions.MigrationPeer(sp.GetRequiredService<Migration.Peer.MigrationPeerService>()));
        // The peer service only on the migration listener, everything else never there: a peer
        // signed by the CA reaches no CRI method, and the CRI socket no peer method.
        var migrationPort = migrationEndpoint?.Port ?? -1;
        app.Use((ctx, next) =>
        {
            var onListener = ctx.Connection.LocalPort == migrationPort && ctx.Connection.LocalIpAddress is not null;
            var peerMethod = ctx.Request.Path.StartsWithSegments("/criruntime.migration.v1.MigrationPeer", StringComparison.Ordinal);
            if (onListener == peerMethod) return next(ctx);
            ctx.Response.StatusCode = StatusCodes.Status200OK;
            ctx.Response.ContentType = "application/grpc";
            ctx.Response.Headers["grpc-status"] = "7"; // PermissionDenied
            ctx.Response.Headers["grpc-message"] = onListener ? "only migration peer methods are served on the migration listener" : "migration peer methods are served only on the migration listener";
            return Task.CompletedTask;
        });

        await app.Services.GetRequiredService<Containers.ContainerRecovery>().RunAsync(CancellationToken.None);
        await app.Services.GetRequiredService<PodRecovery>().RunAsync(CancellationToken.None);
        // Migrations the previous daemon did not finish: thaw a source pod, remove a target's never started.
        await app.Services.GetRequiredService<Migration.MigrationController>().RecoverAsync(CancellationToken.None);
        // Warm disk-quota volumes: what a previous daemon left in the pool goes, new ones are made
        // in the background; a clean stop releases them (the container is disposed with the host).
        // The other backends have nothing to warm: their leftovers (pod qgroups the btrfs cleaner
        // still held, project ids of half-made layers) are removed instead.
        switch (quotaBackend)
        {
            case Storage.QuotaBackends.Btrfs: app.Services.GetRequiredService<Storage.BtrfsVolumes>().Start(); break;
            case Storage.QuotaBackends.Project: app.Services.GetRequiredService<Storage.ProjectVolumes>().Start(); break;
            default:
                var pool = app.Services.GetRequiredService<Storage.VolumePool>();
                pool.Start();
                app.Lifetime.ApplicationStopped.Register(pool.Dispose);
                break;
        }
        // Before serving: no ADD may run between GC's list of attachments in use and the plugins acting on it.
        await app.Services.GetRequiredService<CniNetwork>().GarbageCollectAsync(CancellationToken.None);
        await app.Services.GetRequiredService<Containers.ExitMonitor>().ResumeAsync(CancellationToken.None);
        app.Lifetime.ApplicationStopping.Register(app.Services.GetRequiredService<Containers.ExitMonitor>().StopAll);
        var streamServer = app.Services.GetRequiredService<StreamServerClient>();
        await streamServer.AdoptAsync(CancellationToken.None);

        var log = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("criruntime");
        var inForce = Path.Combine(config.State, InForceFile);
        WriteInForce(inForce, config);
        // SIGHUP: read the files again; what may change at run time applies to the next requests.
        using var hup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, ctx =>
        {
            ctx.Cancel = true;
            var r = source.Reload();
            if (r.Error is not null)
            {
                LogReloadRefused(log, r.Error);
                return;
            }
            if (r.Kept.Count > 0) LogReloadKept(log, string.Join(", ", r.Kept));
            LogReloaded(log, r.Applied.Count > 0 ? string.Join(", ", r.Applied) : "nothing changed");
            WriteInForce(inForce, source.Current);
        });
        app.Lifetime.ApplicationStarted.Register(() =>
        {
            LogServing(log, CriRuntimeService.BuildVersion, config.Socket, config.Root, config.State);
            LogStreaming(log, streamServer.BaseUrl ?? "(started with the first Exec, Attach or PortForward)");
            if (metricsEndpoint is not null) LogMetrics(log, $"http://{config.Metrics.Address}/metrics");
            if (migrationEndpoint is not null) LogMigration(log, config.Migration.Listen);
            if (tracing) LogTracing(log, config.Telemetry.OtlpProtocol, Telemetry.TraceExport.Endpoint(config.Telemetry).ToString());
            // What start-up touched (config, recovery, Kestrel) is not needed until it is used again.
            var idle = app.Services.GetRequiredService<IdleTrim>();
            ThreadPool.QueueUserWorkItem(_ => idle.Fire());
        });
        try
        {
            await app.StartAsync();
        }
        catch (IOException e) when (migrationEndpoint is not null && e.Message.Contains(migrationEndpoint.ToString(), StringComparison.Ordinal))
        {
            throw new StartupException($"cannot listen for migrations on {config.Migration.Listen} (migration.listen): {e.Message}", e);
        }
        catch (IOException e) when (metricsEndpoint is not null)
        {
            // Kestrel binds the CRI socket's duplicate without fail; what can be taken is the metrics port.
            throw new StartupException($"cannot serve metrics on {config.Metrics.Address} (metrics.address): {e.Message}", e);
        }
        await app.WaitForShutdownAsync();
        await streamServer.DetachAsync();
        // The batch's last spans: the app is not disposed, so the provider would not flush them.
        if (app.Services.GetService<OpenTelemetry.Trace.TracerProvider>() is { } traces)
            OpenTelemetry.Trace.TracerProviderExtensions.ForceFlush(traces, 5000);
        LogStopped(log);
        return 0;
    }

    /// <summary>Where the daemon keeps the config in force (TOML, as `criruntime config` prints it).</summary>
    public const string InForceFile = "config-in-force.toml";

    private static void WriteInForce(string path, CriRuntimeConfig config)
    {
        try { Files.AtomicFile.Write(path, System.Text.Encoding.UTF8.GetBytes(ConfigWriter.ToToml(config)), durable: false); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // `criruntime config` then prints what the files say
    }

    /// <summary>One line per record, UTC timestamps, on stderr: the daemon's and the stream server's.
    /// "text": the simple console format; "json": one JSON object per line (timestamp, level,
    /// category, message, the pod/container the request names in its scope).</summary>
    /// <param name="current">The level in force, read per record (SIGHUP changes it); null: <paramref name="level"/> for good.</param>
    internal static void ConfigureLogging(ILoggingBuilder logging, string level, string format = "text", Func<string>? current = null)
    {
        logging.ClearProviders();
        if (format == "json")
        {
            logging.AddJsonConsole(o =>
            {
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
                o.UseUtcTimestamp = true;
                o.IncludeScopes = true;
                o.JsonWriterOptions = new System.Text.Json.JsonWriterOptions { Indented = false };
            });
        }
        else
        {
            logging.AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
                o.UseUtcTimestamp = true;
            });
        }
        if (current is null)
        {
            logging.SetMinimumLevel(ToLevel(level));
            return;
        }
        logging.SetMinimumLevel(LogLevel.Trace);
        logging.AddFilter((_, _, l) => l >= ToLevel(current()));
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

    [LoggerMessage(EventId = 103, Level = LogLevel.Information, Message = "metrics on {Url}")]
    private static partial void LogMetrics(ILogger log, string url);

    [LoggerMessage(EventId = 107, Level = LogLevel.Information, Message = "traces exported over OTLP ({Protocol}) to {Url}")]
    private static partial void LogTracing(ILogger log, string protocol, string url);

    [LoggerMessage(EventId = 104, Level = LogLevel.Information, Message = "config reloaded: {Applied}")]
    private static partial void LogReloaded(ILogger log, string applied);

    [LoggerMessage(EventId = 105, Level = LogLevel.Warning, Message = "config reload: {Keys} cannot change while the daemon runs; kept their values (restart to apply)")]
    private static partial void LogReloadKept(ILogger log, string keys);

    [LoggerMessage(EventId = 106, Level = LogLevel.Error, Message = "config reload refused, the config in force stays: {Error}")]
    private static partial void LogReloadRefused(ILogger log, string error);

    [LoggerMessage(EventId = 108, Level = LogLevel.Error, Message = "checkpoint: could not thaw {Cgroup}, left frozen by the previous daemon: {Error}")]
    private static partial void LogThawFailed(ILogger log, string cgroup, string error);

    [LoggerMessage(EventId = 110, Level = LogLevel.Warning, Message = "CRIU's cache of kernel probes is off: {Reason}; every CRIU run probes the kernel again")]
    private static partial void LogNoProbeCache(ILogger log, string reason);

    [LoggerMessage(EventId = 109, Level = LogLevel.Information, Message = "migration listener on {Address} (mutual TLS)")]
    private static partial void LogMigration(ILogger log, string address);

    [LoggerMessage(EventId = 101, Level = LogLevel.Information, Message = "criruntime stopped")]
    private static partial void LogStopped(ILogger log);
}
