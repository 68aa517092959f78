using System.Diagnostics;
using CriRuntime.Tests.E2E.Harness;

namespace CriRuntime.Tests.E2E.Foundation;

/// <summary>`make install` / `make uninstall` into temp directories (of what `make build`
/// published), and Debian's `systemd-analyze verify` on the unit it lays out.</summary>
public class InstallTests
{
    private static readonly string[] Binaries = ["criruntime", "criruntime-shim", "criruntime-stream-server", "criruntime-monitor", "criruntime-pod-init", "criruntime-nsexec"];

    [Fact]
    public async Task MakeInstall_IntoDestdir_LaysOutBinariesUnitAndConfig_KeepsAnExistingCrictlYaml_AndUninstallKeepsConfig()
    {
        var dest = Directory.CreateTempSubdirectory("criruntime-install-").FullName;
        try
        {
            Directory.CreateDirectory(Path.Combine(dest, "etc"));
            File.WriteAllText(Path.Combine(dest, "etc", "crictl.yaml"), "runtime-endpoint: unix:///operators-own.sock\n");

            await Make("install", $"DESTDIR={dest}", "PREFIX=/usr");

            foreach (var b in Binaries)
            {
                var mode = File.GetUnixFileMode(Path.Combine(dest, "usr", "bin", b));
                Assert.True(mode.HasFlag(UnixFileMode.UserExecute) && mode.HasFlag(UnixFileMode.OtherExecute), $"{b}: {mode}");
            }
            var unit = File.ReadAllText(Path.Combine(dest, "etc", "systemd", "system", "criruntime.service"));
            Assert.Contains("ExecStart=/usr/bin/criruntime serve\n", unit);
            Assert.Contains("ExecReload=/usr/bin/criruntime reload\n", unit);
            Assert.Contains("\nDelegate=yes\n", unit);
            Assert.Contains("\nKillMode=process\n", unit);
            Assert.DoesNotContain("@", unit);
            Assert.Equal("runtime-endpoint: unix:///operators-own.sock\n", File.ReadAllText(Path.Combine(dest, "etc", "crictl.yaml")));
            var config = Path.Combine(dest, "etc", "criruntime", "config.toml");
            Assert.True(File.Exists(config));
            // The example config is valid as installed.
            var (code, _, stderr) = await DaemonProcess.RunCliAsync("config", "--config", config);
            Assert.True(code == 0, stderr);

            // A second install keeps an edited config.
            File.AppendAllText(config, "log_level = \"debug\"\n");
            await Make("install", $"DESTDIR={dest}", "PREFIX=/usr");
            Assert.EndsWith("log_level = \"debug\"\n", File.ReadAllText(config));

            await Make("uninstall", $"DESTDIR={dest}", "PREFIX=/usr");
            foreach (var b in Binaries) Assert.False(File.Exists(Path.Combine(dest, "usr", "bin", b)), b);
            Assert.False(File.Exists(Path.Combine(dest, "etc", "systemd", "system", "criruntime.service")));
            Assert.True(File.Exists(config));
            Assert.True(File.Exists(Path.Combine(dest, "etc", "crictl.yaml")));
        }
        finally
        {
            Directory.Delete(dest, recursive: true);
        }
    }

    [Fact]
    public async Task InstalledUnit_IsAcceptedBySystemdAnalyzeVerify_WithoutWarnings()
    {
        // verify checks that ExecStart's binary exists, so the prefix itself is the temp directory.
        var dir = Directory.CreateTempSubdirectory("criruntime-install-").FullName;
        try
        {
            await Make("install", $"PREFIX={dir}/usr", $"UNITDIR={dir}/etc/systemd/system", $"SYSCONFDIR={dir}/etc");
            var unit = Path.Combine(dir, "etc", "systemd", "system", "criruntime.service");
            var (code, stdout, stderr) = await Run("systemd-analyze", "verify", unit);
            Assert.True(code == 0, stdout + stderr);
            // verify reports a bad setting on stderr and still exits 0: nothing may be reported.
            Assert.Equal("", (stdout + stderr).Trim());

            // The check can fail: a unit with an invalid setting is reported.
            var bad = Path.Combine(dir, "bad.service");
            File.WriteAllText(bad, File.ReadAllText(unit).Replace("KillMode=process", "KillMode=nonsense"));
            var (_, badOut, badErr) = await Run("systemd-analyze", "verify", bad);
            Assert.Contains("bad.service:", badOut + badErr);
            Assert.Contains("nonsense", badOut + badErr);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static async Task Make(params string[] args)
    {
        var (code, stdout, stderr) = await Run("make", ["--no-print-directory", "-C", Repo.Root, .. args]);
        Assert.True(code == 0, $"make {string.Join(' ', args)}: {stdout}{stderr}");
    }

    private static async Task<(int Code, string Stdout, string Stderr)> Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await p.WaitForExitAsync(cts.Token);
        return (p.ExitCode, await stdout, await stderr);
    }
}
