using System.Threading.Channels;
using CriRuntime.Cri.V1;

namespace CriRuntime.Containers;

/// <summary>Container lifecycle events for GetContainerEvents: each subscriber gets every event
/// published after it subscribed, in order. A subscriber that falls far behind loses the oldest
/// events rather than stalling the runtime.</summary>
public sealed class ContainerEvents
{
    private readonly Lock _lock = new();
    private readonly List<Channel<ContainerEventResponse>> _subscribers = [];

    public ChannelReader<ContainerEventResponse> Subscribe(CancellationToken ct)
    {
        var channel = Channel.CreateBounded<ContainerEventResponse>(new BoundedChannelOptions(4096)
        {
            FullMode = BoundedChannelFullMode.DropOldest,
            SingleReader = true,
        });
        lock (_lock) _subscribers.Add(channel);
        ct.Register(() =>
        {
            lock (_lock) _subscribers.Remove(channel);
            channel.Writer.TryComplete();
        });
        return channel.Reader;
    }

    public void Publish(ContainerEventResponse e)
    {
        lock (_lock)
            foreach (var s in _subscribers) s.Writer.TryWrite(e);
    }
}
