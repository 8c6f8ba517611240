#!/usr/bin/env bash
# Creates (or reuses) the Home Assistant 2026.2.3 root the real-HA test runs: a Debian 13 (trixie)
# minbase chroot (HA >= 2025.5 needs Python >= 3.13.2; Debian 12 has 3.11) with HA in /ha, outside
# the repo (HA_ROOT, default ~/.cache/c300x-bridge/ha-2026.2.3-trixie; ≈2.5 GB, a few minutes once).
# Needs root (debootstrap, chroot, mounts). Prints the root's path.
#   tests/ha/chroot.sh            build when absent, print the path
#   tests/ha/chroot.sh exec CMD…  run CMD inside the root, with /proc, /sys and /dev mounted in a
#                                 private mount namespace (gone when CMD ends; runs side by side)
set -euo pipefail
version=2026.2.3
root=${HA_ROOT:-$HOME/.cache/c300x-bridge/ha-$version-trixie}
stamp="$root/.c300x-ha-$version-1"
here=$(cd "$(dirname "$0")" && pwd)

# CMD inside the root: private mounts, a clean environment (the host's pip/SSL variables point at
# host paths), the host's CA bundle (it may carry a proxy's CA that trixie's bundle lacks).
in_root() {
  local dir=$1
  shift
  unshare --mount --propagation private -- /bin/sh -c '
    set -e
    r=$1; shift
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    exec chroot "$r" /usr/bin/env -i HOME=/root PATH=/ha/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
      PIP_CERT=/etc/ssl/certs/host-ca.crt SSL_CERT_FILE=/etc/ssl/certs/host-ca.crt \
      PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 TZ=UTC "$@"
  ' sh "$dir" "$@"
}

if [ "${1:-}" = exec ]; then
  shift
  [ -f "$stamp" ] || { echo "ha: $root is not set up (run tests/ha/chroot.sh)" >&2; exit 1; }
  in_root "$root" "$@"
  exit
fi

if [ ! -f "$stamp" ]; then
  [ "$(id -u)" -eq 0 ] || { echo "ha: building the HA $version chroot needs root" >&2; exit 1; }
  command -v debootstrap >/dev/null || { echo "ha: debootstrap missing (scripts/setup-debian.sh)" >&2; exit 1; }
  echo "ha: building Home Assistant $version in a trixie chroot at $root (a few minutes, once)" >&2
  tmp="$root.partial"
  mkdir -p "$(dirname "$root")"
  # Resumable: the base system (the slow download) is kept when a later step failed.
  if [ ! -f "$tmp/.base-done" ]; then
    rm -rf "$tmp"
    # A compiler + headers: a few pinned packages (lru-dict, pymicro-vad) have no Python 3.13 wheel.
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-dev,gcc,g++,libc6-dev,ca-certificates,libturbojpeg0 \
      trixie "$tmp" http://deb.debian.org/debian >&2
    touch "$tmp/.base-done"
  fi
  cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/host-ca.crt"
  cp "$here/requirements.py" "$tmp/tmp/requirements.py"
  in_root "$tmp" /bin/sh -ec "
    python3 -m venv /ha
    pip install -q --upgrade pip wheel
    pip install -q homeassistant==$version
    c=\$(python -c 'import homeassistant, os; print(os.path.join(os.path.dirname(homeassistant.__file__), \"package_constraints.txt\"))')
    # What the integrations HA sets up by itself, mqtt, stream and generic list (start with --skip-pip).
    pip install -q -c \"\$c\" \$(python /tmp/requirements.py) aiohttp PyJWT
  " >&2
  rm -rf "$tmp/var/cache/apt/archives/"*.deb "$tmp/root/.cache/pip"
  rm -rf "$root"
  mv "$tmp" "$root"
  touch "$stamp"
fi
echo "$root"
