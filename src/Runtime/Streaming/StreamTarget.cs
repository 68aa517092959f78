namespace CriRuntime.Streaming;

/// <summary>Everything the streaming server needs to reach a container without the daemon's
/// stores: its shim's state directory (control socket, state.json) and, for attach, how the
/// container was created. Resolved by the daemon when it hands out a URL.</summary>
public sealed record ContainerTarget(string Id, string StateDir = "", bool Stdin = false, bool Tty = false, bool StdinOnce = false);

/// <summary>A pod as port-forward needs it: its pinned network namespace (null: host network).</summary>
public sealed record PodTarget(string Id, string? NetNs = null);

/// <summary>What a streaming token stands for: the CRI request and its resolved target.</summary>
public sealed record StreamRegistration(Google.Protobuf.IMessage Request, ContainerTarget? Container, PodTarget? Pod);
