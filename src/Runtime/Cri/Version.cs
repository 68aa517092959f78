using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriRuntimeService
{
    public const string RuntimeName = "criruntime";
    public const string ApiVersion = "v1";

    /// <summary>The version string of this build (the assembly's informational version).</summary>
    public static string BuildVersion { get; } =
        typeof(CriRuntimeService).Assembly
            .GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>()
            .FirstOrDefault()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    public override Task<VersionResponse> Version(VersionRequest request, ServerCallContext context) =>
        Task.FromResult(new VersionResponse
        {
            // Version is the version of the kubelet runtime API, which the CRI fixes at 0.1.0.
            Version = "0.1.0",
            RuntimeName = RuntimeName,
            RuntimeVersion = BuildVersion,
            RuntimeApiVersion = ApiVersion,
        });
}
