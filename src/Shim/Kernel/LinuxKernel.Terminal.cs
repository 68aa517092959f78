using System.Runtime.InteropServices;
using System.Text;
using CriRuntime.Interop;

namespace CriRuntime.Shim.Kernel;

/// <summary>Terminals and descriptor passing (src/Shim/Container/Terminal.cs).</summary>
public sealed unsafe partial class LinuxKernel
{
    private const ulong TIOCSCTTY = 0x540E, TIOCSPTLCK = 0x40045431, TIOCGPTPEER = 0x5441;

    public FdHandle OpenPtyPeer(FdHandle master)
    {
        var unlock = 0;
        if (Libc.IoctlPtr(master.Fd, TIOCSPTLCK, &unlock) != 0) throw KernelException.Last("ioctl(TIOCSPTLCK)", "/dev/ptmx");
        var fd = Libc.IoctlInt(master.Fd, TIOCGPTPEER, Libc.O_RDWR | Libc.O_NOCTTY | Libc.O_CLOEXEC);
        if (fd < 0) throw KernelException.Last("ioctl(TIOCGPTPEER)", "/dev/ptmx");
        return new FdHandle(fd);
    }

    public void SetControllingTerminal(FdHandle tty)
    {
        if (Libc.Setsid() < 0 && Marshal.GetLastPInvokeError() != Errno.EPERM) throw KernelException.Last("setsid", "");
        if (Libc.IoctlInt(tty.Fd, TIOCSCTTY, 0) != 0) throw KernelException.Last("ioctl(TIOCSCTTY)", $"fd {tty.Fd}");
    }

    public void Dup2(FdHandle from, int to)
    {
        if (Libc.Dup2(from.Fd, to) < 0) throw KernelException.Last("dup2", $"fd {from.Fd} to {to}");
    }

    public void SendFd(FdHandle socket, string message, FdHandle fd)
    {
        try { CriRuntime.Shim.Client.FdPassing.Send(socket.Fd, Encoding.UTF8.GetBytes(message + "\n"), [fd.Fd]); }
        catch (IOException e) { throw new KernelException("sendmsg", "sync socket", e.HResult); }
    }
}
