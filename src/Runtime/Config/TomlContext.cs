using Tomlyn.Model;
using Tomlyn.Serialization;

namespace CriRuntime.Config;

/// <summary>Source-generated TOML metadata: the config is read as an untyped table, then bound by
/// hand in <see cref="ConfigLeaves"/> so that every unknown key and bad value is reported with
/// its file and dotted key.</summary>
[TomlSerializable(typeof(TomlTable))]
internal sealed partial class TomlContext : TomlSerializerContext;
