using System.Runtime.InteropServices;
using System.Text.Json;
using CriRuntime.Shim.Client;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>The shim CLI's own client of a control socket: blocking libc calls, so the shim
/// binary does not carry System.Net.Sockets and its async engine (the daemon uses
/// <see cref="ShimClient"/>). Every AOT-compiled type costs resident memory in every shim.</summary>
public static unsafe partial class RawControlClient
{
    public static ShimResponse Send(string stateDir, ShimRequest request)
    {
        var path = Path.Combine(stateDir, StateFiles.Socket);
        var addr = UnixSocketAddress.For(path);
        var fd = Libc.Socket(UnixSocketAddress.AF_UNIX, 1 /* SOCK_STREAM */ | 0x80000 /* SOCK_CLOEXEC */, 0);
        if (fd < 0) throw KernelException.Last("socket", path);
        using var handle = new FdHandle(fd);
        if (Libc.Connect(fd, (byte*)&addr, addr.Length) != 0) throw KernelException.Last("connect", path);
        Libc.WriteAll(fd, JsonSerializer.SerializeToUtf8Bytes(request, ShimJsonContext.Default.ShimRequest), path);
        Libc.WriteAll(fd, "\n"u8, path);
        var answer = new List<byte>();
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var n = Libc.ReadSome(fd, buffer, path);
            if (n == 0) break;
            var nl = Array.IndexOf(buffer, (byte)'\n', 0, n);
            answer.AddRange(buffer.AsSpan(0, nl < 0 ? n : nl));
            if (nl >= 0) break;
        }
        if (answer.Count == 0) throw new IOException($"{path}: connection closed without an answer to {request.Op}");
        return JsonSerializer.Deserialize(answer.ToArray(), ShimJsonContext.Default.ShimResponse)
            ?? throw new IOException($"{path}: empty answer to {request.Op}");
    }

    /// <summary>As <see cref="ShimClient.SendAsync"/>: a shim that is gone answers from state.json.</summary>
    public static ShimResponse SendOrState(string stateDir, ShimRequest request)
    {
        try { return Send(stateDir, request); }
        catch (IOException) when (ShimClient.ReadStateFile(stateDir) is { Status: ShimStatus.Stopped } final)
        {
            return ShimClient.AnswerFromFinalState(request, final);
        }
    }
}
