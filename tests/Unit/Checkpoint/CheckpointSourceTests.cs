using System.Formats.Tar;
using System.Text;
using CriRuntime.Checkpoint;

namespace CriRuntime.Tests.Unit.Checkpoint;

/// <summary>The checkpoint archive is hostile input: what may be in it, and that nothing lands
/// outside the directory it is unpacked into.</summary>
public sealed class CheckpointSourceTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ckpt-src-").FullName;
    private string Dest => Path.Combine(_dir, "out");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private const string Config = """{"id":"abc","name":"counter","rootfsImageRef":"sha256:0123","rootfsImageName":"evil.example/x:1"}""";
    private const string Spec = """{"ociVersion":"1.2.0","mounts":[{"destination":"/etc/hosts","type":"bind","source":"/x/hosts","options":["rbind"]},{"destination":"/data","type":"bind","source":"/etc","options":["rbind"]}],"annotations":{"cdi.k8s.io/x":"vendor.com/gpu=0"}}""";

    private static MemoryStream Archive(Action<TarWriter>? more = null, bool valid = true)
    {
        var ms = new MemoryStream();
        using (var tar = new TarWriter(ms, TarEntryFormat.Pax, leaveOpen: true))
        {
            if (valid)
            {
                File(tar, "config.dump", Config);
                File(tar, "spec.dump", Spec);
                File(tar, "deleted.files", """["/etc/group"]""");
                tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, "checkpoint/"));
                File(tar, "checkpoint/inventory.img", "inv");
                File(tar, "checkpoint/pages-1.img", "pages");
            }
            more?.Invoke(tar);
        }
        ms.Position = 0;
        return ms;
    }

    private static void File(TarWriter tar, string name, string content) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) });

    [Fact]
    public void Extract_AValidArchive_UnpacksTheKnownFilesOnly_AndReadsItsMetadata()
    {
        var src = CheckpointSource.Extract(Archive(t => File(t, "network.status", "{}")), Dest);

        Assert.Equal("counter", src.Config.Name);
        Assert.Equal(["/etc/group"], src.DeletedFiles);
        Assert.Equal(["inventory.img", "pages-1.img"], Directory.GetFiles(src.ImagesDir).Select(Path.GetFileName).Order());
        Assert.False(System.IO.File.Exists(Path.Combine(Dest, "network.status")));
        Assert.Null(src.RootfsDiffTar);
    }

    [Fact]
    public void Extract_TakesTheTmpfsManifestAndTars_AndRefusesATarWithoutAManifestOrAnUnsafeOne()
    {
        static void Tar(TarWriter t, string name, TarEntryType type)
        {
            var inner = new MemoryStream();
            using (var w = new TarWriter(inner, TarEntryFormat.Pax, leaveOpen: true))
            {
                var entry = new PaxTarEntry(type, "x");
                if (type == TarEntryType.RegularFile) entry.DataStream = new MemoryStream("y"u8.ToArray());
                w.WriteEntry(entry);
            }
            inner.Position = 0;
            t.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = inner });
        }
        const string Manifest = """{"mounts":[{"path":"/dev/shm","options":"size=65536k"}]}""";

        var src = CheckpointSource.Extract(Archive(t => { File(t, "tmpfs.json", Manifest); Tar(t, "tmpfs-0.tar", TarEntryType.RegularFile); }), Dest);
        Assert.Equal([new TmpfsMount { Path = "/dev/shm", Options = "size=65536k" }], src.Tmpfs!.Mounts);
        Assert.True(System.IO.File.Exists(Path.Combine(Dest, "tmpfs-0.tar")));

        var e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(Archive(t => Tar(t, "tmpfs-0.tar", TarEntryType.RegularFile)), Path.Combine(_dir, "o2")));
        Assert.Contains("without tmpfs.json", e.Message);
        e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(Archive(t => { File(t, "tmpfs.json", Manifest); Tar(t, "tmpfs-0.tar", TarEntryType.CharacterDevice); }), Path.Combine(_dir, "o3")));
        Assert.Contains("tmpfs-0.tar", e.Message);
        Assert.Contains("CharacterDevice", e.Message);
        e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(Archive(t => File(t, "tmpfs.json", """{"mounts":[{"path":"/../etc"}]}""")), Path.Combine(_dir, "o4")));
        Assert.Contains("mounts[0].path", e.Message);
    }

    [Theory]
    [InlineData("symlink")]
    [InlineData("hardlink")]
    [InlineData("absolute")]
    [InlineData("dotdot")]
    [InlineData("device")]
    [InlineData("nested")]
    [InlineData("duplicate")]
    public void Extract_RefusesAHostileEntry_NamingIt_AndWritesNothingOutside(string kind)
    {
        var (name, add) = kind switch
        {
            "symlink" => ("checkpoint/pages-2.img", (Action<TarWriter>)(t => t.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, "checkpoint/pages-2.img") { LinkName = "/etc/shadow" }))),
            "hardlink" => ("spec.dump2", t => t.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, "spec.dump2") { LinkName = "/etc/shadow" })),
            "absolute" => ("/etc/cron.d/x", t => File(t, "/etc/cron.d/x", "boom")),
            "dotdot" => ("checkpoint/../../escape", t => File(t, "checkpoint/../../escape", "boom")),
            "device" => ("checkpoint/dev.img", t => t.WriteEntry(new PaxTarEntry(TarEntryType.CharacterDevice, "checkpoint/dev.img") { DeviceMajor = 1, DeviceMinor = 3 })),
            "nested" => ("checkpoint/a/b.img", t => File(t, "checkpoint/a/b.img", "x")),
            _ => ("config.dump", t => File(t, "config.dump", Config)),
        };

        var e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(Archive(add), Dest));

        Assert.Contains($"\"{name}\"", e.Message);
        Assert.Equal(["out"], Directory.GetFileSystemEntries(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void Extract_WithoutTheCriuInventory_IsRefused()
    {
        var ms = Archive(t => { File(t, "config.dump", Config); File(t, "spec.dump", Spec); }, valid: false);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(ms, Dest));
        Assert.Contains("checkpoint/inventory.img is missing", e.Message);
    }

    [Fact]
    public void DeletedFiles_LeavingTheContainer_AreRefused()
    {
        var ms = Archive(t =>
        {
            File(t, "config.dump", Config);
            File(t, "spec.dump", Spec);
            File(t, "checkpoint/inventory.img", "inv");
            File(t, "deleted.files", """["/../../etc/passwd"]""");
        }, valid: false);
        var e = Assert.Throws<InvalidDataException>(() => CheckpointSource.Extract(ms, Dest));
        Assert.Contains("deleted.files", e.Message);
    }

    [Fact]
    public void UndeclaredBindMounts_AreTheArchivesBindsTheRequestDoesNotHave()
    {
        var src = CheckpointSource.Extract(Archive(), Dest);
        var declared = new Oci.Spec { Mounts = [new Oci.Mount { Destination = "/etc/hosts", Type = "bind", Source = "/new/hosts", Options = ["rbind"] }] };

        Assert.Equal(["/data"], src.UndeclaredBindMounts(declared));
    }
}
