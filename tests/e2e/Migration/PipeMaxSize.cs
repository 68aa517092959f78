namespace CriRuntime.Tests.E2E.Migration;

/// <summary>fs.pipe-max-size set for a test and restored when disposed: lazy migration needs it
/// at 4 MiB (docs/migration.md), the host's default is 1 MiB, and the test must leave the host as
/// it found it.</summary>
public sealed class PipeMaxSize : IDisposable
{
    private const string File = "/proc/sys/fs/pipe-max-size";
    public const long Default = 1 << 20, Lazy = 4 << 20;
    private readonly string _before;

    private PipeMaxSize(long value)
    {
        _before = System.IO.File.ReadAllText(File).Trim();
        System.IO.File.WriteAllText(File, value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public static PipeMaxSize Set(long value) => new(value);

    public void Dispose() => System.IO.File.WriteAllText(File, _before);
}
