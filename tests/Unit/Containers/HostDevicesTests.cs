using CriRuntime.Containers;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>The host device nodes a privileged container gets, from a made-up /dev.</summary>
public class HostDevicesTests
{
    private const uint Chr = 0x2000, Blk = 0x6000, Dir = 0x4000, Lnk = 0xA000;

    private static readonly Dictionary<string, (uint Mode, uint Major, uint Minor)> Tree = new()
    {
        ["/dev/null"] = (Chr | 0x1B6, 1, 3),
        ["/dev/loop0"] = (Blk | 0x1B0, 7, 0),
        ["/dev/console"] = (Chr | 0x180, 5, 1),
        ["/dev/ptmx"] = (Chr | 0x1B6, 5, 2),
        ["/dev/stdin"] = (Lnk | 0x1FF, 0, 0),
        ["/dev/net"] = (Dir | 0x1ED, 0, 0),
        ["/dev/net/tun"] = (Chr | 0x1B6, 10, 200),
        ["/dev/pts"] = (Dir | 0x1ED, 0, 0),
        ["/dev/pts/0"] = (Chr | 0x190, 136, 0),
        ["/dev/shm"] = (Dir | 0x3FF, 0, 0),
    };

    private static IEnumerable<string> List(string dir) =>
        Tree.Keys.Where(k => Path.GetDirectoryName(k) == dir).Select(k => Path.GetFileName(k));

    [Fact]
    public void Scan_TakesCharAndBlockDevices_RecursesIntoDirs_SkipsTheContainersOwnAndTheConsole()
    {
        var found = HostDevices.Scan("/dev", List, p => Tree.TryGetValue(p, out var v) ? v : null);
        Assert.Equal(["/dev/loop0", "/dev/net/tun", "/dev/null"], found.Select(d => d.Path));
        var loop = found[0];
        Assert.Equal(("b", 7L, 0L, 0x1B0u), (loop.Type, loop.Major, loop.Minor, loop.FileMode!.Value));
    }
}
