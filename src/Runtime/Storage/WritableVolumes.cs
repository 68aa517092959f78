using System.Diagnostics;
using CriRuntime.Config;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Storage;

/// <summary>A container's (or pod's) writable layer with a size limit: where it is (the overlay's
/// upper and work dirs are below) and its size, the quota. The file-backed volume is an image file
/// mounted there; a btrfs one is a subvolume there with a qgroup; a project-quota one is a
/// directory there with a project id.</summary>
public sealed record WritableVolume(string Image, string MountPoint, ulong SizeBytes)
{
    /// <summary>The loop device it is attached to ("/dev/loop3"), as of the last attach.</summary>
    public string Device { get; init; } = "";
    /// <summary>btrfs: the qgroup holding the limit, 0/subvolume id for a container, 1/N for a pod
    /// (level in the top 16 bits, as the kernel numbers them); 0 for other backends.</summary>
    public ulong Qgroup { get; init; }
    /// <summary>Project quotas: the project id of the directory; 0 for other backends.</summary>
    public uint ProjectId { get; init; }
    public string Upper => Path.Combine(MountPoint, "upper");
    public string Work => Path.Combine(MountPoint, "work");
}

/// <summary>Writable layers with a size limit (docs/storage.md). <see cref="FileVolumes"/> is the
/// real one; unit tests of the container controller use a fake.</summary>
public interface IWritableVolumes
{
    /// <summary>The backend's name as Status reports it.</summary>
    string Backend { get; }
    /// <summary>A volume of <paramref name="sizeBytes"/> at <paramref name="mountPoint"/> (the
    /// file-backed one: the image file <paramref name="image"/> mounted there), counted against
    /// the pod's volume <paramref name="pod"/> when given; nothing is left behind when this throws.</summary>
    WritableVolume Create(string image, string mountPoint, ulong sizeBytes, WritableVolume? pod = null);
    /// <summary>The pod's volume: the total over its containers' writable layers.</summary>
    WritableVolume CreateForPod(string image, string mountPoint, ulong sizeBytes) => Create(image, mountPoint, sizeBytes);
    /// <summary>The writable layer dir of a container without a quota of its own in a pod with a
    /// volume: below the pod's mount point, and counted against it.</summary>
    void MakeLayerDir(string layerDir, WritableVolume pod) => Directory.CreateDirectory(layerDir);
    /// <summary>Removes what <see cref="MakeLayerDir"/> made. Idempotent.</summary>
    void RemoveLayerDir(string layerDir)
    {
        if (Directory.Exists(layerDir)) Directory.Delete(layerDir, recursive: true);
    }
    /// <summary>Attaches and mounts a recorded volume again unless it is mounted (after a
    /// reboot, or a crash between attach and mount): the volume on its new device, or null when
    /// nothing had to be done.</summary>
    WritableVolume? Reattach(WritableVolume volume);
    /// <summary>Unmounts (the loop device detaches itself) and deletes the image. Idempotent.</summary>
    void Release(WritableVolume volume);
    /// <summary>Unmounts whatever is mounted at <paramref name="mountPoint"/>; nothing mounted is fine.</summary>
    void Unmount(string mountPoint);
    /// <summary>The volume's own accounting (statfs), or null when it is not mounted.</summary>
    FsUsage? Usage(WritableVolume volume);
    /// <summary>Volumes made ahead and ready to take, by size (<see cref="VolumePool"/>).</summary>
    IReadOnlyDictionary<ulong, int> Warm() => new Dictionary<ulong, int>();
}

/// <summary>The file-backed backend, after OpenVZ's ploop: a sparse image file per container,
/// formatted ext4 by copying a template made once per node and size (mke2fs runs only then,
/// never again for that size), attached to a loop device with direct I/O and autoclear, mounted
/// below the container's directory. The template is a copy rather than grown with resize2fs or
/// the online-resize ioctl: resize2fs costs ~10 ms an exec, and EXT4_IOC_RESIZE_FS needs
/// CAP_SYS_RESOURCE, which a daemon in a container (as on the test machine) may not have.</summary>
public sealed partial class FileVolumes(CriRuntimeConfig config, IHostKernel kernel, ILogger<FileVolumes> log) : IWritableVolumes
{
    public const string ImageName = "volume.img", MountName = "volume";
    private const int LoopMajor = 7;
    private readonly Lock _templates = new();

    public string Backend => "file (sparse ext4 image on a loop device, direct I/O)";

    public string TemplateDir => Path.Combine(config.Root, "volumes", "templates");

    public WritableVolume Create(string image, string mountPoint, ulong sizeBytes, WritableVolume? pod = null)
    {
        var template = Template(sizeBytes);
        var volume = new WritableVolume(image, mountPoint, sizeBytes);
        Directory.CreateDirectory(Path.GetDirectoryName(image)!);
        try
        {
            kernel.CopySparse(template, volume.Image, sizeBytes);
            volume = volume with { Device = Attach(volume) };
        }
        catch
        {
            File.Delete(volume.Image);
            throw;
        }
        Directory.CreateDirectory(volume.Upper);
        Directory.CreateDirectory(volume.Work);
        return volume;
    }

