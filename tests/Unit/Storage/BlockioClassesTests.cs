using CriRuntime.Errors;
using CriRuntime.Storage;

namespace CriRuntime.Tests.Unit.Storage;

public class BlockioClassesTests
{
    private const string File = """
        # goresctrl's format, as containerd and CRI-O read it
        Classes:

          # a throttled class
          slow:
            - Weight: 80          # default weight
            - Devices:
                - /dev/sd[a-z]
                - /dev/vd*
              ThrottleReadBps: 50M
              ThrottleWriteBps: 10Mi
              ThrottleReadIOPS: 10k
              ThrottleWriteIOPS: 5000
              Weight: 50
            - Devices: [rootfs, "8:16"]
              ThrottleWriteBps: '2Mi'
          fast:
          - Weight: 400
          empty:
        """;

    [Fact]
    public void Parse_ReadsGoresctrlsFormat_WithQuantitiesAndDeviceLists()
    {
        var classes = BlockioClasses.Parse(File, "/etc/blockio.yaml");

        Assert.Equal(["empty", "fast", "slow"], classes.Classes.Keys.Order());
        var slow = classes.Classes["slow"].Rules;
        Assert.Equal(3, slow.Count);
        Assert.Equal(new BlockioRule { Weight = 80 }, slow[0]);
        Assert.Equal(["/dev/sd[a-z]", "/dev/vd*"], slow[1].Devices);
        Assert.Equal(50_000_000UL, slow[1].ReadBps);
        Assert.Equal(10UL << 20, slow[1].WriteBps);
        Assert.Equal(10_000UL, slow[1].ReadIops);
        Assert.Equal(5000UL, slow[1].WriteIops);
        Assert.Equal((ushort)50, slow[1].Weight);
        Assert.Equal(["rootfs", "8:16"], slow[2].Devices);
        Assert.Equal(2UL << 20, slow[2].WriteBps);
        Assert.Equal((ushort)400, Assert.Single(classes.Classes["fast"].Rules).Weight);
        Assert.Empty(classes.Classes["empty"].Rules);
    }

    [Fact]
    public void Parse_ReadsTheSameClassesFromJson()
    {
        var json = """{"Classes": {"slow": [{"Devices": ["rootfs"], "ThrottleWriteBps": "2Mi", "Weight": 100}]}}""";

        var rule = Assert.Single(BlockioClasses.Parse(json, "f").Classes["slow"].Rules);

        Assert.Equal(["rootfs"], rule.Devices);
        Assert.Equal(2UL << 20, rule.WriteBps);
        Assert.Equal((ushort)100, rule.Weight);
    }

    [Fact]
    public void Parse_AnEmptyFile_HasNoClasses() => Assert.Empty(BlockioClasses.Parse("# nothing yet\n", "f").Classes);

    [Theory]
    [InlineData("Classes:\n  a:\n    - Weight: 5\n", "class a: Weight")]
    [InlineData("Classes:\n  a:\n    - Weight: heavy\n", "class a: Weight")]
    [InlineData("Classes:\n  a:\n    - Devices: [/dev/sda]\n      ThrottleWriteBps: fast\n", "class a: ThrottleWriteBps")]
    [InlineData("Classes:\n  a:\n    - ThrottleWriteBps: 1M\n", "class a (line 3): throttles need a Devices list")]
    [InlineData("Classes:\n  a:\n    - Devices: [sda]\n      Weight: 100\n", "'sda' is not a device path")]
    [InlineData("Classes:\n  a:\n    - Speed: 1\n", "class a: Speed (line 3): unknown key")]
    [InlineData("Klasses:\n  a: []\n", "unknown key 'Klasses'")]
    [InlineData("Classes:\n  a: &x\n", "line 2")]
    [InlineData("Classes:\n  a:\n    - Weight: 10\n   - Weight: 20\n", "line 4")]
    public void Parse_BadInput_NamesTheClassKeyOrLine(string text, string named)
    {
        var e = Assert.Throws<FormatException>(() => BlockioClasses.Parse(text, "f"));
        Assert.Contains(named, e.Message);
    }

    private static readonly Dictionary<string, string> None = [];

    [Fact]
    public void Selected_PrefersTheContainerAnnotation_ThenThePodsPerContainerOne_ThenThePodsOwn()
    {
        var pod = new Dictionary<string, string>
        {
            [BlockioClasses.PodAnnotation] = "podwide",
            [BlockioClasses.PodContainerAnnotationPrefix + "app"] = "forapp",
        };
        var container = new Dictionary<string, string> { [BlockioClasses.ContainerAnnotation] = "own" };

        Assert.Equal(("own", BlockioClasses.ContainerAnnotation), BlockioClasses.Selected("app", container, pod));
        Assert.Equal(("forapp", BlockioClasses.PodContainerAnnotationPrefix + "app"), BlockioClasses.Selected("app", None, pod));
        Assert.Equal(("podwide", BlockioClasses.PodAnnotation), BlockioClasses.Selected("other", None, pod));
        Assert.Null(BlockioClasses.Selected("app", None, None));
    }

    [Fact]
    public void For_AnUnknownClass_IsInvalidArgumentNamingTheAnnotationAndTheClasses()
    {
        var classes = BlockioClasses.Parse(File, "/etc/blockio.yaml");
        var pod = new Dictionary<string, string> { [BlockioClasses.PodAnnotation] = "turbo" };

        var e = Assert.Throws<CriException>(() => classes.For("app", None, pod));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains(BlockioClasses.PodAnnotation, e.Message);
        Assert.Contains("'turbo'", e.Message);
        Assert.Contains("empty, fast, slow", e.Message);
    }

    [Fact]
    public void For_AClassWithoutAClassFile_IsInvalidArgumentSayingSo()
    {
        var container = new Dictionary<string, string> { [BlockioClasses.ContainerAnnotation] = "slow" };

        var e = Assert.Throws<CriException>(() => BlockioClasses.None.For("app", container, None));

        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.Contains("blockio_config_file", e.Message);
    }

    [Fact]
    public void For_AKnownClass_NamesTheAnnotationAndTheFile()
    {
        var classes = BlockioClasses.Parse(File, "/etc/blockio.yaml");
        var container = new Dictionary<string, string> { [BlockioClasses.ContainerAnnotation] = "fast" };

        var chosen = classes.For("app", container, None)!;

        Assert.Equal("fast", chosen.Class.Name);
        Assert.Contains(BlockioClasses.ContainerAnnotation, chosen.Field);
        Assert.Contains("/etc/blockio.yaml", chosen.Field);
    }
}
