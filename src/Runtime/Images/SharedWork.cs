namespace CriRuntime.Images;

/// <summary>Runs one operation per key at a time and lets every caller asking for the same key
/// wait on it: two pulls of one image share each blob's download and each layer's unpack. The
/// operation has its own cancellation, cancelled only when every caller waiting on it has gone
/// away, so one kubelet giving up does not fail another pull of the same layer.</summary>
public sealed class SharedWork
{
    private sealed class Entry
    {
        public readonly CancellationTokenSource Cts = new();
        public Task Task = Task.CompletedTask;
        public int Waiters;
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Entry> _running = new(StringComparer.Ordinal);

    /// <summary>Number of operations in flight (for tests and diagnostics).</summary>
    public int Running { get { lock (_lock) return _running.Count; } }

    public async Task RunAsync(string key, Func<CancellationToken, Task> work, CancellationToken ct)
    {
        Entry entry;
        lock (_lock)
        {
            // An entry whose callers all left is being cancelled: start afresh rather than join it.
            if (!_running.TryGetValue(key, out entry!) || entry.Cts.IsCancellationRequested)
            {
                entry = new Entry();
                var started = entry;
                _running[key] = entry;
                entry.Task = Task.Run(async () =>
                {
                    try { await work(started.Cts.Token).ConfigureAwait(false); }
                    finally
                    {
                        lock (_lock)
                            if (_running.TryGetValue(key, out var current) && current == started) _running.Remove(key);
                        started.Cts.Dispose();
                    }
                }, CancellationToken.None);
            }
            entry.Waiters++;
        }
        try
        {
            await entry.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            lock (_lock)
            {
                if (--entry.Waiters == 0 && !entry.Task.IsCompleted)
                {
                    try { entry.Cts.Cancel(); } catch (ObjectDisposedException) { }
                }
            }
        }
    }
}
