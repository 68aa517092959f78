using CriRuntime.Cri.V1;

namespace CriRuntime.Cri;

/// <summary>The CRI ImageService. Each RPC lives in its own file under Cri/Images/ as a part of this
/// class. RPCs without a file answer Unimplemented, named by the interceptor.</summary>
public sealed partial class CriImageService : ImageService.ImageServiceBase
{
}
