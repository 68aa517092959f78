using System.Buffers;
using CriRuntime.Containers;
using CriRuntime.Cri;
using CriRuntime.Cri.V1;
using CriRuntime.Errors;
using CriRuntime.Pods;
using CriRuntime.Server;
using Grpc.Core;

namespace CriRuntime.Tests.Unit.Containers;

/// <summary>What the daemon refuses before anything is made, with InvalidArgument naming the CRI
/// field of the request it came in (not the OCI field the shim would have named).</summary>
public class CriValidationTests
{
    public static TheoryData<LinuxContainerResources, string> BadResources => new()
    {
        { new LinuxContainerResources { CpuShares = 1 }, "cpu_shares: must be between 2 and 262144" },
        { new LinuxContainerResources { CpuShares = 262145 }, "cpu_shares" },
        { new LinuxContainerResources { CpuShares = -5 }, "cpu_shares" },
        { new LinuxContainerResources { CpuQuota = 10 }, "cpu_quota" },
        { new LinuxContainerResources { CpuPeriod = 10 }, "cpu_period" },
        { new LinuxContainerResources { CpusetCpus = "0-a" }, "cpuset_cpus: must be a list" },
        { new LinuxContainerResources { CpusetMems = "1-0" }, "cpuset_mems" },
        { new LinuxContainerResources { MemoryLimitInBytes = 1024 }, "memory_limit_in_bytes" },
        { new LinuxContainerResources { MemorySwapLimitInBytes = 1 << 30 }, "memory_swap_limit_in_bytes: needs a memory limit" },
        { new LinuxContainerResources { OomScoreAdj = 1001 }, "oom_score_adj" },
        { new LinuxContainerResources { HugepageLimits = { new HugepageLimit { PageSize = "2M", Limit = 1 } } }, "hugepage_limits.page_size" },
        { new LinuxContainerResources { Unified = { ["../memory.max"] = "1" } }, "unified: key must be a cgroup file name" },
        { new LinuxContainerResources { Unified = { [".."] = "1" } }, "unified" },
        { new LinuxContainerResources { Unified = { ["memory.high"] = "1\n2" } }, "unified[memory.high]" },
    };

    [Theory]
    [MemberData(nameof(BadResources))]
    public void Resources_OutOfRange_AreInvalidArgument_NamingTheCriField(LinuxContainerResources r, string expected)
    {
        foreach (var prefix in new[] { "config.linux.resources", "linux", "resources" })
        {
            var e = Assert.Throws<CriException>(() => ResourceLimits.From(r, prefix));
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
            Assert.StartsWith($"{prefix}.{expected}", e.Message);
            Assert.DoesNotContain("linux.resources.cpu.", e.Message);
        }
    }

    [Fact]
    public void Resources_AsTheKubeletSendsThem_PassAndMap()
    {
        var limits = ResourceLimits.From(new LinuxContainerResources
        {
            CpuShares = 2, CpuQuota = 50_000, CpuPeriod = 100_000, CpusetCpus = "0", MemoryLimitInBytes = 64 << 20,
            OomScoreAdj = 1000, HugepageLimits = { new HugepageLimit { PageSize = "2MB", Limit = 0 } },
        }, "linux");
        Assert.Equal(2UL, limits.CpuShares);
        Assert.Equal("0", limits.CpusetCpus);
        Assert.Equal(64L << 20, limits.MemoryLimit);
    }

    private static SpecInput Input(ContainerConfig config) => new()
    {
        ContainerId = "c1",
        Config = config,
        PodConfig = new PodSandboxConfig { Metadata = new PodSandboxMetadata { Name = "p", Namespace = "n", Uid = "u" } },
        User = new UserResolver.Resolved(0, 0, [], null),
        PodDir = "/run/criruntime-test/pod",
        CgroupsPath = "/criruntime/p/c1",
        RuntimeCapabilities = SpecBuilder.AllCapabilities,
    };

    private static ContainerConfig WithMount(Mount m) => new()
    {
        Metadata = new ContainerMetadata { Name = "c" },
        Image = new ImageSpec { Image = "busybox" },
        Command = { "true" },
        Mounts = { m },
    };

