using System.Text.Json;
using CriRuntime.Cri.V1;
using CriRuntime.Images;
using CriRuntime.Images.Content;
using CriRuntime.Images.Oci;

namespace CriRuntime.Cri;

/// <summary>The CRI ImageService. Each RPC lives in its own file under Cri/Images/ as a part of this
/// class; this file holds only what they share. RPCs without a file answer Unimplemented, named by
/// the interceptor.</summary>
public sealed partial class CriImageService(
    ImagePuller puller,
    ImageStore images,
    ImageGarbageCollector gc,
    PinnedImages pinned,
    ImageUsage usage,
    ImageFsUsage fsUsage,
    ContentStore content,
    State.ContainerStore containers,
    Storage.IWritableVolumes volumes) : ImageService.ImageServiceBase
{
    private readonly ImagePuller _puller = puller;
    private readonly ImageStore _images = images;
    private readonly ImageGarbageCollector _gc = gc;
    private readonly PinnedImages _pinned = pinned;
    private readonly ImageUsage _usage = usage;
    private readonly ImageFsUsage _fsUsage = fsUsage;
    private readonly ContentStore _content = content;
    private readonly State.ContainerStore _containers = containers;
    private readonly Storage.IWritableVolumes _volumes = volumes;

    /// <summary>The CRI view of a stored image. uid/username come from the config's User
    /// ("uid[:gid]" gives uid, a name gives username), as the kubelet's runAsNonRoot check expects.</summary>
    private Image ToCri(ImageRecord record)
    {
        var image = new Image
        {
            Id = record.Id,
            Size = (ulong)record.Size,
            Pinned = _pinned.IsPinned(record),
            Spec = new ImageSpec { Image = record.Id },
        };
        image.RepoTags.AddRange(record.RepoTags);
        image.RepoDigests.AddRange(record.RepoDigests);
        var user = ReadConfig(record)?.Config?.User ?? "";
        var name = user.Split(':')[0];
        if (long.TryParse(name, System.Globalization.NumberStyles.None, null, out var uid)) image.Uid = new Int64Value { Value = uid };
        else if (name.Length > 0) image.Username = name;
        return image;
    }

    private ImageConfigFile? ReadConfig(ImageRecord record)
    {
        try { return JsonSerializer.Deserialize(_content.Read(Digest.Parse(record.Id)), OciJson.Default.ImageConfigFile); }
        catch (Exception e) when (e is Errors.CriException or JsonException or IOException) { return null; }
    }

    private IEnumerable<Image> Filtered(ImageFilter? filter)
    {
        if (filter?.Image?.Image is { Length: > 0 } wanted)
            return _images.Find(wanted) is { } one ? [ToCri(one)] : [];
        return _images.List().Select(ToCri);
    }
}
