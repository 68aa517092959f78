using System.Diagnostics.CodeAnalysis;
using CriRuntime;

// The daemon's entry point. criruntime-stream-server (src/StreamServer) references this assembly
// for its streaming code and turns the switch below off: NativeAOT keeps an assembly's entry point
// whenever any of its types is kept, and through Cli it would keep the whole daemon (gRPC, Kestrel,
// the stores) in that small process.
if (!DaemonEntry.IsEnabled) return 2;
return await Cli.RunAsync(args);

/// <summary>The "CriRuntime.DaemonEntry" feature switch (on unless a build turns it off with a
/// trimmed RuntimeHostConfigurationOption, which makes it a constant for the AOT compiler).</summary>
internal static class DaemonEntry
{
    [FeatureSwitchDefinition("CriRuntime.DaemonEntry")]
    internal static bool IsEnabled => !AppContext.TryGetSwitch("CriRuntime.DaemonEntry", out var on) || on;
}
