#!/usr/bin/env bash
# Every test, from a fresh clone on a fresh machine: installs ferrops with its test
# extras (peers used as oracles: torch, torchvision, ...) from PyPI, builds the Rust
# extension, then runs the core's unit tests, clippy and the Python suites
# (spec_tests, and each benchmark case once).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[test]"
cargo test -p ferrops-core --release
cargo clippy --workspace --all-targets --release -- -D warnings
"$PYTHON" -m pytest
