using System.Net;
using Microsoft.Extensions.DependencyInjection.Extensions;
using CriRuntime.Config;
using CriRuntime.Images.Content;
using CriRuntime.Images.Registry;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Images;

/// <summary>The image service's singletons. Everything lives under &lt;root&gt;/images:
/// blobs/sha256/, ingest/, snapshots/, images.json.</summary>
public static class ImageServiceRegistration
{
    public static IServiceCollection AddImageService(this IServiceCollection services, CriRuntimeConfig config)
    {
        var dir = Path.Combine(config.Root, "images");
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(new ContentStore(dir));
        services.AddSingleton(new SnapshotStore(dir));
        services.AddSingleton<ImageUsage>();
        services.AddSingleton<IImageUsage>(sp => sp.GetRequiredService<ImageUsage>());
        services.AddSingleton(sp => new ImageStore(dir, sp.GetRequiredService<ImageUsage>()));
        services.AddSingleton<ImageGarbageCollector>();
        services.AddSingleton<SharedWork>();
        services.AddSingleton(new PinnedImages(config.Images));
        services.AddSingleton(sp => new ImageFsUsage(dir, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<ImageResolver>();
        services.AddSingleton<IImageResolver>(sp => sp.GetRequiredService<ImageResolver>());
        services.AddSingleton(sp => sp.GetService<ConfigSource>() is { } source
            ? new RegistryEndpoints(() => source.Current.Registry)
            : new RegistryEndpoints(config.Registry));
        services.AddSingleton(sp => new RegistryAuth(sp.GetRequiredService<RegistryHttp>().Client, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<RegistryHttp>();
        services.AddSingleton(sp => new RegistryClient(sp.GetRequiredService<RegistryHttp>().Client, sp.GetRequiredService<RegistryAuth>(),
            sp.GetRequiredService<RegistryEndpoints>(), sp.GetRequiredService<ILogger<RegistryClient>>()));
        services.AddSingleton<ImagePuller>();
        return services;
    }
}

/// <summary>The one HttpClient for registries: no automatic decompression (blobs are hashed as
/// served), redirects followed (blob storage often lives elsewhere; .NET drops the Authorization
/// header on redirect), no overall timeout (the pull's progress watchdog decides).</summary>
public sealed class RegistryHttp : IDisposable
{
    public HttpClient Client { get; } = new(new SocketsHttpHandler
    {
        AutomaticDecompression = DecompressionMethods.None,
        AllowAutoRedirect = true,
        MaxAutomaticRedirections = 10,
        ConnectTimeout = TimeSpan.FromSeconds(30),
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
    })
    {
        Timeout = Timeout.InfiniteTimeSpan,
        DefaultRequestHeaders = { { "User-Agent", $"criruntime/{Cri.CriRuntimeService.BuildVersion}" } },
    };

    public void Dispose() => Client.Dispose();
}
