#!/usr/bin/env bash
# aarch64 proven on this x86-64 host:
#  1. addon/build-binary.sh cross-compiles the release binary for aarch64-unknown-linux-gnu (static
#     FFmpeg/x264/Speex from ~/.cache/c300x-bridge, Debian's gcc-aarch64-linux-gnu) and assembles
#     the arm64 image's root filesystem (the binary + the arm64 glibc files it loads).
#  2. That root filesystem runs under qemu-aarch64 as `demo` (simulator + bridge, both emulated):
#     /api/status answers and ffprobe sees H.264 400x288 + AAC on RTSP.
#  3. podman packs the same files as a linux/arm64 image (nothing runs during that build) and, when
#     binfmt_misc can send aarch64 programs to qemu (registered here if missing), runs the image
#     with `podman run --arch arm64 … demo` for the same checks. When that is impossible the test
#     says why and counts it as skipped.
# Usage: addon/test-arm64.sh   (root; installs the cross tools, qemu-user-static, podman, runc)
set -euo pipefail
cd "$(dirname "$0")/.."
. addon/lib.sh
work=$(mktemp -d)
pid=""
container=""
cleanup() {
  [ -n "$container" ] && podman rm -f "$container" >/dev/null 2>&1
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
count_failures test-arm64
passed=0 skipped=0
pass() { passed=$((passed + 1)); echo "test-arm64: ok: $*"; }
fail() {
  echo "test-arm64: FAIL: $*"
  [ -f "$work/demo.log" ] && tail -20 "$work/demo.log"
  [ -n "$container" ] && podman logs "$container" 2>&1 | tail -20
  echo "test-arm64: $passed passed, 1 failed, $skipped skipped"
  exit 1
}

need_tools test-arm64 podman runc curl ffprobe qemu-aarch64-static
addon/build-binary.sh deps arm64

started=$(date +%s)
rootfs="$work/ctx/rootfs"
addon/build-binary.sh arm64 "$rootfs" >/dev/null
bin="$rootfs/usr/bin/c300x-bridge"
readelf -h "$bin" | grep -q AArch64 \
  || fail "the binary is not an aarch64 executable"
echo "test-arm64: cross-built in $(( $(date +%s) - started )) s; aarch64 binary $(stat -c %s "$bin") bytes" \
  "(stripped), root filesystem $(du -sb "$rootfs" | cut -f1) bytes"
pass "aarch64 binary cross-compiled"


# Checks a running `demo`: /api/status on $1, RTSP on $2.
check_demo() {
  local http=$1 rtsp=$2 what=$3 status=""
  for _ in $(seq 1 120); do
    status=$(curl -fsS "http://127.0.0.1:$http/api/status" 2>/dev/null) && break
    sleep 0.5
  done
  [ -n "$status" ] || fail "$what: /api/status did not answer"
  echo "test-arm64: $what /api/status: $(echo "$status" | head -c 160)"
  expect_streams test-arm64 "$what" 60 "rtsp://127.0.0.1:$rtsp/doorbell"
  pass "$what: /api/status answers, RTSP H.264 400x288 + AAC"
}
demo_args() { echo "--set rtsp_port=$1 --set http_port=$2 --set rtp_port_min=$3 --set rtp_port_max=$(($3 + 39)) demo"; }

# 2. The binary under qemu-aarch64, its libraries from the image's own root filesystem.
http=$(free_port) rtsp=$(free_port)
# shellcheck disable=SC2046
# A clean environment: C300X_* variables are options to the bridge (scripts/test.sh sets C300X_SKIP_*).
env -i PATH="$PATH" qemu-aarch64-static -L "$rootfs" "$bin" $(demo_args "$rtsp" "$http" 46200) \
  > "$work/demo.log" 2>&1 &
pid=$!
check_demo "$http" "$rtsp" "qemu-aarch64 demo"
kill "$pid" && wait "$pid" 2>/dev/null || true
pid=""

# 3. The arm64 image.
podman_settings "$work"
cp Dockerfile "$work/ctx/"
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
podman build -q --no-cache --platform linux/arm64 --target prebuilt \
  --build-arg BUILD_ARCH=aarch64 --build-arg BUILD_VERSION="$version" \
  -t localhost/c300x-bridge:test-arm64 "$work/ctx" >/dev/null
image=localhost/c300x-bridge:test-arm64
[ "$(podman image inspect "$image" --format '{{.Architecture}}')" = arm64 ] || fail "the image is not arm64"
labels=$(podman image inspect "$image" --format '{{index .Labels "io.hass.type"}} {{index .Labels "io.hass.arch"}} {{index .Labels "io.hass.version"}}')
[ "$labels" = "app aarch64 $version" ] || fail "labels io.hass.type/arch/version are '$labels'"
size=$(podman image inspect "$image" --format '{{.Size}}')
echo "test-arm64: arm64 image size $size bytes ($(( size / 1000000 )) MB)"
pass "arm64 image built"

# binfmt_misc hands aarch64 ELF files to qemu; the F flag (Debian's qemu-user-static registration)
# keeps the interpreter usable inside containers.
why=""
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null \
    || why="binfmt_misc is not mounted and cannot be mounted here"
fi
if [ -z "$why" ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  if [ -f "$conf" ]; then
    # Ours, registered for this machine (as installing qemu-user-static with systemd would do).
    cat "$conf" > /proc/sys/fs/binfmt_misc/register 2>/dev/null \
      || why="cannot register qemu-aarch64 with binfmt_misc (no permission)"
  else
    why="no binfmt registration file $conf"
  fi
fi
if [ -z "$why" ] && ! grep -q '^flags:.*F' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  why="qemu-aarch64 is registered without the F flag, so containers cannot use it"
fi
if [ -n "$why" ]; then
  skipped=$((skipped + 1))
  echo "test-arm64: skipped: podman run --arch arm64: $why"
else
  http=$(free_port) rtsp=$(free_port)
  # shellcheck disable=SC2046
  container=$(podman run -d --arch arm64 --network host "$image" $(demo_args "$rtsp" "$http" 46240))
  check_demo "$http" "$rtsp" "podman arm64 image demo"
fi
echo "test-arm64: $passed passed, 0 failed, $skipped skipped"
