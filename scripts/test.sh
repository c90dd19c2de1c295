#!/usr/bin/env bash
# Every test, from a fresh clone on a fresh machine. The fast gates come first:
# rustfmt; then, after installing ferrops with its test extras (peers used as
# oracles: torch, torchvision, ...; ruff and mypy) from PyPI, which builds the Rust
# extension, ruff lint and format and mypy; then the core's unit tests, clippy and
# the Python suites (spec_tests, and each benchmark case once).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
cargo fmt --all --check
"$PYTHON" -m pip install --disable-pip-version-check -q -e ".[test]"
"$PYTHON" -m ruff check python spec_tests benches
"$PYTHON" -m ruff format --check python spec_tests benches
"$PYTHON" -m mypy
cargo test -p ferrops-core --release
cargo clippy --workspace --all-targets --release -- -D warnings
"$PYTHON" -m pytest
