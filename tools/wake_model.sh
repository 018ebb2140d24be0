#!/usr/bin/env bash
# The loom model check of the bridge's wake-up protocol (wake-model/tests/loom_wake.rs):
# `src/wake.rs` of both crates, the files themselves, under every interleaving of two
# waking threads and the loop's thread, up to LOOM_MAX_PREEMPTIONS preemptions (2 unless
# set: under a minute on two cores, once built; each broken ordering tried so far fails
# at 2; 3 passes too, in about five minutes). Exit status: cargo test's. Extra
# arguments go to the test binary (a test name filter, say). Run by the build-checks
# tox environment (shared-tests/test_build_checks.py).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
export LOOM_MAX_PREEMPTIONS=${LOOM_MAX_PREEMPTIONS:-2}
# A target directory of its own: `--cfg loom` changes the fingerprint of every crate.
export CARGO_TARGET_DIR=${WAKE_MODEL_TARGET_DIR:-$root/target/loom}
export RUSTFLAGS="${RUSTFLAGS:-} --cfg loom"
exec cargo test -p wake-model --release --test loom_wake -- "$@"
