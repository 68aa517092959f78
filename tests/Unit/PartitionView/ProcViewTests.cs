using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.PartitionView;

namespace CriRuntime.Tests.Unit.PartitionView;

/// <summary>Who gets the partition /proc view: the pod's annotation first, then its handler,
/// then the node; and the config keys that say so.</summary>
public class ProcViewTests
{
    private static CriRuntimeConfig Load(string toml) => ConfigLoader.LoadFromStrings([("main.toml", toml)]);

    private static Dictionary<string, string> Ann(string? value) =>
        value is null ? [] : new() { [ProcView.Annotation] = value };

    [Theory]
    [InlineData(null, "", "", false)]
    [InlineData("true", "", "", true)]
    [InlineData(null, "vps", "[runtime.handlers.vps]\nproc_view = true\n", true)]
    [InlineData("false", "vps", "[runtime.handlers.vps]\nproc_view = true\n", false)]
    [InlineData(null, "fast", "[runtime.handlers.vps]\nproc_view = true\n[runtime.handlers.fast]\n", false)]
    [InlineData(null, "", "[partition_view]\nproc = true\n", true)]
    [InlineData("false", "", "[partition_view]\nproc = true\n", false)]
    public void TheAnnotationDecidesFirst_ThenTheHandler_ThenTheNode(string? annotation, string handler, string toml, bool wanted)
    {
        Assert.Equal(wanted, ProcView.Wanted(Ann(annotation), handler, Load(toml)));
    }

    [Theory]
    [InlineData("yes")]
    [InlineData("True")]
    [InlineData("")]
    public void AnAnnotationThatIsNotTrueOrFalse_IsInvalidArgumentNamingIt(string value)
    {
        var e = Assert.Throws<CriException>(() => ProcView.Wanted(Ann(value), "", Load("")));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains($"config.annotations[{ProcView.Annotation}]", e.Message);
    }

    [Fact]
    public void TheConfigKeys_AreReadAndRefusedLikeOthers()
    {
        var c = Load("[partition_view]\nproc = true\nlxcfs_path = \"/opt/lxcfs/bin/lxcfs\"\n[runtime.handlers.vps]\nshim_path = \"/x/shim\"\nproc_view = true\n");
        Assert.True(c.PartitionView.Proc);
        Assert.Equal("/opt/lxcfs/bin/lxcfs", c.PartitionView.LxcfsPath);
        Assert.Equal(("/x/shim", true), (c.Runtime.Handlers["vps"].ShimPath, c.Runtime.Handlers["vps"].ProcView));
        Assert.False(Load("").PartitionView.Proc);
        Assert.Throws<ConfigException>(() => Load("[partition_view]\nlxcfs_path = \"lxcfs\"\n"));
        Assert.Throws<ConfigException>(() => Load("[runtime.handlers.vps]\nproc_view = \"yes\"\n"));
        // What `criruntime config` prints loads back to the same.
        Assert.Equal(c, ConfigLoader.LoadFromStrings([("main.toml", ConfigWriter.ToToml(c))]), new ConfigComparer());
    }

    private sealed class ConfigComparer : IEqualityComparer<CriRuntimeConfig>
    {
        public bool Equals(CriRuntimeConfig? a, CriRuntimeConfig? b) => ConfigWriter.ToToml(a!) == ConfigWriter.ToToml(b!);
        public int GetHashCode(CriRuntimeConfig c) => 0;
    }
}
