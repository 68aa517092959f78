namespace CriRuntime.State;

/// <summary>Undo steps of a multi-step operation (CRI-O's resource cleaner): each step registers
/// its undo right after it succeeds; unless <see cref="Commit"/> is called, disposing runs the
/// undo steps in reverse order, logging (not throwing) their failures so every one is attempted.</summary>
public sealed partial class Rollback(ILogger log, string operation) : IAsyncDisposable
{
    private readonly List<(string What, Func<Task> Undo)> _steps = [];
    private bool _committed;

    public void Add(string what, Action undo) => _steps.Add((what, () => { undo(); return Task.CompletedTask; }));
    public void Add(string what, Func<Task> undo) => _steps.Add((what, undo));
    public void Commit() => _committed = true;

    public async ValueTask DisposeAsync()
    {
        if (_committed) return;
        for (var i = _steps.Count - 1; i >= 0; i--)
        {
            try
            {
                await _steps[i].Undo().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                LogUndoFailed(e, operation, _steps[i].What);
            }
        }
    }

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "{Operation}: rollback step '{Step}' failed")]
    private partial void LogUndoFailed(Exception e, string operation, string step);
}
