using CriRuntime.Shim;

return ShimCli.Run(args);
