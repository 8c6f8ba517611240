#!/usr/bin/env bash
# Runs every fuzz target (fuzz/Cargo.toml) for FUZZ_SECONDS each (default 30), seeded from the
# corpus kept in the repo (fuzz/corpus/<target>). With cargo-fuzz (installed here if missing) on
# the nightly toolchain, or on stable with RUSTC_BOOTSTRAP=1 when no nightly is installed; if
# neither builds, the stable fallback (tests/it/fuzz_fallback.rs: the same target bodies on
# blind mutations) runs instead. New inputs go to a temporary directory unless FUZZ_KEEP=1
# (then into the repo corpus, for `cargo fuzz cmin` before a commit). Ends with one line:
# `fuzz: N passed, M failed` (scripts/test.sh adds it to the totals).
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-30}
targets=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^c300x')
passed=0
failed=0

fallback() {
  echo "fuzz: $1; running the stable fallback (blind mutations, no coverage guidance)"
  for t in $targets; do
    out=$(FUZZ_SECONDS=$secs FUZZ_TARGET=$t cargo test --locked --test it fuzz_fallback -- --nocapture 2>&1)
    rc=$?
    printf '%s\n' "$out" | grep -E -A8 'fuzz-fallback:|panicked'
    if [ $rc -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  done
  echo "fuzz: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz >/dev/null 2>&1 || fallback "cargo-fuzz does not install"
fi
if rustup run nightly rustc --version >/dev/null 2>&1; then
  run=(cargo +nightly fuzz)
  how="nightly"
else
  export RUSTC_BOOTSTRAP=1
  run=(cargo fuzz)
  how="stable with RUSTC_BOOTSTRAP=1"
fi
# Release builds (-O): the build CI and the reported 10-minute runs share.
if ! "${run[@]}" build -O >/tmp/c300x-fuzz-build.log 2>&1; then
  tail -20 /tmp/c300x-fuzz-build.log
  fallback "cargo fuzz build failed on $how"
fi
echo "fuzz: cargo-fuzz on $how, ${secs} s per target"
for t in $targets; do
  seeds="fuzz/corpus/$t"
  mkdir -p "$seeds"
  if [ "${FUZZ_KEEP:-0}" = 1 ]; then
    dirs=("$seeds")
  else
    tmp=$(mktemp -d)
    dirs=("$tmp" "$seeds")
  fi
  out=$("${run[@]}" run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -print_final_stats=1 2>&1)
  rc=$?
  execs=$(printf '%s\n' "$out" | sed -n 's/^stat::number_of_executed_units: *//p' | tail -1)
  cov=$(printf '%s\n' "$out" | grep -o 'cov: [0-9]*' | tail -1)
  if [ $rc -eq 0 ]; then
    passed=$((passed + 1))
    echo "fuzz $t: ok, ${execs:-?} execs in ${secs} s (${cov:-cov ?})"
  else
    failed=$((failed + 1))
    printf '%s\n' "$out" | grep -E -A12 'panicked|ERROR|SUMMARY' | head -40
    echo "fuzz $t: FAILED (the input is in fuzz/artifacts/$t/)"
  fi
  [ -n "${tmp:-}" ] && rm -rf "$tmp"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
