using CriRuntime.Config;
using CriRuntime.Server;

namespace CriRuntime;

/// <summary>The command line: `criruntime [serve|config|version] [flags]`.</summary>
public static class Cli
{
    private const string Usage = """
        usage: criruntime [serve|config|reload|beancounters|migrate|version] [flags]

          serve          run the CRI daemon (default)
          config         print the configuration as TOML and exit: the one in force in the
                         daemon serving the socket, else what the files and flags make
          reload         send SIGHUP to the daemon serving the socket: it reads its config again
          beancounters [POD]
                         print held, max held, limit and fail count of each finite resource of
                         every pod (or the pod with this id, id prefix or name) and its containers
          migrate POD --to HOST:PORT --id ID [--mode cold] [--no-commit] [--allow-new-ip]
                         move the pod to the node whose [migration] listener is HOST:PORT,
                         prepared there under migration id ID (PrepareTarget); prints the
                         progress, commits, and prints the downtime and the bytes moved;
                         --allow-new-ip: go on when the target's pod has another address
                         (its TCP connections are then closed)
          version        print the version and exit

        flags:
          --config FILE      main config file (default /etc/criruntime/config.toml; drop-ins in its conf.d/)
          --socket PATH      CRI socket (default /run/criruntime/criruntime.sock)
          --root DIR         persistent data (default /var/lib/criruntime)
          --state DIR        runtime state (default /run/criruntime)
          --log-level LEVEL  trace, debug, info, warn or error (default info)
        """;

    /// <summary>What the daemon serving <paramref name="socket"/> has in force (TOML), if one serves.</summary>
    private static string? InForce(string? socket, string? state)
    {
        var defaults = new CriRuntimeConfig();
        socket ??= defaults.Socket;
        return DaemonControl.ServingPid(socket) is { } pid && DaemonControl.InForce(state ?? defaults.State) is { } inForce
            ? $"# In force in the daemon (pid {pid}) serving {socket}.\n{inForce}"
            : null;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        var command = "serve";
        string? pod = null;
        string? configPath = null, socket = null, root = null, state = null, logLevel = null;
        string? to = null, migrationId = null, mode = null;
        var commit = true;
        var allowNewIp = false;
        try
        {
            for (var i = 0; i < args.Length; i++)
            {
                string Value() => i + 1 < args.Length ? args[++i] : throw new ConfigException($"{args[i]}: needs a value");
                var arg = args[i];
                var eq = arg.IndexOf('=');
                if (arg.StartsWith("--", StringComparison.Ordinal) && eq > 0)
                {
                    // --flag=value form
                    var rest = arg[(eq + 1)..];
                    arg = arg[..eq];
                    args = [.. args[..i], arg, rest, .. args[(i + 1)..]];
                }
                switch (arg)
                {
                    case "serve" or "config" or "reload" or "beancounters" or "migrate" or "version" when i == 0: command = arg; break;
                    case not null when command is "beancounters" or "migrate" && pod is null && !arg.StartsWith('-'): pod = arg; break;
                    case "--to" when command == "migrate": to = Value(); break;
                    case "--id" when command == "migrate": migrationId = Value(); break;
                    case "--mode" when command == "migrate": mode = Value(); break;
                    case "--no-commit" when command == "migrate": commit = false; break;
                    case "--allow-new-ip" when command == "migrate": allowNewIp = true; break;
                    case "--config": configPath = Value(); break;
                    case "--socket": socket = Value(); break;
                    case "--root": root = Value(); break;
                    case "--state": state = Value(); break;
                    case "--log-level": logLevel = Value(); break;
                    case "-h" or "--help" or "help": Console.Out.Write(Usage); return 0;
                    default: throw new ConfigException($"{arg}: unknown argument\n{Usage}");
                }
            }
            if (command == "version")
            {
                Console.WriteLine($"criruntime {Cri.CriRuntimeService.BuildVersion} (CRI {Cri.CriRuntimeService.ApiVersion})");
                return 0;
            }
            var overrides = new ConfigOverrides(socket, root, state, logLevel);
            CriRuntimeConfig Load() => ConfigLoader.Load(configPath ?? CriRuntimeConfig.DefaultConfigPath, configPath is not null, overrides);
            CriRuntimeConfig config;
            try { config = Load(); }
            catch (ConfigException e) when (command == "config" && InForce(socket, state) is { } kept)
            {
                // The files do not load, but a daemon serves: show what it keeps in force.
                Console.Out.Write(kept);
                Console.Error.WriteLine($"criruntime: {e.Message} (the daemon keeps the config in force shown)");
                return 2;
            }
            if (command == "config")
            {
                Console.Out.Write(InForce(config.Socket, config.State) ?? ConfigWriter.ToToml(config));
                return 0;
            }
            if (command == "reload")
            {
                var pid = DaemonControl.ServingPid(config.Socket)
                    ?? throw new StartupException($"reload: no daemon serves {config.Socket}");
                DaemonControl.Reload(pid);
                Console.WriteLine($"sent SIGHUP to criruntime (pid {pid}) serving {config.Socket}");
                return 0;
            }
            if (command == "migrate")
            {
                if (pod is null || to is null || migrationId is null)
                    throw new ConfigException($"migrate: needs POD --to HOST:PORT --id ID\n{Usage}");
                return await Migration.MigrateCommand.RunAsync(new Migration.MigrateCommand.Options(config.Socket, pod, to, migrationId, mode ?? "cold", commit, allowNewIp), Console.Out, Console.Error);
            }
            if (command == "beancounters")
            {
                Console.Out.Write(Accounting.BeancounterReport.For(config, pod));
                return 0;
            }
            return await Daemon.RunAsync(config, Load);
        }
        catch (Exception e) when (e is ConfigException or StartupException)
        {
            Console.Error.WriteLine($"criruntime: {e.Message}");
            return 2;
        }
    }
}
