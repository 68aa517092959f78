using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Streaming.Host;

/// <summary>The stream server's control protocol on its unix socket (STATE/stream-server.sock):
/// one JSON object per line each way, one answer per request, in order. A daemon keeps one
/// connection open for its life and says "hello" first; while it is open the daemon counts as
/// connected. Ops: hello, register, bye (a daemon stopping cleanly), drain.</summary>
public static class StreamControlOps
{
    public const string Hello = "hello", Register = "register", Bye = "bye", Drain = "drain";
}

public sealed record StreamControlRequest
{
    [JsonPropertyName("op")] public required string Op { get; init; }
    /// <summary>register: exec, attach or portforward.</summary>
    [JsonPropertyName("kind")] public string? Kind { get; init; }
    /// <summary>register: the CRI request, protobuf encoded (base64 in the JSON).</summary>
    [JsonPropertyName("request")] public byte[]? Request { get; init; }
    [JsonPropertyName("container")] public ContainerTarget? Container { get; init; }
    [JsonPropertyName("pod")] public PodTarget? Pod { get; init; }
    /// <summary>register: how long the token is valid.</summary>
    [JsonPropertyName("ttlSeconds")] public double? TtlSeconds { get; init; }
}

public sealed record StreamControlResponse
{
    [JsonPropertyName("ok")] public bool Ok { get; init; }
    [JsonPropertyName("error")] public string? Error { get; init; }
    /// <summary>register: the single-use URL.</summary>
    [JsonPropertyName("url")] public string? Url { get; init; }
    /// <summary>hello: who is serving, and where.</summary>
    [JsonPropertyName("pid")] public int? Pid { get; init; }
    [JsonPropertyName("version")] public string? Version { get; init; }
    [JsonPropertyName("address")] public string? Address { get; init; }
    [JsonPropertyName("port")] public int? Port { get; init; }
    [JsonPropertyName("baseUrl")] public string? BaseUrl { get; init; }
    [JsonPropertyName("sessions")] public int? Sessions { get; init; }
    /// <summary>bye/drain: the server exits now (no session left) rather than after its last session.</summary>
    [JsonPropertyName("exiting")] public bool? Exiting { get; init; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(StreamControlRequest))]
[JsonSerializable(typeof(StreamControlResponse))]
[JsonSerializable(typeof(ContainerTarget))]
[JsonSerializable(typeof(PodTarget))]
internal sealed partial class StreamControlJson : JsonSerializerContext;

/// <summary>Line framing of the control protocol: a message is its UTF-8 JSON and one '\n'
/// (JSON escapes every newline inside strings, so a line is always one whole message).</summary>
public static class StreamControlCodec
{
    /// <summary>Messages longer than this are refused (a registration is a few KiB at most).</summary>
    public const int MaxLine = 1024 * 1024;

    public static byte[] Encode(StreamControlRequest request) =>
        Line(JsonSerializer.SerializeToUtf8Bytes(request, StreamControlJson.Default.StreamControlRequest));

    public static byte[] Encode(StreamControlResponse response) =>
        Line(JsonSerializer.SerializeToUtf8Bytes(response, StreamControlJson.Default.StreamControlResponse));

    public static StreamControlRequest DecodeRequest(ReadOnlySpan<byte> line) =>
        JsonSerializer.Deserialize(line, StreamControlJson.Default.StreamControlRequest)
        ?? throw new JsonException("empty control request");

    public static StreamControlResponse DecodeResponse(ReadOnlySpan<byte> line) =>
        JsonSerializer.Deserialize(line, StreamControlJson.Default.StreamControlResponse)
        ?? throw new JsonException("empty control response");

    private static byte[] Line(byte[] json)
    {
        var line = new byte[json.Length + 1];
        json.CopyTo(line, 0);
        line[^1] = (byte)'\n';
        return line;
    }
}

/// <summary>Reads '\n'-terminated lines from a stream, whatever the reads' boundaries are.</summary>
public sealed class ControlLineReader(Stream stream)
{
    private byte[] _buffer = new byte[4096];
    private int _start, _end;

    /// <summary>The next line without its '\n'; null at end of stream (a partial last line is
    /// dropped: the peer died mid-message).</summary>
    public async Task<byte[]?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            var nl = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            if (nl >= 0)
            {
                var line = _buffer.AsSpan(_start, nl - _start).ToArray();
                _start = nl + 1;
                return line;
            }
            if (_end - _start >= StreamControlCodec.MaxLine)
                throw new InvalidDataException($"control message longer than {StreamControlCodec.MaxLine} bytes");
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }
            if (_end == _buffer.Length) Array.Resize(ref _buffer, _buffer.Length * 2);
            var n = await stream.ReadAsync(_buffer.AsMemory(_end), ct).ConfigureAwait(false);
            if (n == 0) return null;
            _end += n;
        }
    }
}

/// <summary>The daemon's decision about a stream server it finds running: adopt it, or have it
/// drain (serve its open sessions, accept nothing new, exit) and start a new one.</summary>
public static class StreamServerFit
{
    /// <summary>Null when the running server (its hello answer) serves what
    /// <paramref name="config"/> asks for with this build; otherwise why it does not.</summary>
    public static string? Mismatch(StreamControlResponse hello, Config.StreamingSection config, string version)
    {
        if (!hello.Ok) return $"it refused the daemon: {hello.Error}";
        if (hello.Version != version) return $"it is version {hello.Version}, the daemon {version}";
        if (!System.Net.IPAddress.TryParse(hello.Address, out var running)
            || !System.Net.IPAddress.TryParse(config.Address, out var wanted) || !running.Equals(wanted))
            return $"it listens on {hello.Address}, streaming.address is {config.Address}";
        if (config.Port != 0 && hello.Port != config.Port)
            return $"it listens on port {hello.Port}, streaming.port is {config.Port}";
        return null;
    }
}
