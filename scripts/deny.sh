#!/usr/bin/env bash
# Supply chain: `cargo deny check` with deny.toml — bans (duplicate versions, wildcards),
# licences and sources always; advisories when the RustSec database (a git clone from GitHub)
# can be fetched, else that one check is reported as skipped, with the reason. cargo-deny is
# installed from crates.io when missing. Ends with `deny: N passed, M failed, K skipped`.
set -uo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null; then
  echo "deny: installing cargo-deny from crates.io (a few minutes)"
  if ! cargo install --locked cargo-deny >/dev/null 2>&1; then
    echo "deny: cargo-deny does not install here"
    echo "deny: 0 passed, 0 failed, 4 skipped"
    exit 0
  fi
fi
passed=0
failed=0
skipped=0
for check in bans licenses sources; do
  if cargo deny --locked check "$check"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
  fi
done
log=$(mktemp)
if cargo deny --locked check advisories >"$log" 2>&1; then
  passed=$((passed + 1))
elif grep -q "failed to fetch advisory database" "$log"; then
  skipped=$((skipped + 1))
  echo "deny: advisories skipped: the RustSec database cannot be fetched from GitHub here"
else
  cat "$log"
  failed=$((failed + 1))
fi
rm -f "$log"
echo "deny: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
