using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Images;
using CriRuntime.Images.Content;
using CriRuntime.Images.Snapshots;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Images;

public sealed class ImageStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("criruntime-images-").FullName;
    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string H(char c) => "sha256:" + new string(c, 64);

    private static ImageRecord Image(char id, string[] tags, string[] digests, params char[] layers) => new(
        H(id), tags, digests, H('m'), [],
        [.. layers.Select(l => new LayerRecord(H(l), "application/vnd.oci.image.layer.v1.tar", 1, H(l), H(l)))], 10, DateTimeOffset.UnixEpoch);

    [Fact]
    public void Find_ByIdTagDigestAndShortName()
    {
        var store = new ImageStore(_dir, new ImageUsage());
        store.Commit(Image('1', ["docker.io/library/busybox:latest"], [$"docker.io/library/busybox@{H('d')}"]));
        Assert.NotNull(store.Find(H('1')));
        Assert.NotNull(store.Find(new string('1', 64)));
        Assert.NotNull(store.Find("busybox"));
        Assert.NotNull(store.Find("docker.io/library/busybox:latest"));
        Assert.NotNull(store.Find($"busybox@{H('d')}"));
        Assert.Null(store.Find("busybox:other"));
        Assert.Null(store.Find("Not A Ref"));
    }

    [Fact]
    public void Commit_MovesATagFromTheOldImage_AndDropsItWhenNameless()
    {
        var store = new ImageStore(_dir, new ImageUsage());
        store.Commit(Image('1', ["docker.io/library/app:latest"], []));
        store.Commit(Image('2', ["docker.io/library/app:latest"], []));
        Assert.Equal(H('2'), store.Find("app")!.Id);
        Assert.Null(store.Get(H('1')));
    }

    [Fact]
    public void Commit_IsPersisted()
    {
        new ImageStore(_dir, new ImageUsage()).Commit(Image('1', ["docker.io/library/app:latest"], []));
        Assert.Equal(H('1'), new ImageStore(_dir, new ImageUsage()).Find("app")!.Id);
    }

    [Fact]
    public void Remove_ByTag_KeepsOtherTags_ById_RemovesAll()
    {
        var store = new ImageStore(_dir, new ImageUsage());
        store.Commit(Image('1', ["docker.io/library/a:latest", "docker.io/library/b:latest"], [$"docker.io/library/a@{H('d')}"]));
        store.Remove("a", _ => false);
        var left = store.Get(H('1'))!;
        Assert.Equal(["docker.io/library/b:latest"], left.RepoTags);
        Assert.Empty(left.RepoDigests);
        Assert.NotNull(store.Remove(H('1'), _ => false));
        Assert.Null(store.Get(H('1')));
        Assert.Null(store.Remove(H('1'), _ => false)); // idempotent
    }

    [Fact]
    public void Remove_Pinned_IsRefused()
    {
        var store = new ImageStore(_dir, new ImageUsage());
        store.Commit(Image('1', ["registry.k8s.io/pause:3.10"], []));
        var pinned = new PinnedImages(new ImagesSection { Pinned = ["registry.k8s.io/pause:3.10"] });
        Assert.True(pinned.IsPinned(store.Get(H('1'))!));
        var e = Assert.Throws<CriException>(() => store.Remove("registry.k8s.io/pause:3.10", pinned.IsPinned));
        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.NotNull(store.Get(H('1')));
    }

    [Fact]
    public void InUseImage_SurvivesRemoval_UntilReleased_ThenGcFreesIt()
    {
        var usage = new ImageUsage();
        var store = new ImageStore(_dir, usage);
        var content = new ContentStore(_dir);
        var snapshots = new SnapshotStore(_dir);
        var gc = new ImageGarbageCollector(store, content, snapshots, NullLogger<ImageGarbageCollector>.Instance);
        var config = "{}"u8.ToArray();
        var id = Digest.Of(config);
        content.WriteBytes(id, config);
        store.Commit(Image('1', ["docker.io/library/app:latest"], []) with { Id = id.ToString(), Layers = [] });

        usage.MarkInUse(id.ToString(), "container-1");
        store.Remove("app", _ => false);
        gc.Collect();
        Assert.NotNull(store.Get(id.ToString()));
        Assert.True(content.Has(id));

        usage.Release(id.ToString(), "container-1");
        Assert.Null(store.Get(id.ToString()));
        Assert.False(content.Has(id));
    }

    [Fact]
    public void ReleasingAnImageThatKeepsItsTag_CollectsNothing()
    {
        var usage = new ImageUsage();
        var store = new ImageStore(_dir, usage);
        var content = new ContentStore(_dir);
        _ = new ImageGarbageCollector(store, content, new SnapshotStore(_dir), NullLogger<ImageGarbageCollector>.Instance);
        var config = "{}"u8.ToArray();
        var id = Digest.Of(config);
        content.WriteBytes(id, config);
        store.Commit(Image('1', ["docker.io/library/app:latest"], []) with { Id = id.ToString(), Layers = [] });
        var orphan = "unreferenced"u8.ToArray();
        content.WriteBytes(Digest.Of(orphan), orphan); // a collection would take it

        usage.MarkInUse(id.ToString(), "container-1");
        usage.Release(id.ToString(), "container-1");

        Assert.NotNull(store.Get(id.ToString()));
        Assert.True(content.Has(Digest.Of(orphan)), "the release of a tagged image ran a collection");
    }

    [Fact]
    public void Gc_KeepsLeasedContent()
    {
        var usage = new ImageUsage();
        var content = new ContentStore(_dir);
        var gc = new ImageGarbageCollector(new ImageStore(_dir, usage), content, new SnapshotStore(_dir), NullLogger<ImageGarbageCollector>.Instance);
        var blob = "x"u8.ToArray();
        var d = Digest.Of(blob);
        using (var lease = gc.Lease())
        {
            lease.AddBlob(d);
            content.WriteBytes(d, blob);
            gc.Collect();
            Assert.True(content.Has(d));
        }
        gc.Collect();
        Assert.False(content.Has(d));
    }
}
