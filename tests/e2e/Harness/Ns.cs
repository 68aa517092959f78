namespace CriRuntime.Tests.E2E.Harness;

/// <summary>Looks into a pinned namespace from the test with nsenter (util-linux).</summary>
public static class Ns
{
    public static string Run(string flag, string nsPath, params string[] command) =>
        Shell.Run("nsenter", [$"--{flag}={nsPath}", "--", .. command]).Trim();

    public static bool IsMounted(string path) =>
        File.ReadLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == path);
}
