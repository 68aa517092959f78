using System.Text.Json;
using static CriRuntime.Oci.SpecReader;

namespace CriRuntime.Shim.Client;

/// <summary>A control request read straight off a <see cref="Utf8JsonReader"/>, as
/// <see cref="Oci.SpecReader"/> reads config.json and for the same reason: the shim's processes
/// read one or a few requests in their life (the `start` of a new shim, the exec request of an
/// `exec-init`), and System.Text.Json would first build its metadata for ShimRequest and the
/// resources types it carries. The same rules as ShimJsonContext (camelCase names, unknown
/// members skipped, no comments nor trailing commas); what it declines the caller leaves to
/// System.Text.Json, which then says what is wrong. Unit ShimRequestReaderTests hold the two to the same result.</summary>
public static class ShimRequestReader
{
    /// <summary>The request, or null when this reader does not take the line.</summary>
    public static ShimRequest? TryRead(ReadOnlySpan<byte> json) => TryReadDocument(json, default, Read);

    private static ShimRequest? Read(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new ShimRequest();
        while (Member(ref r, out var name))
            o = name switch
            {
                "op" => o with { Op = Str(ref r)! },
                "signal" => o with { Signal = IsNull(ref r) ? null : r.GetInt32() },
                "timeout" => o with { Timeout = IsNull(ref r) ? null : r.GetDouble() },
                "args" => o with { Args = Strings(ref r) },
                "env" => o with { Env = Strings(ref r) },
                "cwd" => o with { Cwd = Str(ref r) },
                "tty" => o with { Tty = IsNull(ref r) ? null : r.GetBoolean() },
                "stdin" => o with { Stdin = IsNull(ref r) ? null : r.GetBoolean() },
                "pid" => o with { Pid = IsNull(ref r) ? null : r.GetInt32() },
                "width" => o with { Width = IsNull(ref r) ? null : r.GetUInt16() },
                "height" => o with { Height = IsNull(ref r) ? null : r.GetUInt16() },
                "resources" => o with { Resources = ReadResources(ref r) },
                "traceParent" => o with { TraceParent = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }
}
