namespace CriRuntime.Shim.Client;

/// <summary>Runtime settings for the long-lived `supervise` process alone, given through its
/// environment (docs/shim-protocol.md, "Footprint"). There is one supervisor per running
/// container, so its idle memory is what counts:
/// <list type="bullet">
/// <item>a 128 KiB gen0 budget (hex, as the runtime reads it): the default budget follows the CPU
/// cache size and keeps ≈ 1.7 MB of gen0 committed in a process whose live heap is ≈ 200 KiB;</item>
/// <item>one malloc arena: each thread would otherwise get its own, for a few small allocations.</item>
/// </list>
/// Set by whoever starts `supervise` (the daemon through `criruntime-monitor launch`, or `create`).
/// The short-lived processes (`create`, and the container's `init` and `exec-init`, which exec
/// the container's program) keep the defaults: they allocate most of what the shim ever
/// allocates, and a small budget would only make them collect more often while the caller waits.
/// <see cref="Spawn.CurrentEnvironment"/> leaves these out of every child's environment.</summary>
public static class SupervisorTuning
{
    public static readonly IReadOnlyList<string> Environment = ["DOTNET_GCGen0MaxBudget=20000", "MALLOC_ARENA_MAX=1"];

    /// <summary>Whether an environment entry ("NAME=value") sets one of these.</summary>
    public static bool Sets(string entry)
    {
        foreach (var e in Environment)
            if (entry.StartsWith(e.AsSpan(0, e.IndexOf('=') + 1), StringComparison.Ordinal)) return true;
        return false;
    }
}
