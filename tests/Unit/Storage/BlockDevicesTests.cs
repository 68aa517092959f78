using CriRuntime.Storage;

namespace CriRuntime.Tests.Unit.Storage;

/// <summary>Partition → disk and storage root → disk through a fake /sys/dev/block.</summary>
public sealed class BlockDevicesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("blockdev").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>sys/devices/.../block/sda (8:0) with its partition sda1 (8:1), linked from
    /// sys/dev/block as the kernel does.</summary>
    private string FakeSys()
    {
        var disk = Path.Combine(_dir, "devices", "block", "sda");
        Directory.CreateDirectory(Path.Combine(disk, "sda1"));
        Directory.CreateDirectory(Path.Combine(disk, "queue"));
        File.WriteAllText(Path.Combine(disk, "dev"), "8:0\n");
        File.WriteAllText(Path.Combine(disk, "queue", "scheduler"), "none [mq-deadline] kyber bfq\n");
        File.WriteAllText(Path.Combine(disk, "sda1", "dev"), "8:1\n");
        File.WriteAllText(Path.Combine(disk, "sda1", "partition"), "1\n");
        var devBlock = Path.Combine(_dir, "dev", "block");
        Directory.CreateDirectory(devBlock);
        Directory.CreateSymbolicLink(Path.Combine(devBlock, "8:0"), disk);
        Directory.CreateSymbolicLink(Path.Combine(devBlock, "8:1"), Path.Combine(disk, "sda1"));
        return devBlock;
    }

    [Fact]
    public void WholeDisk_OfAPartition_IsItsDisk_AndOfADisk_ItsOwnNumber()
    {
        var d = new BlockDevices(FakeSys());

        Assert.Equal((8L, 0L), d.WholeDisk(8, 1));
        Assert.Equal((8L, 0L), d.WholeDisk(8, 0));
        Assert.Equal((7L, 3L), d.WholeDisk(7, 3)); // unknown to sysfs: as given
    }

    [Fact]
    public void OfPath_ResolvesAPartitionNode_ToItsDisk_AndRefusesOtherFiles()
    {
        const uint blk = 0x6000, chr = 0x2000;
        var d = new BlockDevices(FakeSys(), p => p switch { "/dev/sda1" => (blk, 8u, 1u), "/dev/null" => (chr, 1u, 3u), _ => null });

        Assert.Equal((8L, 0L), d.OfPath("/dev/sda1"));
        Assert.Null(d.OfPath("/dev/null"));
        Assert.Null(d.OfPath("/dev/nothing"));
    }

    [Fact]
    public void Under_IsTheDiskOfTheFileSystem_OrNullWithoutABlockDevice()
    {
        var sys = FakeSys();
        Assert.Equal((8L, 0L), new BlockDevices(sys, fileSystemDevice: _ => (8u, 1u)).Under("/var/lib/criruntime"));
        Assert.Null(new BlockDevices(sys, fileSystemDevice: _ => (0u, 45u)).Under("/run/tmpfs")); // anonymous: overlay, tmpfs
        Assert.Null(new BlockDevices(sys, fileSystemDevice: _ => (9u, 9u)).Under("/x")); // no sysfs entry
    }

    [Fact]
    public void Scheduler_IsTheBracketedOne()
    {
        var d = new BlockDevices(FakeSys());

        Assert.Equal("mq-deadline", d.Scheduler(8, 0));
        Assert.Null(d.Scheduler(7, 3));
    }

    [Theory]
    [InlineData("sd[a-z]", "sdb", true)]
    [InlineData("sd[a-z]", "sdb1", false)]
    [InlineData("vd*", "vda", true)]
    [InlineData("*SSD*", "ata-VendorSSD_1", true)]
    [InlineData("sd?", "sdc", true)]
    [InlineData("sd[!a]", "sda", false)]
    [InlineData("nvme0n1", "nvme0n1", true)]
    public void GlobRegex_MatchesShellWildcards(string glob, string name, bool matches) =>
        Assert.Equal(matches, System.Text.RegularExpressions.Regex.IsMatch(name, BlockDevices.GlobRegex(glob)));

    [Fact]
    public void Expand_ListsTheMatchingEntriesOfTheDirectory()
    {
        foreach (var n in new[] { "sda", "sdb", "sda1", "vda" }) File.WriteAllText(Path.Combine(_dir, n), "");

        Assert.Equal([Path.Combine(_dir, "sda"), Path.Combine(_dir, "sdb")], BlockDevices.Expand(Path.Combine(_dir, "sd[a-z]")));
        Assert.Equal(["/dev/vda"], BlockDevices.Expand("/dev/vda"));
        Assert.Empty(BlockDevices.Expand("/nonexistent/sd*"));
    }
}
