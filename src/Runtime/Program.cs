using CriRuntime;
using CriRuntime.Config;
using CriRuntime.Server;

return await Cli.RunAsync(args);
