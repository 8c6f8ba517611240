#!/usr/bin/env bash
# Builds the add-on's release binary for one arch, linked against the static codecs of
# addon/build-codecs.sh, and assembles the image's whole root filesystem around it: the binary plus
# the few glibc files it loads (found with readelf, copied from the target's own libraries).
#
#   addon/build-binary.sh ARCH OUT        ARCH: amd64 | arm64; OUT: the root filesystem to fill
#   addon/build-binary.sh clean ARCH      removes ARCH's build output (scripts/test.sh, C300X_PRUNE)
#
# Runs on any Debian 12 build host: native when ARCH is the host's, otherwise cross-compiling with
# Debian's gcc-<triple> and the Rust target (`addon/build-binary.sh deps ARCH` installs both). The
# Dockerfile's builder stage and addon/test-image.sh / test-arm64.sh all use it.
# Environment: C300X_CODECS (an already built codec prefix; else build-codecs.sh's cache),
# CARGO_TARGET_DIR (default ~/.cache/c300x-bridge/target: outside the checkout, so a fresh clone —
# CI — recompiles only the crate itself; cargo's own fingerprints keep it correct).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"

target_of() {
  case "$1" in
    amd64 | x86_64) echo "amd64 x86_64-linux-gnu x86_64-unknown-linux-gnu" ;;
    arm64 | aarch64) echo "arm64 aarch64-linux-gnu aarch64-unknown-linux-gnu" ;;
    *) echo "build-binary: unknown arch $1 (amd64 or arm64)" >&2; return 2 ;;
  esac
}

cache="${C300X_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/c300x-bridge}"
target_dir="${CARGO_TARGET_DIR:-$cache/target}"

if [ "${1:-}" = clean ]; then
  read -r _ _ rust_target < <(target_of "${2:?usage: build-binary.sh clean ARCH}")
  rm -rf "${target_dir:?}/$rust_target"
  exit 0
fi

if [ "${1:-}" = deps ]; then
  # Debian packages and the Rust target this needs (idempotent).
  read -r arch triple rust_target < <(target_of "${2:?usage: build-binary.sh deps ARCH}")
  pkgs=(gcc libc6-dev ca-certificates pkg-config clang libclang-dev nasm make xz-utils binutils dpkg-dev)
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    pkgs+=("gcc-${triple//_/-}" "libc6-dev-$arch-cross" "binutils-${triple//_/-}")
  fi
  missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$rust_target"; then
    rustup target add "$rust_target"
  fi
  exit 0
fi

read -r arch triple rust_target < <(target_of "${1:?usage: build-binary.sh ARCH OUT}")
out="${2:?usage: build-binary.sh ARCH OUT}"
native=$([ "$arch" = "$(dpkg --print-architecture)" ] && echo 1 || echo 0)

codecs="${C300X_CODECS:-}"
if [ -z "$codecs" ]; then
  codecs=$("$here/build-codecs.sh" "$arch" | tail -1)
fi
[ -f "$codecs/lib/libavcodec.a" ] || { echo "build-binary: no codecs in $codecs" >&2; exit 1; }

# The static codecs through pkg-config only (never the system's FFmpeg), bindgen for the target.
env_triple=${rust_target//-/_}
export PKG_CONFIG_LIBDIR="$codecs/lib/pkgconfig" PKG_CONFIG_PATH="" PKG_CONFIG_ALLOW_CROSS=1
if [ "$native" = 1 ]; then
  sysroot=/ libdir="/lib/$triple" strip=strip
else
  sysroot="/usr/$triple" libdir="/usr/$triple/lib" strip="$triple-strip"
  upper=$(echo "$env_triple" | tr '[:lower:]' '[:upper:]')
  export "CARGO_TARGET_${upper}_LINKER=$triple-gcc" "CC_$env_triple=$triple-gcc" "AR_$env_triple=$triple-ar"
  export "BINDGEN_EXTRA_CLANG_ARGS_$env_triple=--sysroot=$sysroot -I$sysroot/include"
fi
started=$(date +%s)
(cd "$root" && cargo build --release --locked --bin c300x-bridge --features static-ffmpeg \
  --target "$rust_target" --target-dir "$target_dir" >&2)
binary="$target_dir/$rust_target/release/c300x-bridge"
echo "build-binary[$arch]: cargo build took $(( $(date +%s) - started )) s" >&2

# The root filesystem: the binary, its ELF interpreter and the shared libraries it needs (glibc's),
# a name-service config (the Supervisor's `supervisor` and `core-mosquitto` resolve through
# /etc/hosts and DNS), a /tmp and the /data mount point.
rm -rf "$out"
mkdir -p "$out/usr/bin" "$out/lib/$triple" "$out/etc" "$out/tmp" "$out/data"
chmod 1777 "$out/tmp"
"$strip" -o "$out/usr/bin/c300x-bridge" "$binary"
interp=$(readelf -l "$binary" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
mkdir -p "$out$(dirname "$interp")"
cp -L "$libdir/$(basename "$interp")" "$out$interp"
queue=("$out/usr/bin/c300x-bridge")
while [ "${#queue[@]}" -gt 0 ]; do
  elf=${queue[0]}
  queue=("${queue[@]:1}")
  for lib in $(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [ -e "$out/lib/$triple/$lib" ] || [ "$lib" = "$(basename "$interp")" ] && continue
    [ -e "$libdir/$lib" ] || { echo "build-binary: $lib not found in $libdir" >&2; exit 1; }
    cp -L "$libdir/$lib" "$out/lib/$triple/$lib"
    queue+=("$out/lib/$triple/$lib")
  done
done
printf 'hosts: files dns\n' > "$out/etc/nsswitch.conf"
printf 'root:x:0:0:root:/data:/usr/bin/c300x-bridge\n' > "$out/etc/passwd"
printf 'root:x:0:\n' > "$out/etc/group"
echo "build-binary[$arch]: binary $(stat -c %s "$out/usr/bin/c300x-bridge") bytes (stripped)," \
  "root filesystem $(du -sb "$out" | cut -f1) bytes: $(cd "$out" && find . -type f | sort | tr '\n' ' ')" >&2
echo "$out"
