using Tomlyn;
using Tomlyn.Model;

namespace CriRuntime.Config;

/// <summary>Command-line values that override every file.</summary>
public sealed record ConfigOverrides(string? Socket = null, string? Root = null, string? State = null, string? LogLevel = null);

/// <summary>Loads the main TOML file and its conf.d drop-ins, merges them key by key (a later file
/// wins for each leaf; tables merge, arrays are replaced whole) and binds the result, refusing
/// unknown keys and bad values with the file and key named.</summary>
public static class ConfigLoader
{
    /// <param name="configPath">The main file. When <paramref name="explicitPath"/> is false a missing
    /// file simply means defaults.</param>
    public static CriRuntimeConfig Load(string configPath, bool explicitPath, ConfigOverrides overrides)
    {
        var files = new List<string>();
        if (File.Exists(configPath)) files.Add(configPath);
        else if (explicitPath) throw new ConfigException($"{configPath}: config file not found");

        var dropIns = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configPath)) ?? "/", "conf.d");
        if (Directory.Exists(dropIns))
            files.AddRange(Directory.GetFiles(dropIns, "*.toml").Order(StringComparer.Ordinal));

        var leaves = new ConfigLeaves();
        foreach (var file in files)
            leaves.Add(file, Parse(file));
        return Bind(leaves, overrides);
    }

    /// <summary>Loads from TOML texts, as if each were a file of the given name (tests and tools).</summary>
    public static CriRuntimeConfig LoadFromStrings(IEnumerable<(string Name, string Toml)> files, ConfigOverrides? overrides = null)
    {
        var leaves = new ConfigLeaves();
        foreach (var (name, toml) in files)
            leaves.Add(name, ParseText(name, toml));
        return Bind(leaves, overrides ?? new ConfigOverrides());
    }

    private static TomlTable Parse(string file)
    {
        string text;
        try { text = File.ReadAllText(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new ConfigException($"{file}: cannot read: {e.Message}", e); }
        return ParseText(file, text);
    }

    private static TomlTable ParseText(string file, string text)
    {
        try
        {
            return TomlSerializer.Deserialize<TomlTable>(text, TomlContext.Default) ?? new TomlTable();
        }
        catch (Exception e) when (e is not ConfigException)
        {
            throw new ConfigException($"{file}: invalid TOML: {e.Message}", e);
        }
    }

    private static CriRuntimeConfig Bind(ConfigLeaves c, ConfigOverrides o)
    {
        var defaults = new CriRuntimeConfig();
        var cfg = new CriRuntimeConfig
        {
            // File values are always read (and validated) even when a flag overrides them.
            Socket = c.AbsolutePath(["socket"], defaults.Socket) is var socket && o.Socket is null ? socket : o.Socket!,
            Root = c.AbsolutePath(["root"], defaults.Root) is var root && o.Root is null ? root : o.Root!,
            State = c.AbsolutePath(["state"], defaults.State) is var state && o.State is null ? state : o.State!,
            LogLevel = c.OneOf(["log_level"], defaults.LogLevel, LogLevels) is var level && o.LogLevel is null ? level : o.LogLevel!,
            LogFormat = c.OneOf(["log_format"], defaults.LogFormat, ["text", "json"]),
            Runtime = new RuntimeSection
            {
                CgroupDriver = c.OneOf(["runtime", "cgroup_driver"], defaults.Runtime.CgroupDriver, ["cgroupfs", "systemd"]),
                ShimPath = c.String(["runtime", "shim_path"], defaults.Runtime.ShimPath),
                CgroupRoot = c.String(["runtime", "cgroup_root"], defaults.Runtime.CgroupRoot),
                PidsLimit = c.Integer(["runtime", "pids_limit"], defaults.Runtime.PidsLimit, 0, RuntimeSection.MaxPidsLimit),
                ShimAnswerTimeout = c.PositiveDuration(["runtime", "shim_answer_timeout"], defaults.Runtime.ShimAnswerTimeout),
                Handlers = c.Handlers(["runtime", "handlers"]),
            },
            Cni = new CniSection
            {
                ConfDir = c.AbsolutePath(["cni", "conf_dir"], defaults.Cni.ConfDir),
                BinDirs = c.AbsolutePaths(["cni", "bin_dirs"], defaults.Cni.BinDirs),
            },
            Registry = new RegistrySection
            {
                Insecure = c.Hosts(["registry", "insecure"]),
                Mirrors = c.Mirrors(["registry", "mirrors"]),
            },
            Images = new ImagesSection
            {
                Pinned = c.Strings(["images", "pinned"], []),
                PullProgressTimeout = c.PositiveDuration(["images", "pull_progress_timeout"], defaults.Images.PullProgressTimeout),
            },
            Streaming = new StreamingSection
            {
                Address = c.String(["streaming", "address"], defaults.Streaming.Address),
                Port = (int)c.Integer(["streaming", "port"], defaults.Streaming.Port, 0, 65535),
                TokenTtl = c.PositiveDuration(["streaming", "token_ttl"], defaults.Streaming.TokenTtl),
            },
            Checkpoint = new CheckpointSection
            {
                CriuPath = c.AbsolutePathOrEmpty(["checkpoint", "criu_path"], defaults.Checkpoint.CriuPath),
                CriuEnv = c.Environment(["checkpoint", "criu_env"], defaults.Checkpoint.CriuEnv),
                Restore = c.Bool(["checkpoint", "restore"], defaults.Checkpoint.Restore),
                DumpTimeout = c.PositiveDuration(["checkpoint", "dump_timeout"], defaults.Checkpoint.DumpTimeout),
            },
            PartitionView = new PartitionViewSection
            {
                Proc = c.Bool(["partition_view", "proc"], defaults.PartitionView.Proc),
                LxcfsPath = c.AbsolutePathOrEmpty(["partition_view", "lxcfs_path"], defaults.PartitionView.LxcfsPath),
            },
            Storage = new StorageSection
            {
                RootfsQuota = c.Size(["storage", "rootfs_quota"], defaults.Storage.RootfsQuota, Storage.DiskQuota.MinimumBytes),
                BlockioConfigFile = c.AbsolutePathOrEmpty(["storage", "blockio_config_file"], defaults.Storage.BlockioConfigFile),
                VolumePool = (int)c.Integer(["storage", "volume_pool"], defaults.Storage.VolumePool, 0, 64),
                QuotaBackend = c.OneOf(["storage", "quota_backend"], defaults.Storage.QuotaBackend, StorageSection.QuotaBackends),
            },
            Metrics = new MetricsSection
            {
                Address = c.EndpointOrEmpty(["metrics", "address"], defaults.Metrics.Address),
            },
            Telemetry = new TelemetrySection
            {
                OtlpEndpoint = c.HttpUrlOrEmpty(["telemetry", "otlp_endpoint"], defaults.Telemetry.OtlpEndpoint),
                OtlpProtocol = c.OneOf(["telemetry", "otlp_protocol"], defaults.Telemetry.OtlpProtocol, TelemetrySection.Protocols),
                SamplingRatio = c.Ratio(["telemetry", "sampling_ratio"], defaults.Telemetry.SamplingRatio),
                ExportInterval = c.PositiveDuration(["telemetry", "export_interval"], defaults.Telemetry.ExportInterval),
            },
            Migration = new MigrationSection
            {
                Listen = c.EndpointOrEmpty(["migration", "listen"], defaults.Migration.Listen),
                CertFile = c.AbsolutePathOrEmpty(["migration", "cert_file"], defaults.Migration.CertFile),
                KeyFile = c.AbsolutePathOrEmpty(["migration", "key_file"], defaults.Migration.KeyFile),
                CaFile = c.AbsolutePathOrEmpty(["migration", "ca_file"], defaults.Migration.CaFile),
            },
        };
        if (o.LogLevel is not null && !LogLevels.Contains(o.LogLevel))
            throw new ConfigException($"--log-level: '{o.LogLevel}' is not one of {string.Join(", ", LogLevels)}");
        foreach (var (flag, value) in new[] { ("--socket", o.Socket), ("--root", o.Root), ("--state", o.State) })
            if (value is not null && !Path.IsPathRooted(value))
                throw new ConfigException($"{flag}: '{value}' must be an absolute path");
        c.RejectUnknown();
        var m = cfg.Migration;
        if (m.Listen.Length > 0 && (m.CertFile.Length == 0 || m.KeyFile.Length == 0 || m.CaFile.Length == 0))
            throw new ConfigException("migration.listen: needs migration.cert_file, migration.key_file and migration.ca_file (mutual TLS only)");
        return cfg with { Storage = cfg.Storage with { Blockio = LoadBlockio(cfg.Storage.BlockioConfigFile) } };
    }

    /// <summary>The blockio classes of [storage] blockio_config_file, read now: a missing or bad
    /// file stops the start (or a reload) with the key, the file and the line or class named.</summary>
    private static Storage.BlockioClasses LoadBlockio(string path)
    {
        if (path.Length == 0) return Storage.BlockioClasses.None;
        try { return Storage.BlockioClasses.Load(path); }
        catch (FormatException e) { throw new ConfigException($"storage.blockio_config_file: {path}: {e.Message}", e); }
    }

    internal static readonly string[] LogLevels = ["trace", "debug", "info", "warn", "error"];
}
