using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>Pulls that must fail cleanly or recover: stalls, cancelled clients, crashes, bad
/// blobs, authentication, mirrors.</summary>
public sealed class PullFailureTests : IDisposable
{
    private readonly List<IDisposable> _cleanup = [];

    public void Dispose()
    {
        for (var i = _cleanup.Count - 1; i >= 0; i--) _cleanup[i].Dispose();
    }

    private T Own<T>(T d) where T : IDisposable { _cleanup.Add(d); return d; }

    private async Task<(DaemonProcess Daemon, CriClient Cri)> StartDaemonAsync(string extraToml = "")
    {
        var daemon = new DaemonProcess();
        File.AppendAllText(daemon.ConfigFile, extraToml);
        Own(daemon);
        await daemon.StartAsync();
        return (daemon, Own(daemon.Client()));
    }

    private static string Ingest(DaemonProcess d) => Path.Combine(d.ImagesDir(), "ingest");

    /// <summary>Waits for a condition the daemon reaches asynchronously (cleanup after a
    /// cancellation), failing after a bound.</summary>
    [Fact]
    public async Task PullImage_NoBytesForProgressTimeout_IsDeadlineExceeded_AndKeepsNothing()
    {
        using var stall = new OneImageRegistry();
        var (daemon, cri) = await StartDaemonAsync("\n[images]\npull_progress_timeout = \"2s\"\n");

        var e = await Assert.ThrowsAsync<RpcException>(() => cri.PullAsync(stall.Image));
        Assert.Equal(StatusCode.DeadlineExceeded, e.StatusCode);
        Assert.Contains("no bytes received", e.Status.Detail);
        Assert.Empty(Directory.GetFileSystemEntries(Ingest(daemon)));
        Assert.Null(await cri.StatusAsync(stall.Image));
    }

