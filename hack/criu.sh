#!/usr/bin/env bash
# Build and install CRIU 4.2.1 into /usr/local/sbin/criu (checkpoint/restore, docs/checkpoint.md).
# Debian bookworm's criu 3.17 fails on current kernels (vdso) and 4.1.1 cannot dump an AF_INET
# socket on kernels >= 6.16; 4.2.1 fixes both. Its upstream tarball comes from Debian unstable's
# source archive (the only network these machines reach); its sha256 is checked against the .dsc,
# whose own sha256 is pinned here.
# It is built with RUNDIR=/dev/shm/criruntime-criu: CRIU caches its kernel probes (60-200 ms per
# run here) in RUNDIR/criu.kdat only when RUNDIR is a tmpfs, and /run is not one on every machine
# (not on ours); the daemon makes that directory root's own at start (Criu.ProbeCacheDir,
# docs/checkpoint.md).
# Idempotent: does nothing when /usr/local/sbin/criu is this build (>= 4.2 with that RUNDIR), or
# when another criu >= 4.2 (a distribution's, with its own RUNDIR) is on PATH.
# Build dependencies are installed by hack/deps.sh (which calls this script last).
set -euo pipefail

version=4.2.1
dsc=criu_${version}-1.dsc
tarball=criu_${version}.orig.tar.xz
pool=https://deb.debian.org/debian/pool/main/c/criu
dsc_sha256=9286c86e5adfd70b97a68e117c2905d91bf9e31132296e7ebf57066189a2f0b0
prefix=${CRIU_PREFIX:-/usr/local}
rundir=/dev/shm/criruntime-criu # = Criu.ProbeCacheDir

# criu --version prints "Version: 4.2.1" (and "GitID: ..." for git builds).
have_version() {
  local bin=$1 v
  v=$("$bin" --version 2>/dev/null | sed -n 's/^Version: *//p' | head -n1) || return 1
  [[ -n $v ]] || return 1
  local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  (( major > 4 || (major == 4 && minor >= 2) ))
}
ours=$prefix/sbin/criu
if [[ -x $ours ]] && have_version "$ours" && grep -qaF "$rundir/criu.kdat" "$ours"; then exit 0; fi
other=$(command -v criu || true)
if [[ -n $other && $other != "$ours" && -x $other ]] && have_version "$other"; then exit 0; fi

if [[ $(id -u) -ne 0 ]]; then echo "criu.sh: need root to install criu $version" >&2; exit 1; fi

start=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
curl -fsSL --retry 3 -o "$dsc" "$pool/$dsc"
echo "$dsc_sha256  $dsc" | sha256sum -c --quiet -
want=$(awk -v f="$tarball" '/^Checksums-Sha256:/{s=1;next} /^[^ ]/{s=0} s && $3==f {print $1}' "$dsc")
[[ -n $want ]] || { echo "criu.sh: no sha256 for $tarball in $dsc" >&2; exit 1; }
curl -fsSL --retry 3 -o "$tarball" "$pool/$tarball"
echo "$want  $tarball" | sha256sum -c --quiet -
tar -xJf "$tarball"
cd "criu-$version"
log=$work/build.log
if ! make -j"$(nproc)" criu RUNDIR="$rundir" >"$log" 2>&1; then tail -n 40 "$log" >&2; exit 1; fi
install -D -m 0755 criu/criu "$prefix/sbin/criu"
echo "criu.sh: installed $("$prefix/sbin/criu" --version | head -n1) to $prefix/sbin/criu in $(( $(date +%s) - start ))s"
