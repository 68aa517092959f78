using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using CriRuntime.Config;
using CriRuntime.Errors;
using CriRuntime.Files;
using CriRuntime.State;

namespace CriRuntime.Network;

/// <summary>What a pod asks of the network.</summary>
public sealed record PodNetworkRequest(
    string PodId, string NetnsPath, string PodName, string PodNamespace, string PodUid,
    IReadOnlyList<PortMappingArg> PortMappings, DnsArg? Dns = null, BandwidthArg? Bandwidth = null,
    IReadOnlyList<string>? Ips = null);

public sealed record PortMappingArg(int HostPort, int ContainerPort, string Protocol, string HostIP);
public sealed record DnsArg(IReadOnlyList<string> Servers, IReadOnlyList<string> Searches, IReadOnlyList<string> Options);
public sealed record BandwidthArg(long IngressRate, long IngressBurst, long EgressRate, long EgressBurst);

/// <summary>The pod's addresses as the plugins reported them.</summary>
public sealed record PodNetworkStatus(string NetworkName, IReadOnlyList<string> Ips);

/// <summary>What is needed to tear a pod's network down exactly as it was set up, even after the
/// config directory changed or the daemon restarted: written before ADD, completed after.</summary>
public sealed record CniAttachment
{
    public required string PodId { get; init; }
    public required string NetnsPath { get; init; }
    public required string IfName { get; init; }
    public required string Args { get; init; }
    public required string ConfigFile { get; init; }
    public required string NetworkConfig { get; init; }
    public required string RuntimeConfig { get; init; }
    public string? Result { get; init; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(CniAttachment))]
[JsonSerializable(typeof(PortMappingArg[]))]
[JsonSerializable(typeof(DnsArg))]
[JsonSerializable(typeof(BandwidthArg))]
internal sealed partial class CniJson : JsonSerializerContext;

/// <summary>What the pod controller needs of the network: attach a pod's network namespace, and
/// detach it (idempotent: a pod with no attachment is done). <see cref="CniNetwork"/> is the one.</summary>
public interface IPodNetwork
{
    Task<PodNetworkStatus> SetUpAsync(PodNetworkRequest req, CancellationToken ct);
    Task TearDownAsync(string podId, CancellationToken ct);
}

/// <summary>Sets up and tears down pod networks with the plugin list from the CNI config dir
/// (ADD forward through the chain with prevResult, DEL in reverse, CHECK forward), caching what
/// DEL needs under &lt;root&gt;/cni/. Teardown is idempotent: a pod with no attachment is done.</summary>
public sealed partial class CniNetwork(CriRuntimeConfig config, CniConfigProbe probe, CniPlugins plugins, ILogger<CniNetwork> log) : IPodNetwork
{
    public const string IfName = "eth0";
    private readonly string _cacheDir = Path.Combine(config.Root, "cni");

    private string CachePath(string podId) => Path.Combine(_cacheDir, podId + ".json");

