namespace CriRuntime.Operations;

/// <summary>Undo steps of a multi-step operation (CRI-O's resource cleaner), shared by the daemon
/// (<c>Rollback</c>, which logs through ILogger) and the shim (its create): each step registers
/// its undo right after it succeeds; unless <see cref="Commit"/> is called, disposing runs the
/// undo steps in reverse order, reporting (not throwing) their failures to
/// <paramref name="undoFailed"/> (the step's name and the exception) so every one is attempted.
/// <see cref="Dispose"/> is for operations whose undo steps are all synchronous: an asynchronous
/// step that has not finished when it returns is reported as failed there, never waited for.</summary>
public sealed class UndoSteps(Action<string, Exception> undoFailed) : IDisposable, IAsyncDisposable
{
    private readonly List<(string What, Func<ValueTask> Undo)> _steps = [];
    private bool _committed;

    public void Add(string what, Action undo) => _steps.Add((what, () => { undo(); return ValueTask.CompletedTask; }));
    public void Add(string what, Func<Task> undo) => _steps.Add((what, () => new ValueTask(undo())));
    public void Commit() => _committed = true;

    public void Dispose()
    {
        if (_committed) return;
        _committed = true;
        for (var i = _steps.Count - 1; i >= 0; i--)
        {
            try
            {
                var pending = _steps[i].Undo();
                if (!pending.IsCompleted)
                    throw new InvalidOperationException("an asynchronous undo step under a synchronous rollback (dispose it asynchronously)");
                pending.GetAwaiter().GetResult(); // completed: surfaces its exception, never blocks
            }
            catch (Exception e)
            {
                undoFailed(_steps[i].What, e);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_committed) return;
        _committed = true;
        for (var i = _steps.Count - 1; i >= 0; i--)
        {
            try
            {
                await _steps[i].Undo().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                undoFailed(_steps[i].What, e);
            }
        }
    }
}
