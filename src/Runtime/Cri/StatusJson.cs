using System.Text.Json.Serialization;
using CriRuntime.Config;
using CriRuntime.Network;

namespace CriRuntime.Cri;

/// <summary>Source-generated JSON for the verbose info maps (no reflection, AOT-safe).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = false)]
[JsonSerializable(typeof(CriRuntimeConfig))]
[JsonSerializable(typeof(CniStatus))]
[JsonSerializable(typeof(Checkpoint.CriuInfo))]
[JsonSerializable(typeof(Storage.StorageInfo))]
internal sealed partial class StatusJson : JsonSerializerContext;
