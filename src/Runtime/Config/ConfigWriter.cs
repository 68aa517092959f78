using System.Text;

namespace CriRuntime.Config;

/// <summary>Prints a configuration as TOML that <see cref="ConfigLoader"/> reads back to the same values
/// (`criruntime config`).</summary>
public static class ConfigWriter
{
    public static string ToToml(CriRuntimeConfig c)
    {
        var sb = new StringBuilder();
        sb.AppendLine("# Effective criruntime configuration (defaults, config file, conf.d drop-ins, flags).");
        Kv(sb, "socket", Str(c.Socket));
        Kv(sb, "root", Str(c.Root));
        Kv(sb, "state", Str(c.State));
        Kv(sb, "log_level", Str(c.LogLevel));
        Kv(sb, "log_format", Str(c.LogFormat));
        sb.AppendLine().AppendLine("[runtime]");
        Kv(sb, "cgroup_driver", Str(c.Runtime.CgroupDriver));
        Kv(sb, "shim_path", Str(c.Runtime.ShimPath));
        Kv(sb, "cgroup_root", Str(c.Runtime.CgroupRoot));
        Kv(sb, "pids_limit", c.Runtime.PidsLimit.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Kv(sb, "shim_answer_timeout", Str(Duration.Format(c.Runtime.ShimAnswerTimeout)));
        foreach (var (name, handler) in c.Runtime.Handlers)
        {
            sb.AppendLine().AppendLine($"[runtime.handlers.{Str(name)}]");
            Kv(sb, "shim_path", Str(handler.ShimPath));
            Kv(sb, "proc_view", handler.ProcView ? "true" : "false");
        }
        sb.AppendLine().AppendLine("[cni]");
        Kv(sb, "conf_dir", Str(c.Cni.ConfDir));
        Kv(sb, "bin_dirs", List(c.Cni.BinDirs));
        sb.AppendLine().AppendLine("[registry]");
        Kv(sb, "insecure", List(c.Registry.Insecure));
        foreach (var (host, mirror) in c.Registry.Mirrors)
        {
            sb.AppendLine().AppendLine($"[registry.mirrors.{Str(host)}]");
            Kv(sb, "endpoints", List(mirror.Endpoints));
        }
        sb.AppendLine().AppendLine("[images]");
        Kv(sb, "pinned", List(c.Images.Pinned));
        Kv(sb, "pull_progress_timeout", Str(Duration.Format(c.Images.PullProgressTimeout)));
        sb.AppendLine().AppendLine("[streaming]");
        Kv(sb, "address", Str(c.Streaming.Address));
        Kv(sb, "port", c.Streaming.Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Kv(sb, "token_ttl", Str(Duration.Format(c.Streaming.TokenTtl)));
        sb.AppendLine().AppendLine("[checkpoint]");
        Kv(sb, "criu_path", Str(c.Checkpoint.CriuPath));
        Kv(sb, "criu_env", List(c.Checkpoint.CriuEnv));
        Kv(sb, "restore", c.Checkpoint.Restore ? "true" : "false");
        Kv(sb, "dump_timeout", Str(Duration.Format(c.Checkpoint.DumpTimeout)));
        sb.AppendLine().AppendLine("[partition_view]");
        Kv(sb, "proc", c.PartitionView.Proc ? "true" : "false");
        Kv(sb, "lxcfs_path", Str(c.PartitionView.LxcfsPath));
        sb.AppendLine().AppendLine("[storage]");
        Kv(sb, "rootfs_quota", Str(c.Storage.RootfsQuota.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        Kv(sb, "blockio_config_file", Str(c.Storage.BlockioConfigFile));
        Kv(sb, "volume_pool", c.Storage.VolumePool.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Kv(sb, "quota_backend", Str(c.Storage.QuotaBackend));
        sb.AppendLine().AppendLine("[metrics]");
        Kv(sb, "address", Str(c.Metrics.Address));
        sb.AppendLine().AppendLine("[telemetry]");
        Kv(sb, "otlp_endpoint", Str(c.Telemetry.OtlpEndpoint));
        Kv(sb, "otlp_protocol", Str(c.Telemetry.OtlpProtocol));
        Kv(sb, "sampling_ratio", Float(c.Telemetry.SamplingRatio));
        Kv(sb, "export_interval", Str(Duration.Format(c.Telemetry.ExportInterval)));
        sb.AppendLine().AppendLine("[migration]");
        Kv(sb, "listen", Str(c.Migration.Listen));
        Kv(sb, "cert_file", Str(c.Migration.CertFile));
        Kv(sb, "key_file", Str(c.Migration.KeyFile));
        Kv(sb, "ca_file", Str(c.Migration.CaFile));
        return sb.ToString();
    }

    private static void Kv(StringBuilder sb, string key, string value) => sb.Append(key).Append(" = ").AppendLine(value);

    /// <summary>A TOML float: always with a fraction or an exponent, so it reads back as a float.</summary>
    private static string Float(double d)
    {
        var s = d.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        return s.Contains('.') || s.Contains('E') ? s : s + ".0";
    }

    private static string List(IEnumerable<string> items) => "[" + string.Join(", ", items.Select(Str)) + "]";

    /// <summary>A TOML basic string.</summary>
    public static string Str(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (var ch in s)
        {
            switch (ch)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\t': sb.Append("\\t"); break;
                case '\r': sb.Append("\\r"); break;
                default:
                    if (char.IsControl(ch)) sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"\\u{(int)ch:X4}");
                    else sb.Append(ch);
                    break;
            }
        }
        return sb.Append('"').ToString();
    }
}
