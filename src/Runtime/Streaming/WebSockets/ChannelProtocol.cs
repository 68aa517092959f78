namespace CriRuntime.Streaming.WebSockets;

/// <summary>The Kubernetes channel framing over WebSocket (apimachinery wsstream): each message
/// carries one channel's data, prefixed by the channel number: one byte in the binary protocols;
/// one ASCII digit ('0' + channel) followed by base64 in the base64 protocols (text messages).
/// v5 adds channel 255: a message [255, n] from the client closes channel n's input (stdin EOF).</summary>
public sealed record ChannelProtocol(string Name, bool Base64, int Version)
{
    public const byte CloseChannel = 255;

    public static readonly ChannelProtocol V5 = new("v5.channel.k8s.io", false, 5);
    public static readonly ChannelProtocol V4 = new("v4.channel.k8s.io", false, 4);
    public static readonly ChannelProtocol V4Base64 = new("v4.base64.channel.k8s.io", true, 4);
    public static readonly ChannelProtocol V1 = new("channel.k8s.io", false, 1);
    public static readonly ChannelProtocol V1Base64 = new("base64.channel.k8s.io", true, 1);

    /// <summary>What exec and attach accept.</summary>
    public static readonly IReadOnlyList<ChannelProtocol> RemoteCommand = [V5, V4, V4Base64, V1, V1Base64];

    /// <summary>What port forwarding accepts (its framing is the v4 one; no close channel).</summary>
    public static readonly IReadOnlyList<ChannelProtocol> PortForward = [V4, V4Base64];

    public bool SupportsClose => Version >= 5;

    /// <summary>The client's first protocol that we support (the client lists its preference
    /// first); a client that names none gets binary framing, as wsstream does.</summary>
    public static ChannelProtocol? Negotiate(IReadOnlyList<string> requested, IReadOnlyList<ChannelProtocol> supported)
    {
        if (requested.Count == 0) return supported.First(p => !p.Base64) with { Name = "" };
        foreach (var name in requested)
            foreach (var p in supported)
                if (string.Equals(p.Name, name.Trim(), StringComparison.Ordinal)) return p;
        return null;
    }

    /// <summary>One message for <paramref name="channel"/> carrying <paramref name="data"/>.</summary>
    public byte[] Encode(byte channel, ReadOnlySpan<byte> data)
    {
        if (!Base64)
        {
            var message = new byte[data.Length + 1];
            message[0] = channel;
            data.CopyTo(message.AsSpan(1));
            return message;
        }
        if (channel > 9) throw new ArgumentOutOfRangeException(nameof(channel), "base64 framing carries channels 0-9");
        var text = Convert.ToBase64String(data);
        var bytes = new byte[text.Length + 1];
        bytes[0] = (byte)('0' + channel);
        System.Text.Encoding.ASCII.GetBytes(text, bytes.AsSpan(1));
        return bytes;
    }

    /// <summary>Splits a received message into its channel and data.</summary>
    public (byte Channel, byte[] Data) Decode(ReadOnlySpan<byte> message)
    {
        if (message.IsEmpty) throw new InvalidDataException("empty channel message");
        if (!Base64) return (message[0], message[1..].ToArray());
        var c = message[0];
        if (c < '0' || c > '9') throw new InvalidDataException($"base64 channel byte {c} is not a digit");
        try
        {
            return ((byte)(c - '0'), Convert.FromBase64String(System.Text.Encoding.ASCII.GetString(message[1..])));
        }
        catch (FormatException e)
        {
            throw new InvalidDataException("channel message is not base64: " + e.Message, e);
        }
    }
}
