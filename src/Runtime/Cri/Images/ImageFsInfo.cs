using CriRuntime.Cri.V1;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>Bytes and inodes used by the image store, and (container_filesystems) by the
    /// writable layers of every container (statfs of its disk-quota volume, else a walk of its
    /// overlay upper dir under &lt;root&gt;/containers).</summary>
    public override Task<ImageFsInfoResponse> ImageFsInfo(ImageFsInfoRequest request, ServerCallContext context)
    {
        var (bytes, inodes) = _fsUsage.Measure();
        var response = new ImageFsInfoResponse();
        response.ImageFilesystems.Add(new FilesystemUsage
        {
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000,
            FsId = new FilesystemIdentifier { Mountpoint = _fsUsage.Dir },
            UsedBytes = new UInt64Value { Value = bytes },
            InodesUsed = new UInt64Value { Value = inodes },
        });
        ulong layerBytes = 0, layerInodes = 0;
        foreach (var c in _containers.All)
        {
            var (b, i) = Storage.WritableLayer.Usage(c, _containers.ContainerDir(c.Id), _volumes);
            layerBytes += b;
            layerInodes += i;
        }
        response.ContainerFilesystems.Add(new FilesystemUsage
        {
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() * 1_000_000,
            FsId = new FilesystemIdentifier { Mountpoint = _containers.Dir },
            UsedBytes = new UInt64Value { Value = layerBytes },
            InodesUsed = new UInt64Value { Value = layerInodes },
        });
        return Task.FromResult(response);
    }
}
