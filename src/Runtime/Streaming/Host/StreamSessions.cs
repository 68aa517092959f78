namespace CriRuntime.Streaming.Host;

/// <summary>The stream server's reasons to live: connected daemons and open sessions. It exits
/// (<see cref="Done"/> completes) when, after a daemon has connected once, no daemon is connected
/// and no session is open; or, once draining, when the last session has ended. A daemon that was
/// killed leaves its sessions running; they keep the server alive until they end or a new daemon
/// connects.</summary>
public sealed class StreamSessions
{
    private readonly Lock _lock = new();
    private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _abort = new();
    private int _daemons, _sessions;
    private bool _everConnected, _draining;

    public int OpenSessions { get { lock (_lock) return _sessions; } }
    public int Daemons { get { lock (_lock) return _daemons; } }
    public bool Draining { get { lock (_lock) return _draining; } }

    /// <summary>Completes when the server has nothing left to serve and may exit.</summary>
    public Task Done => _done.Task;

    /// <summary>Cancelled by <see cref="Abort"/> (SIGTERM): open sessions end now.</summary>
    public CancellationToken Aborting => _abort.Token;

    public void DaemonConnected()
    {
        lock (_lock)
        {
            _daemons++;
            _everConnected = true;
        }
    }

    public void DaemonLeft()
    {
        lock (_lock)
        {
            _daemons--;
            Check();
        }
    }

    /// <summary>A session from the token's use to the end of its connection; dispose to end it.</summary>
    public IDisposable Begin()
    {
        lock (_lock) _sessions++;
        return new Session(this);
    }

    /// <summary>No new daemons or sessions (the caller stops listening); exit after the last session.</summary>
    public void Drain()
    {
        lock (_lock)
        {
            _draining = true;
            Check();
        }
    }

    /// <summary>The daemon that started the server never connected (it died right after): exit,
    /// unless one has connected by now.</summary>
    public void NoDaemonCame()
    {
        lock (_lock)
            if (!_everConnected && _sessions == 0) _done.TrySetResult();
    }

    /// <summary>SIGTERM: end the open sessions and exit.</summary>
    public void Abort()
    {
        _abort.Cancel();
        _done.TrySetResult();
    }

    /// <summary>Whether the server would exit if a daemon said goodbye now (it has no session and
    /// no other daemon is connected).</summary>
    public bool IdleWithout(int leavingDaemons)
    {
        lock (_lock) return _sessions == 0 && _daemons - leavingDaemons <= 0;
    }

    private void End()
    {
        lock (_lock)
        {
            _sessions--;
            Check();
        }
    }

    private void Check()
    {
        if (_sessions > 0) return;
        if (_draining || (_everConnected && _daemons <= 0)) _done.TrySetResult();
    }

    private sealed class Session(StreamSessions owner) : IDisposable
    {
        private int _ended;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _ended, 1) == 0) owner.End();
        }
    }
}
