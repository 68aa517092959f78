using CriRuntime.Config;

namespace CriRuntime.Tests.Unit.Config;

public class ConfigLoaderTests
{
    private static CriRuntimeConfig Load(params (string, string)[] files) => ConfigLoader.LoadFromStrings(files);

    [Fact]
    public void NoFiles_GiveDefaults()
    {
        var c = Load();
        Assert.Equal("/run/criruntime/criruntime.sock", c.Socket);
        Assert.Equal(["/usr/lib/cni", "/opt/cni/bin"], c.Cni.BinDirs);
        Assert.Equal(TimeSpan.FromMinutes(1), c.Images.PullProgressTimeout);
        Assert.Empty(c.Registry.Mirrors);
        Assert.Equal(0, c.Runtime.PidsLimit); // unlimited: the kubelet's podPidsLimit bounds the pod
    }

    [Fact]
    public void Telemetry_IsOffByDefault_AndItsKeysAreRead()
    {
        var off = Load().Telemetry;
        Assert.Equal("", off.OtlpEndpoint);
        Assert.Equal("grpc", off.OtlpProtocol);
        Assert.Equal(1.0, off.SamplingRatio);
        var c = Load(("a.toml", "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\notlp_protocol = \"http/protobuf\"\nsampling_ratio = 0.25\nexport_interval = \"200ms\""));
        Assert.Equal("http://127.0.0.1:4318", c.Telemetry.OtlpEndpoint);
        Assert.Equal("http/protobuf", c.Telemetry.OtlpProtocol);
        Assert.Equal(0.25, c.Telemetry.SamplingRatio);
        Assert.Equal(TimeSpan.FromMilliseconds(200), c.Telemetry.ExportInterval);
        Assert.Equal(0, Load(("b.toml", "[telemetry]\nsampling_ratio = 0")).Telemetry.SamplingRatio);
        Assert.Equal(ConfigWriter.ToToml(c), ConfigWriter.ToToml(Load(("c.toml", ConfigWriter.ToToml(c)))));
    }

    [Fact]
    public void Migration_IsOffByDefault_IsRead_AndAListenerWithoutItsCertificatesIsRefusedNamingTheKeys()
    {
        Assert.Equal("", Load().Migration.Listen);
        var c = Load(("a.toml", "[migration]\nlisten = \"127.0.0.1:7443\"\ncert_file = \"/pki/n.crt\"\nkey_file = \"/pki/n.key\"\nca_file = \"/pki/ca.crt\""));
        Assert.Equal("127.0.0.1:7443", c.Migration.Listen);
        Assert.Equal("/pki/n.crt", c.Migration.CertFile);
        Assert.Equal("/pki/n.key", c.Migration.KeyFile);
        Assert.Equal("/pki/ca.crt", c.Migration.CaFile);
        Assert.Equal(ConfigWriter.ToToml(c), ConfigWriter.ToToml(Load(("b.toml", ConfigWriter.ToToml(c)))));

        var e = Assert.Throws<ConfigException>(() => Load(("a.toml", "[migration]\nlisten = \"127.0.0.1:7443\"\ncert_file = \"/pki/n.crt\"")));
        Assert.Contains("migration.listen", e.Message);
        Assert.Contains("migration.ca_file", e.Message);
    }

    [Fact]
    public void MetricsAddress_AndLogFormat_AreRead_OffAndTextByDefault()
    {
        Assert.Equal("", Load().Metrics.Address);
        Assert.Equal("text", Load().LogFormat);
        var c = Load(("a.toml", "log_format = \"json\"\n[metrics]\naddress = \"[::1]:9464\""));
        Assert.Equal("[::1]:9464", c.Metrics.Address);
        Assert.Equal("json", c.LogFormat);
        Assert.Equal(ConfigWriter.ToToml(c), ConfigWriter.ToToml(Load(("b.toml", ConfigWriter.ToToml(c)))));
    }

