#!/usr/bin/env bash
# Installs what c300x-bridge needs to build, test and run on Debian 12 (idempotent, non-interactive).
# Build: FFmpeg 5.1 dev libraries + clang (bindgen). Tests: ffmpeg/ffprobe, mosquitto.
set -euo pipefail

packages=(
  pkg-config clang libclang-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev
  ffmpeg mosquitto mosquitto-clients
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
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: Rust is missing: install it with rustup (https://rustup.rs), then run this again" >&2
  exit 1
fi
echo "setup: ready ($(cargo --version))"
