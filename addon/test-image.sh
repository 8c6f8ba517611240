#!/usr/bin/env bash
# The amd64 add-on image, built and run here with podman like the Supervisor runs it:
#  1. addon/build-binary.sh makes the static-codec binary and the image's root filesystem (the
#     codecs come from ~/.cache/c300x-bridge, built once per version/flags), podman packs it
#     (Dockerfile target `prebuilt`); the image's size is reported and must stay ≤ C300X_IMAGE_MAX_MB
#     (80 MB, decimal).
#  2. The simulator runs from the same image (its x264/Speex encoders are in the binary).
#  3. The add-on runs twice, host network and /data/options.json as the Supervisor writes it, with
#     http_port and rtsp_port changed between the runs (neither is the default). Each time: the
#     watchdog's check (a TCP connect to the fixed ingress port), an ingress request (X-Ingress-Path
#     on the ingress port: the page links under the ingress path), /api/status on http_port with the
#     credentials the add-on generated into /data (401 without them), and
#     ffprobe on rtsp_port: H.264 400x288 + AAC.
# Usage: addon/test-image.sh   (root; installs podman, runc and the build tools when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
. addon/lib.sh
max_mb="${C300X_IMAGE_MAX_MB:-80}"
work=$(mktemp -d)
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman rm -f "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
count_failures test-image
passed=0
pass() { passed=$((passed + 1)); echo "test-image: ok: $*"; }
fail() {
  echo "test-image: FAIL: $*"
  for c in "${containers[@]}"; do echo "--- $c"; podman logs "$c" 2>&1 | tail -20; done
  echo "test-image: $passed passed, 1 failed"
  exit 1
}

need_tools test-image podman runc curl ffprobe
addon/build-binary.sh deps amd64
podman_settings "$work"

started=$(date +%s)
mkdir -p "$work/ctx"
addon/build-binary.sh amd64 "$work/ctx/rootfs" > /dev/null
built=$(date +%s)
cp Dockerfile "$work/ctx/"
version=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
podman build -q --no-cache --platform linux/amd64 --target prebuilt \
  --build-arg BUILD_ARCH=amd64 --build-arg BUILD_VERSION="$version" \
  -t localhost/c300x-bridge:test "$work/ctx" >/dev/null
image=localhost/c300x-bridge:test
size=$(podman image inspect "$image" --format '{{.Size}}')
binary=$(stat -c %s "$work/ctx/rootfs/usr/bin/c300x-bridge")
echo "test-image: binary and codecs built in $((built - started)) s, image packed in $(( $(date +%s) - built )) s"
echo "test-image: amd64 image size $size bytes ($(( size / 1000000 )) MB), binary $binary bytes"
labels=$(podman image inspect "$image" --format '{{index .Labels "io.hass.type"}} {{index .Labels "io.hass.arch"}} {{index .Labels "io.hass.version"}}')
[ "$labels" = "app amd64 $version" ] || fail "labels io.hass.type/arch/version are '$labels'"
[ "$size" -le $((max_mb * 1000000)) ] || fail "the image is $size bytes, above the goal of $max_mb MB"
pass "image size ≤ $max_mb MB, labels"

port_free() { /usr/bin/python3 -c "import socket,sys; s=socket.socket(); s.bind(('0.0.0.0',$1))" 2>/dev/null; }
# The ingress port is fixed in the image (8099). If something else on this machine holds it, the
# test moves it with the same variable the image sets, and says so.
ingress=$(podman image inspect "$image" --format '{{range .Config.Env}}{{println .}}{{end}}' \
  | sed -n 's/^C300X_INGRESS_PORT=//p')
[ -n "$ingress" ] || fail "the image does not set C300X_INGRESS_PORT"
ingress_env=()
if ! port_free "$ingress"; then
  echo "test-image: port $ingress is taken on this machine; this test moves ingress to another port"
  ingress=$(free_port)
  ingress_env=(-e "C300X_INGRESS_PORT=$ingress")
fi

sip=$(free_port)
containers+=("$(podman run -d --network host "$image" sim --sip-port "$sip")")

# One add-on run with the given http_port/rtsp_port; the checks above.
run_addon() {
  local http=$1 rtsp=$2 name=$3
  mkdir -p "$work/data-$name"
  cat > "$work/data-$name/options.json" <<JSON
{"intercom_host": "127.0.0.1", "intercom_sip_port": $sip, "sip_transport": "tcp",
 "sip_domain": "1234567.bs.iotleg.com", "sip_user": "c300x-bridge", "rtp_port_min": 46100,
 "rtp_port_max": 46139, "panels": [{"name": "doorbell", "devaddr": 20}],
 "locks": [{"name": "door", "where": 20, "pulse_ms": 2000}], "linger_seconds": 5,
 "start_timeout_seconds": 10, "max_call_seconds": 300, "audio": true, "audio_sample_rate": 16000,
 "mjpeg_fps": 0, "mjpeg_quality": 80, "rtsp_port": $rtsp, "http_port": $http,
 "mqtt_discovery_prefix": "homeassistant", "mqtt_base_topic": "c300x", "log_level": "info"}
JSON
  local c
  c=$(podman run -d --network host --name "c300x-test-$name-$$" "${ingress_env[@]}" \
    -v "$work/data-$name:/data" "$image")
  containers+=("$c")
  # No credentials in the options: the add-on generates them into /data (private by default).
  local status="" user="" pass="" creds="$work/data-$name/credentials.json"
  for _ in $(seq 1 60); do
    if [ -f "$creds" ]; then
      user=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["user"])' "$creds")
      pass=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["password"])' "$creds")
      status=$(curl -fsS -u "$user:$pass" "http://127.0.0.1:$http/api/status" 2>/dev/null) && break
    fi
    sleep 0.5
  done
  [ -n "$status" ] || fail "[$name] /api/status on http_port $http did not answer with the generated credentials"
  echo "test-image: [$name] /api/status: $(echo "$status" | head -c 160)"
  local anonymous
  anonymous=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/api/status")
  [ "$anonymous" = 401 ] || fail "[$name] /api/status without the generated credentials gave $anonymous, not 401"
  pass "[$name] credentials generated in /data; anonymous requests get 401"
  # The Supervisor's watchdog for `tcp://[HOST]:[PORT:8099]`: a TCP connect.
  /usr/bin/python3 -c "import socket; socket.create_connection(('127.0.0.1', $ingress), 3).close()" \
    || fail "[$name] watchdog: nothing listens on the ingress port $ingress"
  local page
  page=$(curl -fsS -u "$user:$pass" -H 'X-Ingress-Path: /api/hassio_ingress/t0ken' "http://127.0.0.1:$ingress/") \
    || fail "[$name] ingress: GET / on port $ingress failed"
  echo "$page" | grep -q '/api/hassio_ingress/t0ken/' \
    || fail "[$name] ingress: the page does not link under X-Ingress-Path"
  pass "[$name] http_port $http answers; watchdog and ingress on port $ingress"
  expect_streams test-image "[$name] rtsp_port $rtsp" 40 "rtsp://$user:$pass@127.0.0.1:$rtsp/doorbell"
  pass "[$name] RTSP H.264 400x288 + AAC"
  podman stop -t 10 "$c" >/dev/null
}

run_addon "$(free_port)" "$(free_port)" first
run_addon "$(free_port)" "$(free_port)" changed
echo "test-image: $passed passed, 0 failed"
