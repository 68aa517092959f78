using System.Text.Json;

namespace CriRuntime.Oci;

/// <summary>config.json read straight off a <see cref="Utf8JsonReader"/>, for the processes that
/// read it once and exit or idle: the shim's `supervise`, `init` and `exec-init`. Measured in the
/// NativeAOT shim (docs/benchmarks.md, "Lifecycle latency"): System.Text.Json takes about 4.5 ms to
/// read a 7 KB spec the first time in a process, of which parsing is 0.1 ms and the rest building
/// its metadata for the spec's types (reflection on each converter's assembly and each type's
/// attributes, and the allocations of all that); each of those processes paid it.
///
/// It reads exactly what <see cref="OciJsonContext"/> reads, with the same rules (the spec's
/// names, case-sensitive; unknown members skipped; comments and trailing commas allowed; null
/// for any reference member). Anything it does not take as valid (a wrong token type, a number
/// out of range, a malformed document) returns null, and <see cref="SpecFile"/> reads the
/// document with System.Text.Json instead, which then either accepts it or says what is wrong
/// with it. Unit SpecReaderTests hold the two to the same result for a spec with every member set.</summary>
public static class SpecReader
{
    private static readonly JsonReaderOptions Options = new() { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true };

    /// <summary>The spec, or null when this reader does not take the document (see above).</summary>
    public static Spec? TryRead(ReadOnlySpan<byte> json) => TryReadDocument(json, Options, ReadSpec);

    /// <summary>One JSON document that is an object, read whole by <paramref name="read"/>; null
    /// for a JSON null, anything after it, and whatever the reader or <paramref name="read"/>
    /// refuses (a wrong token type, a number out of range, a malformed document).</summary>
    internal static T? TryReadDocument<T>(ReadOnlySpan<byte> json, JsonReaderOptions options, ReadValue<T?> read) where T : class
    {
        try
        {
            var r = new Utf8JsonReader(json, options);
            if (!r.Read()) return null;
            var value = read(ref r);
            return value is not null && !r.Read() ? value : null;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or OverflowException)
        {
            return null;
        }
    }

    // Each reader starts on the value's first token and ends on its last.

