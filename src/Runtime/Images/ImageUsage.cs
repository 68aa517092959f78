namespace CriRuntime.Images;

/// <summary>What the container code tells the image service: which images its containers are
/// built from. An image in use keeps its content (its layers are the container's lowerdirs)
/// even after RemoveImage took its last name; it goes when released.</summary>
public interface IImageUsage
{
    /// <summary>Marks <paramref name="imageId"/> (an image id, "sha256:...") as used by
    /// <paramref name="user"/> (a container id). Idempotent.</summary>
    void MarkInUse(string imageId, string user);

    /// <summary>Releases one user's hold. Idempotent; unknown ids are ignored.</summary>
    void Release(string imageId, string user);

    bool IsInUse(string imageId);
}

/// <summary>In memory: the container store re-marks its containers' images when the daemon
/// starts, before any garbage collection that could remove them runs.</summary>
public sealed class ImageUsage : IImageUsage
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, HashSet<string>> _users = new(StringComparer.Ordinal);

    /// <summary>Raised (outside the lock) when an image's last user releases it.</summary>
    public event Action<string>? Released;

    public void MarkInUse(string imageId, string user)
    {
        lock (_lock)
        {
            if (!_users.TryGetValue(imageId, out var set)) _users[imageId] = set = new HashSet<string>(StringComparer.Ordinal);
            set.Add(user);
        }
    }

    public void Release(string imageId, string user)
    {
        bool last;
        lock (_lock)
        {
            if (!_users.TryGetValue(imageId, out var set) || !set.Remove(user)) return;
            last = set.Count == 0;
            if (last) _users.Remove(imageId);
        }
        if (last) Released?.Invoke(imageId);
    }

    public bool IsInUse(string imageId)
    {
        lock (_lock) return _users.ContainsKey(imageId);
    }
}
