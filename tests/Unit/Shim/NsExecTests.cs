using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace CriRuntime.Tests.Unit.Shim;

/// <summary>criruntime-nsexec (src/NsExec/nsexec.c), compiled from the source under test with
/// the Makefile's flags, driven over its sync channel as the shim and the daemon drive it.</summary>
public sealed class NsExecTests
{
    private static readonly Lazy<string> Built = new(Compile);

    /// <summary>The helper built from this checkout into a temporary directory (once per run).</summary>
    public static string Binary => Built.Value;

    private static string Compile()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "CriRuntime.sln"))) dir = dir.Parent;
        var source = Path.Combine(dir?.FullName ?? throw new InvalidOperationException("CriRuntime.sln not found"), "src/NsExec/nsexec.c");
        var output = Path.Combine(Directory.CreateTempSubdirectory("nsexec").FullName, "criruntime-nsexec");
        // The directory must be reachable by a user namespace's root (not the host's).
        File.SetUnixFileMode(Path.GetDirectoryName(output)!, (UnixFileMode)0x1ED);
        var psi = new ProcessStartInfo("cc", ["-O2", "-Wall", "-Wextra", "-Werror", "-std=gnu11", "-o", output, source]) { RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"cc {source} failed: {err}");
        return output;
    }

    /// <summary>Runs the helper with its sync channel on stdin/stdout (as the daemon does) and
    /// <paramref name="dialogue"/> answering it.</summary>
    private static async Task<(int ExitCode, string Said, string Stderr)> RunAsync(string[] args, Func<Process, StreamReader, StreamWriter, Task> dialogue)
    {
        var psi = new ProcessStartInfo(Binary, ["--sync-in", "0", "--sync-out", "1", .. args])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var p = Process.Start(psi)!;
        p.StandardInput.AutoFlush = true;
        await dialogue(p, p.StandardOutput, p.StandardInput);
        var rest = await p.StandardOutput.ReadToEndAsync();
        var stderr = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        return (p.ExitCode, rest, stderr);
    }

    [RootFact]
    public async Task NewUserns_WaitsForTheMappings_ThenHoldsNamespacesOwnedByIt()
    {
        string? userns = null, netOwner = null;
        var (code, _, stderr) = await RunAsync(["--new-userns", "--unshare", "40000000" /* CLONE_NEWNET */, "--hold"], async (p, read, write) =>
        {
            Assert.Equal("userns", await read.ReadLineAsync());
            // No mapping yet: the helper must not have gone on.
            await File.WriteAllTextAsync($"/proc/{p.Id}/uid_map", "0 300000 1000\n");
            await File.WriteAllTextAsync($"/proc/{p.Id}/gid_map", "0 300000 1000\n");
            await write.WriteLineAsync("mapped");
            Assert.Equal("init self", await read.ReadLineAsync());
            // Root of the namespace: host uid 300000.
            var status = await File.ReadAllLinesAsync($"/proc/{p.Id}/status");
            Assert.Contains(status, l => l.StartsWith("Uid:\t300000\t300000\t300000", StringComparison.Ordinal));
            Assert.Contains(status, l => l.StartsWith("Gid:\t300000\t300000\t300000", StringComparison.Ordinal));
            userns = new FileInfo($"/proc/{p.Id}/ns/user").LinkTarget;
            Assert.NotEqual(new FileInfo("/proc/self/ns/user").LinkTarget, userns);
            netOwner = new FileInfo($"/proc/{p.Id}/ns/net").LinkTarget;
            Assert.NotEqual(new FileInfo("/proc/self/ns/net").LinkTarget, netOwner);
            write.Close(); // end of file: the hold ends
        });
        Assert.True(code == 0, stderr);
    }

    [RootFact]
    public async Task WithoutMappings_ItNeverRunsTheProgram()
    {
        var marker = Path.Combine(Path.GetTempPath(), $"nsexec-{Guid.NewGuid():N}");
        var (code, said, _) = await RunAsync(["--new-userns", "--", "/bin/touch", marker], async (p, read, write) =>
        {
            Assert.Equal("userns", await read.ReadLineAsync());
            write.Close(); // the caller gave up
        });
        Assert.Equal(1, code);
        Assert.StartsWith("error waiting for the id mappings", said);
        Assert.False(File.Exists(marker));
    }

    [RootFact]
    public async Task NewPidNamespace_ForksPid1_AndReportsItsHostPid()
    {
        var (code, said, stderr) = await RunAsync(["--new-userns", "--unshare", "20000000" /* CLONE_NEWPID */, "--", "/bin/sh", "-c", "echo inner=$$ uid=$(id -u) >&2; cat /proc/self/uid_map >&2"],
            async (p, read, write) =>
            {
                Assert.Equal("userns", await read.ReadLineAsync());
                await File.WriteAllTextAsync($"/proc/{p.Id}/uid_map", "0 300000 1000\n");
                await File.WriteAllTextAsync($"/proc/{p.Id}/gid_map", "0 300000 1000\n");
                await write.WriteLineAsync("mapped");
                var init = await read.ReadLineAsync();
                Assert.Matches(@"^init [1-9][0-9]*$", init);
                Assert.NotEqual($"init {p.Id}", init); // a child of its own, not the helper
            });
        Assert.Equal(0, code);
        Assert.Equal("", said);
        Assert.Contains("inner=1 uid=0", stderr); // pid 1 of the new namespace, root in the user namespace
        Assert.Contains("0     300000       1000", stderr);
    }

    [RootFact]
    public async Task JoiningAUserns_ByPath_MakesItRootThere()
    {
        // A user namespace held by a first helper, joined by a second through /proc/PID/ns/user.
        var (_, _, _) = await RunAsync(["--new-userns", "--hold"], async (holder, read, write) =>
        {
            Assert.Equal("userns", await read.ReadLineAsync());
            await File.WriteAllTextAsync($"/proc/{holder.Id}/uid_map", "0 310000 10\n");
            await File.WriteAllTextAsync($"/proc/{holder.Id}/gid_map", "0 310000 10\n");
            await write.WriteLineAsync("mapped");
            Assert.Equal("init self", await read.ReadLineAsync());

            var psi = new ProcessStartInfo(Binary, ["--sync-in", "0", "--sync-out", "2", "--userns", $"/proc/{holder.Id}/ns/user", "--",
                "/bin/sh", "-c", "id -u; readlink /proc/self/ns/user"]) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
            using var joiner = Process.Start(psi)!;
            var output = await joiner.StandardOutput.ReadToEndAsync();
            var said = await joiner.StandardError.ReadToEndAsync();
            await joiner.WaitForExitAsync();
            Assert.Equal("init self\n", said);
            Assert.Equal($"0\n{new FileInfo($"/proc/{holder.Id}/ns/user").LinkTarget}\n", output);
            write.Close();
        });
    }

    [RootFact]
    public async Task BadUsage_IsRefused_WithoutTouchingNamespaces()
    {
        var (code, _, stderr) = await RunAsync(["--new-userns", "--userns", "/proc/1/ns/user", "--hold"], (_, _, _) => Task.CompletedTask);
        Assert.Equal(2, code);
        Assert.Contains("usage", stderr);
        var (code2, said, _) = await RunAsync(["--userns", "/nonexistent", "--hold"], (_, _, _) => Task.CompletedTask);
        Assert.Equal(1, code2);
        Assert.StartsWith("error /nonexistent: No such file or directory", said);
    }
}
