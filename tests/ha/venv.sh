#!/usr/bin/env bash
# Creates (or reuses) the Home Assistant 2024.3.3 venv the real-HA test runs, outside the repo.
# HA_VENV overrides the place (default ~/.cache/c300x-bridge/ha-venv). Prints the venv path.
set -euo pipefail
venv=${HA_VENV:-$HOME/.cache/c300x-bridge/ha-venv}
stamp="$venv/.c300x-ha-2024.3.3-2"
if [ ! -f "$stamp" ]; then
  echo "ha: installing Home Assistant 2024.3.3 into $venv (2-3 minutes, once)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip wheel >&2
  # josepy<2: 2.x breaks HA 2024.3's HTTP stack. The rest are what the integrations we load list
  # in their manifest.json (mqtt; recorder's SQLAlchemy is checked even unused): --skip-pip.
  "$venv/bin/pip" install -q "homeassistant==2024.3.3" "josepy<2" "paho-mqtt==1.6.1" \
    "SQLAlchemy==2.0.27" "fnv-hash-fast==0.5.0" "psutil-home-assistant==0.0.1" >&2
  # HA 2024.3 sets up its built-in integrations (frontend, cloud, backup, ...) whatever the
  # configuration says: preinstall their requirements too (~30 s).
  "$venv/bin/pip" install -q $("$venv/bin/python" "$(dirname "$0")/requirements.py") >&2
  touch "$stamp"
fi
echo "$venv"
