#!/usr/bin/env bash
# Build the test images as OCI image layouts, without docker:
#   OUT_DIR/busybox     one gzip layer: static busybox + applet symlinks + passwd/group
#   OUT_DIR/multilayer  busybox layer + 3 gzip layers exercising hard/sym links and whiteouts
#   OUT_DIR/zstd        the busybox layer compressed with zstd
#   OUT_DIR/procps      busybox layer + Debian's procps `free` (it reads /proc/meminfo; busybox's
#                       free asks sysinfo(2)) with the shared libraries ldd lists for it
#   OUT_DIR/umoci       written by umoci, not by this script: the same busybox rootfs, a directory
#                       owned by uid 1000, a whiteout, and a config set with `umoci config`
#                       (umoci 0.4.7 ends its layer tars right after the last entry's data: no
#                       padding, no end-of-archive blocks)
# Each layout gets tag "latest" and OUT_DIR/NAME/digest holds its manifest digest.
# Output is reproducible for a given busybox-static package (fixed mtimes, owners, order).
# Needs root (files owned by uid 1000 are staged with chown), GNU tar, gzip, zstd, jq, umoci.
# Usage: hack/images/build-images.sh OUT_DIR
set -euo pipefail
[[ $# -eq 1 ]] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
OUT=$1
export LC_ALL=C TZ=UTC
umask 022
EPOCH=${SOURCE_DATE_EPOCH:-1704067200}   # 2024-01-01: fixed so digests don't change per build
CREATED=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# The dynamic "busybox" package also provides /bin/busybox; we need the static one in a rootfs.
[[ $(dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null) == installed ]] ||
  { echo "busybox-static is not installed (run hack/deps.sh)" >&2; exit 1; }

mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# mktar STAGE_DIR OUT_TAR: deterministic uncompressed layer tar of STAGE_DIR's contents.
# PAX format (what OCI expects) without atime/ctime, and with no PaxHeaders names that embed pids.
mktar() {
  local entries
  mapfile -t entries < <(cd "$1" && ls -A)
  tar -C "$1" --format=posix --pax-option='exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime' \
    --sort=name --mtime="@$EPOCH" --numeric-owner -cf "$2" "${entries[@]}"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# addblob LAYOUT FILE: move FILE into LAYOUT's blob store, echo its hex digest.
addblob() {
  local d; d=$(sha "$2")
  mkdir -p "$1/blobs/sha256"
  cp "$2" "$1/blobs/sha256/$d"
  echo "$d"
}

# mkimage NAME LAYER_MEDIATYPE "TAR:COMPRESSED_BLOB"...: write OUT/NAME as an OCI layout.
mkimage() {
  local name=$1 mt=$2; shift 2
  local dir="$OUT/$name" layers='[]' diffids='[]' history='[]' pair tar blob d
  rm -rf "$dir"; mkdir -p "$dir/blobs/sha256"
  for pair in "$@"; do
    tar=${pair%%:*}; blob=${pair#*:}
    d=$(addblob "$dir" "$blob")
    layers=$(jq -c --arg mt "$mt" --arg d "sha256:$d" --argjson s "$(stat -c %s "$blob")" \
      '. + [{mediaType:$mt, digest:$d, size:$s}]' <<<"$layers")
    diffids=$(jq -c --arg d "sha256:$(sha "$tar")" '. + [$d]' <<<"$diffids")
    history=$(jq -c --arg c "$CREATED" --arg b "layer $(basename "$tar" .tar)" \
      '. + [{created:$c, created_by:$b}]' <<<"$history")
  done
  jq -cj -n --arg c "$CREATED" --argjson ids "$diffids" --argjson h "$history" '{
      created:$c, architecture:"amd64", os:"linux",
      config:{Env:["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], Cmd:["sh"]},
      rootfs:{type:"layers", diff_ids:$ids}, history:$h}' >"$WORK/config.json"
  d=$(addblob "$dir" "$WORK/config.json")
  jq -cj -n --arg d "sha256:$d" --argjson s "$(stat -c %s "$WORK/config.json")" --argjson l "$layers" '{
      schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$d, size:$s},
      layers:$l}' >"$WORK/manifest.json"
  d=$(addblob "$dir" "$WORK/manifest.json")
  jq -cj -n --arg d "sha256:$d" --argjson s "$(stat -c %s "$WORK/manifest.json")" '{
      schemaVersion:2, mediaType:"application/vnd.oci.image.index.v1+json",
      manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$d, size:$s,
        platform:{architecture:"amd64", os:"linux"},
        annotations:{"org.opencontainers.image.ref.name":"latest"}}]}' >"$dir/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  echo "sha256:$d" >"$dir/digest"
}

# --- layer 1: busybox rootfs ---------------------------------------------------------------
s=$WORK/l1; mkdir -p "$s"/{bin,etc,root,tmp,dev,proc,sys,var,home/app}
cp /bin/busybox "$s/bin/busybox"; chmod 755 "$s/bin/busybox"
for a in $(/bin/busybox --list); do
  [[ $a == busybox ]] || ln -s busybox "$s/bin/$a"
done
cat >"$s/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$s/etc/group" <<'G'
root:x:0:
app:x:1000:
nogroup:x:65534:
G
chmod 644 "$s/etc/passwd" "$s/etc/group"
chown -R 0:0 "$s"; chown 1000:1000 "$s/home/app"
chmod 1777 "$s/tmp"; chmod 700 "$s/root"; chmod 555 "$s/proc" "$s/sys"
mktar "$s" "$WORK/busybox.tar"
gzip -9n <"$WORK/busybox.tar" >"$WORK/busybox.tar.gz"
zstd -q -19 --no-progress -c "$WORK/busybox.tar" >"$WORK/busybox.tar.zst"

