namespace CriRuntime.Config;

/// <summary>A configuration the daemon refuses to start with. The message names the file, the key
/// and the reason, so an operator can fix it without reading code.</summary>
public sealed class ConfigException(string message, Exception? inner = null) : Exception(message, inner);
