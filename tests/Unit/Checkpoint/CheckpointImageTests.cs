using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using CriRuntime.Checkpoint;
using CriRuntime.Config;
using CriRuntime.Containers;
using CriRuntime.Errors;
using CriRuntime.Images;
using CriRuntime.Images.Content;
using CriRuntime.Images.Snapshots;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>A stored image whose manifest (or index) carries a checkpoint annotation is a
/// checkpoint to restore from; its one layer holds an archive's entries and is checked as an
/// archive is (docs/checkpoint.md, "Restore from a checkpoint image").</summary>
public sealed class CheckpointImageTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ckpt-image-").FullName;
    private readonly ContentStore _content;
    private readonly ImageStore _store;
    private readonly ImageResolver _images;
    private static readonly CheckpointSection On = new() { Restore = true };

    public CheckpointImageTests()
    {
        _content = new ContentStore(_dir);
        _store = new ImageStore(_dir, new ImageUsage());
        _images = new ImageResolver(_store, _content, new SnapshotStore(_dir));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Dest => Path.Combine(_dir, "container", "checkpoint");

    private const string Config = """{"id":"abc","name":"counter","rootfsImageRef":"sha256:0123","rootfsImageName":"busybox"}""";
    private const string Spec = """{"ociVersion":"1.2.0"}""";

    private static void File(TarWriter tar, string name, string content) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) });

    /// <summary>A gzipped layer as umoci writes one: the root as "/", then the archive's entries,
    /// and the tar stops right after the last entry's data (no padding, no end-of-archive blocks).</summary>
    private static byte[] UmociLayer(Action<TarWriter>? more = null)
    {
        var tar = new MemoryStream();
        using (var w = new TarWriter(tar, TarEntryFormat.Pax, leaveOpen: true))
        {
            w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "/"));
            w.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "checkpoint/"));
            File(w, "checkpoint/inventory.img", "inv");
            File(w, "config.dump", Config);
            File(w, "spec.dump", Spec);
            more?.Invoke(w);
            File(w, "dump.log", "Dumping finished successfully"); // last: its data ends the tar
        }
        var bytes = tar.ToArray();
        var end = Array.FindLastIndex(bytes, b => b != 0) + 1;
        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, leaveOpen: true)) z.Write(bytes, 0, end);
        return gz.ToArray();
    }

    private string Blob(byte[] content)
    {
        var digest = Digest.Of(content);
        _content.WriteBytes(digest, content);
        return digest.ToString();
    }

    private static string Annotated(string json, IReadOnlyDictionary<string, string>? annotations) =>
        annotations is null ? json + "}" : json + ",\"annotations\":{" + string.Join(',', annotations.Select(a => $"\"{a.Key}\":\"{a.Value}\"")) + "}}";

    /// <summary>Stores an image of <paramref name="layers"/> the way a pull leaves it: blobs in
    /// the content store, the record in images.json.</summary>
    private ImageRecord StoreImage(string tag, IReadOnlyList<byte[]> layers, IReadOnlyDictionary<string, string>? manifestAnnotations = null,
        IReadOnlyDictionary<string, string>? indexAnnotations = null, string labels = "{}")
    {
        var config = Blob(Encoding.UTF8.GetBytes($"{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Labels\":{labels}}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[{string.Join(',', layers.Select((_, i) => $"\"sha256:{new string((char)('a' + i), 64)}\""))}]}}}}"));
        var layerRecords = layers.Select((l, i) => new LayerRecord(Blob(l), "application/vnd.oci.image.layer.v1.tar+gzip", l.Length,
            $"sha256:{new string((char)('a' + i), 64)}", $"sha256:{new string((char)('a' + i), 64)}")).ToList();
        var manifest = Blob(Encoding.UTF8.GetBytes(Annotated(
            $"{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config}\",\"size\":1}},\"layers\":[]",
            manifestAnnotations)));
        List<string> indexes = indexAnnotations is null ? [] :
            [Blob(Encoding.UTF8.GetBytes(Annotated($"{{\"schemaVersion\":2,\"manifests\":[{{\"digest\":\"{manifest}\",\"size\":1}}]", indexAnnotations)))];
        return _store.Commit(new ImageRecord(config, ["docker.io/" + tag], [], manifest, indexes, layerRecords, 1, DateTimeOffset.UnixEpoch));
    }

    private static Dictionary<string, string> Ann(string key) => new() { [key] = "counter" };

    [Theory]
    [InlineData("org.criu.checkpoint.container.name")]
    [InlineData("io.kubernetes.cri-o.annotations.checkpoint.name")]
    public void Origin_OfAnImageWhoseManifestCarriesACheckpointAnnotation_IsThatImage(string key)
    {
        var record = StoreImage("reg/ckpt:1", [UmociLayer()], manifestAnnotations: Ann(key));

        var origin = CheckpointRestore.Origin(record.Id, On, _images);

        Assert.NotNull(origin);
        Assert.Equal(record.Id, origin.Image?.Id);
        Assert.Equal(record.Id, origin.Name);
    }

    [Fact]
    public void Origin_OfAnImageWhoseIndexCarriesTheAnnotation_IsThatImage_AsContainerdReadsIt()
    {
        StoreImage("reg/ckpt:1", [UmociLayer()], indexAnnotations: Ann("org.criu.checkpoint.container.name"));

        Assert.NotNull(CheckpointRestore.Origin("reg/ckpt:1", On, _images));
    }

    [Fact]
    public void Origin_OfAnOrdinaryImage_OrOneWithTheKeyOnlyAsAConfigLabel_OrOneNotStored_IsNull()
    {
        StoreImage("reg/plain:1", [UmociLayer()], manifestAnnotations: new Dictionary<string, string> { ["org.example.tool"] = "umoci" });
        StoreImage("reg/labelled:1", [UmociLayer(w => File(w, "x", "y"))], labels: """{"org.criu.checkpoint.container.name":"counter"}""");

        Assert.NotNull(_images.Find("reg/plain:1"));
        Assert.NotNull(_images.Find("reg/labelled:1"));
        Assert.Null(CheckpointRestore.Origin("reg/plain:1", On, _images));
        Assert.Null(CheckpointRestore.Origin("reg/labelled:1", On, _images));
        Assert.Null(CheckpointRestore.Origin("reg/absent:1", On, _images));
    }

    [Fact]
    public void Origin_OfACheckpointImage_WithRestoreOff_IsFailedPrecondition_NamingTheAnnotation()
    {
        StoreImage("reg/ckpt:1", [UmociLayer()], manifestAnnotations: Ann("io.kubernetes.cri-o.annotations.checkpoint.name"));

        var e = Assert.Throws<CriException>(() => CheckpointRestore.Origin("reg/ckpt:1", new CheckpointSection(), _images));

        Assert.Equal(ErrorKind.FailedPrecondition, e.Kind);
        Assert.Contains("io.kubernetes.cri-o.annotations.checkpoint.name", e.Message);
        Assert.Contains("restore = false", e.Message);
    }

    [Fact]
    public void Unpack_ACheckpointImage_ExtractsItsUmociLayer_AsAnArchive()
    {
        var record = StoreImage("reg/ckpt:1", [UmociLayer()], manifestAnnotations: Ann("org.criu.checkpoint.container.name"));

        var source = CheckpointRestore.Unpack(CheckpointRestore.Origin(record.Id, On, _images)!, _images, Dest);

        Assert.Equal("counter", source.Config.Name);
        Assert.Equal("inv", System.IO.File.ReadAllText(Path.Combine(source.ImagesDir, "inventory.img")));
    }

    [Theory]
    [InlineData("symlink", "link")]
    [InlineData("absolute", "absolute path")]
    public void Unpack_ACheckpointImageWithAHostileLayer_IsInvalidArgument_AndWritesNothingOutside(string kind, string expect)
    {
        var outside = Path.Combine(_dir, "outside");
        Action<TarWriter> add = kind == "symlink"
            ? w => w.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "checkpoint/pages-1.img") { LinkName = outside })
            : w => File(w, outside, "boom");
        var record = StoreImage("reg/ckpt:1", [UmociLayer(add)], manifestAnnotations: Ann("org.criu.checkpoint.container.name"));

        var e = Assert.Throws<CriException>(() => CheckpointRestore.Unpack(CheckpointRestore.Origin(record.Id, On, _images)!, _images, Dest));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(expect, e.Message);
        Assert.Contains(record.Layers[0].Digest, e.Message);
        Assert.False(System.IO.File.Exists(outside));
    }

    [Fact]
    public void Unpack_ACheckpointImageOfTwoLayers_IsInvalidArgument()
    {
        var record = StoreImage("reg/ckpt:1", [UmociLayer(), UmociLayer(w => File(w, "x", "y"))], manifestAnnotations: Ann("org.criu.checkpoint.container.name"));

        var e = Assert.Throws<CriException>(() => CheckpointRestore.Unpack(CheckpointRestore.Origin(record.Id, On, _images)!, _images, Dest));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("2 layers", e.Message);
    }
}
