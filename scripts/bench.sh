#!/usr/bin/env bash
# The benchmark, side by side with GStreamer's RTSP server: prints a table, writes JSON.
#   scripts/bench.sh                       # the full run (≈ 25 min): N = 0,1,10,50,100,200 readers,
#                                          # 20 s each, 3 repeats, 20 cold starts, 100 rings
#   BENCH_SECONDS=10 BENCH_REPEATS=1 BENCH_RINGS=20 scripts/bench.sh   # a quicker run
#   BENCH_PROFILE=100 scripts/bench.sh     # only: perf profile of the bridge with 100 readers
#   BENCH_STATIC=1 scripts/bench.sh       # the add-on's linking (static minimal FFmpeg) instead
#                                          # of the system's shared FFmpeg
#   BENCH_IDLE_CALLS=50                    # calls before the idle CPU/RSS figure (the first
#                                          # BENCH_COLD of them give the cold-start latencies)
# Needs scripts/setup-debian.sh (ffmpeg, mosquitto, gir1.2-gst-rtsp-server-1.0, python3-gst-1.0).
# Output: target/bench/bench.json (+ the process logs' directory, named in it). Not part of CI.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"
bin=target/release/c300x-bridge
if [ -n "${BENCH_STATIC:-}" ]; then
  # The add-on's linking: the minimal static FFmpeg of addon/build-codecs.sh (cached after its
  # first build) instead of the system's shared FFmpeg and its dependencies.
  codecs=$(addon/build-codecs.sh "$(dpkg --print-architecture)" | tail -1)
  PKG_CONFIG_LIBDIR="$codecs/lib/pkgconfig" PKG_CONFIG_PATH="" CARGO_INCREMENTAL=0 \
    cargo build --release --quiet --bin c300x-bridge --features static-ffmpeg
  bin=$out/c300x-bridge-static
  cp target/release/c300x-bridge "$bin"
else
  CARGO_INCREMENTAL=0 cargo build --release --quiet --bin c300x-bridge
fi
# The reference's clip: the simulator's stream made again by FFmpeg — 400x288, 10 fps, Baseline,
# an IDR every 2 s, about its bitrate; AAC-LC mono 16 kHz like the bridge's transcoder. 10 minutes:
# each GStreamer pipeline starts it from the beginning.
clip=$out/clip.mp4
if [ ! -s "$clip" ]; then
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=400x288:rate=10" -f lavfi -i "sine=frequency=440:sample_rate=16000" \
    -t 600 -c:v libx264 -profile:v baseline -preset veryfast -x264-params keyint=20:min-keyint=20:scenecut=0 \
    -b:v 250k -c:a aac -ac 1 -ar 16000 -b:a 32k "$clip"
fi
exec /usr/bin/python3 benches/bench.py --bin "$bin" --clip "$clip" \
  --gst benches/gst_rtsp_server.py --out "$out/bench.json" \
  --readers "${BENCH_READERS:-0,1,10,50,100,200}" --seconds "${BENCH_SECONDS:-20}" \
  --repeats "${BENCH_REPEATS:-3}" --cold "${BENCH_COLD:-20}" \
  --idle-calls "${BENCH_IDLE_CALLS:-50}" --joins "${BENCH_JOINS:-10}" \
  --rings "${BENCH_RINGS:-100}" --hls "${BENCH_HLS:-3}" ${BENCH_PROFILE:+--profile "$BENCH_PROFILE"}
