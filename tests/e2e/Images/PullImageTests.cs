using System.Security.Cryptography;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;
using Grpc.Core;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>PullImage through the real daemon, over CRI, from the real registry.</summary>
[Collection(RegistryCollection.Name)]
public sealed class PullImageTests(RegistryWithImages fixture) : IAsyncLifetime
{
    private readonly RegistryFixture _registry = fixture.Registry;
    private readonly DaemonProcess _daemon = new();
    private CriClient _cri = null!;

    public async Task InitializeAsync()
    {
        await _daemon.StartAsync();
        _cri = _daemon.Client();
    }

    public Task DisposeAsync()
    {
        _cri.Dispose();
        _daemon.Dispose();
        return Task.CompletedTask;
    }

    /// <summary>The image id is the config digest, read from the OCI layout the registry was fed.</summary>
    private string ConfigDigest(string name)
    {
        var layout = Path.Combine(_registry.ImagesDir, name);
        var manifest = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(
            Path.Combine(layout, "blobs", "sha256", _registry.Digest(name)["sha256:".Length..])));
        return manifest.RootElement.GetProperty("config").GetProperty("digest").GetString()!;
    }

    [Fact]
    public async Task PullImage_ByTag_StoresImageWithTagAndDigest()
    {
        var id = await _cri.PullAsync(_registry.Image("busybox"));

        Assert.Equal(ConfigDigest("busybox"), id);
        var image = await _cri.StatusAsync(_registry.Image("busybox"));
        Assert.NotNull(image);
        Assert.Equal(id, image.Id);
        Assert.Equal([$"{_registry.Host}/test/busybox:latest"], image.RepoTags);
        Assert.Equal([$"{_registry.Host}/test/busybox@{_registry.Digest("busybox")}"], image.RepoDigests);
        Assert.True(image.Size > 500_000);
        Assert.False(image.Pinned);

        var listed = (await _cri.Images.ListImagesAsync(new ListImagesRequest())).Images;
        Assert.Contains(listed, i => i.Id == id);
        Assert.Equal(id, (await _cri.StatusAsync(id))!.Id);

        var info = await _cri.VerboseInfoAsync(id);
        Assert.Equal("sh", info.GetProperty("imageSpec").GetProperty("config").GetProperty("Cmd")[0].GetString());
        var layers = await _cri.LayerDirsAsync(_daemon, id);
        Assert.True(File.Exists(Path.Combine(Assert.Single(layers), "bin", "busybox")));
        Assert.Equal("busybox", new FileInfo(Path.Combine(layers[0], "bin", "sh")).LinkTarget);
    }

    [Fact]
    public async Task PullImage_ByDigest_ReportsDigestWithoutTag()
    {
        var id = await _cri.PullAsync(_registry.ImageByDigest("busybox"));

        var image = await _cri.StatusAsync(_registry.ImageByDigest("busybox"));
        Assert.NotNull(image);
        Assert.Equal(id, image.Id);
        Assert.Empty(image.RepoTags);
        Assert.Equal([_registry.ImageByDigest("busybox")], image.RepoDigests);
        Assert.Null(await _cri.StatusAsync(_registry.Image("busybox"))); // the tag was never pulled
    }

    [Fact]
    public async Task PullImage_Multilayer_GivesOverlayTreeWithWhiteoutsLinksAndOwners()
    {
        var id = await _cri.PullAsync(_registry.Image("multilayer"));
        var layers = await _cri.LayerDirsAsync(_daemon, id);
        Assert.Equal(4, layers.Count);

        using var root = new ImageTestSupport.OverlayView(layers);
        Assert.False(File.Exists(root["data/b.txt"]));                   // whited out in layer 3
        Assert.Equal(["y.txt"], Directory.GetFiles(root["data/dir"]).Select(Path.GetFileName)); // opaque dir
        Assert.True(File.Exists(root["data/keep/k.txt"]));
        Assert.Equal("c\n", File.ReadAllText(root["data/c.txt"]));
        Assert.Equal(ImageTestSupport.Stat("%i", root["data/a.txt"]), ImageTestSupport.Stat("%i", root["data/hard"]));
        Assert.Equal("a.txt", new FileInfo(root["data/link"]).LinkTarget);
        Assert.Equal("1000:1000 640", ImageTestSupport.Stat("%u:%g %a", root["data/owned.txt"]));
        Assert.Equal("1777", ImageTestSupport.Stat("%a", root["tmp"]));
    }

    [Fact]
    public async Task PullImage_ZstdLayer()
    {
        var id = await _cri.PullAsync(_registry.Image("zstd"));
        var busybox = await _cri.PullAsync(_registry.Image("busybox"));
        Assert.Equal(ConfigDigest("zstd"), id);
        // Same uncompressed layer: one snapshot serves both images.
        Assert.Equal(await _cri.LayerDirsAsync(_daemon, id), await _cri.LayerDirsAsync(_daemon, busybox));
        Assert.Single(_daemon.Snapshots());
    }

    [Fact]
    public async Task PullImage_UnknownTag_IsNotFound()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => _cri.PullAsync($"{_registry.Host}/test/busybox:nope"));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
        e = await Assert.ThrowsAsync<RpcException>(() => _cri.PullAsync($"{_registry.Host}/test/nothere:latest"));
        Assert.Equal(StatusCode.NotFound, e.StatusCode);
    }

    [Fact]
    public async Task PullImage_InvalidReference_IsInvalidArgumentNamingIt()
    {
        var e = await Assert.ThrowsAsync<RpcException>(() => _cri.PullAsync("Not/Valid:-x"));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("Not/Valid:-x", e.Status.Detail);
    }

    [Fact]
    public async Task PullImage_Concurrent_SameImage_ShareOneDownloadPerBlob()
    {
        var manifest = System.Text.Json.JsonDocument.Parse(File.ReadAllBytes(Path.Combine(_registry.ImagesDir, "multilayer",
            "blobs", "sha256", _registry.Digest("multilayer")["sha256:".Length..]))).RootElement;
        var blobs = manifest.GetProperty("layers").EnumerateArray().Select(l => l.GetProperty("digest").GetString()!).ToList();
        int Downloads(string digest) => File.ReadLines(Path.Combine(_registry.Dir, "registry.log"))
            .Count(l => l.Contains($"\"GET /v2/test/multilayer/blobs/{digest} HTTP/1.1\" 200", StringComparison.Ordinal));
        var before = blobs.Select(Downloads).ToList();

        var pulls = Enumerable.Range(0, 4).Select(_ => _cri.PullAsync(_registry.Image("multilayer"))).ToList();
        var ids = await Task.WhenAll(pulls);
        Assert.Single(ids.Distinct());
        Assert.Equal(before.Select(n => n + 1), blobs.Select(Downloads));
        Assert.Equal(4, _daemon.Snapshots().Length);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(_daemon.ImagesDir(), "ingest")));
    }

    [Fact]
    public async Task RemoveImage_ThenGc_FreesDisk_KeepingSharedLayers()
    {
        var busybox = await _cri.PullAsync(_registry.Image("busybox"));
        var multi = await _cri.PullAsync(_registry.Image("multilayer"));
        var before = await FsUsedAsync();
        Assert.Equal(4, _daemon.Snapshots().Length);

        await _cri.RemoveAsync(_registry.Image("multilayer"));
        Assert.Null(await _cri.StatusAsync(multi));
        Assert.Single(_daemon.Snapshots()); // busybox's layer is multilayer's first: still used
        Assert.NotNull(await _cri.StatusAsync(busybox));
        var middle = await FsUsedAsync();
        Assert.True(middle < before, $"{middle} < {before}");

        await _cri.RemoveAsync(busybox); // by id
        await _cri.RemoveAsync(busybox); // idempotent
        Assert.Empty(_daemon.Snapshots());
        Assert.Empty(_daemon.Blobs());
        Assert.Empty((await _cri.Images.ListImagesAsync(new ListImagesRequest())).Images);
        Assert.True(await FsUsedAsync() < 64 * 1024);
    }

    [Fact]
    public async Task RemoveImage_ByTag_KeepsImageWhileAnotherTagNamesIt()
    {
        // busybox and zstd have the same config, hence the same image id, under two names.
        var id = await _cri.PullAsync(_registry.Image("busybox"));
        Assert.Equal(id, await _cri.PullAsync(_registry.Image("zstd")));
        await _cri.RemoveAsync(_registry.Image("busybox"));
        var image = await _cri.StatusAsync(id);
        Assert.NotNull(image);
        Assert.Equal([_registry.Image("zstd")], image.RepoTags);
        Assert.Equal([$"{_registry.Host}/test/zstd@{_registry.Digest("zstd")}"], image.RepoDigests);
        Assert.Single(_daemon.Snapshots());

        await _cri.RemoveAsync(_registry.Image("zstd"));
        Assert.Null(await _cri.StatusAsync(id));
        Assert.Empty(_daemon.Snapshots());
    }

    [Fact]
    public async Task ListImages_FiltersByReference_AndStreamImagesAgrees()
    {
        var busybox = await _cri.PullAsync(_registry.Image("busybox"));
        var multi = await _cri.PullAsync(_registry.Image("multilayer"));

        var all = (await _cri.Images.ListImagesAsync(new ListImagesRequest())).Images.Select(i => i.Id).Order().ToList();
        Assert.Equal(new[] { busybox, multi }.Order(), all);
        var filtered = (await _cri.Images.ListImagesAsync(new ListImagesRequest
        {
            Filter = new ImageFilter { Image = new ImageSpec { Image = _registry.Image("multilayer") } },
        })).Images;
        Assert.Equal([multi], filtered.Select(i => i.Id));

        var streamed = new List<string>();
        using var call = _cri.Images.StreamImages(new StreamImagesRequest());
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
            streamed.AddRange(call.ResponseStream.Current.Images.Select(i => i.Id));
        Assert.Equal(all, streamed.Order());
    }

    [Fact]
    public async Task ImageFsInfo_ReportsTheImageStore()
    {
        await _cri.PullAsync(_registry.Image("busybox"));
        var fs = Assert.Single((await _cri.Images.ImageFsInfoAsync(new ImageFsInfoRequest())).ImageFilesystems);
        Assert.Equal(_daemon.ImagesDir(), fs.FsId.Mountpoint);
        Assert.True(fs.UsedBytes.Value > 1_000_000, $"{fs.UsedBytes.Value}");
        Assert.True(fs.InodesUsed.Value > 100, $"{fs.InodesUsed.Value}");
    }

    private async Task<ulong> FsUsedAsync() =>
        (await _cri.Images.ImageFsInfoAsync(new ImageFsInfoRequest())).ImageFilesystems[0].UsedBytes.Value;

    [Fact]
    public async Task StoredBlobs_AllMatchTheirNames()
    {
        await _cri.PullAsync(_registry.Image("multilayer"));
        foreach (var hex in _daemon.Blobs())
        {
            var path = Path.Combine(_daemon.ImagesDir(), "blobs", "sha256", hex);
            Assert.Equal(hex, Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(path))));
        }
    }
}
