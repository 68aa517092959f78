using CriRuntime.Operations;
namespace CriRuntime.State;

/// <summary>The daemon's undo steps of a multi-step operation: <see cref="UndoSteps"/> (shared
/// with the shim) with each failing undo step logged, naming the operation and the step.</summary>
public sealed partial class Rollback : IAsyncDisposable
{
    private readonly UndoSteps _steps;

    public Rollback(ILogger log, string operation) => _steps = new UndoSteps((step, e) => LogUndoFailed(log, e, operation, step));

    public void Add(string what, Action undo) => _steps.Add(what, undo);
    public void Add(string what, Func<Task> undo) => _steps.Add(what, undo);
    public void Commit() => _steps.Commit();

    public ValueTask DisposeAsync() => _steps.DisposeAsync();

    [LoggerMessage(EventId = 200, Level = LogLevel.Warning, Message = "{Operation}: rollback step '{Step}' failed")]
    private static partial void LogUndoFailed(ILogger log, Exception e, string operation, string step);
}
