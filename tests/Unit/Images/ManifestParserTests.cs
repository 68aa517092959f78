using System.Text;
using CriRuntime.Images;
using CriRuntime.Images.Oci;

namespace CriRuntime.Tests.Unit.Images;

public class ManifestParserTests
{
    private static string D(char c) => "sha256:" + new string(c, 64);

    private static byte[] B(string json) => Encoding.UTF8.GetBytes(json);

    private static readonly string OciManifestJson = $$$"""
        {"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
         "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{D('c')}}}","size":10},
         "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{{{D('1')}}}","size":100},
                   {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"{{{D('2')}}}","size":200}]}
        """;

    [Fact]
    public void Parse_OciManifest_ReadsConfigAndLayersInOrder()
    {
        var m = Assert.IsType<ParsedImageManifest>(ManifestParser.Parse(B(OciManifestJson), MediaTypes.OciManifest));
        Assert.Equal(D('c'), m.Config.Digest);
        Assert.Equal([D('1'), D('2')], m.Layers.Select(l => l.Digest));
        Assert.Equal(200, m.Layers[1].Size);
    }

    [Fact]
    public void Parse_DockerSchema2_ByContentType()
    {
        var json = $$$"""
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
             "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{{{D('c')}}}","size":10},
             "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"{{{D('1')}}}","size":100}]}
            """;
        var m = Assert.IsType<ParsedImageManifest>(ManifestParser.Parse(B(json), "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"));
        Assert.Equal(MediaTypes.DockerManifest, m.MediaType);
    }

    [Fact]
    public void Parse_WithoutMediaType_DecidesByShape()
    {
        var json = $$$"""{"schemaVersion":2,"manifests":[{"digest":"{{{D('a')}}}","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}""";
        Assert.IsType<ParsedIndex>(ManifestParser.Parse(B(json), "application/octet-stream"));
    }

    [Fact]
    public void Parse_Rejects_Schema1_BadDigest_UnknownLayerType()
    {
        Assert.Throws<FormatException>(() => ManifestParser.Parse(B("""{"schemaVersion":1,"name":"x"}"""), null));
        Assert.Throws<FormatException>(() => ManifestParser.Parse(B(OciManifestJson.Replace(D('1'), "sha256:xyz")), null));
        Assert.Throws<FormatException>(() => ManifestParser.Parse(B(OciManifestJson.Replace("tar+zstd", "tar+lz4")), null));
        Assert.Throws<FormatException>(() => ManifestParser.Parse(B("not json"), null));
    }

    [Fact]
    public void Parse_Rejects_MediaTypeDisagreeingWithContentType()
    {
        Assert.Throws<FormatException>(() => ManifestParser.Parse(B(OciManifestJson), MediaTypes.DockerManifest));
    }

    private static ParsedIndex Index(params (string Os, string Arch, string? Variant, char Digest, string? MediaType)[] entries) =>
        new(MediaTypes.OciIndex, entries.Select(e => new Descriptor(e.MediaType ?? MediaTypes.OciManifest, D(e.Digest), 1,
            new Platform(e.Arch, e.Os, e.Variant))).ToList());

    [Fact]
    public void SelectPlatform_PicksLinuxAmd64()
    {
        var index = Index(("linux", "arm64", "v8", 'a', null), ("windows", "amd64", null, 'b', null), ("linux", "amd64", null, 'c', null));
        Assert.Equal(D('c'), ManifestParser.SelectPlatform(index, ManifestParser.Host)!.Digest);
    }

    [Fact]
    public void SelectPlatform_SkipsAttestations_AndReturnsNullWhenMissing()
    {
        var index = new ParsedIndex(MediaTypes.OciIndex, [
            new Descriptor(MediaTypes.OciManifest, D('a'), 1, new Platform("unknown", "unknown")),
            new Descriptor(MediaTypes.OciManifest, D('b'), 1, null),
            new Descriptor(MediaTypes.OciManifest, D('c'), 1, new Platform("arm64", "linux")),
        ]);
        Assert.Null(ManifestParser.SelectPlatform(index, ManifestParser.Host));
    }

    [Fact]
    public void SelectPlatform_PrefersExactVariant()
    {
        var index = Index(("linux", "arm", "v6", 'a', null), ("linux", "arm", "v7", 'b', null));
        Assert.Equal(D('b'), ManifestParser.SelectPlatform(index, new Platform("arm", "linux", "v7"))!.Digest);
        Assert.Equal(D('a'), ManifestParser.SelectPlatform(index, new Platform("arm", "linux"))!.Digest);
    }

    [Fact]
    public void SelectPlatform_DockerManifestList()
    {
        var json = $$$"""
            {"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[
              {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{{{D('a')}}}","size":5,"platform":{"architecture":"s390x","os":"linux"}},
              {"mediaType":"application/vnd.docker.distribution.manifest.v2+json","digest":"{{{D('b')}}}","size":5,"platform":{"architecture":"amd64","os":"linux"}}]}
            """;
        var index = Assert.IsType<ParsedIndex>(ManifestParser.Parse(B(json), null));
        Assert.Equal(D('b'), ManifestParser.SelectPlatform(index, ManifestParser.Host)!.Digest);
    }

    [Fact]
    public void ParseConfig_ReadsRunDefaults()
    {
        var json = $$$"""
            {"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["PATH=/bin","A=b"],
              "Entrypoint":["/init"],"Cmd":["sh","-c","x"],"WorkingDir":"/app","StopSignal":"SIGQUIT",
              "Volumes":{"/data":{}},"ExposedPorts":{"80/tcp":{},"53/udp":{}},"Labels":{"a":"b"}},
             "rootfs":{"type":"layers","diff_ids":["{{{D('1')}}}","{{{D('2')}}}"]}}
            """;
        var c = ManifestParser.ParseConfig(B(json), 2);
        Assert.Equal("1000:1000", c.Config!.User);
        Assert.Equal(["PATH=/bin", "A=b"], c.Config.Env!);
        Assert.Equal(["/init"], c.Config.Entrypoint!);
        Assert.Equal(["sh", "-c", "x"], c.Config.Cmd!);
        Assert.Equal("/app", c.Config.WorkingDir);
        Assert.Equal("SIGQUIT", c.Config.StopSignal);
        Assert.Equal(["/data"], c.Config.Volumes!.Keys);
        Assert.Equal(["80/tcp", "53/udp"], c.Config.ExposedPorts!.Keys);
        Assert.Equal("b", c.Config.Labels!["a"]);
        Assert.Throws<FormatException>(() => ManifestParser.ParseConfig(B(json), 3));
    }

    [Fact]
    public void ChainIds_FollowImageSpec()
    {
        var ids = ManifestParser.ChainIds([D('1'), D('2')]);
        Assert.Equal(D('1'), ids[0].ToString());
        Assert.Equal(Digest.Of(Encoding.ASCII.GetBytes($"{D('1')} {D('2')}")), ids[1]);
    }
}
