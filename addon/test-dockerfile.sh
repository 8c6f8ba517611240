#!/usr/bin/env bash
# The whole Dockerfile, as the Supervisor and the publishing workflow build it (target `runtime`):
# the builder stage on this machine's arch, cross-compiling to ARCH when it differs. No registry can
# be pulled here, so the builder image (`rust:1.95-bookworm` upstream) is made locally: a debootstrap
# of Debian 12 plus this machine's Rust toolchain (cached in ~/.cache/c300x-bridge). The build itself
# downloads Debian's packages and sources and the crates, like a real one.
#   addon/test-dockerfile.sh [arm64|amd64]      (default arm64: the cross-compiling path)
# Slow (codecs and the crate compiled from nothing inside the build: ~25 min on 2 cores), so it is
# not part of scripts/test.sh; addon/test-image.sh and test-arm64.sh test the same build scripts.
set -euo pipefail
cd "$(dirname "$0")/.."
. addon/lib.sh
arch="${1:-arm64}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/c300x-bridge"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
podman_settings "$work"

builder=localhost/rust-builder:1.95-bookworm
if ! podman image exists "$builder"; then
  rustc_version=$(rustc --version | cut -d' ' -f2)
  tar="$cache/rust-builder-$rustc_version.tar"
  if [ ! -f "$tar" ]; then
    echo "test-dockerfile: making the builder image (debootstrap + Rust $rustc_version)"
    rootfs="$work/rootfs"
    debootstrap --variant=minbase bookworm "$rootfs" >/dev/null
    toolchain=$(rustc --print sysroot)
    mkdir -p "$rootfs/usr/local/rustup/toolchains" "$rootfs/usr/local/cargo/bin"
    cp -a "$toolchain" "$rootfs/usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu"
    printf 'version = "12"\ndefault_toolchain = "stable-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' \
      > "$rootfs/usr/local/rustup/settings.toml"
    for tool in rustup cargo rustc rustdoc; do cp -a "$HOME/.cargo/bin/$tool" "$rootfs/usr/local/cargo/bin/"; done
    tar -C "$rootfs" -cf "$tar" .
  fi
  podman import --change 'ENV RUSTUP_HOME=/usr/local/rustup' --change 'ENV CARGO_HOME=/usr/local/cargo' \
    --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tar" "$builder" >/dev/null 2>&1
fi

# This machine may reach the registries through a proxy with its own certificate authority: the
# builder trusts what this host trusts (cargo reads CARGO_HTTP_CAINFO).
mkdir -p "$work/ca"
cp /etc/ssl/certs/ca-certificates.crt "$work/ca/host-ca.crt"
printf 'FROM %s\nCOPY host-ca.crt /etc/ssl/host-ca.crt\nENV CARGO_HTTP_CAINFO=/etc/ssl/host-ca.crt\n' \
  "$builder" > "$work/ca/Dockerfile"
podman build -q --pull=never -t "$builder-local-ca" "$work/ca" >/dev/null
builder="$builder-local-ca"

platform=linux/$arch
build_arch=$([ "$arch" = arm64 ] && echo aarch64 || echo amd64)
started=$(date +%s)
# podman 4.3 (Debian 12) sets TARGETARCH but not BUILDPLATFORM (BuildKit and newer podman set both).
podman build --network host --pull=never --no-cache --platform "$platform" --target runtime \
  --build-arg BUILDPLATFORM="linux/$(dpkg --print-architecture)" --build-arg BUILDER_IMAGE="$builder" \
  --build-arg BUILD_ARCH="$build_arch" -t "localhost/c300x-bridge:dockerfile-$arch" . \
  > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; echo "test-dockerfile: 0 passed, 1 failed"; exit 1; }
image="localhost/c300x-bridge:dockerfile-$arch"
grep 'build-binary\|build-codecs.*built' "$work/build.log" || true
size=$(podman image inspect "$image" --format '{{.Size}}')
echo "test-dockerfile: $platform image built by the Dockerfile in $(( $(date +%s) - started )) s," \
  "size $size bytes, arch $(podman image inspect "$image" --format '{{.Architecture}}')," \
  "io.hass.arch $(podman image inspect "$image" --format '{{index .Labels "io.hass.arch"}}')"
[ "$(podman image inspect "$image" --format '{{.Architecture}} {{index .Labels "io.hass.arch"}}')" = "$arch $build_arch" ] \
  || { echo "test-dockerfile: 0 passed, 1 failed"; exit 1; }
echo "test-dockerfile: 1 passed, 0 failed"
