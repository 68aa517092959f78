using System.Text.Json;
using System.Text.Json.Serialization;
using CriRuntime.Cri.V1;
using CriRuntime.State;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public override Task<PodSandboxStatusResponse> PodSandboxStatus(PodSandboxStatusRequest request, ServerCallContext context)
    {
        var pod = _pods.Get(request.PodSandboxId);
        var status = new Cri.V1.PodSandboxStatus
        {
            Id = pod.Id,
            Metadata = pod.Metadata,
            State = pod.State == PodState.Ready ? PodSandboxState.SandboxReady : PodSandboxState.SandboxNotready,
            CreatedAt = pod.CreatedAtNanos,
            RuntimeHandler = pod.RuntimeHandler,
            Linux = new LinuxPodSandboxStatus
            {
                Namespaces = new Namespace { Options = pod.NamespaceModes.ToCri() },
            },
        };
        status.Labels.Add(pod.Labels);
        status.Annotations.Add(pod.Annotations);
        if (pod.State == PodState.Ready && pod.Ips.Count > 0)
        {
            status.Network = new PodSandboxNetworkStatus { Ip = pod.Ips[0] };
            status.Network.AdditionalIps.AddRange(pod.Ips.Skip(1).Select(ip => new PodIP { Ip = ip }));
        }
        var response = new PodSandboxStatusResponse { Status = status, Timestamp = NowNanos() };
        if (request.Verbose)
        {
            response.Info["info"] = JsonSerializer.Serialize(new PodVerboseInfo(pod.Id, pod.NetNs, pod.IpcNs, pod.UtsNs, pod.PidNs, pod.PodInitPid, pod.NetworkName, pod.Dir, pod.CgroupPath),
                PodVerboseJson.Default.PodVerboseInfo);
        }
        return Task.FromResult(response);
    }
}

internal sealed record PodVerboseInfo(string Id, string? NetNs, string? IpcNs, string? UtsNs, string? PidNs, int? PodInitPid, string? Network, string Dir, string? CgroupPath);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(PodVerboseInfo))]
internal sealed partial class PodVerboseJson : JsonSerializerContext;
