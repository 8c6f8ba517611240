#!/usr/bin/env bash
# The real Home Assistant check in one command: cached HA 2024.3.3 venv (tests/ha/venv.sh), the
# bridge harness built once (`cargo test --test ha`), HA's check_config on the blueprints
# (tests/ha/check_blueprints.py), then tests/ha/driver.py starts mosquitto, HA and the harness and
# prints PASS/FAIL per check. C300X_HA_KEEP=1 keeps the temp dir.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)
command -v mosquitto >/dev/null || { echo "ha: mosquitto missing (scripts/setup-debian.sh)" >&2; exit 1; }
venv=$(tests/ha/venv.sh)
echo "ha: venv ready after $(( $(date +%s) - start ))s; building the harness" >&2
cargo test --quiet --test ha --no-run
echo "ha: harness built after $(( $(date +%s) - start ))s" >&2
status=0
# HA's own check_config on the shipped blueprints (seconds; no HA server needed).
"$venv/bin/python" tests/ha/check_blueprints.py || status=1
timeout 540 "$venv/bin/python" tests/ha/driver.py || status=$?
echo "ha: total $(( $(date +%s) - start ))s" >&2
exit "$status"
