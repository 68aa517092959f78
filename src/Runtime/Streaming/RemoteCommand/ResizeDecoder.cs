using System.Text.Json;
using System.Threading.Channels;

namespace CriRuntime.Streaming.RemoteCommand;

/// <summary>Turns the resize stream, a sequence of JSON objects {"Width":W,"Height":H} with no
/// separator (Go's json.Encoder output, one per resize), into terminal sizes.</summary>
public static class ResizeDecoder
{
    public static async Task PumpAsync(Stream input, ChannelWriter<TerminalSize> output, CancellationToken ct)
    {
        var pending = new List<byte>();
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                var n = await input.ReadAsync(buffer, ct).ConfigureAwait(false);
                if (n == 0) break;
                pending.AddRange(buffer.AsSpan(0, n));
                var consumed = Decode([.. pending], output);
                pending.RemoveRange(0, consumed);
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or JsonException) { }
        finally
        {
            output.TryComplete();
        }
    }

    /// <summary>Decodes every complete object in <paramref name="data"/>; returns the bytes used.</summary>
    public static int Decode(ReadOnlySpan<byte> data, ChannelWriter<TerminalSize> output)
    {
        var state = new JsonReaderState(new JsonReaderOptions { AllowMultipleValues = true });
        var consumed = 0;
        while (true)
        {
            var reader = new Utf8JsonReader(data[consumed..], isFinalBlock: false, state);
            if (!reader.Read()) return consumed;
            var start = (int)reader.TokenStartIndex;
            if (reader.TokenType != JsonTokenType.StartObject) throw new JsonException($"resize message is a {reader.TokenType}, not an object");
            if (!reader.TrySkip()) return consumed;
            var end = (int)reader.BytesConsumed;
            var size = JsonSerializer.Deserialize(data[(consumed + start)..(consumed + end)], StreamingJson.Default.TerminalSize);
            output.TryWrite(size);
            consumed += end;
        }
    }
}