# --- layer 2: files, hard link, symlink, non-root owned file --------------------------------
s=$WORK/l2; mkdir -p "$s/data/dir" "$s/data/keep"
echo a >"$s/data/a.txt"; echo b >"$s/data/b.txt"
echo x >"$s/data/dir/x.txt"; echo k >"$s/data/keep/k.txt"
ln "$s/data/a.txt" "$s/data/hard"          # tar stores the later name as a link to data/a.txt
ln -s a.txt "$s/data/link"
echo secret >"$s/data/owned.txt"
chown -R 0:0 "$s"; chown 1000:1000 "$s/data/owned.txt"; chmod 0640 "$s/data/owned.txt"
mktar "$s" "$WORK/data1.tar"

# --- layer 3: whiteout b.txt, opaque data/dir with a new y.txt ------------------------------
s=$WORK/l3; mkdir -p "$s/data/dir"
: >"$s/data/.wh.b.txt"; : >"$s/data/dir/.wh..wh..opq"; echo y >"$s/data/dir/y.txt"
chown -R 0:0 "$s"
mktar "$s" "$WORK/data2.tar"

# --- layer 4: plain addition after the whiteouts --------------------------------------------
s=$WORK/l4; mkdir -p "$s/data"; echo c >"$s/data/c.txt"
chown -R 0:0 "$s"
mktar "$s" "$WORK/data3.tar"
for t in data1 data2 data3; do gzip -9n <"$WORK/$t.tar" >"$WORK/$t.tar.gz"; done

# --- procps: the host's /usr/bin/free and what its dynamic loader needs ---------------------
[[ -x /usr/bin/free ]] && dpkg -S /usr/bin/free 2>/dev/null | grep -q '^procps:' ||
  { echo "procps is not installed (run hack/deps.sh)" >&2; exit 1; }
s=$WORK/procps; mkdir -p "$s/usr/bin"
cp /usr/bin/free "$s/usr/bin/free"
# Each library at the path ldd resolves it to (merged /usr: /lib is /usr/lib on the host, a
# directory of its own in the image), the loader at its PT_INTERP path.
for lib in $(ldd /usr/bin/free | grep -o '/[^ ]*'); do
  mkdir -p "$s$(dirname "$lib")"; cp -L "$lib" "$s$lib"
done
chown -R 0:0 "$s"
mktar "$s" "$WORK/procps.tar"
gzip -9n <"$WORK/procps.tar" >"$WORK/procps.tar.gz"

GZ=application/vnd.oci.image.layer.v1.tar+gzip
mkimage busybox "$GZ" "$WORK/busybox.tar:$WORK/busybox.tar.gz"
mkimage multilayer "$GZ" "$WORK/busybox.tar:$WORK/busybox.tar.gz" \
  "$WORK/data1.tar:$WORK/data1.tar.gz" "$WORK/data2.tar:$WORK/data2.tar.gz" "$WORK/data3.tar:$WORK/data3.tar.gz"
mkimage zstd application/vnd.oci.image.layer.v1.tar+zstd "$WORK/busybox.tar:$WORK/busybox.tar.zst"
mkimage procps "$GZ" "$WORK/busybox.tar:$WORK/busybox.tar.gz" "$WORK/procps.tar:$WORK/procps.tar.gz"

# --- umoci: a second, independent image writer ----------------------------------------------
# Manifest, config and layer blobs all come from umoci; only file mtimes and "created" are pinned.
command -v umoci >/dev/null || { echo "umoci is not installed (run hack/deps.sh)" >&2; exit 1; }
s=$WORK/u; mkdir -p "$s/srv/umoci"
echo "inserted by umoci" >"$s/srv/umoci/inserted.txt"
chown -R 0:0 "$s"; chown -R 1000:1000 "$s/srv/umoci"; chmod 0640 "$s/srv/umoci/inserted.txt"
find "$WORK/l1" "$s" -exec touch -h -d "@$EPOCH" {} +
U=$OUT/umoci; rm -rf "$U"
umoci init --layout "$U"
umoci new --image "$U:latest"
umoci insert --image "$U:latest" --history.created "$CREATED" --history.created_by "busybox-static rootfs" "$WORK/l1" /
umoci insert --image "$U:latest" --history.created "$CREATED" --history.created_by "srv/umoci" "$s/srv" /srv
umoci insert --image "$U:latest" --history.created "$CREATED" --history.created_by "no vi" --whiteout /bin/vi
umoci config --image "$U:latest" --created "$CREATED" --author "criruntime tests" \
  --history.created "$CREATED" --history.created_by "umoci config" \
  --config.entrypoint /bin/sleep --config.cmd 3600 \
  --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin --config.env UMOCI_GREETING=hello-from-umoci \
  --config.workingdir /srv/umoci --config.user app \
  --config.label org.opencontainers.image.title=umoci-busybox --config.label built-by=umoci \
  --config.exposedports 8080/tcp --config.stopsignal SIGTERM \
  --manifest.annotation org.example.tool=umoci
umoci gc --layout "$U"
jq -r '.manifests[0].digest' "$U/index.json" >"$U/digest"
