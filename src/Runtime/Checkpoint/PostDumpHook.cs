using System.Net.Sockets;
using System.Text;
using CriRuntime.Interop;
using CriRuntime.Kernel;

namespace CriRuntime.Checkpoint;

/// <summary>Captures what must match the dumped memory while CRIU still holds the tasks frozen:
/// CRIU runs its action script at "post-dump" after the images are complete and before it resumes
/// a <c>--leave-running</c> dump (cr-dump.c: "a user will use post-dump script to keep consistency
/// of the FS"). The script is a few lines of sh in the dump's scratch directory that tell the
/// daemon through one FIFO and wait for its answer on another; the daemon holds both open read-write
/// (so neither side's open blocks, and an answer written before the script reads it is kept). Its
/// exit status is the daemon's answer: non-zero makes CRIU resume the tasks and fail the dump.
/// Without it the writable layer was read after the container ran on: a file the process had open at
/// the dump could be renamed or deleted by then (CRIU's restore then cannot open it), and the walk
/// failed when a file vanished under it.</summary>
public sealed class PostDumpHook : IDisposable
{
    public const string ScriptName = "post-dump.sh", RequestFifo = "post-dump.req", AnswerFifo = "post-dump.ack";

    private const string Script = """
        #!/bin/sh
        # criruntime: CRIU's action script for a dump. At pre-dump CRIU is about to seize the tasks:
        # ask the daemon whether it may (a pod checkpoint freezes every container first; only a dump
        # with a gate has this line). At
        # post-dump the tasks are still frozen: ask the daemon to capture the container's writable
        # layer. Each waits for the daemon's answer.
        case "$CRTOOLS_SCRIPT_ACTION" in
        pre-dump) say=ready ;;
        post-dump) say=dumped ;;
        status-ready) say="listening $PPID" ;;
        *) exit 0 ;;
        esac
        # Not criu's output pipes: a script outliving a killed criu must not keep the daemon reading them.
        exec </dev/null >/dev/null 2>&1
        dir=${0%/*}
        echo $say > "$dir/post-dump.req" || exit 1
        read -r answer < "$dir/post-dump.ack" || exit 1
        [ "$answer" = ok ]

        """;

    private const string PreDumpCase = "pre-dump) say=ready ;;\n";
    private const string StatusReadyCase = "status-ready) say=\"listening $PPID\" ;;\n";

    private readonly FileStream _request, _cancel, _answer;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _captureEnded = new();
    private Exception? _error;
    // Set once CRIU said post-dump, before the capture runs (which then always runs): a Finish from
    // then on must not send "cancel", which the thread would take for CRIU's end while CRIU still
    // goes to status-ready.
    private volatile bool _postDumpSeen;

    /// <summary>The script to hand CRIU as <c>--action-script</c>.</summary>
    public string ScriptPath { get; }

    private PostDumpHook(string scriptPath, FileStream request, FileStream cancel, FileStream answer, Action capture, PodCheckpointer.DumpGate gate,
        Action<int>? listening)
    {
        ScriptPath = scriptPath;
        _request = request;
        _cancel = cancel;
        _answer = answer;
        _thread = new Thread(() =>
        {
            try { Serve(capture, gate, listening); }
            finally { _captureEnded.Set(); }
        }) { IsBackground = true, Name = "criu post-dump" };
        _thread.Start();
    }

