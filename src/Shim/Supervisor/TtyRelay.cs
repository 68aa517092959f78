using System.Runtime.InteropServices;
using CriRuntime.Shim.Kernel;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Supervisor;

/// <summary>Copies bytes between a pty master and a client's socket, one blocking thread per
/// direction, only while a terminal session is open (never on the idle path). Each thread holds a
/// reference on both descriptors (SafeHandle add-ref), so the owner may dispose them whenever it
/// is done: the descriptors are closed once the last thread lets go, never while one is blocked
/// in read(2) on a number that could be reused.</summary>
public static unsafe partial class TtyRelay
{
    /// <summary>The terminal's end-of-file character (VEOF, ^D in the default termios): what a
    /// person types to end input on a terminal, hence what closing stdin of a terminal session means.</summary>
    public const byte Veof = 0x04;

    /// <summary>master → socket until the terminal has no more writers (EIO) or the socket's peer
    /// is gone; then shuts the socket's write side so the client sees end of file.</summary>
    public static Thread Output(FdHandle master, FdHandle socket, Action<ReadOnlySpan<byte>>? copy = null) => Start("tty-out", master, socket, () =>
    {
        var buffer = new byte[16 * 1024];
        var peerGone = false;
        while (true)
        {
            int n;
            try { n = Libc.ReadSome(master.Fd, buffer, "pty master"); }
            catch (KernelException) { break; } // EIO: every slave descriptor is closed
            if (n == 0) break;
            copy?.Invoke(buffer.AsSpan(0, n));
            if (peerGone) continue; // keep draining: a blocked writer on the terminal must not hang
            try { Libc.WriteAll(socket.Fd, buffer.AsSpan(0, n), "tty socket"); }
            catch (KernelException) { peerGone = true; }
        }
        Libc.Shutdown(socket.Fd, 1 /* SHUT_WR */);
    });

    /// <summary>socket → master until the client closes its side; then, when
    /// <paramref name="eofOnClose"/>, types VEOF so a program reading the terminal sees end of input.</summary>
    public static Thread Input(FdHandle socket, FdHandle master, bool eofOnClose) => Start("tty-in", master, socket, () =>
    {
        var buffer = new byte[4 * 1024];
        while (true)
        {
            int n;
            try { n = Libc.ReadSome(socket.Fd, buffer, "tty socket"); }
            catch (KernelException) { n = 0; }
            if (n == 0) break;
            try { Libc.WriteAll(master.Fd, buffer.AsSpan(0, n), "pty master"); }
            catch (KernelException) { return; }
        }
        if (eofOnClose)
            try { Libc.WriteAll(master.Fd, [Veof], "pty master"); } catch (KernelException) { }
    });

    private static Thread Start(string name, FdHandle a, FdHandle b, Action body)
    {
        bool refA = false, refB = false;
        a.DangerousAddRef(ref refA);
        b.DangerousAddRef(ref refB);
        var t = new Thread(() =>
        {
            try { body(); }
            finally
            {
                if (refA) a.DangerousRelease();
                if (refB) b.DangerousRelease();
            }
        }, 256 * 1024) { IsBackground = true, Name = name };
        t.Start();
        return t;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct WinSize { public ushort Rows, Cols, XPixel, YPixel; }
    private const ulong TIOCSWINSZ = 0x5414;

    /// <summary>TIOCSWINSZ on the master: the kernel sends SIGWINCH to the terminal's foreground
    /// process group, as a terminal emulator's resize does.</summary>
    public static void Resize(FdHandle master, ushort width, ushort height)
    {
        var ws = new WinSize { Rows = height, Cols = width };
        var added = false;
        master.DangerousAddRef(ref added);
        try
        {
            if (Libc.IoctlPtr(master.Fd, TIOCSWINSZ, &ws) != 0) throw KernelException.Last("ioctl(TIOCSWINSZ)", "pty master");
        }
        finally { if (added) master.DangerousRelease(); }
    }

}
