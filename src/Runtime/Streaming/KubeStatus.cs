using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CriRuntime.Streaming;

/// <summary>The metav1.Status that remote-command v4+ writes on the error stream when the command
/// ends: {"metadata":{},"status":"Success"}, or Failure with reason NonZeroExitCode and the code in
/// details.causes[{reason: ExitCode, message: "N"}] (client-go reads the exit code from there).</summary>
public sealed record KubeStatus
{
    [JsonPropertyName("metadata")] public StatusMetadata Metadata { get; init; } = new();
    [JsonPropertyName("status")] public required string Status { get; init; }
    [JsonPropertyName("message")] public string? Message { get; init; }
    [JsonPropertyName("reason")] public string? Reason { get; init; }
    [JsonPropertyName("details")] public StatusDetails? Details { get; init; }
    [JsonPropertyName("code")] public int? Code { get; init; }

    public static KubeStatus Success { get; } = new() { Status = "Success" };

    public static KubeStatus ExitCode(int code) => new()
    {
        Status = "Failure",
        Message = $"command terminated with non-zero exit code: exit status {code}",
        Reason = "NonZeroExitCode",
        Details = new StatusDetails { Causes = [new StatusCause { Reason = "ExitCode", Message = code.ToString(CultureInfo.InvariantCulture) }] },
    };

    public static KubeStatus InternalError(string message) => new()
    {
        Status = "Failure",
        Message = "Internal error occurred: " + message,
        Reason = "InternalError",
        Details = new StatusDetails { Causes = [new StatusCause { Message = message }] },
        Code = 500,
    };

    public static KubeStatus For(int exitCode) => exitCode == 0 ? Success : ExitCode(exitCode);

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, StreamingJson.Default.KubeStatus);

    public static KubeStatus? Parse(ReadOnlySpan<byte> json) => JsonSerializer.Deserialize(json, StreamingJson.Default.KubeStatus);

    /// <summary>The exit code the status reports: 0 for Success, the ExitCode cause, else null.</summary>
    [JsonIgnore]
    public int? ReportedExitCode =>
        Status == "Success" ? 0
        : Reason == "NonZeroExitCode" && Details?.Causes?.FirstOrDefault(c => c.Reason == "ExitCode") is { Message: { } m }
          && int.TryParse(m, NumberStyles.Integer, CultureInfo.InvariantCulture, out var code) ? code
        : null;
}

public sealed record StatusMetadata;

public sealed record StatusDetails
{
    [JsonPropertyName("causes")] public IReadOnlyList<StatusCause>? Causes { get; init; }
}

public sealed record StatusCause
{
    [JsonPropertyName("reason")] public string? Reason { get; init; }
    [JsonPropertyName("message")] public string? Message { get; init; }
}

[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(KubeStatus))]
[JsonSerializable(typeof(TerminalSize))]
internal sealed partial class StreamingJson : JsonSerializerContext;