    /// <summary>A free loop device with the image behind it, mounted. Another process may take the
    /// device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE (EBUSY): then the next free one.</summary>
    private string Attach(WritableVolume volume)
    {
        for (var attempt = 0; ; attempt++)
        {
            var n = kernel.LoopGetFree();
            var device = $"/dev/loop{n}";
            if (kernel.FileType(device) is null) kernel.Mknod(device, Libc.S_IFBLK | 0x1B0, MakeDev(LoopMajor, (uint)n));
            FdHandle loop;
            try { loop = kernel.LoopConfigure(device, volume.Image, directIo: true); }
            catch (KernelException e) when (e.Errno == Errno.EBUSY && attempt < 16) { continue; }
            using (loop)
            {
                Directory.CreateDirectory(volume.MountPoint);
                // noinit_itable: the image is sparse, its inode tables read as zeros already; no
                // background thread writes them out. Closing the loop fd after a failed mount
                // detaches the device (autoclear).
                kernel.Mount(device, volume.MountPoint, "ext4", Libc.MS_NOATIME, "noinit_itable");
            }
            LogAttached(volume.Image, device, volume.MountPoint);
            return device;
        }
    }

    public WritableVolume? Reattach(WritableVolume volume)
    {
        if (Usage(volume) is not null || !File.Exists(volume.Image)) return null;
        return volume with { Device = Attach(volume) };
    }

    public void Release(WritableVolume volume)
    {
        Unmount(volume.MountPoint);
        File.Delete(volume.Image);
    }

    public void Unmount(string mountPoint)
    {
        try { kernel.Umount2(mountPoint, 0); }
        catch (KernelException e) when (e.Errno is Errno.EINVAL or Errno.ENOENT) { } // not mounted; gone
        catch (KernelException e) when (e.Errno == Errno.EBUSY)
        {
            // Still in use (a lazily detached overlay not yet let go): detach; the loop device
            // detaches itself once the last user is gone.
            kernel.Umount2(mountPoint, Libc.MNT_DETACH);
        }
    }

    /// <summary>A mounted volume's file system is never larger than its image; the file system
    /// around an unmounted mount point (the storage root's) is, so no mountinfo scan is needed.</summary>
    public FsUsage? Usage(WritableVolume volume)
    {
        try
        {
            var u = kernel.Statfs(volume.MountPoint);
            return u.Type == FsUsage.Ext4Magic && u.TotalBytes <= volume.SizeBytes ? u : null;
        }
        catch (KernelException) { return null; }
    }

    /// <summary>Sizes with a template on this node.</summary>
    public IReadOnlyList<ulong> TemplateSizes() =>
        Directory.Exists(TemplateDir)
            ? [.. Directory.GetFiles(TemplateDir, "ext4-*.img").Select(f => ulong.TryParse(Path.GetFileNameWithoutExtension(f)[5..], out var s) ? s : 0).Where(s => s > 0).Order()]
            : [];

    /// <summary>The template of this size, made with mke2fs the first time (into a temporary
    /// name, renamed when complete, so a crash never leaves half a template).</summary>
    private string Template(ulong sizeBytes)
    {
        var path = Path.Combine(TemplateDir, $"ext4-{sizeBytes}.img");
        if (File.Exists(path)) return path;
        lock (_templates)
        {
            if (File.Exists(path)) return path;
            Directory.CreateDirectory(TemplateDir);
            var tmp = path + ".tmp";
            File.Delete(tmp);
            using (var f = new FileStream(tmp, FileMode.CreateNew)) f.SetLength((long)sizeBytes);
            var watch = Stopwatch.StartNew();
            Mke2fs(tmp);
            File.Move(tmp, path);
            LogTemplate(path, watch.ElapsedMilliseconds);
            return path;
        }
    }

    /// <summary>4 KiB blocks at every size (mke2fs picks 1 KiB below 512 MiB), no blocks reserved
    /// for root (the quota is the container's), no journal: the layer is the container's scratch
    /// space and a reboot ends the container anyway, so the journal's 4 MiB and its double writes
    /// buy nothing. Inode tables are left to read as zeros from the sparse file.</summary>
    private static void Mke2fs(string image)
    {
        var mke2fs = new[] { "/usr/sbin/mke2fs", "/sbin/mke2fs", "/usr/local/sbin/mke2fs" }.FirstOrDefault(File.Exists)
            ?? throw Errors.Fail.FailedPrecondition("disk quota: mke2fs (e2fsprogs) is not installed; it formats the volume template once per size");
        var psi = new ProcessStartInfo(mke2fs)
        {
            ArgumentList = { "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,root_owner=0:0", image },
            RedirectStandardError = true,
            RedirectStandardOutput = true,
        };
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEnd();
        p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new IOException($"mke2fs {image} exited with {p.ExitCode}: {stderr.Trim()}");
    }

    /// <summary>glibc's makedev.</summary>
    internal static ulong MakeDev(uint major, uint minor) =>
        ((ulong)(major & 0xfffff000) << 32) | ((ulong)(major & 0xfff) << 8) | ((ulong)(minor & 0xffffff00) << 12) | (minor & 0xff);

    [LoggerMessage(EventId = 1400, Level = LogLevel.Information, Message = "disk quota: volume template {Path} made in {Ms} ms")]
    private partial void LogTemplate(string path, long ms);

    [LoggerMessage(EventId = 1401, Level = LogLevel.Debug, Message = "disk quota: {Image} attached to {Device}, mounted on {MountPoint}")]
    private partial void LogAttached(string image, string device, string mountPoint);
}
