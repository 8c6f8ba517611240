#!/usr/bin/env bash
# Builds the add-on image with podman (no registry needed: the base is a local debootstrap of
# Debian bookworm, cached) and runs it like the Supervisor would — host network, /data/options.json
# pointing at a simulator on this host — then checks RTSP (ffprobe: h264 + aac) and /api/status.
# Usage: addon/test-image.sh            (root; installs podman, runc, debootstrap when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/c300x-bridge"
mkdir -p "$cache"
work=$(mktemp -d)
sim_pid=""
container=""
cleanup() {
  [ -n "$container" ] && podman rm -f "$container" >/dev/null 2>&1 || true
  [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

need=()
for tool in podman runc debootstrap curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  echo "test-image: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# This sandbox cannot raise rlimits and crun lacks cgroup v1 hybrid support (home-assistant.md §6).
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$work/containers.conf"

base=localhost/bookworm-minbase:local
if ! podman image exists "$base"; then
  if [ ! -f "$cache/bookworm-minbase.tar" ]; then
    echo "test-image: creating the Debian bookworm base with debootstrap (about a minute)"
    debootstrap --variant=minbase bookworm "$work/rootfs" >/dev/null
    tar -C "$work/rootfs" -cf "$cache/bookworm-minbase.tar" .
    rm -rf "$work/rootfs"
  fi
  podman import "$cache/bookworm-minbase.tar" "$base" >/dev/null
fi

echo "test-image: building the binary"
cargo build --release --locked --bin c300x-bridge
mkdir -p "$work/ctx/target/release" "$work/ctx/addon"
cp Dockerfile "$work/ctx/"
cp addon/run.sh "$work/ctx/addon/"
cp target/release/c300x-bridge "$work/ctx/target/release/"
strip "$work/ctx/target/release/c300x-bridge" || true

echo "test-image: building the image"
started=$(date +%s)
podman build -q --network host --target prebuilt \
  --build-arg BASE_IMAGE="$base" --build-arg BUILD_VERSION="$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)" \
  -t localhost/c300x-bridge:test "$work/ctx" >/dev/null
size=$(podman image inspect localhost/c300x-bridge:test --format '{{.Size}}')
echo "test-image: image built in $(( $(date +%s) - started )) s, size $(( size / 1024 / 1024 )) MiB"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sip=$(free_port); rtsp=$(free_port); http=$(free_port)
"$root/target/release/c300x-bridge" sim --sip-port "$sip" > "$work/sim.log" 2>&1 &
sim_pid=$!
mkdir -p "$work/data"
cat > "$work/data/options.json" <<JSON
{"intercom_host": "127.0.0.1", "intercom_sip_port": $sip, "sip_domain": "1234567.bs.iotleg.com",
 "sip_user": "c300x-bridge", "rtp_port_min": 46100, "rtp_port_max": 46139,
 "panels": [{"name": "doorbell", "devaddr": 20}], "locks": [{"name": "door", "where": 20}],
 "linger_seconds": 5, "start_timeout_seconds": 10, "max_call_seconds": 300, "audio": true,
 "audio_sample_rate": "16000", "rtsp_port": $rtsp, "http_port": $http, "sip_password": "",
 "mqtt_discovery_prefix": "homeassistant", "mqtt_base_topic": "c300x", "log_level": "info"}
JSON
container=$(podman run -d --network host -v "$work/data:/data" localhost/c300x-bridge:test)

# No credentials in the options: the add-on generates them into /data (private by default).
status=""
for _ in $(seq 1 60); do
  if [ -f "$work/data/credentials.json" ]; then
    user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"])' "$work/data/credentials.json")
    pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$work/data/credentials.json")
    status=$(curl -fsS -u "$user:$pass" "http://127.0.0.1:$http/api/status" 2>/dev/null) && break
  fi
  sleep 0.5
done
if [ -z "$status" ]; then
  echo "test-image: FAIL: /api/status did not answer"; podman logs "$container" | tail -30; exit 1
fi
echo "test-image: /api/status answers: $(echo "$status" | head -c 200)"
anonymous=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/api/status")
if [ "$anonymous" != 401 ]; then
  echo "test-image: FAIL: /api/status without the generated credentials gave $anonymous, not 401"; exit 1
fi
streams=$(timeout 40 ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name,width,height \
  -of csv=p=0 "rtsp://$user:$pass@127.0.0.1:$rtsp/doorbell" || true)
echo "test-image: ffprobe: $(echo "$streams" | tr '\n' ' ')"
if echo "$streams" | grep -q '^h264,400,288' && echo "$streams" | grep -q '^aac'; then
  echo "test-image: 3 passed, 0 failed"
else
  echo "test-image: FAIL: expected h264 400x288 and aac"; podman logs "$container" | tail -30; exit 1
fi
