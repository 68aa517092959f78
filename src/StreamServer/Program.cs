// criruntime-stream-server --state DIR --address IP --port N [--log-level LEVEL]: started by the
// daemon on the first Exec, Attach or PortForward (docs/streaming.md).
return await CriRuntime.Streaming.Host.StreamServerHost.MainAsync(args);