    [Fact]
    public void QuotaBackend_IsAutoByDefault_IsRead_AndAnUnknownOneIsRefusedNamingTheKey()
    {
        Assert.Equal("auto", Load().Storage.QuotaBackend);
        var c = Load(("a.toml", "[storage]\nquota_backend = \"btrfs\"\n"));
        Assert.Equal("btrfs", c.Storage.QuotaBackend);
        Assert.Equal(ConfigWriter.ToToml(c), ConfigWriter.ToToml(Load(("b.toml", ConfigWriter.ToToml(c)))));
        var e = Assert.Throws<ConfigException>(() => Load(("c.toml", "[storage]\nquota_backend = \"zfs\"\n")));
        Assert.Contains("storage.quota_backend", e.Message);
    }

    [Fact]
    public void PidsLimit_IsRead()
    {
        Assert.Equal(4096, Load(("main.toml", "[runtime]\npids_limit = 4096\n")).Runtime.PidsLimit);
    }

    [Fact]
    public void ShimAnswerTimeout_IsRead_AndMustBePositive()
    {
        Assert.Equal(TimeSpan.FromSeconds(30), Load(("main.toml", "")).Runtime.ShimAnswerTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), Load(("main.toml", "[runtime]\nshim_answer_timeout = \"5s\"\n")).Runtime.ShimAnswerTimeout);
        var e = Assert.Throws<ConfigException>(() => Load(("main.toml", "[runtime]\nshim_answer_timeout = \"0s\"\n")));
        Assert.Contains("runtime.shim_answer_timeout", e.Message);
    }

    [Fact]
    public void Mirrors_AreReadPerHost_InOrder()
    {
        var c = Load(("main.toml", """
            [registry.mirrors."registry.k8s.io"]
            endpoints = ["http://127.0.0.1:5000", "https://mirror.example"]
            [registry.mirrors."docker.io"]
            endpoints = ["http://127.0.0.1:5001"]
            """));
        Assert.Equal(["http://127.0.0.1:5000", "https://mirror.example"], c.Registry.Mirrors["registry.k8s.io"].Endpoints);
        Assert.Equal(["http://127.0.0.1:5001"], c.Registry.Mirrors["docker.io"].Endpoints);
    }

    [Fact]
    public void RuntimeHandlers_AreReadByName_EmptyTableMeaningTheDefaultShim()
    {
        var c = Load(("main.toml", """
            [runtime.handlers.fast]
            shim_path = "/opt/fast/criruntime-shim"
            [runtime.handlers.plain]
            """));
        Assert.Equal(["fast", "plain"], c.Runtime.Handlers.Keys.Order());
        Assert.Equal("/opt/fast/criruntime-shim", c.Runtime.Handlers["fast"].ShimPath);
        Assert.Equal("", c.Runtime.Handlers["plain"].ShimPath);
        Assert.Empty(Load().Runtime.Handlers);
    }

    [Fact]
    public void RuntimeHandlers_ADropInAddsToAHandlerAnEarlierFileDeclared()
    {
        var c = Load(("a.toml", "[runtime.handlers.fast]\n"), ("b.toml", "[runtime.handlers.fast]\nshim_path = \"/x/shim\"\n"));
        Assert.Equal("/x/shim", Assert.Single(c.Runtime.Handlers).Value.ShimPath);
    }

    [Theory]
    [InlineData("[runtime.handlers.Fast]\n", "handler name 'Fast' must be a DNS label")]
    [InlineData("[runtime.handlers.criruntime]\n", "default handler's name")]
    [InlineData("[runtime.handlers.fast]\nshim_path = \"rel/shim\"\n", "'rel/shim' must be an absolute path")]
    [InlineData("[runtime.handlers.fast]\nshim = \"/x\"\n", "runtime.handlers.fast.shim': unknown key")]
    public void RuntimeHandlers_BadEntries_AreRefusedNamingTheKey(string toml, string message)
    {
        var e = Assert.Throws<ConfigException>(() => Load(("main.toml", toml)));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void LaterFile_ReplacesALeaf_AndKeepsTheOthers()
    {
        var c = Load(("a.toml", "[cni]\nconf_dir = \"/a\"\nbin_dirs = [\"/x\"]\n"), ("b.toml", "[cni]\nconf_dir = \"/b\"\n"));
        Assert.Equal("/b", c.Cni.ConfDir);
        Assert.Equal(["/x"], c.Cni.BinDirs);
    }

    [Theory]
    [InlineData("log_level = \"loud\"", "key 'log_level': 'loud' is not one of")]
    [InlineData("root = \"relative/dir\"", "key 'root': 'relative/dir' must be an absolute path")]
    [InlineData("[streaming]\nport = 70000", "key 'streaming.port': 70000 is outside 0..65535")]
    [InlineData("[streaming]\nport = \"80\"", "key 'streaming.port': must be an integer")]
    [InlineData("[images]\npull_progress_timeout = \"soon\"", "key 'images.pull_progress_timeout': 'soon' is not a duration")]
    [InlineData("[images]\npull_progress_timeout = \"0s\"", "must be greater than zero")]
    [InlineData("[registry]\ninsecure = [\"http://x\"]", "key 'registry.insecure': 'http://x' must be a host or host:port")]
    [InlineData("[registry.mirrors.\"docker.io\"]\nendpoints = [\"ftp://x\"]", "key 'registry.mirrors.\"docker.io\".endpoints': 'ftp://x' must be an absolute http")]
    [InlineData("[registry.mirrors.\"docker.io\"]\nendpoint = [\"http://x\"]", "key 'registry.mirrors.\"docker.io\".endpoint': unknown key")]
    [InlineData("[runtim]\ncgroup_driver = \"systemd\"", "key 'runtim.cgroup_driver': unknown key")]
    [InlineData("[runtime]\npids_limit = -1", "key 'runtime.pids_limit': -1 is outside 0..4194304")]
    [InlineData("[runtime]\npids_limit = \"1024\"", "key 'runtime.pids_limit': must be an integer")]
    [InlineData("socket = ", "invalid TOML")]
    [InlineData("[checkpoint]\ncriu_path = \"criu\"", "key 'checkpoint.criu_path': 'criu' must be an absolute path")]
    [InlineData("[checkpoint]\ncriu_env = [\"CRIU_FAULT\"]", "key 'checkpoint.criu_env': 'CRIU_FAULT' must be KEY=VALUE")]
    [InlineData("[checkpoint]\nrestore = \"yes\"", "key 'checkpoint.restore': must be true or false")]
    [InlineData("[checkpoint]\ndump_timeout = \"0s\"", "key 'checkpoint.dump_timeout': '0s' must be greater than zero")]
    [InlineData("[metrics]\naddress = \"127.0.0.1\"", "key 'metrics.address': '127.0.0.1' must be IP:PORT")]
    [InlineData("[metrics]\naddress = \"localhost:9464\"", "key 'metrics.address': 'localhost:9464' must be IP:PORT")]
    [InlineData("[metrics]\naddress = \"127.0.0.1:0\"", "with a port from 1 to 65535")]
    [InlineData("[migration]\nlisten = \"localhost:7443\"", "key 'migration.listen': 'localhost:7443' must be IP:PORT")]
    [InlineData("[migration]\ncert_file = \"node.crt\"", "key 'migration.cert_file': 'node.crt' must be an absolute path")]
    [InlineData("log_format = \"xml\"", "key 'log_format': 'xml' is not one of text, json")]
    [InlineData("[telemetry]\notlp_endpoint = \"127.0.0.1:4317\"", "key 'telemetry.otlp_endpoint': '127.0.0.1:4317' must be an http:// or https:// URL")]
    [InlineData("[telemetry]\notlp_endpoint = \"grpc://collector:4317\"", "key 'telemetry.otlp_endpoint': 'grpc://collector:4317' must be an http://")]
    [InlineData("[telemetry]\notlp_protocol = \"http/json\"", "key 'telemetry.otlp_protocol': 'http/json' is not one of grpc, http/protobuf")]
    [InlineData("[telemetry]\nsampling_ratio = 1.5", "key 'telemetry.sampling_ratio': 1.5 is outside 0..1")]
    [InlineData("[telemetry]\nsampling_ratio = \"50%\"", "key 'telemetry.sampling_ratio': must be a number from 0 to 1")]
    [InlineData("[telemetry]\nexport_interval = \"0s\"", "key 'telemetry.export_interval': '0s' must be greater than zero")]
    public void BadInput_IsRefused_NamingFileAndKey(string toml, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => Load(("/etc/criruntime/config.toml", toml)));
        Assert.StartsWith("/etc/criruntime/config.toml: ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Flags_OverrideFiles_ButFileValuesAreStillValidated()
    {
        var c = ConfigLoader.LoadFromStrings([("f.toml", "socket = \"/a.sock\"")], new ConfigOverrides(Socket: "/b.sock"));
        Assert.Equal("/b.sock", c.Socket);
        Assert.Throws<ConfigException>(() => ConfigLoader.LoadFromStrings([("f.toml", "socket = 5")], new ConfigOverrides(Socket: "/b.sock")));
        var e = Assert.Throws<ConfigException>(() => ConfigLoader.LoadFromStrings([], new ConfigOverrides(LogLevel: "chatty")));
        Assert.StartsWith("--log-level", e.Message);
    }

    [Fact]
    public void WrittenConfig_ReadsBackEqual()
    {
        var c = Load(("a.toml", """
            log_level = "debug"
            [runtime]
            pids_limit = 77
            shim_answer_timeout = "1m30s"
            [runtime.handlers.fast]
            shim_path = "/opt/fast/shim"
            [registry]
            insecure = ["r.example:5000"]
            [registry.mirrors."quay.io"]
            endpoints = ["http://127.0.0.1:1"]
            [images]
            pinned = ["registry.k8s.io/pause:3.10"]
            pull_progress_timeout = "1h2m3s"
            [checkpoint]
            criu_path = "/opt/criu/sbin/criu"
            criu_env = ["CRIU_FAULT=130", "X=a=b"]
            restore = true
            dump_timeout = "45s"
            """));
        var again = Load(("b.toml", ConfigWriter.ToToml(c)));
        Assert.Equal(ConfigWriter.ToToml(c), ConfigWriter.ToToml(again));
        Assert.Equal(TimeSpan.FromSeconds(3723), again.Images.PullProgressTimeout);
        Assert.Equal(77, again.Runtime.PidsLimit);
        Assert.Equal("/opt/fast/shim", again.Runtime.Handlers["fast"].ShimPath);
        Assert.Equal(["CRIU_FAULT=130", "X=a=b"], again.Checkpoint.CriuEnv);
        Assert.True(again.Checkpoint.Restore);
        Assert.Equal(TimeSpan.FromSeconds(45), again.Checkpoint.DumpTimeout);
    }

    [Fact]
    public void Checkpoint_Defaults_RestoreOff_CriuFaultSet()
    {
        var c = Load();
        Assert.False(c.Checkpoint.Restore);
        Assert.Equal("", c.Checkpoint.CriuPath);
        Assert.Equal(["CRIU_FAULT=130"], c.Checkpoint.CriuEnv);
        Assert.Equal(TimeSpan.FromMinutes(2), c.Checkpoint.DumpTimeout);
    }

    [Theory]
    [InlineData("500ms", 500)]
    [InlineData("30s", 30_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("2h", 7_200_000)]
    [InlineData("1.5s", 1_500)]
    public void Duration_ParsesGoStyle(string text, double ms)
    {
        Assert.True(Duration.TryParse(text, out var d));
        Assert.Equal(ms, d.TotalMilliseconds);
    }

    [Theory]
    [InlineData("")]
    [InlineData("5")]
    [InlineData("5x")]
    [InlineData("m")]
    public void Duration_RejectsGarbage(string text) => Assert.False(Duration.TryParse(text, out _));

    [Fact]
    public void BlockioConfigFile_IsReadAtLoad_AMissingFileStopsTheStartNamingTheKey()
    {
        Assert.Empty(ConfigLoader.LoadFromStrings([]).Storage.Blockio.Classes);
        var e = Assert.Throws<ConfigException>(() =>
            ConfigLoader.LoadFromStrings([("c.toml", "[storage]\nblockio_config_file = \"/nonexistent/blockio.yaml\"\n")]));
        Assert.Contains("storage.blockio_config_file", e.Message);
        Assert.Contains("/nonexistent/blockio.yaml", e.Message);
    }
}
