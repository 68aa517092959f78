using CriRuntime.Shim;

return await ShimCli.RunAsync(args);
