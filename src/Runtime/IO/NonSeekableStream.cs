namespace CriRuntime.IO;

/// <summary>Base of the forward-only streams (layer hashing and tar-end tracking, SPDY and
/// WebSocket channels): no length, position or seeking, nothing buffered to flush, and neither
/// reading nor writing unless a subclass overrides them.</summary>
public abstract class NonSeekableStream : Stream
{
    public override bool CanRead => false;
    public override bool CanWrite => false;
    public sealed override bool CanSeek => false;
    public sealed override long Length => throw new NotSupportedException();
    public sealed override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    public sealed override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public sealed override void SetLength(long value) => throw new NotSupportedException();
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
