#!/usr/bin/env bash
# Builds the codec libraries the bridge links — a minimal FFmpeg plus x264 and Speex — as static,
# position-independent archives for one target arch, from Debian's source packages.
#
#   addon/build-codecs.sh ARCH [PREFIX]     ARCH: amd64 | arm64 (also x86_64 / aarch64)
#
# Prints the prefix (lib/*.a, include/, lib/pkgconfig/) on its last line. Without PREFIX the result
# is cached in ~/.cache/c300x-bridge/codecs-ARCH-KEY, KEY being a hash of this script (the
# configure flags) and the source package versions: a warm run downloads and compiles nothing.
# Cross-compiles with Debian's aarch64-linux-gnu-gcc when ARCH is not the build host's.
#
# Only what the binary uses is enabled (the simulator's encoders included, so `demo` works):
#   decoders  h264, speex (native)            bridge: H.264 for snapshots/MJPEG, Speex → AAC
#   encoders  aac, mjpeg (native),            bridge: AAC for RTSP/HLS, JPEG for snapshots/MJPEG
#             libspeex (talk-back, simulator), libx264 (the simulator's camera)
#   swscale, swresample; avformat/avutil as the bindings require. No programs, devices, filters,
#   network, hardware acceleration or autodetected system libraries.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
arch="${1:?usage: build-codecs.sh amd64|arm64 [PREFIX]}"
case "$arch" in
  amd64 | x86_64) arch=amd64 triple=x86_64-linux-gnu ffarch=x86_64 ;;
  arm64 | aarch64) arch=arm64 triple=aarch64-linux-gnu ffarch=aarch64 ;;
  *) echo "build-codecs: unknown arch $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
build_arch=$(dpkg --print-architecture)
cache="${C300X_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/c300x-bridge}"
jobs="${C300X_JOBS:-$(nproc)}"
log() { echo "build-codecs[$arch]: $*" >&2; }

# --- sources: Debian's deb-src of the suites this machine already uses, with a private apt state
# (the system's sources and lists stay untouched).
apt_dir="$cache/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/sources.list.d" "$cache/sources"
: > "$apt_dir/sources.list"
rm -f "$apt_dir/sources.list.d/"*
for f in /etc/apt/sources.list.d/*.sources; do
  [ -f "$f" ] || continue
  # deb822: keep the Debian stanzas (signed by Debian's archive keyring), turn them into deb-src.
  awk 'BEGIN { RS = ""; ORS = "\n\n" } /debian-archive-keyring/ { sub(/Types:[^\n]*/, "Types: deb-src"); print }' \
    "$f" > "$apt_dir/sources.list.d/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  grep -E '^deb [^#]*/debian(-security)?/? ' "$f" | sed 's/^deb /deb-src /' >> "$apt_dir/sources.list" || true
done
apt_opts=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o "Dir::Etc::SourceParts=$apt_dir/sources.list.d"
  -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache::pkgcache=" -o "Dir::Cache::srcpkgcache="
  -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
if ! apt-get "${apt_opts[@]}" -qq update >&2; then
  log "apt-get update of the deb-src lists failed (offline?); trying the lists cached before"
fi
version() { apt-cache "${apt_opts[@]}" showsrc "$1" 2>/dev/null | awk '/^Version:/ { print $2 }' | sort -V | tail -1; }
declare -A ver
for p in ffmpeg x264 speex; do
  ver[$p]=$(version "$p")
  [ -n "${ver[$p]}" ] || { log "no Debian source package $p (is a deb-src reachable?)"; exit 1; }
done
key=$( { cat "$0"; echo "ffmpeg=${ver[ffmpeg]} x264=${ver[x264]} speex=${ver[speex]} arch=$arch"; } \
  | sha256sum | cut -c1-12)
prefix="${2:-$cache/codecs-$arch-$key}"
if [ -f "$prefix/.complete" ]; then
  log "cached: $prefix"
  echo "$prefix"
  exit 0
fi

log "building ffmpeg ${ver[ffmpeg]}, x264 ${ver[x264]}, speex ${ver[speex]} into $prefix"
started=$(date +%s)
rm -rf "$prefix"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() { # package → the unpacked upstream tree (Debian's orig tarball; Debian's patches are not needed)
  local p=$1 dir="$cache/sources/$1-${ver[$1]}"
  if ! ls "$dir"/*.orig.tar.* >/dev/null 2>&1; then
    mkdir -p "$dir"
    (cd "$dir" && apt-get "${apt_opts[@]}" -qq source --download-only "$p=${ver[$p]}" >&2)
  fi
  mkdir -p "$work/$p"
  tar -C "$work/$p" --strip-components=1 -xf "$(ls "$dir"/*.orig.tar.* | head -1)"
  echo "$work/$p"
}

if [ "$arch" = "$build_arch" ]; then
  cc=gcc cross=() host_opt=()
else
  cc="$triple-gcc"
  command -v "$cc" >/dev/null || { log "$cc is missing (apt-get install gcc-$triple)"; exit 1; }
  cross=(--enable-cross-compile "--cross-prefix=$triple-" "--arch=$ffarch" --target-os=linux)
  host_opt=("--host=$triple")
fi
export PKG_CONFIG_LIBDIR="$prefix/lib/pkgconfig" PKG_CONFIG_PATH=""
cflags="-O2 -fPIC"

# Speex: the encoder (talk-back, the simulator's panel audio); the decoder is FFmpeg's own.
src=$(fetch speex)
(cd "$src" && [ -x configure ] || autoreconf -fi >&2)
(cd "$src" && CC="$cc" CFLAGS="$cflags" ./configure --prefix="$prefix" "${host_opt[@]}" \
  --enable-static --disable-shared --with-pic --disable-binaries --disable-oggtest >&2 \
  && make -j"$jobs" >&2 && make install >&2)

# x264: 8-bit 4:2:0 only, library only.
src=$(fetch x264)
x264_cross=()
[ "$arch" = "$build_arch" ] || x264_cross=("--host=$triple" "--cross-prefix=$triple-")
(cd "$src" && CC="$cc" ./configure --prefix="$prefix" "${x264_cross[@]}" --enable-static --enable-pic \
  --disable-cli --disable-opencl --disable-avs --disable-swscale --disable-lavf --disable-ffms \
  --disable-gpac --disable-lsmash --bit-depth=8 --chroma-format=420 >&2 \
  && make -j"$jobs" >&2 && make install >&2)

# FFmpeg: nothing but the pieces listed above.
src=$(fetch ffmpeg)
(cd "$src" && ./configure --prefix="$prefix" "${cross[@]}" --cc="$cc" --pkg-config=pkg-config \
  --pkg-config-flags=--static --extra-cflags="-I$prefix/include" --extra-ldflags="-L$prefix/lib" \
  --enable-static --disable-shared --enable-pic --enable-gpl --disable-debug --disable-doc \
  --disable-programs --disable-autodetect --disable-everything --disable-network \
  --disable-avdevice --disable-avfilter --disable-postproc \
  --enable-libx264 --enable-libspeex \
  --enable-decoder=h264,speex --enable-encoder=aac,mjpeg,libx264,libspeex >&2 \
  && make -j"$jobs" >&2 && make install >&2)

cat > "$prefix/VERSIONS" <<TXT
ffmpeg ${ver[ffmpeg]}
x264 ${ver[x264]}
speex ${ver[speex]}
arch $arch
key $key
TXT
touch "$prefix/.complete"
log "built in $(( $(date +%s) - started )) s"
echo "$prefix"
