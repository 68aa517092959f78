using System.Text.Json;
using CriRuntime.Cri.V1;
using Google.Protobuf.Reflection;

namespace CriRuntime.Tests.Unit;

/// <summary>Our cri/ proto must be the upstream runtime.v1 contract to the field: compare the
/// compiled descriptor with cri/upstream/runtime-v1.descriptor.json (the upstream definition as data, kept in this repository).</summary>
public class ProtoContractTests
{
    private static JsonElement Upstream()
    {
        var path = Path.Combine(AppContext.BaseDirectory, "runtime-v1.descriptor.json");
        Assert.True(File.Exists(path), $"{path} missing: cri/upstream/runtime-v1.descriptor.json is copied to the test output by Unit.csproj");
        return JsonDocument.Parse(File.ReadAllBytes(path)).RootElement.Clone();
    }

    private static FileDescriptor Ours => ApiReflection.Descriptor;

    [Fact]
    public void Package_IsRuntimeV1() => Assert.Equal("runtime.v1", Ours.Package);

    [Fact]
    public void Services_AndMethods_MatchUpstream()
    {
        var upstream = Upstream().GetProperty("service").EnumerateArray().ToList();
        Assert.Equal(upstream.Select(s => s.GetProperty("name").GetString()), Ours.Services.Select(s => s.Name));
        foreach (var us in upstream)
        {
            var svc = Ours.FindTypeByName<ServiceDescriptor>(us.GetProperty("name").GetString()!);
            var methods = us.GetProperty("method").EnumerateArray().ToList();
            Assert.Equal(methods.Select(m => m.GetProperty("name").GetString()), svc.Methods.Select(m => m.Name));
            foreach (var um in methods)
            {
                var m = svc.FindMethodByName(um.GetProperty("name").GetString()!);
                Assert.Equal(um.GetProperty("inputType").GetString(), "." + m.InputType.FullName);
                Assert.Equal(um.GetProperty("outputType").GetString(), "." + m.OutputType.FullName);
                Assert.Equal(Flag(um, "serverStreaming"), m.IsServerStreaming);
                Assert.Equal(Flag(um, "clientStreaming"), m.IsClientStreaming);
            }
        }
    }

    [Fact]
    public void TopLevelEnums_MatchUpstream()
    {
        var upstream = Upstream().GetProperty("enumType").EnumerateArray().ToList();
        Assert.Equal(upstream.Select(e => e.GetProperty("name").GetString()), Ours.EnumTypes.Select(e => e.Name));
        foreach (var ue in upstream) CompareEnum(ue, Ours.FindTypeByName<EnumDescriptor>(ue.GetProperty("name").GetString()!));
    }

    [Fact]
    public void Messages_MatchUpstream_FieldByField()
    {
        var upstream = Upstream().GetProperty("messageType").EnumerateArray().ToList();
        Assert.Equal(upstream.Select(m => m.GetProperty("name").GetString()), Ours.MessageTypes.Select(m => m.Name));
        foreach (var um in upstream) CompareMessage(um, Ours.FindTypeByName<MessageDescriptor>(um.GetProperty("name").GetString()!));
    }

    private static bool Flag(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.GetBoolean();

    private static void CompareEnum(JsonElement ue, EnumDescriptor e)
    {
        var values = ue.GetProperty("value").EnumerateArray().ToList();
        Assert.Equal(values.Select(v => (v.GetProperty("name").GetString(), v.GetProperty("number").GetInt32())),
            e.Values.Select(v => ((string?)v.Name, v.Number)));
    }

    private static void CompareMessage(JsonElement um, MessageDescriptor m)
    {
        var where = m.FullName;
        var fields = um.TryGetProperty("field", out var f) ? f.EnumerateArray().ToList() : [];
        Assert.True(fields.Count == m.Fields.InDeclarationOrder().Count, $"{where}: field count");
        foreach (var (uf, field) in fields.Zip(m.Fields.InDeclarationOrder()))
        {
            var name = uf.GetProperty("name").GetString();
            Assert.True(name == field.Name, $"{where}: field {name} vs {field.Name}");
            Assert.True(uf.GetProperty("number").GetInt32() == field.FieldNumber, $"{where}.{name}: number");
            var repeated = uf.GetProperty("label").GetString() == "LABEL_REPEATED";
            Assert.True(repeated == (field.IsRepeated || field.IsMap), $"{where}.{name}: label");
            var type = uf.GetProperty("type").GetString()!;
            Assert.True(type == "TYPE_" + field.FieldType.ToString().ToUpperInvariant()
                || (type == "TYPE_MESSAGE" && field.FieldType == FieldType.Message), $"{where}.{name}: type {type} vs {field.FieldType}");
            if (uf.TryGetProperty("typeName", out var tn))
            {
                var ours = field.FieldType == FieldType.Enum ? field.EnumType.FullName : field.MessageType.FullName;
                Assert.True(tn.GetString() == "." + ours, $"{where}.{name}: type name {tn} vs {ours}");
            }
            var deprecated = uf.TryGetProperty("options", out var o) && o.TryGetProperty("deprecated", out var d) && d.GetBoolean();
            Assert.True(deprecated == (field.GetOptions()?.Deprecated ?? false), $"{where}.{name}: deprecated");
        }
        var nested = um.TryGetProperty("nestedType", out var n) ? n.EnumerateArray().ToList() : [];
        Assert.Equal(nested.Select(x => x.GetProperty("name").GetString()), m.NestedTypes.Select(x => x.Name));
        foreach (var un in nested)
        {
            var nm = m.NestedTypes.Single(x => x.Name == un.GetProperty("name").GetString());
            var isMap = un.TryGetProperty("options", out var no) && no.TryGetProperty("mapEntry", out var me) && me.GetBoolean();
            Assert.True(isMap == (nm.GetOptions()?.MapEntry ?? false), $"{nm.FullName}: map entry");
            CompareMessage(un, nm);
        }
        var enums = um.TryGetProperty("enumType", out var en) ? en.EnumerateArray().ToList() : [];
        Assert.Equal(enums.Select(x => x.GetProperty("name").GetString()), m.EnumTypes.Select(x => x.Name));
        foreach (var ue in enums) CompareEnum(ue, m.EnumTypes.Single(x => x.Name == ue.GetProperty("name").GetString()));
    }
}
