#!/usr/bin/env bash
# Builds the guide (docs/, an mdBook) into docs/book/.
#
# mdBook itself is installed on first use, from crates.io with cargo, into
# target/tools/bin (nothing outside the repository is touched); it is re-installed only
# when that binary is missing or is not MDBOOK_VERSION.
#
# Fails (non-zero exit) when an include names a missing file or anchor, or a chapter is
# missing (checked first by shared-tests/test_docs.py run as a script: mdBook itself
# only logs a missing file and silently includes nothing for a missing anchor), when
# mdBook fails or reports an error, or when an include is left unexpanded in the HTML.
set -euo pipefail

MDBOOK_VERSION=0.5.4

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
tools="$root/target/tools"
mdbook="$tools/bin/mdbook"

if [ -t 2 ] && [ -z "${NO_COLOR:-}" ]; then bold=$'\033[1m' reset=$'\033[0m'; else bold='' reset=''; fi
say() { printf '%s==> %s%s\n' "$bold" "$*" "$reset" >&2; }

installed_version() {
    [ -x "$mdbook" ] || return 0
    "$mdbook" --version 2>/dev/null | awk '{print $2}' | sed 's/^v//'
}

python=$(command -v python3 || command -v python || true)
if [ -n "$python" ]; then
    say "checking includes, anchors, chapters and links (shared-tests/test_docs.py)"
    "$python" shared-tests/test_docs.py
else
    echo "warning: no python3 on PATH: includes and anchors not checked before the build" >&2
fi

if [ "$(installed_version)" != "$MDBOOK_VERSION" ]; then
    say "installing mdbook $MDBOOK_VERSION into $tools (cargo install, once)"
    # A build directory of its own: independent of whatever CARGO_TARGET_DIR says.
    CARGO_TARGET_DIR="$tools/build" \
        cargo install mdbook --version "$MDBOOK_VERSION" --locked --root "$tools"
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT

say "building the guide with $("$mdbook" --version) into docs/book"
status=0
"$mdbook" build docs 2>&1 | tee "$log" || status=$?
if [ "$status" -ne 0 ]; then
    echo "error: mdbook build failed (exit $status)" >&2
    exit "$status"
fi
if grep -q 'ERROR' "$log"; then
    echo "error: mdbook reported errors (see above); a missing include file is one" >&2
    exit 1
fi
left=$(grep -rl --include='*.html' -F '{{#include' docs/book || true)
if [ -n "$left" ]; then
    echo "error: unexpanded {{#include}} in the rendered guide:" >&2
    echo "$left" >&2
    exit 1
fi
say "the guide is in docs/book/index.html"
