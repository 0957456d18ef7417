#!/usr/bin/env bash
# Builds the static probemesh binary and the FROM-scratch container image.
#
#   deploy/container/build.sh [--no-image] [--tag NAME:TAG]... [--label KEY=VALUE]...
#
# 1. `cargo build --release` for x86_64-unknown-linux-gnu with glibc linked statically
#    (`-C target-feature=+crt-static`; `--target` keeps build scripts and proc macros
#    dynamic), then checks that the result has no interpreter and no NEEDED library;
# 2. splits the debug info off: target/container/probemesh.debug keeps it, the binary in
#    the image is stripped of it and points to it with a .gnu_debuglink;
# 3. assembles the build context in target/container/context (the binary, the Mozilla
#    roots, /etc/passwd, /etc/group, /etc/nsswitch.conf, an empty /data);
# 4. unless --no-image: `docker build -f deploy/container/Containerfile` with the OCI
#    labels version, revision and source, tagged probemesh:<version> (or --tag);
# and prints the sizes. See docs/deploy.md.
#
# Environment: CA_BUNDLE (a PEM file of roots to ship instead of the Mozilla set of
# Debian's ca-certificates package), CARGO_TARGET_DIR, CARGO (default cargo).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

build_image=yes
tags=()
labels=()
while [ $# -gt 0 ]; do
  case $1 in
    --no-image) build_image=no ;;
    --tag) tags+=("$2"); shift ;;
    --label) labels+=("$2"); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

for tool in objcopy readelf; do
  command -v "$tool" >/dev/null || { echo "build.sh: needs $tool (Debian: binutils)" >&2; exit 1; }
done

triple=x86_64-unknown-linux-gnu
target_dir=${CARGO_TARGET_DIR:-$root/target}
out=$target_dir/container
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
source_url=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision=$revision-dirty
fi

started=$(date +%s)
# One build at a time per target directory (parallel tests share the context dir).
mkdir -p "$out"
if command -v flock >/dev/null; then
  exec 9>"$out/.build.lock"
  flock 9
fi
echo "== static build: cargo build --release --target $triple (crt-static)"
# CARGO_ENCODED_RUSTFLAGS (set when run from cargo) would override RUSTFLAGS.
unset CARGO_ENCODED_RUSTFLAGS
RUSTFLAGS="-C target-feature=+crt-static" "${CARGO:-cargo}" build --release --locked \
  --target "$triple" -p probemesh --bin probemesh
built=$target_dir/$triple/release/probemesh

# Static means: no program interpreter and no shared library needed.
if readelf -l "$built" | grep -q 'Requesting program interpreter' \
  || readelf -d "$built" | grep -q '(NEEDED)'; then
  echo "build.sh: $built is not static:" >&2
  readelf -d "$built" | grep NEEDED >&2 || true
  exit 1
fi

rm -rf "$out/context"
mkdir -p "$out/context/rootfs/usr/local/bin" "$out/context/rootfs/etc/ssl/certs" "$out/context/data"
objcopy --only-keep-debug "$built" "$out/probemesh.debug"
objcopy --strip-debug --strip-unneeded --add-gnu-debuglink="$out/probemesh.debug" \
  "$built" "$out/context/rootfs/usr/local/bin/probemesh"
chmod 0755 "$out/context/rootfs/usr/local/bin/probemesh"
# The roots: CA_BUNDLE when given, else the Mozilla set of Debian's ca-certificates
# package, read from the package's own files. Not the build host's
# /etc/ssl/certs/ca-certificates.crt, which also holds whatever local CAs that host
# trusts (/usr/local/share/ca-certificates).
bundle=$out/context/rootfs/etc/ssl/certs/ca-certificates.crt
ca_version=$(dpkg-query -W -f '${Version}' ca-certificates 2>/dev/null || echo unknown)
if [ -n "${CA_BUNDLE:-}" ]; then
  [ -s "$CA_BUNDLE" ] || { echo "build.sh: CA_BUNDLE=$CA_BUNDLE is empty or missing" >&2; exit 1; }
  install -m 0644 "$CA_BUNDLE" "$bundle"
  ca_source="CA_BUNDLE=$CA_BUNDLE"
  ca_version="custom"
else
  mozilla=/usr/share/ca-certificates/mozilla
  mapfile -t roots < <( { dpkg-query -L ca-certificates 2>/dev/null || ls "$mozilla"/*.crt 2>/dev/null; } \
    | grep "^$mozilla/.*\.crt\$" | LC_ALL=C sort)
  [ ${#roots[@]} -gt 0 ] || { echo "build.sh: no roots in $mozilla (Debian: ca-certificates, or set CA_BUNDLE)" >&2; exit 1; }
  for f in "${roots[@]}"; do cat "$f"; echo; done > "$bundle"
  chmod 0644 "$bundle"
  ca_source="Debian ca-certificates $ca_version, Mozilla set, ${#roots[@]} roots"
fi
install -m 0644 deploy/container/rootfs/etc/passwd deploy/container/rootfs/etc/group \
  deploy/container/rootfs/etc/nsswitch.conf "$out/context/rootfs/etc/"
chmod 0750 "$out/context/data"
cp deploy/container/Containerfile "$out/context/Containerfile"

size() { stat -c %s "$1"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
bin_size=$(size "$out/context/rootfs/usr/local/bin/probemesh")
echo "binary:      $out/context/rootfs/usr/local/bin/probemesh $(mib "$bin_size") ($bin_size bytes; static, debug info split off)"
echo "debug info:  $out/probemesh.debug $(mib "$(size "$out/probemesh.debug")")"
echo "unstripped:  $built $(mib "$(size "$built")")"
echo "CA bundle:   $ca_source, $(mib "$(size "$bundle")")"

if [ "$build_image" = no ]; then
  exit 0
fi
command -v docker >/dev/null || { echo "build.sh: needs docker for the image (or pass --no-image)" >&2; exit 1; }
[ ${#tags[@]} -gt 0 ] || tags=("probemesh:$version")
args=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --build-arg "SOURCE=$source_url" --build-arg "CA_CERTIFICATES=$ca_version")
for t in "${tags[@]}"; do args+=(--tag "$t"); done
for l in "${labels[@]}"; do args+=(--label "$l"); done
echo "== docker build -f deploy/container/Containerfile ${tags[*]}"
docker build --quiet "${args[@]}" -f "$out/context/Containerfile" "$out/context"
image_size=$(docker image inspect --format '{{.Size}}' "${tags[0]}")
echo "image:       ${tags[0]} $(mib "$image_size") ($image_size bytes)"
echo "labels:      version=$version revision=$revision source=$source_url"
echo "took:        $(( $(date +%s) - started )) s"
