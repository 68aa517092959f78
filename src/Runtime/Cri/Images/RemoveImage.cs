using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using Grpc.Core;

namespace CriRuntime.Cri;

public sealed partial class CriImageService
{
    /// <summary>Removes the named tag (or, by id or digest, the whole image); content no image
    /// uses any more is garbage collected at once. Not found is success (idempotent).</summary>
    public override Task<RemoveImageResponse> RemoveImage(RemoveImageRequest request, ServerCallContext context)
    {
        var image = request.Image?.Image;
        if (string.IsNullOrEmpty(image)) throw Fail.InvalidArgument("RemoveImage: image.image is empty");
        if (_images.Remove(image, _pinned.IsPinned) is not null)
        {
            _gc.Collect();
            _fsUsage.Invalidate();
        }
        return Task.FromResult(new RemoveImageResponse());
    }
}
