using CriRuntime.Config;
using CriRuntime.Server;

namespace CriRuntime;

/// <summary>The command line: `criruntime [serve|config|version] [flags]`.</summary>
public static class Cli
{
    private const string Usage = """
        usage: criruntime [serve|config|version] [flags]

          serve      run the CRI daemon (default)
          config     print the effective configuration as TOML and exit
          version    print the version and exit

        flags:
          --config FILE      main config file (default /etc/criruntime/config.toml; drop-ins in its conf.d/)
          --socket PATH      CRI socket (default /run/criruntime/criruntime.sock)
          --root DIR         persistent data (default /var/lib/criruntime)
          --state DIR        runtime state (default /run/criruntime)
          --log-level LEVEL  trace, debug, info, warn or error (default info)
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        var command = "serve";
        string? configPath = null, socket = null, root = null, state = null, logLevel = null;
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
                    case "serve" or "config" or "version" when i == 0: command = arg; break;
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
            var config = ConfigLoader.Load(configPath ?? CriRuntimeConfig.DefaultConfigPath, configPath is not null,
                new ConfigOverrides(socket, root, state, logLevel));
            if (command == "config")
            {
                Console.Out.Write(ConfigWriter.ToToml(config));
                return 0;
            }
            return await Daemon.RunAsync(config);
        }
        catch (Exception e) when (e is ConfigException or StartupException)
        {
            Console.Error.WriteLine($"criruntime: {e.Message}");
            return 2;
        }
    }
}