    /// <summary>Writes the script and its two FIFOs into <paramref name="dir"/> (the dump's
    /// scratch directory) and waits, on a thread of its own, for CRIU to reach pre-dump, where it
    /// answers once <paramref name="gate"/> opens (the pod frozen; none: at once), then
    /// post-dump, where it runs <paramref name="capture"/> and answers. With
    /// <paramref name="listening"/> (a lazy dump, whose CRIU serves the pages afterwards), CRIU asks
    /// once more at status-ready, when its page server listens and before it accepts: the
    /// callback gets CRIU's pid, and CRIU goes on whatever it does (best effort).</summary>
    public static PostDumpHook Start(string dir, Action capture, IHostKernel? kernel = null, PodCheckpointer.DumpGate? gate = null,
        Action<int>? listening = null)
    {
        var k = kernel ?? HostKernel.Instance;
        var script = Path.Combine(dir, ScriptName);
        // Without a gate CRIU need not ask at pre-dump: no round trip before it seizes the tasks.
        var text = gate is null ? Script.Replace(PreDumpCase, "", StringComparison.Ordinal) : Script;
        if (listening is null) text = text.Replace(StatusReadyCase, "", StringComparison.Ordinal);
        File.WriteAllText(script, text.ReplaceLineEndings("\n"));
        File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var opened = new List<FileStream>();
        try
        {
            var request = OpenFifo(k, Path.Combine(dir, RequestFifo), opened);
            // A second handle on the request FIFO, to wake the reader when CRIU never gets there.
            var cancel = Open(Path.Combine(dir, RequestFifo), FileAccess.Write, opened);
            var answer = OpenFifo(k, Path.Combine(dir, AnswerFifo), opened);
            return new PostDumpHook(script, request, cancel, answer, capture, gate ?? PodCheckpointer.DumpGate.Opened(), listening);
        }
        catch
        {
            foreach (var f in opened) f.Dispose();
            throw;
        }
    }

    private static FileStream OpenFifo(IHostKernel k, string path, List<FileStream> opened)
    {
        k.Mknod(path, Libc.S_IFIFO | 0x180, 0); // 0600
        // Read-write: the open never waits for a partner, and the pipe stays while we hold it.
        return Open(path, FileAccess.ReadWrite, opened);
    }

    private static FileStream Open(string path, FileAccess access, List<FileStream> opened)
    {
        var f = new FileStream(File.OpenHandle(path, FileMode.Open, access), access, bufferSize: 0);
        opened.Add(f);
        return f;
    }

    private void Serve(Action capture, PodCheckpointer.DumpGate gate, Action<int>? listening)
    {
        string? line;
        try { line = ReadLine(_request); }
        catch (IOException) { return; }
        if (line == "ready")
        {
            // This thread exists to wait for CRIU; here it waits for the pod's freeze as well.
            var open = true;
            try { gate.ArriveAsync().GetAwaiter().GetResult(); }
            catch (OperationCanceledException) { open = false; }
            if (!Answer(open) || !open) return;
            try { line = ReadLine(_request); }
            catch (IOException) { return; }
        }
        if (line != "dumped") return; // "cancel": CRIU ended without reaching post-dump
        _postDumpSeen = true;
        var ok = false;
        try
        {
            capture();
            ok = true;
        }
        catch (Exception e)
        {
            _error = e;
        }
        finally
        {
            _captureEnded.Set();
            Answer(ok);
        }
        if (listening is null || !ok) return;
        try { line = ReadLine(_request); }
        catch (IOException) { return; }
        const string Listening = "listening ";
        if (!line.StartsWith(Listening, StringComparison.Ordinal)) return; // "cancel": CRIU ended first
        try
        {
            if (int.TryParse(line.AsSpan(Listening.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid) && pid > 0)
                listening(pid);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or KernelException or SocketException or ObjectDisposedException) { }
        finally { Answer(true); }
    }

    private bool Answer(bool ok)
    {
        try
        {
            _answer.Write(Encoding.ASCII.GetBytes(ok ? "ok\n" : "fail\n"));
            return true;
        }
        catch (IOException) { return false; }
    }

    private static string ReadLine(FileStream fifo)
    {
        var line = new StringBuilder();
        var one = new byte[1];
        while (fifo.Read(one, 0, 1) == 1 && one[0] != (byte)'\n') line.Append((char)one[0]);
        return line.ToString();
    }

    /// <summary>After CRIU has exited (a lazy dump: once it reached post-dump): stops waiting if
    /// it never reached post-dump, waits for the capture's answer, and rethrows what the capture
    /// threw. False when the capture never ran.</summary>
    public bool Finish()
    {
        if (!_postDumpSeen) Cancel();
        _captureEnded.Wait();
        if (_error is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(_error).Throw();
        return _postDumpSeen;
    }

    private void Cancel()
    {
        try { _cancel.Write("cancel\n"u8); }
        catch (IOException) { }
    }

    /// <summary>After CRIU has exited: also stops waiting for status-ready.</summary>
    public void Dispose()
    {
        if (_thread.IsAlive)
        {
            Cancel();
            _thread.Join();
        }
        _request.Dispose();
        _cancel.Dispose();
        _answer.Dispose();
        _captureEnded.Dispose();
    }
}
