using System.Text.Json;
using CriRuntime.Shim.Client;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The control protocol's JSON for the long-running shim: a context per use, garbage
/// once the request is answered. <see cref="ShimJsonContext.Default"/> would cache the metadata
/// of every protocol type for the container's whole life, in every shim; requests are rare
/// (start, wait, stop, exec), so rebuilding it costs less than keeping it.</summary>
internal static class ShimJson
{
    public static ShimJsonContext Transient() =>
        new(new JsonSerializerOptions(ShimJsonContext.Default.Options) { TypeInfoResolver = null });
}
