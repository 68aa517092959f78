using System.Globalization;

namespace CriRuntime.Bench;

/// <summary>Command-line flags; the defaults fit `make bench` in about 30 minutes on 2 cores (15 for the
/// lifecycle, density and pull phases, the rest for the sections in files of their own).</summary>
public sealed record Options
{
    public string Daemon { get; init; } = "artifacts/dist/criruntime";
    public int LifecycleIterations { get; init; } = 20;
    public int Clients { get; init; } = 10;
    public int ConcurrentIterations { get; init; } = 2;
    public IReadOnlyList<int> Density { get; init; } = [100, 1000];
    /// <summary>containerd takes ~3× our time per pod here: its 500-pod run alone would take
    /// ~12 of the 15 minutes, so by default it runs the smaller density runs only.</summary>
    public int ContainerdDensityMax { get; init; } = 100;
    public int DensityParallelism { get; init; } = 10;
    public int PullIterations { get; init; } = 5;
    public IReadOnlyList<string> Runtimes { get; init; } = ["criruntime", "containerd"];
    /// <summary>CreateContainer samples per configuration of the disk quota section.</summary>
    public int QuotaIterations { get; init; } = 20;
    /// <summary>Process sizes (MB) and runs per size and mode of the migration section.</summary>
    public IReadOnlyList<int> MigrationSizes { get; init; } = [10, 200, 1024];
    public int MigrationIterations { get; init; } = 3;
    public string? Doc { get; init; } = "docs/benchmarks.md";
    /// <summary>Sections to run (`--only`); null runs them all and rewrites the whole document.</summary>
    public IReadOnlySet<string>? Only { get; init; }
    public bool Runs(string section) => Only is null || Only.Contains(section);
    public string Command { get; init; } = "make bench";

    public const string Usage = """
        usage: criruntime-bench [flags]
          --daemon PATH             daemon binary to measure, the shim next to it (default artifacts/dist/criruntime, NativeAOT)
          --lifecycle N             sequential pod lifecycles per runtime (default 20)
          --clients N               concurrent CRI clients (default 10)
          --concurrent-iterations N lifecycles per concurrent client (default 2)
          --density N,N             pod counts of the density runs, in order (default 100,1000, issue 18's counts; 0 skips)
          --density-parallelism N   clients starting and tearing down density pods (default 10)
          --containerd-density-max N  skip containerd's density runs above N pods (default 100:
                                    its 500-pod run takes ~12 minutes here; 0 = no limit)
          --pull N                  cold pulls of the multi-layer image per runtime (default 5)
          --runtimes A,B            criruntime and/or containerd (default both)
          --quota N                 CreateContainer samples per disk quota configuration (default 20)
          --migration-sizes N,N     process sizes in MB of the migration section (default 10,200,1024)
          --migration-runs N        migrations per size and mode (default 3)
          --doc PATH|-              markdown report to write (default docs/benchmarks.md; - for none)
          --only NAME,NAME          run only these sections (pull, lifecycle, density and the sections in
                                    hack/bench/Sections.cs) and replace only theirs in the report, keeping
                                    the others as they were
        """;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Int() { var v = Value(); return int.TryParse(v, CultureInfo.InvariantCulture, out var n) && n >= 0 ? n : throw new ArgumentException($"{args[i - 1]}: not a count: {v}"); }
            o = args[i] switch
            {
                "--daemon" => o with { Daemon = Value() },
                "--lifecycle" => o with { LifecycleIterations = Int() },
                "--clients" => o with { Clients = Math.Max(1, Int()) },
                "--concurrent-iterations" => o with { ConcurrentIterations = Int() },
                "--density" => o with { Density = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).Where(n => n > 0)] },
                "--density-parallelism" => o with { DensityParallelism = Math.Max(1, Int()) },
                "--containerd-density-max" => o with { ContainerdDensityMax = Int() is var m && m == 0 ? int.MaxValue : m },
                "--pull" => o with { PullIterations = Int() },
                "--quota" => o with { QuotaIterations = Int() },
                "--migration-sizes" => o with { MigrationSizes = [.. Value().Split(',', StringSplitOptions.RemoveEmptyEntries).Select(s => int.Parse(s, CultureInfo.InvariantCulture)).Where(n => n > 0)] },
                "--migration-runs" => o with { MigrationIterations = Math.Max(1, Int()) },
                "--runtimes" => o with { Runtimes = Value().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--doc" => o with { Doc = Value() is "-" ? null : args[i] },
                "--only" => o with { Only = Value().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal) },
                "-h" or "--help" => throw new HelpRequested(),
                _ => throw new ArgumentException($"unknown flag {args[i]}"),
            };
        }
        foreach (var r in o.Runtimes)
            if (r is not ("criruntime" or "containerd")) throw new ArgumentException($"--runtimes: unknown runtime {r}");
        foreach (var n in o.Only ?? new HashSet<string>())
            if (!Sections.AllNames(o).Contains(n)) throw new ArgumentException($"--only: unknown section {n} (known: {string.Join(", ", Sections.AllNames(o))})");
        return o with { Command = args.Length == 0 ? "make bench" : "make bench BENCH_ARGS=\"" + string.Join(' ', args) + "\"" };
    }
}

public sealed class HelpRequested : Exception;
