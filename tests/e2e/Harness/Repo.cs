namespace CriRuntime.Tests.E2E.Harness;

/// <summary>Where the repository and its build outputs are.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "CriRuntime.sln"))) return dir.FullName;
        throw new InvalidOperationException($"CriRuntime.sln not found above {AppContext.BaseDirectory}");
    }

    /// <summary>The daemon binary: $CRIRUNTIME_BIN, else what `make build` publishes and `make run`
    /// runs: the NativeAOT daemon with the shim next to it.</summary>
    public static string Daemon =>
        Environment.GetEnvironmentVariable("CRIRUNTIME_BIN") is { Length: > 0 } bin
            ? bin
            : Path.Combine(Root, "artifacts", "dist", "criruntime");

    public static string Hack(string relative) => Path.Combine(Root, "hack", relative);
}
