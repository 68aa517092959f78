using System.Reflection;

namespace CriRuntime.Shim.Container;

/// <summary>Under the JIT (the build the tests run), framework assemblies load lazily from the
/// host's .NET directory, which is out of sight once the process has pivoted into, or joined the
/// mount namespace of, a container. Load them all while the host is still visible. NativeAOT
/// (the shipped shim) has everything compiled in already. (RuntimeFeature.IsDynamicCodeSupported
/// cannot tell the two apart: PublishAot turns it off for JIT builds too.)</summary>
public static class AssemblyPreload
{
    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("Trimming", "IL2026",
        Justification = "Only loads assemblies the JIT would load anyway; under NativeAOT they are all compiled in")]
    public static void All()
    {
        AssemblyName[] names;
        try { names = typeof(AssemblyPreload).Assembly.GetReferencedAssemblies(); }
        catch (PlatformNotSupportedException) { return; }
        foreach (var name in names)
        {
            try { Assembly.Load(name); }
            catch (Exception e) when (e is FileNotFoundException or PlatformNotSupportedException) { } // facades never touched
        }
    }
}
