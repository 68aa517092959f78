using System.Globalization;
using System.Net.Sockets;
using CriRuntime.Interop;

namespace CriRuntime.Checkpoint;

/// <summary>The listening socket of a lazy dump's page server (CRIU's, not ours): CRIU listens
/// without TCP_NODELAY, and its TLS handshake then stalls on Nagle against the peer's delayed ACK
/// (measured on loopback: 3 of 5 handshakes took 48-52 ms instead of 5-15, and the target's
/// restored tasks wait for it: their first page faults need the connection). An accepted socket
/// inherits TCP_NODELAY from its listener, so the daemon sets it on CRIU's listener through a
/// duplicate of CRIU's descriptor (pidfd_getfd), while CRIU's status-ready action script waits,
/// before the target can connect.</summary>
public static class PageServerSocket
{
    /// <summary>Sets TCP_NODELAY on the socket process <paramref name="pid"/> listens on at TCP
    /// <paramref name="port"/>. IOException when it has none there.</summary>
    public static void SetNoDelay(int pid, int port)
    {
        var tables = string.Concat(ReadOrEmpty($"/proc/{pid}/net/tcp"), ReadOrEmpty($"/proc/{pid}/net/tcp6"));
        var inode = ListeningInode(tables, port) ?? throw new IOException($"process {pid} does not listen on TCP port {port}");
        var fd = FdOf(pid, $"socket:[{inode}]") ?? throw new IOException($"process {pid} holds no descriptor of its socket on TCP port {port}");
        using var pidfd = Libc.PidfdOpen(pid) ?? throw new IOException($"process {pid} has exited");
        using var dup = Libc.PidfdGetfd(pidfd, fd);
        using var socket = new Socket(new SafeSocketHandle(new IntPtr(dup.Fd), ownsHandle: false));
        socket.NoDelay = true;
    }

    /// <summary>The inode of the listening socket on local <paramref name="port"/> in
    /// /proc/net/tcp{,6} text (header lines and other sockets skipped), or null.</summary>
    public static string? ListeningInode(string tables, int port)
    {
        const string Listen = "0A";
        foreach (var line in tables.Split('\n'))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            if (f.Length < 10 || f[3] != Listen) continue;
            var colon = f[1].LastIndexOf(':');
            if (colon < 0 || !int.TryParse(f[1].AsSpan(colon + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var p) || p != port) continue;
            if (f[9] != "0") return f[9];
        }
        return null;
    }

    private static int? FdOf(int pid, string target)
    {
        foreach (var link in Directory.EnumerateFiles($"/proc/{pid}/fd"))
        {
            string? to;
            try { to = new FileInfo(link).LinkTarget; }
            catch (IOException) { continue; }
            if (to == target && int.TryParse(Path.GetFileName(link), NumberStyles.None, CultureInfo.InvariantCulture, out var fd)) return fd;
        }
        return null;
    }

    private static string ReadOrEmpty(string path)
    {
        try { return File.ReadAllText(path); }
        catch (FileNotFoundException) { return ""; }
    }
}