    public async Task<PodNetworkStatus> SetUpAsync(PodNetworkRequest req, CancellationToken ct)
    {
        var status = probe.Check();
        if (!status.Ready || status.ConfigFile is null)
            throw Fail.FailedPrecondition($"pod network is not ready: {status.Message}");
        var list = LoadList(status.ConfigFile);
        var attachment = new CniAttachment
        {
            PodId = req.PodId,
            NetnsPath = req.NetnsPath,
            IfName = IfName,
            Args = $"IgnoreUnknown=1;K8S_POD_NAMESPACE={req.PodNamespace};K8S_POD_NAME={req.PodName};K8S_POD_INFRA_CONTAINER_ID={req.PodId};K8S_POD_UID={req.PodUid}",
            ConfigFile = status.ConfigFile,
            NetworkConfig = list.ToJsonString(),
            RuntimeConfig = RuntimeConfigFor(req).ToJsonString(),
        };
        Save(attachment);
        try
        {
            var result = await InvokeChainAsync("ADD", attachment, list, ct);
            Save(attachment with { Result = result?.ToJsonString() });
            return new PodNetworkStatus(list["name"]!.GetValue<string>(), Ips(result));
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // The spec asks runtimes to DEL after a failed ADD so plugins release what they took.
            // The ADD's error is what the caller must see: a failing DEL is logged and its
            // attachment kept in the cache, for the caller's rollback or the start-up GC to retry.
            try
            {
                await TearDownAsync(req.PodId, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception del) when (del is CriException or IOException or System.Text.Json.JsonException)
            {
                LogDelAfterAddFailed(req.PodId, del.Message);
            }
            throw;
        }
    }

    public async Task CheckAsync(string podId, CancellationToken ct)
    {
        var attachment = Load(podId) ?? throw Fail.NotFound($"pod {podId} has no network attachment");
        var list = JsonNode.Parse(attachment.NetworkConfig)!.AsObject();
        await InvokeChainAsync("CHECK", attachment, list, ct);
    }

    /// <summary>DEL through the chain in reverse. Idempotent; the cache goes only when DEL succeeded.</summary>
    public async Task TearDownAsync(string podId, CancellationToken ct)
    {
        var attachment = Load(podId);
        if (attachment is null) return;
        var list = JsonNode.Parse(attachment.NetworkConfig)!.AsObject();
        await InvokeChainAsync("DEL", attachment, list, ct);
        File.Delete(CachePath(podId));
    }

    /// <summary>The pod's interfaces on this node's side, as its ADD reported them: those outside
    /// the pod's namespace (no "sandbox") that are not a bridge a plugin of its network names
    /// (the bridge plugin reports the bridge, the host end of the veth, then eth0). Empty for a
    /// pod without an attachment.</summary>
    public IReadOnlyList<string> HostInterfaces(string podId)
    {
        if (Load(podId) is not { Result: { } result } a) return [];
        var bridges = Plugins(JsonNode.Parse(a.NetworkConfig)!.AsObject())
            .Select(p => p["bridge"]?.GetValue<string>()).Where(b => b is not null).ToHashSet(StringComparer.Ordinal);
        return JsonNode.Parse(result)?["interfaces"] is JsonArray interfaces
            ? [.. interfaces.Where(i => string.IsNullOrEmpty(i?["sandbox"]?.GetValue<string>()))
                .Select(i => i?["name"]?.GetValue<string>()).Where(n => n is { Length: > 0 } && !bridges.Contains(n)).Select(n => n!)]
            : [];
    }

    /// <summary>Pods with a cached attachment (for the restart sweep of half-created pods).</summary>
    public IEnumerable<string> AttachedPods() =>
        Directory.Exists(_cacheDir) ? Directory.GetFiles(_cacheDir, "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!) : [];

    private async Task<JsonNode?> InvokeChainAsync(string command, CniAttachment a, JsonObject list, CancellationToken ct)
    {
        var version = Version(list);
        var pluginConfigs = Plugins(list).ToList();
        if (command == "DEL") pluginConfigs.Reverse();
        var runtimeConfig = JsonNode.Parse(a.RuntimeConfig)!.AsObject();
        JsonNode? prev = command == "ADD" ? null : a.Result is null ? null : JsonNode.Parse(a.Result);
        var inv = new CniInvocation(command, a.PodId, a.NetnsPath, a.IfName, a.Args);
        foreach (var plugin in pluginConfigs)
        {
            var type = plugin["type"]!.GetValue<string>();
            var conf = PluginConf(plugin, list, version);
            var rc = new JsonObject();
            if (plugin["capabilities"] is JsonObject caps)
                foreach (var (cap, enabled) in caps)
                    if (enabled?.GetValue<bool>() == true && runtimeConfig[cap] is { } v) rc[cap] = v.DeepClone();
            if (rc.Count > 0) conf["runtimeConfig"] = rc;
            if (prev is not null) conf["prevResult"] = prev.DeepClone();
            var stdout = await plugins.ExecAsync(type, inv, Serialize(conf), ct);
            if (command == "ADD")
            {
                if (string.IsNullOrWhiteSpace(stdout)) throw Fail.Unavailable($"CNI plugin {type} ADD returned no result");
                prev = JsonNode.Parse(stdout);
            }
            LogPlugin(command, type, a.PodId);
        }
        return prev;
    }

    /// <summary>The spec versions this runtime speaks, oldest first.</summary>
    internal static readonly string[] SupportedVersions = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

    /// <summary>The version to speak with a network config: the highest of its `cniVersions`
    /// (1.1.0) that this runtime speaks, else its `cniVersion`.</summary>
    internal static string Version(JsonObject list)
    {
        if (list["cniVersions"] is JsonArray versions)
        {
            var both = versions.Select(v => v?.GetValue<string>()).Where(v => v is not null && SupportedVersions.Contains(v))
                .OrderBy(v => System.Version.Parse(v!)).LastOrDefault();
            if (both is not null) return both;
        }
        return list["cniVersion"]?.GetValue<string>() ?? "0.4.0";
    }

    private static bool AtLeast(string version, string min) =>
        System.Version.TryParse(version, out var v) && v >= System.Version.Parse(min);

    /// <summary>NetworkReady: the config probe, then, for networks of spec 1.1.0 and later, STATUS
    /// of every plugin in the list (a plugin may say it cannot take pods now, e.g. error 50 while
    /// its daemon is down).</summary>
    public async Task<CniStatus> StatusAsync(CancellationToken ct)
    {
        var status = probe.Check();
        if (!status.Ready || status.ConfigFile is null) return status;
        JsonObject list;
        try { list = LoadList(status.ConfigFile); }
        catch (Exception e) when (e is JsonException or IOException or InvalidOperationException)
        {
            return status with { Ready = false, Message = $"{status.ConfigFile}: {e.Message}" };
        }
        var version = Version(list);
        if (!AtLeast(version, "1.1.0")) return status;
        foreach (var plugin in Plugins(list))
        {
            var type = plugin["type"]!.GetValue<string>();
            try
            {
                await plugins.ExecAsync(type, new CniInvocation("STATUS", "", "", "", ""), Serialize(PluginConf(plugin, list, version)), ct);
            }
            catch (CriException e)
            {
                return status with { Ready = false, Message = $"{status.ConfigFile}: {e.Message}" };
            }
        }
        return status;
    }

    /// <summary>CNI GC (spec 1.1.0 and later, unless the config says `disableGC`): every plugin of
    /// the current network is told which attachments are still in use (those with a cached ADD:
    /// pods that exist), so it can release what a pod lost without a DEL left behind (leases,
    /// rules). Never instead of DEL; a failure is logged, not fatal.</summary>
    public async Task GarbageCollectAsync(CancellationToken ct)
    {
        var status = probe.Check();
        if (!status.Ready || status.ConfigFile is null) return;
        var list = LoadList(status.ConfigFile);
        var version = Version(list);
        if (!AtLeast(version, "1.1.0") || list["disableGC"]?.GetValue<bool>() == true) return;
        var name = list["name"]!.GetValue<string>();
        var valid = new JsonArray();
        foreach (var podId in AttachedPods().Order(StringComparer.Ordinal))
        {
            var a = Load(podId);
            if (a is null || JsonNode.Parse(a.NetworkConfig)?["name"]?.GetValue<string>() != name) continue;
            valid.Add((JsonNode)new JsonObject { ["containerID"] = a.PodId, ["ifname"] = a.IfName });
        }
        foreach (var plugin in Plugins(list))
        {
            var type = plugin["type"]!.GetValue<string>();
            var conf = PluginConf(plugin, list, version);
            conf["cni.dev/valid-attachments"] = valid.DeepClone();
            try
            {
                await plugins.ExecAsync(type, new CniInvocation("GC", "", "", "", ""), Serialize(conf), ct);
                LogGc(type, name, valid.Count);
            }
            catch (CriException e)
            {
                LogGcFailed(type, name, e.Message);
            }
        }
    }

    private static IEnumerable<JsonObject> Plugins(JsonObject list) =>
        list["plugins"] is JsonArray arr ? arr.Select(p => p!.AsObject()) : [list];

    /// <summary>A copy of a plugin's own config with the list's version and name added, as every
    /// command passes it (ADD/CHECK/DEL add what concerns the pod).</summary>
    private static JsonObject PluginConf(JsonObject plugin, JsonObject list, string version)
    {
        var conf = (JsonObject)plugin.DeepClone();
        conf["cniVersion"] = version;
        conf["name"] = list["name"]!.GetValue<string>();
        return conf;
    }

    private static byte[] Serialize(JsonObject conf) => JsonSerializer.SerializeToUtf8Bytes(conf, CniNodeJson.Default.JsonObject);

    [LoggerMessage(EventId = 303, Level = LogLevel.Warning, Message = "CNI DEL after a failed ADD of pod {PodId} failed too: {Error}")]
    private partial void LogDelAfterAddFailed(string podId, string error);

    [LoggerMessage(EventId = 301, Level = LogLevel.Information, Message = "CNI GC {Plugin} of network {Network}: {Valid} attachments in use")]
    private partial void LogGc(string plugin, string network, int valid);

    [LoggerMessage(EventId = 302, Level = LogLevel.Warning, Message = "CNI GC {Plugin} of network {Network} failed: {Error}")]
    private partial void LogGcFailed(string plugin, string network, string error);

    private static JsonObject LoadList(string file)
    {
        var node = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        return node;
    }

    internal static JsonObject RuntimeConfigFor(PodNetworkRequest req)
    {
        var rc = new JsonObject();
        if (req.PortMappings.Count > 0)
            rc["portMappings"] = JsonSerializer.SerializeToNode(req.PortMappings.ToArray(), CniJson.Default.PortMappingArgArray);
        if (req.Dns is not null) rc["dns"] = JsonSerializer.SerializeToNode(req.Dns, CniJson.Default.DnsArg);
        if (req.Bandwidth is not null) rc["bandwidth"] = JsonSerializer.SerializeToNode(req.Bandwidth, CniJson.Default.BandwidthArg);
        // The CNI `ips` capability (conventions.md): a plugin that declares it gives exactly these.
        if (req.Ips is { Count: > 0 } ips) rc["ips"] = new JsonArray([.. ips.Select(ip => (JsonNode)JsonValue.Create(ip))]);
        return rc;
    }

    /// <summary>Addresses from a result of any CNI version: "ips" (0.3.0+) or "ip4"/"ip6" (0.2.0),
    /// without prefix length, IPv4 first.</summary>
    internal static IReadOnlyList<string> Ips(JsonNode? result)
    {
        var ips = new List<string>();
        if (result?["ips"] is JsonArray arr)
            foreach (var ip in arr)
                if (ip?["address"]?.GetValue<string>() is { } a) ips.Add(a.Split('/')[0]);
        foreach (var key in new[] { "ip4", "ip6" })
            if (result?[key]?["ip"]?.GetValue<string>() is { } a) ips.Add(a.Split('/')[0]);
        return [.. ips.OrderBy(i => i.Contains(':') ? 1 : 0)];
    }

    private void Save(CniAttachment a) =>
        AtomicFile.Write(CachePath(a.PodId), JsonSerializer.SerializeToUtf8Bytes(a, CniJson.Default.CniAttachment));

    private CniAttachment? Load(string podId)
    {
        var path = CachePath(podId);
        return File.Exists(path) ? JsonSerializer.Deserialize(File.ReadAllBytes(path), CniJson.Default.CniAttachment) : null;
    }

    [LoggerMessage(EventId = 300, Level = LogLevel.Debug, Message = "CNI {Command} {Plugin} done for pod {PodId}")]
    private partial void LogPlugin(string command, string plugin, string podId);
}

[JsonSerializable(typeof(JsonObject))]
internal sealed partial class CniNodeJson : JsonSerializerContext;
