using System.Collections.Concurrent;

namespace CriRuntime.State;

/// <summary>At most one create per name key at a time. A kubelet retry of a create that is still
/// running awaits the same work and gets the same id; the work runs to completion even when
/// the caller that started it gives up, so its retry finds the result.</summary>
public sealed class SingleFlight
{
    private readonly ConcurrentDictionary<string, Lazy<Task<string>>> _running = new(StringComparer.Ordinal);

    public async Task<string> RunAsync(string key, Func<Task<string>> work, CancellationToken ct)
    {
        var lazy = _running.GetOrAdd(key, _ => new Lazy<Task<string>>(() => Task.Run(work)));
        try
        {
            return await lazy.Value.WaitAsync(ct);
        }
        finally
        {
            if (lazy.Value.IsCompleted) _running.TryRemove(new KeyValuePair<string, Lazy<Task<string>>>(key, lazy));
        }
    }
}
