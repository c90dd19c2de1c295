#!/usr/bin/env bash
# Every test, from a fresh clone, against what users install: the wheel.
#
#  1. Gates on the source: rustfmt; ruff and mypy (from a tools venv).
#  2. `maturin build --release`: the abi3 wheel (CPython >= 3.10) and the sdist.
#  3. The wheel installed into a fresh venv, tested with no Rust toolchain on PATH,
#     from a directory where the source tree is not importable (scripts/ci/
#     installed_check.py stops the run unless `ferrops` comes from that venv):
#     - main: this Python, the peers as oracles (torch, torchvision, pycocotools,
#       ...; taken from its site-packages when present there, else installed
#       from PyPI): spec_tests and each bench case once;
#     - CPython 3.10 with NumPy 1.26 and CPython 3.13 with the newest NumPy 2.x
#       (from pyenv; skipped with a message where absent), NumPy (and SciPy,
#       which spec_tests/test_mdp_checks.py imports) without torch: the
#       NumPy-input spec tests (the torch backends skip), which is what
#       `pip install ferrops` gives a user without torch.
#  4. The core's unit tests and clippy.
#  5. The sdist installed with pip (cargo present), and a smoke run against it.
#
# Environment: PYTHON (main interpreter, default python3), FERROPS_CI_DIR (scratch,
# default target/ci). For iterating locally only: FERROPS_CI_WHEEL=path tests that
# wheel instead of building one (no sdist then), FERROPS_CI_SKIP_RUST=1 skips
# stage 4, FERROPS_CI_SKIP_EXTRA=1 the extra interpreters.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
CI_DIR=${FERROPS_CI_DIR:-$ROOT/target/ci}
DIST=$CI_DIR/dist
PIP=(-m pip install --disable-pip-version-check -q)
rm -rf "$CI_DIR" && mkdir -p "$DIST" "$CI_DIR/run"

stage() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }

stage "rustfmt"
cargo fmt --all --check

stage "tools venv: ruff, mypy"
"$PYTHON" -m venv --system-site-packages "$CI_DIR/tools"
TOOLS=$CI_DIR/tools/bin/python
"$TOOLS" "${PIP[@]}" "ruff>=0.6" "mypy>=1.10" numpy
# maturin's Python module runs the `maturin` program beside the interpreter: with a
# maturin already in the system's site-packages pip would install nothing here.
"$TOOLS" "${PIP[@]}" --ignore-installed "maturin>=1.7,<2"
"$TOOLS" -m ruff check python spec_tests benches scripts
"$TOOLS" -m ruff format --check python spec_tests benches scripts
"$TOOLS" -m mypy

if [[ -n ${FERROPS_CI_WHEEL:-} ]]; then
	cp "$FERROPS_CI_WHEEL" "$DIST/"
else
	stage "wheel and sdist"
	"$TOOLS" -m maturin build --release --out "$DIST" -q
	"$TOOLS" -m maturin sdist --out "$DIST"
fi
WHEEL=$(ls "$DIST"/ferrops-*.whl)
SDIST=$(ls "$DIST"/ferrops-*.tar.gz 2>/dev/null || true)
ls -l "$DIST"

# PATH without the Rust toolchain: the installed wheel must not need it.
NO_RUST_PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v -e '\.cargo' -e '\.rustup' | paste -sd: -)

# Runs pytest in venv $1 on the installed package: from $CI_DIR/run (so the
# checkout's python/ is not on sys.path), with the checkout's pytest config, and
# the plugin that checks where `ferrops` was imported from.
run_installed() {
	local venv=$1
	shift
	(
		cd "$CI_DIR/run"
		env PATH="$venv/bin:$NO_RUST_PATH" FERROPS_CI_EXPECT_PREFIX="$venv" PYTHONPATH="$ROOT/scripts/ci" \
			"$venv/bin/python" -m pytest -c "$ROOT/pyproject.toml" --rootdir "$ROOT" -p installed_check \
			-p no:cacheprovider -q "$@"
	)
}

stage "main: $("$PYTHON" --version) + peers"
# --system-site-packages: the peers (torch, ...) already installed for this Python
# are reused; whatever the test extras still lack comes from PyPI.
"$PYTHON" -m venv --system-site-packages "$CI_DIR/main"
"$CI_DIR/main/bin/python" "${PIP[@]}" "$WHEEL[test]"
(cd "$CI_DIR/run" && PATH="$CI_DIR/main/bin:$NO_RUST_PATH" "$CI_DIR/main/bin/ferrops" info)
run_installed "$CI_DIR/main" "$ROOT/spec_tests" "$ROOT/benches"

# The oldest and newest CPython of pyenv, each with the NumPy it pins.
extra_python() {
	local version=$1
	local root
	root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
	ls -d "$root"/versions/"$version".*/bin/python"$version" 2>/dev/null | sort -V | tail -n 1 || true
}
for pair in "3.10 numpy==1.26.*" "3.13 numpy>=2"; do
	read -r version numpy <<<"$pair"
	[[ ${FERROPS_CI_SKIP_EXTRA:-0} == 1 ]] && break
	interpreter=$(extra_python "$version")
	if [[ -z $interpreter ]]; then
		stage "CPython $version: not installed here, skipped"
		continue
	fi
	stage "CPython $version + $numpy, NumPy alone"
	"$interpreter" -m venv "$CI_DIR/py$version"
	"$CI_DIR/py$version/bin/python" "${PIP[@]}" "$WHEEL" "$numpy" "scipy>=1.10" "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4"
	"$CI_DIR/py$version/bin/python" -c "import numpy, sys; print('numpy', numpy.__version__, 'on', sys.version.split()[0])"
	# The spec suite minus the soak and fuzz runs (long, and they exercise the
	# same binaries as the main run); the torch backends skip without torch.
	run_installed "$CI_DIR/py$version" "$ROOT/spec_tests" \
		--ignore "$ROOT/spec_tests/test_soak.py" --ignore "$ROOT/spec_tests/test_fuzz.py"
done

if [[ ${FERROPS_CI_SKIP_RUST:-0} != 1 ]]; then
	stage "core unit tests, clippy"
	cargo test -p ferrops-core --release
	cargo clippy --workspace --all-targets --release -- -D warnings
fi

if [[ -n $SDIST ]]; then
	stage "sdist: pip install $(basename "$SDIST") (builds with cargo)"
	"$PYTHON" -m venv --system-site-packages "$CI_DIR/sdist"
	# The build a user's pip runs (release profile), in the checkout's target
	# directory so that the dependencies compiled for the wheel are reused.
	CARGO_TARGET_DIR=$ROOT/target "$CI_DIR/sdist/bin/python" "${PIP[@]}" "$SDIST" "pytest>=8" "hypothesis>=6.100" "pytest-benchmark>=4"
	run_installed "$CI_DIR/sdist" "$ROOT/spec_tests/test_stubs.py" "$ROOT/spec_tests/test_pooling.py"
fi

stage "all passed"