    [Theory]
    [InlineData("tmp")]
    [InlineData("./tmp")]
    [InlineData("../../tmp")]
    public void Mount_WithARelativeHostPath_IsInvalidArgument_NamingTheField(string hostPath)
    {
        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(WithMount(new Mount { ContainerPath = "/data", HostPath = hostPath }))));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.StartsWith("config.mounts[0].host_path: ", e.Message);
        Assert.Contains("absolute", e.Message);
    }

    [Theory]
    [InlineData(MountPropagation.PropagationHostToContainer)]
    [InlineData(MountPropagation.PropagationBidirectional)]
    public void RecursiveReadOnlyMount_WithPropagationOtherThanPrivate_IsInvalidArgument(MountPropagation propagation)
    {
        var m = new Mount { ContainerPath = "/data", HostPath = "/tmp", Readonly = true, RecursiveReadOnly = true, Propagation = propagation };
        var e = Assert.Throws<CriException>(() => SpecBuilder.Build(Input(WithMount(m))));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.StartsWith("config.mounts[0].propagation: recursive_read_only needs PROPAGATION_PRIVATE", e.Message);
    }

    [Fact]
    public void RecursiveReadOnlyMount_Private_IsRro()
    {
        var m = new Mount { ContainerPath = "/data", HostPath = "/tmp", Readonly = true, RecursiveReadOnly = true };
        var spec = SpecBuilder.Build(Input(WithMount(m)));
        Assert.Contains("rro", spec.Mounts!.Single(x => x.Destination == "/data").Options!);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("1000:1000")]
    public void RunAsGroup_WithoutRunAsUser_IsInvalidArgument_WhateverTheImagesUser(string? imageUser)
    {
        var rootfs = Directory.CreateTempSubdirectory("criruntime-user-").FullName;
        try
        {
            var e = Assert.Throws<CriException>(() => UserResolver.Resolve(rootfs, null, null, 3000, [], imageUser));
            Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
            Assert.StartsWith("config.linux.security_context.run_as_group: 3000 is set without run_as_user or run_as_username", e.Message);
            // With a user it is what it says.
            Assert.Equal((1000u, 3000u), UserResolver.Resolve(rootfs, 1000, null, 3000, [], imageUser) is var r ? (r.Uid, r.Gid) : default);
        }
        finally { Directory.Delete(rootfs, recursive: true); }
    }

    [Theory]
    [InlineData(long.MaxValue)]
    [InlineData(922337203686L)] // one past TimeSpan.MaxValue in seconds
    [InlineData(-1L)]
    public void ExecSyncTimeout_NotATimeSpan_IsInvalidArgument_NamingTimeout(long seconds)
    {
        var e = Assert.Throws<CriException>(() => CriRuntimeService.ExecTimeout(seconds));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.StartsWith("timeout: ", e.Message);
    }

    [Fact]
    public void ExecSyncTimeout_BeyondWhatAWaitTakes_IsNoTimeout_ZeroIsNone_ElseSeconds()
    {
        Assert.Null(CriRuntimeService.ExecTimeout(0));
        Assert.Null(CriRuntimeService.ExecTimeout(922337203685L));
        Assert.Null(CriRuntimeService.ExecTimeout(int.MaxValue));
        Assert.Equal(TimeSpan.FromSeconds(30), CriRuntimeService.ExecTimeout(30));
        Assert.Equal(TimeSpan.FromSeconds(2_147_483), CriRuntimeService.ExecTimeout(2_147_483));
    }

    [Theory]
    [InlineData("servers", 1, "8.8.8.8\nnameserver 6.6.6.6")]
    [InlineData("searches", 0, "svc.cluster.local\r")]
    [InlineData("options", 0, "ndots:5\0")]
    [InlineData("options", 1, "\tedns0")]
    public void Dns_WithControlCharacters_IsInvalidArgument_NamingTheEntry(string field, int index, string value)
    {
        var dns = new DNSConfig { Servers = { "10.96.0.10" }, Searches = { "default.svc.cluster.local" }, Options = { "ndots:5" } };
        var list = field switch { "servers" => dns.Servers, "searches" => dns.Searches, _ => dns.Options };
        if (index < list.Count) list[index] = value; else list.Add(value);
        var e = Assert.Throws<CriException>(() => SandboxFiles.Validate(dns));
        Assert.Equal(ErrorKind.InvalidArgument, e.Kind);
        Assert.StartsWith($"config.dns_config.{field}[{index}]: ", e.Message);
        Assert.DoesNotContain("\n", e.Message);
    }

    [Fact]
    public void Dns_AsTheKubeletSendsIt_Passes()
    {
        SandboxFiles.Validate(new DNSConfig { Servers = { "10.96.0.10", "fd00::a" }, Searches = { "ns.svc.cluster.local", "svc.cluster.local" }, Options = { "ndots:5", "edns0" } });
        SandboxFiles.Validate(null);
    }

    [Fact]
    public void MalformedRequestBody_IsInvalidArgument_NamingTheMessage()
    {
        var method = CriServiceDefinitions.Strict(new Method<RunPodSandboxRequest, RunPodSandboxResponse>(MethodType.Unary,
            "runtime.v1.RuntimeService", "RunPodSandbox",
            Marshallers.Create((RunPodSandboxRequest r, SerializationContext c) => { }, c => RunPodSandboxRequest.Parser.ParseFrom(c.PayloadAsReadOnlySequence())),
            Marshallers.Create((RunPodSandboxResponse r, SerializationContext c) => { }, c => new RunPodSandboxResponse())));
        // Field 1, length-delimited, with a length running past the end.
        var e = Assert.Throws<RpcException>(() => method.RequestMarshaller.ContextualDeserializer(new Payload([0x0a, 0x7f, 0x01])));
        Assert.Equal(StatusCode.InvalidArgument, e.StatusCode);
        Assert.Contains("RunPodSandboxRequest", e.Status.Detail);
        // A well-formed one still parses.
        var ok = new RunPodSandboxRequest { RuntimeHandler = "x" };
        Assert.Equal("x", method.RequestMarshaller.ContextualDeserializer(new Payload(Google.Protobuf.MessageExtensions.ToByteArray(ok))).RuntimeHandler);
    }

    private sealed class Payload(byte[] bytes) : DeserializationContext
    {
        public override int PayloadLength => bytes.Length;
        public override byte[] PayloadAsNewBuffer() => (byte[])bytes.Clone();
        public override ReadOnlySequence<byte> PayloadAsReadOnlySequence() => new(bytes);
    }
}
