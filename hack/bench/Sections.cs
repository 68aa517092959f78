namespace CriRuntime.Bench;

/// <summary>What a bench section gets: the flags, the environment (registry with the test images,
/// CNI network, private directory) and the runtimes started for the run (empty when no selected
/// section uses them).</summary>
public sealed record BenchContext(Options Options, BenchEnv Env, IReadOnlyList<RuntimeUnderTest> Runtimes, string Repo)
{
    /// <summary>The daemon binary under test (the shim sits next to it).</summary>
    public string DaemonBinary => Path.GetFullPath(Options.Daemon, Repo);
}

/// <summary>One `## ` section of docs/benchmarks.md and the workload that measures it. A
/// section owns its heading: `--only NAME` reruns just it and keeps every other section of the
/// existing document as it was.</summary>
public interface IBenchSection
{
    /// <summary>The `--only` name, lower case, e.g. "checkpoint".</summary>
    string Name { get; }
    /// <summary>The heading text after "## " in the document; unique.</summary>
    string Title { get; }
    /// <summary>Whether it drives the run's shared runtimes (<see cref="BenchContext.Runtimes"/>);
    /// a section that starts daemons of its own says false.</summary>
    bool UsesRuntimes { get; }
    Task RunAsync(BenchContext ctx, CancellationToken ct);
    /// <summary>The section's body, below its heading (the heading and the "measured at" line
    /// are written for it).</summary>
    string Markdown(BenchContext ctx);
}

public static class Sections
{
    /// <summary>The phases built into Program.cs and Report.cs, in the order they run.</summary>
    public static readonly IReadOnlyList<string> BuiltIn = ["pull", "lifecycle", "density"];

    /// <summary>Sections in files of their own, in document order after the built-in ones. Add
    /// yours here.</summary>
    public static IReadOnlyList<IBenchSection> Extra(Options opts) =>
    [
        new QuotaSection(opts),
        new CheckpointSection(),
        new ProcViewSection(),
        new TelemetrySection(),
        new MemoryBreakdownSection(),
        new StreamingSection(),
        new MigrationSection(opts),
    ];

    public static IReadOnlyList<string> AllNames(Options opts) => [.. BuiltIn, .. Extra(opts).Select(s => s.Name)];
}