    private static Spec? ReadSpec(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Spec();
        while (Member(ref r, out var name))
            o = name switch
            {
                "ociVersion" => o with { OciVersion = Str(ref r)! },
                "process" => o with { Process = ReadProcess(ref r) },
                "root" => o with { Root = ReadRoot(ref r) },
                "hostname" => o with { Hostname = Str(ref r) },
                "domainname" => o with { Domainname = Str(ref r) },
                "mounts" => o with { Mounts = Objects(ref r, ReadMount) },
                "annotations" => o with { Annotations = Map(ref r) },
                "linux" => o with { Linux = ReadLinux(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Root? ReadRoot(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Root();
        while (Member(ref r, out var name))
            o = name switch
            {
                "path" => o with { Path = Str(ref r)! },
                "readonly" => o with { Readonly = r.GetBoolean() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Mount? ReadMount(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Mount();
        while (Member(ref r, out var name))
            o = name switch
            {
                "destination" => o with { Destination = Str(ref r)! },
                "type" => o with { Type = Str(ref r) },
                "source" => o with { Source = Str(ref r) },
                "options" => o with { Options = Strings(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Process? ReadProcess(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Process();
        while (Member(ref r, out var name))
            o = name switch
            {
                "terminal" => o with { Terminal = r.GetBoolean() },
                "consoleSize" => o with { ConsoleSize = ReadBox(ref r) },
                "user" => o with { User = ReadUser(ref r)! },
                "args" => o with { Args = Strings(ref r)! },
                "env" => o with { Env = Strings(ref r) },
                "cwd" => o with { Cwd = Str(ref r)! },
                "capabilities" => o with { Capabilities = ReadCapabilities(ref r) },
                "rlimits" => o with { Rlimits = Objects(ref r, ReadRlimit) },
                "noNewPrivileges" => o with { NoNewPrivileges = r.GetBoolean() },
                "apparmorProfile" => o with { ApparmorProfile = Str(ref r) },
                "oomScoreAdj" => o with { OomScoreAdj = IsNull(ref r) ? null : r.GetInt32() },
                "selinuxLabel" => o with { SelinuxLabel = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Box? ReadBox(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Box();
        while (Member(ref r, out var name))
            o = name switch
            {
                "height" => o with { Height = r.GetUInt32() },
                "width" => o with { Width = r.GetUInt32() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static User? ReadUser(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new User();
        while (Member(ref r, out var name))
            o = name switch
            {
                "uid" => o with { Uid = r.GetUInt32() },
                "gid" => o with { Gid = r.GetUInt32() },
                "umask" => o with { Umask = IsNull(ref r) ? null : r.GetUInt32() },
                "additionalGids" => o with { AdditionalGids = List(ref r, static (ref Utf8JsonReader x) => x.GetUInt32()) },
                "username" => o with { Username = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxCapabilities? ReadCapabilities(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxCapabilities();
        while (Member(ref r, out var name))
            o = name switch
            {
                "bounding" => o with { Bounding = Strings(ref r) },
                "effective" => o with { Effective = Strings(ref r) },
                "inheritable" => o with { Inheritable = Strings(ref r) },
                "permitted" => o with { Permitted = Strings(ref r) },
                "ambient" => o with { Ambient = Strings(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Rlimit? ReadRlimit(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Rlimit();
        while (Member(ref r, out var name))
            o = name switch
            {
                "type" => o with { Type = Str(ref r)! },
                "hard" => o with { Hard = r.GetUInt64() },
                "soft" => o with { Soft = r.GetUInt64() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static Linux? ReadLinux(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new Linux();
        while (Member(ref r, out var name))
            o = name switch
            {
                "namespaces" => o with { Namespaces = Objects(ref r, ReadNamespace) },
                "uidMappings" => o with { UidMappings = Objects(ref r, ReadIdMapping) },
                "gidMappings" => o with { GidMappings = Objects(ref r, ReadIdMapping) },
                "devices" => o with { Devices = Objects(ref r, ReadDevice) },
                "cgroupsPath" => o with { CgroupsPath = Str(ref r) },
                "resources" => o with { Resources = ReadResources(ref r) },
                "sysctl" => o with { Sysctl = Map(ref r) },
                "seccomp" => o with { Seccomp = ReadSeccomp(ref r) },
                "rootfsPropagation" => o with { RootfsPropagation = Str(ref r) },
                "maskedPaths" => o with { MaskedPaths = Strings(ref r) },
                "readonlyPaths" => o with { ReadonlyPaths = Strings(ref r) },
                "mountLabel" => o with { MountLabel = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxNamespace? ReadNamespace(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxNamespace();
        while (Member(ref r, out var name))
            o = name switch
            {
                "type" => o with { Type = Str(ref r)! },
                "path" => o with { Path = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static IdMapping? ReadIdMapping(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new IdMapping();
        while (Member(ref r, out var name))
            o = name switch
            {
                "containerID" => o with { ContainerId = r.GetUInt32() },
                "hostID" => o with { HostId = r.GetUInt32() },
                "size" => o with { Size = r.GetUInt32() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxDevice? ReadDevice(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxDevice();
        while (Member(ref r, out var name))
            o = name switch
            {
                "type" => o with { Type = Str(ref r)! },
                "path" => o with { Path = Str(ref r)! },
                "major" => o with { Major = r.GetInt64() },
                "minor" => o with { Minor = r.GetInt64() },
                "fileMode" => o with { FileMode = IsNull(ref r) ? null : r.GetUInt32() },
                "uid" => o with { Uid = IsNull(ref r) ? null : r.GetUInt32() },
                "gid" => o with { Gid = IsNull(ref r) ? null : r.GetUInt32() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    internal static LinuxResources? ReadResources(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxResources();
        while (Member(ref r, out var name))
            o = name switch
            {
                "devices" => o with { Devices = Objects(ref r, ReadDeviceCgroup) },
                "memory" => o with { Memory = ReadMemory(ref r) },
                "cpu" => o with { Cpu = ReadCpu(ref r) },
                "pids" => o with { Pids = ReadPids(ref r) },
                "blockIO" => o with { BlockIo = ReadBlockIo(ref r) },
                "hugepageLimits" => o with { HugepageLimits = Objects(ref r, ReadHugepageLimit) },
                "network" => o with { Network = ReadNetwork(ref r) },
                "unified" => o with { Unified = Map(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxDeviceCgroup? ReadDeviceCgroup(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxDeviceCgroup();
        while (Member(ref r, out var name))
            o = name switch
            {
                "allow" => o with { Allow = r.GetBoolean() },
                "type" => o with { Type = Str(ref r) },
                "major" => o with { Major = IsNull(ref r) ? null : r.GetInt64() },
                "minor" => o with { Minor = IsNull(ref r) ? null : r.GetInt64() },
                "access" => o with { Access = Str(ref r) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxMemory? ReadMemory(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxMemory();
        while (Member(ref r, out var name))
            o = name switch
            {
                "limit" => o with { Limit = IsNull(ref r) ? null : r.GetInt64() },
                "reservation" => o with { Reservation = IsNull(ref r) ? null : r.GetInt64() },
                "swap" => o with { Swap = IsNull(ref r) ? null : r.GetInt64() },
                "kernel" => o with { Kernel = IsNull(ref r) ? null : r.GetInt64() },
                "kernelTCP" => o with { KernelTcp = IsNull(ref r) ? null : r.GetInt64() },
                "swappiness" => o with { Swappiness = IsNull(ref r) ? null : r.GetUInt64() },
                "disableOOMKiller" => o with { DisableOomKiller = IsNull(ref r) ? null : r.GetBoolean() },
                "useHierarchy" => o with { UseHierarchy = IsNull(ref r) ? null : r.GetBoolean() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxCpu? ReadCpu(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxCpu();
        while (Member(ref r, out var name))
            o = name switch
            {
                "shares" => o with { Shares = IsNull(ref r) ? null : r.GetUInt64() },
                "quota" => o with { Quota = IsNull(ref r) ? null : r.GetInt64() },
                "period" => o with { Period = IsNull(ref r) ? null : r.GetUInt64() },
                "realtimeRuntime" => o with { RealtimeRuntime = IsNull(ref r) ? null : r.GetInt64() },
                "realtimePeriod" => o with { RealtimePeriod = IsNull(ref r) ? null : r.GetUInt64() },
                "cpus" => o with { Cpus = Str(ref r) },
                "mems" => o with { Mems = Str(ref r) },
                "idle" => o with { Idle = IsNull(ref r) ? null : r.GetInt64() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxPids? ReadPids(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxPids();
        while (Member(ref r, out var name))
            o = name switch
            {
                "limit" => o with { Limit = r.GetInt64() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxBlockIo? ReadBlockIo(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxBlockIo();
        while (Member(ref r, out var name))
            o = name switch
            {
                "weight" => o with { Weight = IsNull(ref r) ? null : r.GetUInt16() },
                "leafWeight" => o with { LeafWeight = IsNull(ref r) ? null : r.GetUInt16() },
                "weightDevice" => o with { WeightDevice = Objects(ref r, ReadWeightDevice) },
                "throttleReadBpsDevice" => o with { ThrottleReadBpsDevice = Objects(ref r, ReadThrottleDevice) },
                "throttleWriteBpsDevice" => o with { ThrottleWriteBpsDevice = Objects(ref r, ReadThrottleDevice) },
                "throttleReadIOPSDevice" => o with { ThrottleReadIopsDevice = Objects(ref r, ReadThrottleDevice) },
                "throttleWriteIOPSDevice" => o with { ThrottleWriteIopsDevice = Objects(ref r, ReadThrottleDevice) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxWeightDevice? ReadWeightDevice(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxWeightDevice();
        while (Member(ref r, out var name))
            o = name switch
            {
                "major" => o with { Major = r.GetInt64() },
                "minor" => o with { Minor = r.GetInt64() },
                "weight" => o with { Weight = IsNull(ref r) ? null : r.GetUInt16() },
                "leafWeight" => o with { LeafWeight = IsNull(ref r) ? null : r.GetUInt16() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxThrottleDevice? ReadThrottleDevice(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxThrottleDevice();
        while (Member(ref r, out var name))
            o = name switch
            {
                "major" => o with { Major = r.GetInt64() },
                "minor" => o with { Minor = r.GetInt64() },
                "rate" => o with { Rate = r.GetUInt64() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxHugepageLimit? ReadHugepageLimit(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxHugepageLimit();
        while (Member(ref r, out var name))
            o = name switch
            {
                "pageSize" => o with { PageSize = Str(ref r)! },
                "limit" => o with { Limit = r.GetUInt64() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxNetwork? ReadNetwork(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxNetwork();
        while (Member(ref r, out var name))
            o = name switch
            {
                "classID" => o with { ClassId = IsNull(ref r) ? null : r.GetUInt32() },
                "priorities" => o with { Priorities = Objects(ref r, ReadInterfacePriority) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxInterfacePriority? ReadInterfacePriority(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxInterfacePriority();
        while (Member(ref r, out var name))
            o = name switch
            {
                "name" => o with { Name = Str(ref r)! },
                "priority" => o with { Priority = r.GetUInt32() },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxSeccomp? ReadSeccomp(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxSeccomp();
        while (Member(ref r, out var name))
            o = name switch
            {
                "defaultAction" => o with { DefaultAction = Str(ref r)! },
                "defaultErrnoRet" => o with { DefaultErrnoRet = IsNull(ref r) ? null : r.GetUInt32() },
                "architectures" => o with { Architectures = Strings(ref r) },
                "flags" => o with { Flags = Strings(ref r) },
                "syscalls" => o with { Syscalls = Objects(ref r, ReadSyscall) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxSyscall? ReadSyscall(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxSyscall();
        while (Member(ref r, out var name))
            o = name switch
            {
                "names" => o with { Names = Strings(ref r)! },
                "action" => o with { Action = Str(ref r)! },
                "errnoRet" => o with { ErrnoRet = IsNull(ref r) ? null : r.GetUInt32() },
                "args" => o with { Args = Objects(ref r, ReadSeccompArg) },
                _ => Skip(ref r, o),
            };
        return o;
    }

    private static LinuxSeccompArg? ReadSeccompArg(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var o = new LinuxSeccompArg();
        while (Member(ref r, out var name))
            o = name switch
            {
                "index" => o with { Index = r.GetUInt32() },
                "value" => o with { Value = r.GetUInt64() },
                "valueTwo" => o with { ValueTwo = r.GetUInt64() },
                "op" => o with { Op = Str(ref r)! },
                _ => Skip(ref r, o),
            };
        return o;
    }

    // ---- the rules shared by every member (and by ShimRequestReader) ----

    internal delegate T ReadValue<T>(ref Utf8JsonReader r);

    /// <summary>On an object's StartObject: true; on null: false (the member is null); anything
    /// else is not a spec.</summary>
    internal static bool Begin(ref Utf8JsonReader r) => r.TokenType switch
    {
        JsonTokenType.StartObject => true,
        JsonTokenType.Null => false,
        _ => throw new InvalidOperationException($"expected an object, found {r.TokenType}"),
    };

    /// <summary>The next member's name, the reader left on its value; false at the object's end.</summary>
    internal static bool Member(ref Utf8JsonReader r, out string name)
    {
        Next(ref r);
        if (r.TokenType == JsonTokenType.EndObject)
        {
            name = "";
            return false;
        }
        name = r.GetString()!;
        Next(ref r);
        return true;
    }

    internal static void Next(ref Utf8JsonReader r)
    {
        if (!r.Read()) throw new JsonException("the document ends early");
    }

    /// <summary>An unknown member's value, skipped whole.</summary>
    internal static T Skip<T>(ref Utf8JsonReader r, T o)
    {
        r.Skip();
        return o;
    }

    internal static bool IsNull(ref Utf8JsonReader r) => r.TokenType == JsonTokenType.Null;

    /// <summary>A string or null; any other token is not one (GetString throws).</summary>
    internal static string? Str(ref Utf8JsonReader r) => r.GetString();

    internal static List<string>? Strings(ref Utf8JsonReader r) => List(ref r, static (ref Utf8JsonReader x) => x.GetString()!);

    internal static List<T>? List<T>(ref Utf8JsonReader r, ReadValue<T> item)
    {
        if (r.TokenType == JsonTokenType.Null) return null;
        if (r.TokenType != JsonTokenType.StartArray) throw new InvalidOperationException($"expected an array, found {r.TokenType}");
        var list = new List<T>();
        while (true)
        {
            Next(ref r);
            if (r.TokenType == JsonTokenType.EndArray) return list;
            list.Add(item(ref r));
        }
    }

    /// <summary>A list of objects; a null in it stays null, as System.Text.Json leaves it.</summary>
    internal static List<T>? Objects<T>(ref Utf8JsonReader r, ReadValue<T?> item) where T : class =>
        List(ref r, (ref Utf8JsonReader x) => item(ref x)!);

    internal static Dictionary<string, string>? Map(ref Utf8JsonReader r)
    {
        if (!Begin(ref r)) return null;
        var map = new Dictionary<string, string>(StringComparer.Ordinal);
        while (Member(ref r, out var name)) map[name] = r.GetString()!;
        return map;
    }
}
