namespace CriRuntime.Errors;

/// <summary>What went wrong, independent of the transport. The gRPC boundary maps each kind to
/// one status code (see <see cref="Server.CriErrorInterceptor"/>); nothing else in the daemon
/// speaks gRPC status codes.</summary>
public enum ErrorKind
{
    InvalidArgument,
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    Unavailable,
    DeadlineExceeded,
    ResourceExhausted,
    Aborted,
    Unimplemented,
}

/// <summary>An error whose kind is known. Anything else thrown out of an RPC is a bug and
/// becomes Internal.</summary>
public sealed class CriException(ErrorKind kind, string message, Exception? inner = null)
    : Exception(message, inner)
{
    public ErrorKind Kind { get; } = kind;
}

/// <summary>Short constructors so call sites read as sentences:
/// <c>throw Fail.NotFound($"pod sandbox {id} not found")</c>.</summary>
public static class Fail
{
    public static CriException InvalidArgument(string message) => new(ErrorKind.InvalidArgument, message);
    public static CriException NotFound(string message) => new(ErrorKind.NotFound, message);
    public static CriException AlreadyExists(string message) => new(ErrorKind.AlreadyExists, message);
    public static CriException FailedPrecondition(string message) => new(ErrorKind.FailedPrecondition, message);
    public static CriException Unavailable(string message, Exception? inner = null) => new(ErrorKind.Unavailable, message, inner);
    public static CriException DeadlineExceeded(string message) => new(ErrorKind.DeadlineExceeded, message);
    public static CriException ResourceExhausted(string message, Exception? inner = null) => new(ErrorKind.ResourceExhausted, message, inner);
    public static CriException Aborted(string message) => new(ErrorKind.Aborted, message);
}
