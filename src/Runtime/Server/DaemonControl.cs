using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CriRuntime.Interop;

namespace CriRuntime.Server;

/// <summary>`criruntime reload` and `criruntime config` talking to a running daemon: which
/// process serves the CRI socket (the kernel says, SO_PEERCRED), no pid file to go stale.</summary>
public static class DaemonControl
{
    private const int SolSocket = 1, SoPeerCred = 17, SigHup = 1;

    /// <summary>The pid of the process that accepted a connection to <paramref name="socketPath"/>; null when none listens.</summary>
    public static int? ServingPid(string socketPath)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { s.Connect(new UnixDomainSocketEndPoint(socketPath)); }
        catch (SocketException) { return null; }
        // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
        Span<byte> cred = stackalloc byte[12];
        var n = s.GetRawSocketOption(SolSocket, SoPeerCred, cred);
        var pid = n >= 4 ? BinaryPrimitives.ReadInt32LittleEndian(cred) : 0;
        return pid > 0 ? pid : null;
    }

    public static void Reload(int pid)
    {
        if (Libc.Kill(pid, SigHup) != 0)
            throw new StartupException($"reload: kill(pid {pid}, SIGHUP): {Marshal.GetLastPInvokeErrorMessage()}");
    }

    /// <summary>The config the daemon of <paramref name="stateDir"/> wrote as in force, if any.</summary>
    public static string? InForce(string stateDir)
    {
        try { return File.ReadAllText(Path.Combine(stateDir, Daemon.InForceFile)); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }
}
