namespace CriRuntime.Oci;

/// <summary>What a bind mount's source must be, checked by the daemon (naming the CRI field,
/// before anything is made) and by the shim (naming the OCI one, for specs from elsewhere). A
/// relative source would be resolved against whatever the working directory of the process
/// mounting it happens to be.</summary>
public static class MountSources
{
    /// <summary>Why <paramref name="source"/> cannot be a bind mount's source; null when it can.</summary>
    public static string? BindSourceProblem(string? source) => source switch
    {
        null or "" => "required",
        _ when source.Contains('\0') => "must not contain NUL",
        _ when !source.StartsWith('/') => $"'{source}' must be an absolute path",
        _ => null,
    };
}
