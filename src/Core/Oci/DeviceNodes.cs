using CriRuntime.Interop;

namespace CriRuntime.Oci;

/// <summary>The node an OCI linux.devices entry is made as: its file type and permission bits
/// (0666 unless the entry says otherwise), and its device number.</summary>
public static class DeviceNodes
{
    /// <summary>mknod's mode and dev for <paramref name="d"/>; an unknown type is
    /// <see cref="InvalidDataException"/> naming the device.</summary>
    public static (uint Mode, ulong Dev) Of(LinuxDevice d)
    {
        var type = d.Type switch
        {
            "c" or "u" => Libc.S_IFCHR,
            "b" => Libc.S_IFBLK,
            "p" => Libc.S_IFIFO,
            _ => throw new InvalidDataException($"linux.devices: {d.Path} has unknown type \"{d.Type}\""),
        };
        return (type | (d.FileMode ?? 0x1b6) & 0xfff, Libc.Makedev((ulong)d.Major, (ulong)d.Minor));
    }
}
