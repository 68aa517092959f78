using CriRuntime.Interop;
using System.Net.Sockets;
using System.Text.Json;

namespace CriRuntime.Shim.Client;

/// <summary>An exec-stream or attach on a shim's control socket: the first answer and the
/// sockets that came with it (by name: "stdin", "stdout", "stderr", "tty"); for exec-stream, the
/// final answer (the exit status) arrives later on the same connection.</summary>
public sealed class ShimStream : IDisposable
{
    private readonly Socket _control;
    private readonly FdLineReader _reader;

    public ShimResponse First { get; }
    public IReadOnlyDictionary<string, Socket> Sockets { get; }

    private ShimStream(Socket control, FdLineReader reader, ShimResponse first, IReadOnlyDictionary<string, Socket> sockets)
    {
        _control = control;
        _reader = reader;
        First = first;
        Sockets = sockets;
    }

    public Socket? this[string name] => Sockets.GetValueOrDefault(name);

    /// <summary>Sends <paramref name="request"/> and reads the first answer. A refusal (ok: false)
    /// is returned as is, with no sockets.</summary>
    public static async Task<ShimStream> OpenAsync(string stateDir, ShimRequest request, CancellationToken ct)
    {
        var path = Path.Combine(stateDir, StateFiles.Socket);
        var control = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await control.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
            var line = JsonSerializer.SerializeToUtf8Bytes(request, ShimJsonContext.Default.ShimRequest);
            await control.SendAsync(line.Append((byte)'\n').ToArray(), SocketFlags.None, ct).ConfigureAwait(false);
            var reader = new FdLineReader(control);
            var answer = await reader.ReadLineAsync(ct).ConfigureAwait(false)
                ?? throw new IOException($"shim {path}: connection closed without an answer to {request.Op}");
            var sockets = new Dictionary<string, Socket>(StringComparer.Ordinal);
            try
            {
                var response = JsonSerializer.Deserialize(answer.Line, ShimJsonContext.Default.ShimResponse)
                    ?? throw new IOException($"shim {path}: empty answer to {request.Op}");
                var names = response.Fds ?? [];
                if (names.Count != answer.Fds.Length)
                    throw new IOException($"shim {path}: {request.Op} answer names {names.Count} descriptors but {answer.Fds.Length} came with it");
                for (var i = 0; i < names.Count; i++)
                {
                    sockets[names[i]] = new Socket(new SafeSocketHandle(answer.Fds[i], ownsHandle: true));
                    answer.Fds[i] = -1;
                }
                return new ShimStream(control, reader, response, sockets);
            }
            finally
            {
                foreach (var fd in answer.Fds) if (fd >= 0) Libc.Close(fd);
                if (sockets.Count < (answer.Fds.Length)) foreach (var s in sockets.Values) s.Dispose();
            }
        }
        catch
        {
            control.Dispose();
            throw;
        }
    }

    /// <summary>The next answer on the control connection (exec-stream: the exit status), or
    /// null when the shim closed it (it exited: its container is gone).</summary>
    public async Task<ShimResponse?> NextAsync(CancellationToken ct)
    {
        var answer = await _reader.ReadLineAsync(ct).ConfigureAwait(false);
        if (answer is null) return null;
        foreach (var fd in answer.Value.Fds) Libc.Close(fd);
        return JsonSerializer.Deserialize(answer.Value.Line, ShimJsonContext.Default.ShimResponse);
    }

    public void Dispose()
    {
        foreach (var s in Sockets.Values) s.Dispose();
        _control.Dispose();
    }
}
