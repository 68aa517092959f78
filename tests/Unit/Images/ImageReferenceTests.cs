using CriRuntime.Images.Reference;

namespace CriRuntime.Tests.Unit.Images;

public class ImageReferenceTests
{
    [Theory]
    [InlineData("busybox", "docker.io", "library/busybox", "latest", "docker.io/library/busybox:latest")]
    [InlineData("busybox:1.36", "docker.io", "library/busybox", "1.36", "docker.io/library/busybox:1.36")]
    [InlineData("library/busybox", "docker.io", "library/busybox", "latest", "docker.io/library/busybox:latest")]
    [InlineData("docker.io/busybox", "docker.io", "library/busybox", "latest", "docker.io/library/busybox:latest")]
    [InlineData("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", "docker.io/library/busybox:latest")]
    [InlineData("myuser/app", "docker.io", "myuser/app", "latest", "docker.io/myuser/app:latest")]
    [InlineData("registry.k8s.io/pause:3.10", "registry.k8s.io", "pause", "3.10", "registry.k8s.io/pause:3.10")]
    [InlineData("localhost/app", "localhost", "app", "latest", "localhost/app:latest")]
    [InlineData("localhost:5000/test/busybox:latest", "localhost:5000", "test/busybox", "latest", "localhost:5000/test/busybox:latest")]
    [InlineData("127.0.0.1:5000/test/multi_layer-x__y.z", "127.0.0.1:5000", "test/multi_layer-x__y.z", "latest", "127.0.0.1:5000/test/multi_layer-x__y.z:latest")]
    [InlineData("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", "[::1]:5000/app:v1")]
    [InlineData("Example.com/app", "Example.com", "app", "latest", "Example.com/app:latest")]
    [InlineData("a/b/c/d:_tag.X-1", "docker.io", "a/b/c/d", "_tag.X-1", "docker.io/a/b/c/d:_tag.X-1")]
    public void Parse_NormalisesDomainPathAndTag(string input, string domain, string path, string tag, string full)
    {
        var r = ImageReference.Parse(input);
        Assert.Equal(domain, r.Domain);
        Assert.Equal(path, r.Path);
        Assert.Equal(tag, r.Tag);
        Assert.Null(r.Digest);
        Assert.Equal(full, r.ToString());
        Assert.Equal(full, r.TagName);
    }

    private const string Hex = "a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4";

    [Fact]
    public void Parse_DigestOnly_HasNoTag()
    {
        var r = ImageReference.Parse($"busybox@sha256:{Hex}");
        Assert.Null(r.Tag);
        Assert.Equal($"sha256:{Hex}", r.Digest.ToString());
        Assert.Null(r.TagName);
        Assert.Equal($"docker.io/library/busybox@sha256:{Hex}", r.ToString());
    }

    [Fact]
    public void Parse_TagAndDigest_KeepsBoth()
    {
        var r = ImageReference.Parse($"localhost:5000/test/busybox:1.0@sha256:{Hex}");
        Assert.Equal("localhost:5000", r.Domain);
        Assert.Equal("1.0", r.Tag);
        Assert.Equal(Hex, r.Digest!.Value.Hex);
    }

    [Fact]
    public void TagAndDigest_RecordsNoTag_TheDigestDecides()
    {
        var r = ImageReference.Parse($"127.0.0.1:5000/test/umoci:latest@sha256:{Hex}");
        Assert.Null(r.TagName);
        Assert.Equal($"127.0.0.1:5000/test/umoci@sha256:{Hex}", r.DigestName(r.Digest!.Value));
        Assert.Equal($"127.0.0.1:5000/test/umoci:latest@sha256:{Hex}", r.ToString());
    }

    [Theory]
    [InlineData("")]
    [InlineData("Busybox")]                          // uppercase repository
    [InlineData("docker.io/Library/busybox")]
    [InlineData("busybox:")]                         // empty tag
    [InlineData("busybox:-tag")]                     // tag starting with '-'
    [InlineData("busybox@sha256:abc")]               // short digest
    [InlineData("busybox@md5:a3ed95caeb02ffe68cdd9fd84406680a")]
    [InlineData("busy box")]
    [InlineData("-busybox")]
    [InlineData("busybox-")]
    [InlineData("a//b")]
    [InlineData("exa_mple.com/app")]                 // underscore in host
    [InlineData("example.com:port/app")]
    [InlineData(":latest")]
    [InlineData("a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4")] // an id, not a name
    public void Parse_Rejects_InvalidReferences(string input)
    {
        Assert.False(ImageReference.TryParse(input, out _, out var error));
        Assert.Contains(input == "" ? "empty" : input, error);
    }

    [Fact]
    public void Parse_Rejects_TagLongerThan128()
    {
        Assert.False(ImageReference.TryParse("busybox:" + new string('a', 129), out _, out _));
        Assert.True(ImageReference.TryParse("busybox:" + new string('a', 128), out _, out _));
    }

    [Fact]
    public void DigestName_UsesNormalisedName()
    {
        var r = ImageReference.Parse("busybox");
        Assert.Equal($"docker.io/library/busybox@sha256:{Hex}", r.DigestName(CriRuntime.Images.Digest.Parse($"sha256:{Hex}")));
    }
}