    [Fact]
    public async Task PullImage_ClientGoesAway_CancelsThePull()
    {
        using var stall = new OneImageRegistry();
        var (daemon, cri) = await StartDaemonAsync();

        using var cts = new CancellationTokenSource();
        var pull = cri.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = stall.Image } }, cancellationToken: cts.Token).ResponseAsync;
        await stall.LayerStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await ProcState.Eventually(() => Directory.GetFileSystemEntries(Ingest(daemon)).Length > 0, "the layer download reaches the ingest dir", TimeSpan.FromSeconds(15));
        cts.Cancel();
        var e = await Assert.ThrowsAsync<RpcException>(() => pull);
        Assert.Equal(StatusCode.Cancelled, e.StatusCode);
        await ProcState.Eventually(() => Directory.GetFileSystemEntries(Ingest(daemon)).Length == 0, "the partial blob is removed", TimeSpan.FromSeconds(15));
        Assert.Null(await cri.StatusAsync(stall.Image));
    }

    [Fact]
    public async Task Daemon_KilledMidPull_RestartsConsistent()
    {
        using var stall = new OneImageRegistry();
        using var registry = new RegistryFixture().WithTestImages();
        var (daemon, cri) = await StartDaemonAsync();
        await cri.PullAsync(registry.Image("busybox"));

        var pull = cri.PullAsync(stall.Image);
        await stall.LayerStarted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        await ProcState.Eventually(() => Directory.GetFileSystemEntries(Ingest(daemon)).Length > 0, "the layer download reaches the ingest dir", TimeSpan.FromSeconds(15));
        await daemon.KillAsync();
        await Assert.ThrowsAsync<RpcException>(() => pull);

        await daemon.StartAsync();
        using var cri2 = daemon.Client();
        Assert.Empty(Directory.GetFileSystemEntries(Ingest(daemon)));
        Assert.Null(await cri2.StatusAsync(stall.Image));
        var images = (await cri2.Images.ListImagesAsync(new ListImagesRequest())).Images;
        Assert.Equal([registry.Image("busybox")], images.SelectMany(i => i.RepoTags));
        // The killed pull's manifest and config had landed; with no image using them they are gone.
        Assert.Equal(3, daemon.Blobs().Length); // busybox: manifest, config, layer
        Assert.Single(daemon.Snapshots());
        Assert.Empty(Directory.GetDirectories(Path.Combine(daemon.ImagesDir(), "snapshots"), ".*"));
        await cri2.PullAsync(registry.Image("multilayer"));
    }

    [Fact]
    public async Task PullImage_HostileLayer_IsRejectedNamingLayerAndEntry_AndNothingKept()
    {
        var tar = new MemoryStream();
        using (var w = new System.Formats.Tar.TarWriter(tar, System.Formats.Tar.TarEntryFormat.Pax, leaveOpen: true))
        {
            w.WriteEntry(new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.SymbolicLink, "etc") { LinkName = "/etc" });
            var evil = new System.Formats.Tar.PaxTarEntry(System.Formats.Tar.TarEntryType.RegularFile, "etc/criruntime-pwned")
            {
                DataStream = new MemoryStream("x"u8.ToArray()),
            };
            w.WriteEntry(evil);
        }
        using var registry = new OneImageRegistry(tar.ToArray());
        var (daemon, cri) = await StartDaemonAsync();

        var e = await Assert.ThrowsAsync<RpcException>(() => cri.PullAsync(registry.Image));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains(registry.LayerDigest, e.Status.Detail);
        Assert.Contains("etc/criruntime-pwned", e.Status.Detail);
        Assert.False(File.Exists("/etc/criruntime-pwned"));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(daemon.ImagesDir(), "snapshots")));
        Assert.Null(await cri.StatusAsync(registry.Image));
    }

    [Fact]
    public async Task PullImage_CorruptedBlob_IsRejected_AndNothingKept()
    {
        using var registry = new RegistryFixture().WithTestImages();
        // Flip one byte of every large blob (the layers) in the registry's own storage.
        foreach (var data in Directory.EnumerateFiles(Path.Combine(registry.Dir, "storage"), "data", SearchOption.AllDirectories)
                     .Where(f => new FileInfo(f).Length > 100_000))
        {
            var bytes = File.ReadAllBytes(data);
            bytes[bytes.Length / 2] ^= 0xff;
            File.WriteAllBytes(data, bytes);
        }
        var (daemon, cri) = await StartDaemonAsync();

        var e = await Assert.ThrowsAsync<RpcException>(() => cri.PullAsync(registry.Image("busybox")));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("failed verification", e.Status.Detail);
        Assert.Null(await cri.StatusAsync(registry.Image("busybox")));
        Assert.Empty(daemon.Snapshots());
        Assert.Empty(Directory.GetFileSystemEntries(Ingest(daemon)));
        Assert.DoesNotContain(daemon.Blobs(), b => new FileInfo(Path.Combine(daemon.ImagesDir(), "blobs", "sha256", b)).Length > 100_000);
    }

    [Fact]
    public async Task PullImage_BasicAuthRegistry_NeedsTheCredentials()
    {
        var htpasswd = Path.Combine(Directory.CreateTempSubdirectory("criruntime-htpasswd-").FullName, "htpasswd");
        File.WriteAllText(htpasswd, Shell.Run("htpasswd", "-Bbn", "user", "s3cret"));
        using var registry = new RegistryFixture(htpasswd).WithTestImages("user:s3cret");
        var (daemon, cri) = await StartDaemonAsync();

        var e = await Assert.ThrowsAsync<RpcException>(() => cri.PullAsync(registry.Image("busybox")));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("requires credentials", e.Status.Detail);

        e = await Assert.ThrowsAsync<RpcException>(() => cri.PullAsync(registry.Image("busybox"), new AuthConfig { Username = "user", Password = "wrong" }));
        Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
        Assert.Contains("401", e.Status.Detail);

        var id = await cri.PullAsync(registry.Image("busybox"), new AuthConfig { Username = "user", Password = "s3cret" });
        Assert.NotNull(await cri.StatusAsync(id));
        // "auth" (base64 user:password) works too, and the secrets never reach the log.
        await cri.PullAsync(registry.Image("multilayer"), new AuthConfig { Auth = Convert.ToBase64String("user:s3cret"u8) });
        Assert.DoesNotContain("s3cret", daemon.Output);
        Directory.Delete(Path.GetDirectoryName(htpasswd)!, recursive: true);
    }

    [Fact]
    public async Task PullImage_MirrorDown_FallsBackToRegistry_AndWorkingMirrorIsUsed()
    {
        using var registry = new RegistryFixture().WithTestImages();
        var unused = RegistryFixture.FreePort();
        var nowhere = $"127.0.0.1:{RegistryFixture.FreePort()}";
        var (daemon, cri) = await StartDaemonAsync($"""

            [registry.mirrors."{registry.Host}"]
            endpoints = ["http://127.0.0.1:{unused}"]
            [registry.mirrors."{nowhere}"]
            endpoints = ["http://127.0.0.1:{unused}", "http://{registry.Host}"]
            """);

        await cri.PullAsync(registry.Image("busybox"));
        Assert.Contains($"127.0.0.1:{unused} failed", daemon.Output);
        // The registry named in the reference is down, but its second mirror has the image.
        var id = await cri.PullAsync($"{nowhere}/test/multilayer:latest");
        Assert.Equal([$"{nowhere}/test/multilayer:latest"], (await cri.StatusAsync(id))!.RepoTags);
    }
}
