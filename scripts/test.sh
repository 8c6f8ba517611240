#!/usr/bin/env bash
# The project's test command (README, CI): set up, check formatting and lints, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
