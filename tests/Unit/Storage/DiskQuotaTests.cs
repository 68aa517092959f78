using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Storage;

namespace CriRuntime.Tests.Unit.Storage;

public class DiskQuotaTests
{
    [Theory]
    [InlineData("512Mi", 512UL << 20)]
    [InlineData("1Gi", 1UL << 30)]
    [InlineData("1G", 1_000_000_000UL)]
    [InlineData("1.5Ki", 1536UL)]
    [InlineData("1048576", 1048576UL)]
    [InlineData("0", 0UL)]
    public void Quantity_ParsesKubernetesSizes(string text, ulong bytes)
    {
        Assert.True(Quantity.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("-1Mi")]
    [InlineData("12MB")]
    [InlineData("1e9")]
    [InlineData("lots")]
    [InlineData("99999999999Ei")]
    public void Quantity_RejectsWhatIsNotASize(string text) => Assert.False(Quantity.TryParse(text, out _));

    private static readonly Dictionary<string, string> None = [];

    [Fact]
    public void ForContainer_PrefersTheContainersAnnotation_ThenThePods_ThenTheNodeDefault()
    {
        var key = DiskQuota.ContainerAnnotationPrefix + "app";
        Assert.Equal(64UL << 20, DiskQuota.ForContainer(1UL << 30, "app", new Dictionary<string, string> { [key] = "64Mi" }, new Dictionary<string, string> { [key] = "128Mi" }));
        Assert.Equal(128UL << 20, DiskQuota.ForContainer(1UL << 30, "app", None, new Dictionary<string, string> { [key] = "128Mi" }));
        Assert.Equal(1UL << 30, DiskQuota.ForContainer(1UL << 30, "app", None, new Dictionary<string, string> { [DiskQuota.ContainerAnnotationPrefix + "other"] = "128Mi" }));
        Assert.Equal(0UL, DiskQuota.ForContainer(1UL << 30, "app", new Dictionary<string, string> { [key] = "0" }, None));
    }

    [Theory]
    [InlineData("lots")]
    [InlineData("1Mi")]
    public void ForContainer_ABadValue_IsInvalidArgumentNamingTheAnnotation(string value)
    {
        var key = DiskQuota.ContainerAnnotationPrefix + "app";
        var e = Assert.Throws<CriException>(() => DiskQuota.ForContainer(0, "app", None, new Dictionary<string, string> { [key] = value }));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(key, e.Message);
    }

    [Fact]
    public void ForPod_ABadValue_IsInvalidArgumentNamingTheAnnotation()
    {
        var e = Assert.Throws<CriException>(() => DiskQuota.ForPod(new Dictionary<string, string> { [DiskQuota.PodAnnotation] = "x" }));
        Assert.Contains(DiskQuota.PodAnnotation, e.Message);
    }

    [Fact]
    public void Config_RootfsQuota_ReadsASize_DefaultsToNone_AndRejectsGarbageNamingTheKey()
    {
        Assert.Equal(0UL, ConfigLoader.LoadFromStrings([]).Storage.RootfsQuota);
        Assert.Equal(512UL << 20, ConfigLoader.LoadFromStrings([("f.toml", "[storage]\nrootfs_quota = \"512Mi\"\n")]).Storage.RootfsQuota);
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadFromStrings([("f.toml", "[storage]\nrootfs_quota = \"big\"\n")]));
        Assert.Contains("storage.rootfs_quota", e.Message);
    }

    [Fact]
    public void Config_RootfsQuota_SurvivesTheWriterRoundTrip()
    {
        var c = ConfigLoader.LoadFromStrings([("f.toml", "[storage]\nrootfs_quota = \"1Gi\"\n")]);
        Assert.Equal(1UL << 30, ConfigLoader.LoadFromStrings([("w.toml", ConfigWriter.ToToml(c))]).Storage.RootfsQuota);
    }
}
