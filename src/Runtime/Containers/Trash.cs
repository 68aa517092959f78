using System.Security.Cryptography;

namespace CriRuntime.Containers;

/// <summary>Directories removed off the request path: RemoveContainer renames a container's
/// directory (record, bundle, writable layer) and its shim state dir into a trash directory on the
/// same file system — one atomic rename each, so the name and the record are gone at once, as a
/// delete would leave them — and a background task deletes them; what a crash leaves in the
/// trash is deleted at the next daemon start (<see cref="ContainerRecovery"/>). A recursive delete
/// costs milliseconds per container (one unlink per file, journalled), the rename one.</summary>
public sealed partial class Trash(string dir, ILogger log)
{
    public string Dir { get; } = dir;

    /// <summary>The trash for directories below <paramref name="parent"/>: &lt;parent&gt;/trash.</summary>
    public static string Under(string parent) => Path.Combine(parent, "trash");

    /// <summary>The two trashes of removed containers, one per file system they live on: their
    /// directories (beside the store's) and their shims' state dirs (under the state dir).
    /// RemoveContainer fills them; recovery empties them at start.</summary>
    public static (Trash Containers, Trash ShimStates) ForContainers(State.ContainerStore containers, string stateDir, ILogger log) =>
        (new Trash(Under(Path.GetDirectoryName(containers.Dir)!), log), new Trash(Under(stateDir), log));

    /// <summary>Moves <paramref name="path"/> into the trash and deletes it in the background;
    /// deletes it at once where it cannot be moved (another file system). A missing path is fine.
    /// Returns the background deletion (callers on a request path do not wait for it).</summary>
    public Task Discard(string path)
    {
        if (!Directory.Exists(path)) return Task.CompletedTask;
        Directory.CreateDirectory(Dir);
        var target = Path.Combine(Dir, Path.GetFileName(path) + "-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4)));
        try
        {
            Directory.Move(path, target);
        }
        catch (IOException)
        {
            Directory.Delete(path, recursive: true);
            return Task.CompletedTask;
        }
        return Task.Run(() => Delete(target));
    }

    /// <summary>Deletes everything in the trash (at daemon start, before serving).</summary>
    public void Empty()
    {
        if (!Directory.Exists(Dir)) return;
        foreach (var d in Directory.GetDirectories(Dir)) Delete(d);
    }

    private void Delete(string path)
    {
        try { Directory.Delete(path, recursive: true); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { LogDeleteFailed(e, path); }
    }

    [LoggerMessage(EventId = 423, Level = LogLevel.Warning, Message = "could not delete {Path} (removed container; retried at the next start)")]
    private partial void LogDeleteFailed(Exception e, string path);
}
