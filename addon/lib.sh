#!/usr/bin/env bash
# Shared by the add-on checks (addon/test-image.sh, test-arm64.sh, test-dockerfile.sh; sourced):
# installing the tools they need, podman's settings for this sandbox, a free port, and the stream
# check every image test makes. `expect_streams` calls the sourcing script's own `fail`.

# need_tools PREFIX TOOL...: installs the Debian packages behind whichever TOOLs are missing.
need_tools() {
  local prefix=$1 tool
  shift
  local need=()
  for tool in "$@"; do command -v "$tool" >/dev/null || need+=("$tool"); done
  [ "${#need[@]}" -gt 0 ] || return 0
  local pkgs=("${need[@]/ffprobe/ffmpeg}")
  pkgs=("${pkgs[@]/qemu-aarch64-static/qemu-user-static}")
  echo "$prefix: installing ${pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
}

# podman_settings DIR: runc and no default ulimits — this sandbox cannot raise rlimits and crun
# lacks cgroup v1 hybrid support (home-assistant.md §6). Written to DIR, used through CONTAINERS_CONF.
podman_settings() {
  cat > "$1/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF="$1/containers.conf"
}

# count_failures PREFIX: a step that fails under `set -e` (a build, podman) still ends with a FAIL
# line and the `PREFIX: N passed, 1 failed` count scripts/test.sh adds up (uses the caller's
# $passed).
count_failures() {
  trap "echo \"$1: FAIL: the command at line \$LINENO failed (exit \$?)\"; echo \"$1: \${passed:-0} passed, 1 failed\"" ERR
}

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# expect_streams PREFIX WHAT SECONDS URL: ffprobe (RTSP over TCP) must see H.264 400x288 and AAC.
expect_streams() {
  local prefix=$1 what=$2 secs=$3 url=$4 streams
  streams=$(timeout "$secs" ffprobe -v error -rtsp_transport tcp -show_entries stream=codec_name,width,height \
    -of csv=p=0 "$url" || true)
  echo "$prefix: $what ffprobe: $(echo "$streams" | tr '\n' ' ')"
  echo "$streams" | grep -q '^h264,400,288' && echo "$streams" | grep -q '^aac' \
    || fail "$what: expected H.264 400x288 and AAC"
}
