#!/usr/bin/env bash
# The project's one style, checked. Run through `tools/dev lint` (which installs ruff and
# mypy into .venv first) or the `lint` tox environment; needs cargo (with rustfmt and
# clippy), ruff, mypy and python on PATH.
#
#   cargo fmt --check        rustfmt.toml
#   cargo clippy             every target of the workspace, -D warnings on top of the
#                            [workspace.lints] of Cargo.toml
#   ruff check               pyproject.toml [tool.ruff]: every Python file
#   ruff format --check
#   mypy                     the two crates' stubs, and tools/*.py (pyproject.toml [tool.mypy])
#   tools/layering.py        which module of each crate's src/ may use which
#
# Every check runs even when one before it failed; the exit status is 1 if any failed.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then
    bold=$'\033[1m' red=$'\033[31m' reset=$'\033[0m' color=auto
else
    bold='' red='' reset='' color=never
fi
say() { printf '%s==> %s%s\n' "$bold" "$*" "$reset" >&2; }

python=$(command -v python || command -v python3)
# Clippy builds the crates' build scripts, which ask an interpreter about itself.
export PYO3_PYTHON=${PYO3_PYTHON:-$python}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target/clippy}

failed=()
check() {
    local name=$1
    shift
    say "lint: $name"
    if ! "$@"; then
        failed+=("$name")
    fi
}

stubs=(pyo3-0.12-pyproto/pyo3_0_12_pyproto.pyi pyo3-modern-pymethods/python/pyo3_modern_pymethods/*.pyi)

check "cargo fmt --check" cargo fmt --all --check -- --color="$color"
check "cargo clippy" cargo clippy --workspace --all-targets --quiet --color="$color" -- -D warnings
check "ruff check" ruff check --quiet .
check "ruff format --check" ruff format --check --quiet .
check "mypy (stubs, tools)" mypy "${stubs[@]}" tools/*.py
check "layering" "$python" tools/layering.py

if [ ${#failed[@]} -gt 0 ]; then
    printf '%slint FAILED: %s%s\n' "$red$bold" "$(IFS=,; printf '%s' "${failed[*]}" | sed 's/,/, /g')" "$reset" >&2
    exit 1
fi
say "lint: all clean"
