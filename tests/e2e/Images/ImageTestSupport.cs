using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Images;

/// <summary>Helpers the image tests share: CRI calls and a look at the daemon's image store.</summary>
internal static class ImageTestSupport
{
    public static async Task<string> PullAsync(this CriClient cri, string image, AuthConfig? auth = null) =>
        (await cri.Images.PullImageAsync(new PullImageRequest { Image = new ImageSpec { Image = image }, Auth = auth })).ImageRef;

    public static async Task<Image?> StatusAsync(this CriClient cri, string image) =>
        (await cri.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image } })).Image;

    public static async Task<JsonElement> VerboseInfoAsync(this CriClient cri, string image)
    {
        var r = await cri.Images.ImageStatusAsync(new ImageStatusRequest { Image = new ImageSpec { Image = image }, Verbose = true });
        return JsonDocument.Parse(r.Info["info"]).RootElement.Clone();
    }

    public static async Task RemoveAsync(this CriClient cri, string image) =>
        await cri.Images.RemoveImageAsync(new RemoveImageRequest { Image = new ImageSpec { Image = image } });

    public static string ImagesDir(this DaemonProcess d) => Path.Combine(d.Root, "images");

    /// <summary>The unpacked layer dirs of an image, bottom first, from its verbose status.</summary>
    public static async Task<List<string>> LayerDirsAsync(this CriClient cri, DaemonProcess d, string image)
    {
        var info = await cri.VerboseInfoAsync(image);
        return [.. info.GetProperty("layers").EnumerateArray()
            .Select(l => Path.Combine(d.ImagesDir(), "snapshots", l.GetProperty("chainID").GetString()!["sha256:".Length..], "fs"))];
    }

    public static string[] Blobs(this DaemonProcess d) =>
        Directory.Exists(Path.Combine(d.ImagesDir(), "blobs", "sha256"))
            ? Directory.GetFiles(Path.Combine(d.ImagesDir(), "blobs", "sha256")).Select(f => Path.GetFileName(f)).ToArray()
            : [];

    public static string[] Snapshots(this DaemonProcess d) =>
        Directory.GetDirectories(Path.Combine(d.ImagesDir(), "snapshots")).Select(f => Path.GetFileName(f)).ToArray();

    /// <summary>Mounts the layers as overlayfs (as a container's rootfs would be) for the test to
    /// look at; unmounted and removed on dispose.</summary>
    public sealed class OverlayView : IDisposable
    {
        public string Dir { get; }
        public OverlayView(IReadOnlyList<string> layerDirs)
        {
            Dir = Directory.CreateTempSubdirectory("criruntime-overlay-").FullName;
            var lower = string.Join(':', layerDirs.Reverse());
            if (layerDirs.Count == 1)
                Shell.Run("mount", "--bind", "-o", "ro", layerDirs[0], Dir);
            else
                Shell.Run("mount", "-t", "overlay", "overlay", "-o", $"ro,lowerdir={lower}", Dir);
        }
        public string this[string relative] => Path.Combine(Dir, relative);
        public void Dispose()
        {
            Shell.TryRun("umount", Dir);
            Directory.Delete(Dir);
        }
    }

    public static string Stat(string format, string path) => Shell.Run("stat", "-c", format, path).Trim();
}
