using CriRuntime.Containers;
using Microsoft.Extensions.Logging.Abstractions;

namespace CriRuntime.Tests.Unit.Containers;

public sealed class TrashTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("trash-test").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private string MakeTree(string name)
    {
        var dir = Path.Combine(_root, "containers", name);
        Directory.CreateDirectory(Path.Combine(dir, "upper", "etc"));
        File.WriteAllText(Path.Combine(dir, "container.json"), "{}");
        File.WriteAllText(Path.Combine(dir, "upper", "etc", "hostname"), "x");
        return dir;
    }

    [Fact]
    public async Task Discard_RemovesTheNameAtOnce_AndDeletesTheTreeInTheBackground()
    {
        var trash = new Trash(Trash.Under(_root), NullLogger.Instance);
        var dir = MakeTree("c1");

        var deletion = trash.Discard(dir);

        Assert.False(Directory.Exists(dir));
        await deletion;
        Assert.Empty(Directory.GetFileSystemEntries(trash.Dir));
    }

    [Fact]
    public async Task Discard_OfAMissingDirectory_IsFine()
    {
        var trash = new Trash(Trash.Under(_root), NullLogger.Instance);

        await trash.Discard(Path.Combine(_root, "nothing-here"));

        Assert.False(Directory.Exists(trash.Dir));
    }

    [Fact]
    public void Empty_DeletesWhatACrashLeftInTheTrash()
    {
        var trash = new Trash(Trash.Under(_root), NullLogger.Instance);
        var left = MakeTree("c2");
        Directory.CreateDirectory(trash.Dir);
        Directory.Move(left, Path.Combine(trash.Dir, "c2-0000"));

        trash.Empty();

        Assert.Empty(Directory.GetFileSystemEntries(trash.Dir));
    }
}
