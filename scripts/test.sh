#!/usr/bin/env bash
# The project's test command (README, CI): set up, check formatting and lints, run every test —
# the cargo tests, the supply-chain check (scripts/deny.sh), every fuzz target for 30 s
# (scripts/fuzz.sh), the real Home Assistant check (tests/ha/run.sh), the add-on image check
# (addon/test-image.sh) and the aarch64 check (addon/test-arm64.sh) — then print one closing line
# with the totals. C300X_SKIP_HA=1 / C300X_SKIP_IMAGE=1 / C300X_SKIP_ARM64=1 / C300X_SKIP_FUZZ=1
# skip those checks (counted as skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --all-targets 2>&1 | tee -a "$log" || status=$?
scripts/deny.sh 2>&1 | tee -a "$log" || status=1
if [ "${C300X_SKIP_FUZZ:-0}" = 1 ]; then
  echo "fuzz: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  FUZZ_SECONDS="${FUZZ_SECONDS:-30}" scripts/fuzz.sh 2>&1 | tee -a "$log" || status=1
fi
if [ "${C300X_SKIP_HA:-0}" = 1 ]; then
  echo "ha: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  tests/ha/run.sh 2>&1 | tee -a "$log" || status=1
fi
if [ "${C300X_SKIP_IMAGE:-0}" = 1 ] || ! { [ "$(id -u)" -eq 0 ] || command -v podman >/dev/null; }; then
  echo "test-image: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  addon/test-image.sh 2>&1 | tee -a "$log" || status=1
fi
if [ "${C300X_SKIP_ARM64:-0}" = 1 ] || [ "$(id -u)" -ne 0 ]; then
  echo "test-arm64: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  addon/test-arm64.sh 2>&1 | tee -a "$log" || status=1
fi
# Sum `test result: ok. N passed; M failed; K ignored` (cargo) and `<name>: N passed, M failed[, K skipped]`.
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
  /^[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4; if ($6 != "") s += $6 }
  END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
