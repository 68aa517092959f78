using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Foundation;

/// <summary>The registry fixture itself: the images the tests pull really are there, byte for byte.</summary>
[Collection(RegistryCollection.Name)]
public class RegistryFixtureTests(RegistryWithImages fixture)
{
    private readonly RegistryFixture _registry = fixture.Registry;

    [Theory]
    [InlineData("busybox")]
    [InlineData("multilayer")]
    [InlineData("zstd")]
    public void TestImage_PullsBackByDigest_WithTheBuiltManifest(string name)
    {
        var target = Directory.CreateTempSubdirectory("criruntime-pullback-").FullName;
        try
        {
            Shell.Run("skopeo", "copy", "-q", "--src-tls-verify=false", $"docker://{_registry.ImageByDigest(name)}", $"dir:{target}");
            var manifest = File.ReadAllBytes(Path.Combine(target, "manifest.json"));
            var digest = "sha256:" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(manifest));
            Assert.Equal(_registry.Digest(name), digest);
        }
        finally
        {
            Directory.Delete(target, recursive: true);
        }
    }
}
