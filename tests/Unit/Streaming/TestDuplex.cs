using System.IO.Pipelines;
using System.Threading.Channels;
using CriRuntime.Streaming;

namespace CriRuntime.Tests.Unit.Streaming;

/// <summary>Two connected in-memory streams: what one writes, the other reads. Disposing one end
/// is the peer's end of stream.</summary>
public sealed class TestDuplex(PipeReader input, PipeWriter output) : CriRuntime.IO.NonSeekableStream
{
    private readonly Stream _in = input.AsStream();
    private readonly Stream _out = output.AsStream();

    public static (Stream A, Stream B) Pair()
    {
        var ab = new Pipe();
        var ba = new Pipe();
        return (new TestDuplex(ba.Reader, ab.Writer), new TestDuplex(ab.Reader, ba.Writer));
    }

    public override bool CanRead => true;
    public override bool CanWrite => true;
    public override void Flush() => _out.Flush();
    public override Task FlushAsync(CancellationToken ct) => _out.FlushAsync(ct);
    public override int Read(byte[] buffer, int offset, int count) => _in.Read(buffer, offset, count);
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) => _in.ReadAsync(buffer, ct);
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) => _in.ReadAsync(buffer, offset, count, ct);
    public override void Write(byte[] buffer, int offset, int count) => _out.Write(buffer, offset, count);
    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) => _out.WriteAsync(buffer, ct);
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) => _out.WriteAsync(buffer, offset, count, ct);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Like closing a socket: the peer reads end of stream, our own pending read is aborted.
            output.Complete();
            input.CancelPendingRead();
        }
        base.Dispose(disposing);
    }
}

/// <summary>A backend standing in for containers: echoes stdin to stdout, writes one line to
/// stderr, records terminal resizes, and exits with the code named by cmd ["exit", "N"].</summary>
public sealed class FakeRuntime : IStreamingRuntime
{
    public List<TerminalSize> Resizes { get; } = [];
    /// <summary>With a TTY: how many resize events to wait for before running.</summary>
    public int ExpectResizes { get; init; }
    public List<string> Calls { get; } = [];

    public async Task<int> ExecAsync(ContainerTarget container, IReadOnlyList<string> cmd, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        Calls.Add($"exec {container.Id} {string.Join(' ', cmd)} tty={tty}");
        await RunAsync(stdin, stdout, stderr, resize, ct);
        return cmd is ["exit", var code] ? int.Parse(code, System.Globalization.CultureInfo.InvariantCulture) : 0;
    }

    public async Task<int> AttachAsync(ContainerTarget container, bool tty, Stream? stdin, Stream? stdout, Stream? stderr,
        ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        Calls.Add($"attach {container.Id} tty={tty}");
        await RunAsync(stdin, stdout, stderr, resize, ct);
        return 0;
    }

    private async Task RunAsync(Stream? stdin, Stream? stdout, Stream? stderr, ChannelReader<TerminalSize>? resize, CancellationToken ct)
    {
        for (var i = 0; resize is not null && i < ExpectResizes; i++) Resizes.Add(await resize.ReadAsync(ct));
        if (stderr is not null) await stderr.WriteAsync("to stderr\n"u8.ToArray(), ct);
        if (stdin is not null)
        {
            if (stdout is not null) await stdin.CopyToAsync(stdout, ct);
            else await stdin.CopyToAsync(Stream.Null, ct);
        }
        else if (stdout is not null)
        {
            await stdout.WriteAsync("no stdin\n"u8.ToArray(), ct);
        }
    }

    public Task PortForwardAsync(PodTarget pod, int port, Stream stream, CancellationToken ct) => throw new NotSupportedException();
}

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => Now;
    public void Advance(TimeSpan by) => Now += by;
}
