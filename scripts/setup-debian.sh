#!/usr/bin/env bash
# Installs what c300x-bridge needs to build, test and run on Debian 12 (idempotent, non-interactive).
# Build: FFmpeg 5.1 dev libraries + clang (bindgen). Tests: ffmpeg/ffprobe, mosquitto, Python venv
# and debootstrap (real Home Assistant: 2024.3 in a venv, 2026.2 in a Debian 13 chroot), Chromium
# + Node (hls.js page), GStreamer (rtspsrc; python3-gst for the ONVIF backchannel client
# tests/gst/backchannel.py; gst-rtsp-server from Python: the benchmark's reference), podman (add-on image);
# the add-on image's static codecs and the aarch64 cross build: nasm, gcc-aarch64-linux-gnu,
# qemu-user-static and the Rust target aarch64-unknown-linux-gnu (addon/test-image.sh, test-arm64.sh).
set -euo pipefail

packages=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  ffmpeg mosquitto mosquitto-clients python3-venv debootstrap
  chromium chromium-driver
  podman runc curl
  nasm make xz-utils dpkg-dev binutils gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
  gstreamer1.0-tools gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav
  gir1.2-gst-rtsp-server-1.0 python3-gst-1.0
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: run as root or install sudo" >&2; exit 1; }
  sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js (the browser test's driver): Debian's packages only when no node/npm is installed yet
# (a machine may carry its own Node.js, which Debian's npm conflicts with).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: Rust is missing: install it with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
echo "setup: ready ($(cargo --version))"
