using System.Diagnostics;
using CriRuntime.Config;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Images.Content;
using CriRuntime.Images.Oci;
using CriRuntime.Images.Reference;
using CriRuntime.Images.Registry;
using CriRuntime.Images.Snapshots;
using CriRuntime.Telemetry;

namespace CriRuntime.Images;

/// <summary>Pulls an image: resolve the reference (mirrors, then the registry), pick the
/// linux/amd64 manifest of an index, fetch the config, then fetch and unpack the layers in
/// parallel, each blob verified while it streams and each unpacked layer checked against its
/// diff_id. Blob downloads and unpacks are shared with concurrent pulls of the same content;
/// a download that receives nothing for [images] pull_progress_timeout fails DeadlineExceeded.
/// The image record is written last, so a pull that fails or is killed leaves no image.</summary>
public sealed partial class ImagePuller(
    RegistryClient registry,
    ContentStore content,
    SnapshotStore snapshots,
    ImageStore images,
    ImageGarbageCollector gc,
    SharedWork shared,
    CriRuntimeConfig config,
    ILogger<ImagePuller> log,
    Metrics.RuntimeMetrics? metrics = null)
{
    /// <summary>Layers of one pull downloaded at once.</summary>
    private const int ParallelLayers = 4;

    private readonly TimeSpan _timeout = config.Images.PullProgressTimeout;

    public async Task<ImageRecord> PullAsync(string image, AuthConfig? auth, CancellationToken ct)
    {
        if (!ImageReference.TryParse(image, out var reference, out var error)) throw Fail.InvalidArgument(error);
        var creds = RegistryCredentials.From(auth);
        var started = Stopwatch.GetTimestamp();
        LogPulling(log, reference.ToString());
        var ok = false;
        try
        {
            var record = await PullAsync(reference, creds, ct).ConfigureAwait(false);
            LogPulled(log, reference.ToString(), record.Id, Stopwatch.GetElapsedTime(started).TotalSeconds);
            ok = true;
            return record;
        }
        catch (Exception e) when (e is InvalidDataException or DigestMismatchException or FormatException)
        {
            // The registry served something that is not what it claims (a corrupted blob, a
            // hostile or malformed layer, a broken manifest): nothing of it was kept.
            throw Fail.FailedPrecondition($"pull {reference}: {e.Message}");
        }
        finally
        {
            metrics?.ImagePull(ok, Stopwatch.GetElapsedTime(started));
        }
    }

    private async Task<ImageRecord> PullAsync(ImageReference reference, RegistryCredentials creds, CancellationToken ct)
    {
        var repo = registry.Open(reference, creds, _timeout);
        using var lease = gc.Lease();

        FetchedManifest top;
        using (var span = Tracing.Start("registry resolve", System.Diagnostics.ActivityKind.Client))
        {
            span?.SetTag("container.image.name", reference.ToString());
            try { top = await repo.ResolveAsync(ct).ConfigureAwait(false); }
            catch (Exception e) when (span.Failed(e)) { throw; }
            span?.SetTag("oci.manifest.digest", top.Digest.ToString());
            span?.SetTag("server.address", repo.Endpoint.ToString());
        }
        StoreManifest(lease, top);
        var indexDigests = new List<string>();
        var manifestDoc = top;
        var parsed = ManifestParser.Parse(top.Body, top.MediaType);
        if (parsed is ParsedIndex index)
        {
            indexDigests.Add(top.Digest.ToString());
            var entry = ManifestParser.SelectPlatform(index, ManifestParser.Host)
                ?? throw Fail.NotFound($"pull {reference}: index {top.Digest} has no {ManifestParser.Host.Os}/{ManifestParser.Host.Architecture} image");
            using (var span = Tracing.Start("registry manifest", System.Diagnostics.ActivityKind.Client))
            {
                span?.SetTag("oci.manifest.digest", entry.Digest);
                try { manifestDoc = await repo.FetchManifestAsync(Digest.Parse(entry.Digest), ct).ConfigureAwait(false); }
                catch (Exception e) when (span.Failed(e)) { throw; }
            }
            StoreManifest(lease, manifestDoc);
            parsed = ManifestParser.Parse(manifestDoc.Body, manifestDoc.MediaType ?? entry.MediaType);
        }
        if (parsed is not ParsedImageManifest manifest)
            throw new FormatException($"{manifestDoc.Digest} is an index inside an index; nested indexes are not supported");

        var configDigest = Digest.Parse(manifest.Config.Digest);
        lease.AddBlob(configDigest);
        if (!content.Has(configDigest))
            await FetchBlobAsync(repo, reference, configDigest, manifest.Config.Size, ct).ConfigureAwait(false);
        var imageConfig = ManifestParser.ParseConfig(content.Read(configDigest), manifest.Layers.Count);
        var diffIds = imageConfig.RootFs?.DiffIds ?? []; // ParseConfig checked there is one per layer
        var chainIds = ManifestParser.ChainIds(diffIds);

        var layers = new List<LayerRecord>();
        for (var i = 0; i < manifest.Layers.Count; i++)
        {
            var l = manifest.Layers[i];
            var digest = Digest.Parse(l.Digest);
            lease.AddBlob(digest);
            lease.AddSnapshot(chainIds[i]);
            layers.Add(new LayerRecord(l.Digest, l.MediaType!, l.Size, diffIds[i], chainIds[i].ToString()));
        }
        using (var slots = new SemaphoreSlim(ParallelLayers))
        {
            await Task.WhenAll(layers.Select(async layer =>
            {
                await slots.WaitAsync(ct).ConfigureAwait(false);
                try { await EnsureLayerAsync(repo, reference, layer, ct).ConfigureAwait(false); }
                finally { slots.Release(); }
            })).ConfigureAwait(false);
        }

        var size = manifest.Config.Size + layers.Sum(l => l.Size);
        var record = new ImageRecord(
            Id: configDigest.ToString(),
            RepoTags: reference.TagName is { } tag ? [tag] : [],
            RepoDigests: [reference.DigestName(top.Digest)],
            ManifestDigest: manifestDoc.Digest.ToString(),
            IndexDigests: indexDigests,
            Layers: layers,
            Size: size,
            Pulled: DateTimeOffset.UtcNow);
        ct.ThrowIfCancellationRequested();
        return images.Commit(record);
    }

    private void StoreManifest(ImageLease lease, FetchedManifest manifest)
    {
        lease.AddBlob(manifest.Digest);
        content.WriteBytes(manifest.Digest, manifest.Body);
    }

    /// <summary>Makes sure the layer's snapshot exists: downloads its blob if needed, unpacks it.
    /// Both steps are shared with any other pull of the same layer.</summary>
    private async Task EnsureLayerAsync(RegistryRepository repo, ImageReference reference, LayerRecord layer, CancellationToken ct)
    {
        var chainId = Digest.Parse(layer.ChainId);
        if (snapshots.Has(chainId)) return;
        await shared.RunAsync($"snapshot:{chainId}", async sct =>
        {
            if (snapshots.Has(chainId)) return;
            var digest = Digest.Parse(layer.Digest);
            if (!content.Has(digest))
                await FetchBlobAsync(repo, reference, digest, layer.Size, sct).ConfigureAwait(false);
            var started = Stopwatch.GetTimestamp();
            using var span = Tracing.Start("layer unpack");
            span?.SetTag("oci.layer.digest", layer.Digest);
            span?.SetTag("oci.layer.media_type", layer.MediaType);
            try { await Task.Run(() => snapshots.Unpack(chainId, Digest.Parse(layer.DiffId), digest, content.PathOf(digest), sct), sct).ConfigureAwait(false); }
            catch (Exception e) when (span.Failed(e)) { throw; }
            LogUnpacked(log, layer.Digest, chainId.ToString(), Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>Downloads a blob into the content store (shared per digest), verifying it as it
    /// streams. The progress watchdog is re-armed by every chunk received.</summary>
    private Task FetchBlobAsync(RegistryRepository repo, ImageReference reference, Digest digest, long size, CancellationToken ct) =>
        shared.RunAsync($"blob:{digest}", async bct =>
        {
            if (content.Has(digest)) return;
            using var span = Tracing.Start("blob fetch", System.Diagnostics.ActivityKind.Client);
            span?.SetTag("oci.blob.digest", digest.ToString());
            span?.SetTag("oci.blob.size", size);
            span?.SetTag("server.address", repo.Endpoint.ToString());
            using var watchdog = CancellationTokenSource.CreateLinkedTokenSource(bct);
            watchdog.CancelAfter(_timeout);
            try
            {
                using var response = await repo.OpenBlobAsync(digest, watchdog.Token).ConfigureAwait(false);
                await using var body = await response.Content.ReadAsStreamAsync(watchdog.Token).ConfigureAwait(false);
                await content.WriteVerifiedAsync(digest, size, body, _ => watchdog.CancelAfter(_timeout), watchdog.Token).ConfigureAwait(false);
                metrics?.ImageBytes(size);
            }
            catch (Exception e) when (span.Failed(e)) { throw; }
            catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException
                                      && watchdog.IsCancellationRequested && !bct.IsCancellationRequested)
            {
                throw Fail.DeadlineExceeded($"pull {reference}: no bytes received for blob {digest} from {repo.Endpoint} in {_timeout.TotalSeconds:0.#} s; pull aborted");
            }
            catch (Exception e) when (e is IOException or HttpRequestException && !bct.IsCancellationRequested)
            {
                throw Fail.Unavailable($"pull {reference}: downloading blob {digest} from {repo.Endpoint} failed: {e.Message}", e);
            }
        }, ct);

    [LoggerMessage(EventId = 310, Level = LogLevel.Information, Message = "pulling {Reference}")]
    private static partial void LogPulling(ILogger log, string reference);

    [LoggerMessage(EventId = 311, Level = LogLevel.Information, Message = "pulled {Reference} as {ImageId} in {Seconds:F1} s")]
    private static partial void LogPulled(ILogger log, string reference, string imageId, double seconds);

    [LoggerMessage(EventId = 312, Level = LogLevel.Debug, Message = "unpacked layer {Layer} as snapshot {ChainId} in {Ms:F0} ms")]
    private static partial void LogUnpacked(ILogger log, string layer, string chainId, double ms);
}
