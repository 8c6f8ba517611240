#!/usr/bin/env bash
# The project's test command (README, CI): set up, check formatting and lints, run every test —
# the cargo tests, the supply-chain check (scripts/deny.sh), every fuzz target for 30 s
# (scripts/fuzz.sh), the real Home Assistant check (tests/ha/run.sh), the add-on image check
# (addon/test-image.sh) and the aarch64 check (addon/test-arm64.sh) — then print one closing line
# with the totals. C300X_SKIP_HA=1 / C300X_SKIP_IMAGE=1 / C300X_SKIP_ARM64=1 / C300X_SKIP_FUZZ=1
# skip those checks (counted as skipped). Each stage logs the disk space left after it; with
# C300X_PRUNE=1 (.ci/run sets it) a stage's build output that no later stage reads (the fuzz
# build, the release binaries of the image checks, incremental state) is removed when it is done,
# so the whole run fits a small CI disk.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
disk() { echo "disk: $(df -h --output=avail . | tail -1 | tr -d ' ') free after $1" >&2; }
prune() { if [ "${C300X_PRUNE:-0}" = 1 ]; then rm -rf "$@"; fi; }
disk "checkout"
scripts/setup-debian.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --locked --all-targets 2>&1 | tee -a "$log" || status=$?
disk "cargo test"
scripts/deny.sh 2>&1 | tee -a "$log" || status=1
if [ "${C300X_SKIP_FUZZ:-0}" = 1 ]; then
  echo "fuzz: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  FUZZ_SECONDS="${FUZZ_SECONDS:-30}" scripts/fuzz.sh 2>&1 | tee -a "$log" || status=1
  disk "fuzz"
  prune fuzz/target
fi
if [ "${C300X_SKIP_HA:-0}" = 1 ]; then
  echo "ha: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  tests/ha/run.sh 2>&1 | tee -a "$log" || status=1
  disk "ha"
fi
if [ "${C300X_SKIP_IMAGE:-0}" = 1 ] || ! { [ "$(id -u)" -eq 0 ] || command -v podman >/dev/null; }; then
  echo "test-image: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  addon/test-image.sh 2>&1 | tee -a "$log" || status=1
  disk "test-image"
  if [ "${C300X_PRUNE:-0}" = 1 ]; then addon/build-binary.sh clean amd64; fi
fi
if [ "${C300X_SKIP_ARM64:-0}" = 1 ] || [ "$(id -u)" -ne 0 ]; then
  echo "test-arm64: 0 passed, 0 failed, 1 skipped" | tee -a "$log"
else
  addon/test-arm64.sh 2>&1 | tee -a "$log" || status=1
  disk "test-arm64"
fi
# Sum `test result: ok. N passed; M failed; K ignored` (cargo) and `<name>: N passed, M failed[, K skipped]`.
awk '
  /^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1); if ($(i) ~ /^ignored;?$/) s += $(i-1) } }
  /^[a-z0-9-]+: [0-9]+ passed, [0-9]+ failed/ { p += $2; f += $4; if ($6 != "") s += $6 }
  END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
