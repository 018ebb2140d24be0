#!/usr/bin/env bash
# Make every CPython from 3.7 to 3.15, and PyPy 3.11, available to tox on this machine.
#
# Usage: tools/pythons.sh [--versions "3.7 3.8 ... 3.15 pypy3.11"] [--require]
#
# --versions: only these (space- or comma-separated; default: all of 3.7 to 3.15 and
# pypy3.11); `tools/dev test -e ...` asks for the interpreters of the selected
# environments only.
# 3.Xt names a free-threaded build (Py_GIL_DISABLED, `python3.Xt`): never part of the
# default; found where pyenv (`pyenv install 3.Xt`), uv (`uv python install 3.Xt`) or
# the system PATH has one (Debian packages none, so there is no route from its archive).
# 3.Xd names a debug build (Py_DEBUG, `python3.Xd`): never part of the default;
# pyenv's (`--debug`) and uv's (`+debug`) are used, else on a Debian-family machine
# 3.11d, 3.14d and 3.15d are built from Debian's pythonX.Y-dbg packages into the
# cache (build_debug_prefix below).
#
# Prints, as its last line on stdout, a directory (the "bin dir") holding one
# executable python3.X (pypy3.X) per version found; prepend it to PATH so tox
# (virtualenv discovery by the python3.X or pypy3.X name) finds them:
#
#     PATH="$(tools/pythons.sh):$PATH" tox
#
# For each version it first uses what the machine already has: pyenv
# ($(pyenv root), $PYENV_ROOT, ~/.pyenv), uv-managed interpreters
# (`uv python find`) and the system PATH. Where 3.14 or 3.15 are still missing
# on a Debian-family machine it builds a private prefix for each under the
# cache dir from Debian sid's packages: a private apt state (its own sources
# list, lists, cache and an empty dpkg status; the machine's apt sources,
# package state and /usr are left alone), `apt-get download`, `dpkg-deb -x`,
# then patchelf points the interpreter at the prefix's own loader and
# libraries. ld.so and libc.so.6 get libc6-dbg's symbols merged in
# (eu-unstrip) so valgrind can run these interpreters.
#
# PyPy 3.X is looked for the same way (pyenv's pypy3.X-*, `uv python find
# pypy3.X`, pypy3.X or pypy3 on PATH), then built the same way from sid's
# pypy3, pypy3-lib, pypy3-dev and pypy3-venv when sid's pypy3 is for Python 3.X
# (the interpreter and libpypy3.X-c.so are patchelf'ed onto the prefix's glibc).
#
# A second run with everything in place downloads nothing (a stamp per prefix).
# Versions that cannot be found are reported on stderr and left out; with
# --require the script then exits 1.  Messages go to stderr.
#
# Environment: XDG_CACHE_HOME (cache root, default ~/.cache),
# PYTHONS_DEBIAN_MIRROR (Debian mirror URI; default: the one the machine's own
# apt sources use, else http://deb.debian.org/debian).
set -euo pipefail

# Bump to rebuild existing prefixes after a change of the recipe below.
RECIPE=2
ALL_VERSIONS="3.7 3.8 3.9 3.10 3.11 3.12 3.13 3.14 3.15 pypy3.11"
# Versions that may be built from Debian sid when nothing else has them.
DEBIAN_VERSIONS="3.14 3.15"
# Debug builds (3.Xd) that may be built from Debian packages (pythonX.Y-dbg): see
# build_debug_prefix.
DEBIAN_DEBUG_VERSIONS="3.11d 3.14d 3.15d"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
COMMON_PKGS="libc6 libgcc-s1 libssl3t64 libffi8 libexpat1 zlib1g libsqlite3-0
libbz2-1.0 liblzma5 libzstd1 libncursesw6 libtinfo6 libreadline8t64 libuuid1
libdb5.3t64 libmpdec4 libgdbm6t64 python3-pip-whl python3-setuptools-whl"
REQUIRED_COMMON="libc6"
SMOKE_IMPORTS="ssl, sqlite3, ctypes, decimal, lzma, bz2, readline, uuid, zlib, pyexpat, hashlib, venv, ensurepip"

log() { printf 'pythons.sh: %s\n' "$*" >&2; }
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; }

versions=$ALL_VERSIONS
require=0
while [ $# -gt 0 ]; do
    case $1 in
        --versions) [ $# -ge 2 ] || { usage; exit 2; }; versions=$2; shift 2 ;;
        --versions=*) versions=${1#--versions=}; shift ;;
        --require) require=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) log "unknown argument: $1"; usage; exit 2 ;;
    esac
done
versions=${versions//,/ }
for v in $versions; do
    [[ $v =~ ^(3\.[0-9]+[dt]?|pypy3\.[0-9]+)$ ]] || { log "not a version: $v (want 3.X, 3.Xd for a debug build, 3.Xt for a free-threaded one, or pypy3.X)"; exit 2; }
done

start_ns=$(date +%s%N)
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pyo3-async-guide"
BIN="$CACHE/bin"
mkdir -p "$BIN"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock 9
fi

# PATH for discovery: without the bin dir (we must not find our own links)
# and without pyenv shims (which resolve differently per directory).
search_path=
IFS=: read -r -a path_dirs <<<"${PATH:-}"
for d in "${path_dirs[@]}"; do
    case $d in
        ''|"$BIN"|"$BIN/"|*/shims|*/shims/) ;;
        *) search_path=${search_path:+$search_path:}$d ;;
    esac
done

# check_py EXE X.Y[d|t]: EXE runs and is CPython X.Y (X.Yd: a debug build, Py_DEBUG;
# X.Yt: a free-threaded build, Py_GIL_DISABLED; X.Y: neither).
check_py() {
    local out
    [ -x "$1" ] || return 1
    out=$("$1" -c 'import sys, sysconfig, platform
kind = "t" if sysconfig.get_config_var("Py_GIL_DISABLED") else ""
kind += "d" if hasattr(sys, "gettotalrefcount") else ""
print("%d.%d%s" % (*sys.version_info[:2], kind), platform.python_implementation())' 2>/dev/null) || return 1
    [ "$out" = "$2 CPython" ]
}

# patch_sysconfigdata EXE PREFIX LIBDIR_GLOB: point WHEEL_PKG_DIR and the include
# directories of the prefix's _sysconfigdata (PREFIX/usr/lib/LIBDIR_GLOB/) into the
# prefix: ensurepip's wheels and the C headers live there, not in /usr. Idempotent.
patch_sysconfigdata() {
    "$1" - "$2" "$3" <<'EOF' || { debian_reason="patching _sysconfigdata failed"; return 1; }
import glob, os, re, sys
prefix, libdir = sys.argv[1], sys.argv[2]
files = glob.glob(os.path.join(prefix, "usr/lib", libdir, "_sysconfigdata_*.py"))
for f in sorted({os.path.realpath(f) for f in files}):
    with open(f) as fh:
        s = fh.read()
    for key in ("WHEEL_PKG_DIR", "INCLUDEPY", "CONFINCLUDEPY"):
        s = re.sub(r"('%s': )'(/[^']*)'" % key,
                   lambda m: m.group(1) + repr(m.group(2) if m.group(2).startswith(prefix + "/")
                                               else prefix + m.group(2)), s)
    with open(f, "w") as fh:
        fh.write(s)
EOF
}

usable_candidate() {  # not one of ours, not a shim
    case $1 in
        "$BIN"/*|*/shims/*) return 1 ;;
    esac
    check_py "$1" "$2"
}

pyenv_roots=()
if command -v pyenv >/dev/null 2>&1; then
    r=$(pyenv root 2>/dev/null) && [ -n "$r" ] && pyenv_roots+=("$r")
fi
for r in "${PYENV_ROOT:-}" "$HOME/.pyenv"; do
    if [ -z "$r" ] || [ ! -d "$r" ]; then continue; fi
    case " ${pyenv_roots[*]} " in *" $r "*) ;; *) pyenv_roots+=("$r") ;; esac
done

# find_pyenv X.Y[d|t]: the newest of pyenv's versions of that build whose python runs and
# is that build: X.Y.Z for X.Y, X.Y.Z-debug (`pyenv install --debug X.Y.Z`) for the debug
# build X.Yd, X.Y.Zt (`pyenv install X.Yt`) for the free-threaded build X.Yt.
find_pyenv() {
    local v=$1 base=${1%[dt]} glob root d exe
    case $v in
        *d) glob="$base.*-debug" ;;
        *t) glob="$base.*t" ;;
        *) glob="$base.*" ;;
    esac
    for root in "${pyenv_roots[@]}"; do
        for d in "$root"/versions/$glob; do
            case $v:${d##*/} in *[0-9]:*t|*[0-9]:*-debug) continue ;; esac  # X.Y: neither build
            if [ -d "$d" ]; then printf '%s\n' "$d"; fi
        done
    done | sort -V -r | while read -r d; do
        for exe in "$d/bin/python$v" "$d/bin/python$base"; do
            if check_py "$exe" "$v"; then
                printf '%s\n' "$exe"
                break 2
            fi
        done
    done
}

uv_bin=$(command -v uv 2>/dev/null || true)
find_uv() {
    local v=$1 p request=$1
    [ -n "$uv_bin" ] || return 0
    case $v in *d) request="${v%d}+debug" ;; esac  # uv's name for a debug build
    p=$(PATH="$search_path" UV_PYTHON_DOWNLOADS=never "$uv_bin" python find --system "$request" 2>/dev/null) || return 0
    if [ -n "$p" ] && usable_candidate "$p" "$v"; then printf '%s\n' "$p"; fi
}

find_system() {
    local v=$1 d
    local -a dirs
    IFS=: read -r -a dirs <<<"$search_path"
    for d in "${dirs[@]}"; do
        if usable_candidate "$d/python$v" "$v"; then
            printf '%s\n' "$d/python$v"
            return 0
        fi
    done
}

# ---------------------------------------------------------------------------
# The Debian sid route.
APTDIR="$CACHE/apt"
DEBS="$CACHE/debs"
debian_state=unknown   # unknown | ready | failed
debian_reason=
downloaded_bytes=0
apt_opts=()

apt_get() { apt-get "${apt_opts[@]}" "$@"; }
apt_cache() { apt-cache "${apt_opts[@]}" "$@"; }

# The base URI of the Debian archive that the machine's own apt sources use.
debian_mirror() {
    local f uri
    if [ -n "${PYTHONS_DEBIAN_MIRROR:-}" ]; then
        printf '%s\n' "$PYTHONS_DEBIAN_MIRROR"
        return
    fi
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        case $f in
            *.sources) awk '/^[ \t]*URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" ;;
            *) awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }' "$f" ;;
        esac
    done | while read -r uri; do
        case ${uri%/} in
            */debian) printf '%s\n' "${uri%/}"; break ;;
        esac
    done | { read -r uri || uri=http://deb.debian.org/debian; printf '%s\n' "$uri"; }
}

# Install a tool with the system's apt-get if it is missing (root only).
ensure_tool() {
    local tool=$1 pkg=$2
    command -v "$tool" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" != 0 ]; then
        log "$tool is missing and we are not root to apt-get install $pkg"
        return 1
    fi
    log "installing $pkg (for $tool) with the system's apt-get"
    mkdir -p "$CACHE"
    if { [ -n "${system_apt_updated:-}" ] || apt-get update -qq; } >"$CACHE/apt-install.log" 2>&1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >>"$CACHE/apt-install.log" 2>&1; then
        system_apt_updated=1
    else
        sed 's/^/  /' "$CACHE/apt-install.log" >&2
        return 1
    fi
    command -v "$tool" >/dev/null 2>&1
}

debian_prepare() {
    [ "$debian_state" = unknown ] || { [ "$debian_state" = ready ]; return; }
    debian_state=failed
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1 \
        || ! command -v dpkg >/dev/null 2>&1; then
        debian_reason="not a Debian-family machine (no apt-get/dpkg-deb)"
        return 1
    fi
    if [ ! -r "$KEYRING" ]; then
        debian_reason="no Debian archive keyring at $KEYRING (package debian-archive-keyring)"
        return 1
    fi
    if ! ensure_tool patchelf patchelf; then
        debian_reason="patchelf is missing and could not be installed"
        return 1
    fi
    ensure_tool eu-unstrip elfutils \
        || log "warning: no eu-unstrip (elfutils): valgrind will not run the sid pythons"

    local arch mirror t
    arch=$(dpkg --print-architecture)
    mirror=$(debian_mirror)
    mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$DEBS"
    : >"$APTDIR/state/status"
    printf 'deb [arch=%s signed-by=%s] %s sid main\n' "$arch" "$KEYRING" "$mirror" >"$APTDIR/sources.list"
    apt_opts=(
        -o "Dir::Etc::SourceList=$APTDIR/sources.list"
        -o Dir::Etc::SourceParts=/dev/null
        -o Dir::Etc::Preferences=/dev/null
        -o Dir::Etc::PreferencesParts=/dev/null
        -o "Dir::State=$APTDIR/state"
        -o "Dir::State::status=$APTDIR/state/status"
        -o "Dir::Cache=$APTDIR/cache"
        -o Dir::Cache::pkgcache=pkgcache.bin
        -o Dir::Cache::srcpkgcache=srcpkgcache.bin
        -o Acquire::Check-Valid-Until=false
        -o Acquire::Languages=none
    )
    [ "$(id -u)" != 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
    # Only the Packages index: no translations, DEP-11 metadata, Contents.
    for t in $(apt-config dump | sed -n 's/^Acquire::IndexTargets::deb::\([^:" ]*\) "";$/\1/p'); do
        [ "$t" = Packages ] || apt_opts+=(-o "Acquire::IndexTargets::deb::$t::DefaultEnabled=false")
    done
    log "updating a private apt state for Debian sid from $mirror"
    if ! apt_get -q update --error-on=any >"$APTDIR/update.log" 2>&1; then
        sed 's/^/  /' "$APTDIR/update.log" >&2
        debian_reason="apt-get update of Debian sid from $mirror failed (see above)"
        return 1
    fi
    debian_state=ready
}

# resolve_pkg NAME: the package that really exists in sid for NAME (the name
# itself, its t64 twin, or the first provider of a virtual package).
resolve_pkg() {
    local n=$1 c out
    for c in "$n" "${n}t64" "${n%t64}"; do
        out=$(apt_cache show --no-all-versions "$c" 2>/dev/null) || continue
        case $out in *Package:*) printf '%s\n' "$c"; return 0 ;; esac
    done
    c=$(apt_cache showpkg "$n" 2>/dev/null | awk '/^Reverse Provides:/ { f = 1; next } f && NF { print $1; exit }') || true
    [ -n "$c" ] && printf '%s\n' "$c"
}

# fetch_debs PKG...: download the sid candidates into $DEBS (unless already
# there) and set fetched to the path of each .deb.
fetched=()
fetch_debs() {
    local pkg ver arch file old size new_bytes=0
    local -a want=()
    fetched=()
    while read -r pkg ver arch size; do
        file="$DEBS/${pkg}_${ver//:/%3a}_${arch}.deb"
        fetched+=("$file")
        if [ ! -s "$file" ]; then
            want+=("$pkg=$ver")
            new_bytes=$((new_bytes + size))
        fi
    done < <(apt_cache show --no-all-versions "$@" | awk '
        /^Package:/ { p = $2 } /^Version:/ { v = $2 } /^Architecture:/ { a = $2 }
        /^Size:/ { s = $2 } /^$/ { if (p != "") print p, v, a, s; p = "" }
        END { if (p != "") print p, v, a, s }')
    if [ ${#want[@]} -gt 0 ]; then
        log "downloading ${#want[@]} packages ($((new_bytes / 1024)) KiB)"
        # (The debug build from the machine's own release skips debian_prepare, which
        # creates it for the sid route: on a fresh cache it may come first.)
        mkdir -p "$DEBS"
        (cd "$DEBS" && apt_get -qq download "${want[@]}" >&2) || return 1
        downloaded_bytes=$((downloaded_bytes + new_bytes))
    fi
    for file in "${fetched[@]}"; do
        [ -s "$file" ] || { log "missing after download: $file"; return 1; }
        # Drop older versions of the same package.
        old=${file##*/}
        for old in "$DEBS/${old%%_*}"_*.deb; do
            [ "$old" = "$file" ] || rm -f "$old"
        done
    done
}

# Merge libc6-dbg's symbols into the prefix's ld.so and libc.so.6.
unstrip_libc() {
    local prefix=$1 dbgdeb=$2 tmp f id dbg
    command -v eu-unstrip >/dev/null 2>&1 && command -v eu-readelf >/dev/null 2>&1 || return 0
    tmp=$(mktemp -d "$CACHE/dbg.XXXXXX")
    dpkg-deb -x "$dbgdeb" "$tmp"
    for f in "$prefix"/usr/lib/*/ld-linux*.so.* "$prefix"/usr/lib/*/libc.so.6 \
        "$prefix"/lib/*/ld-linux*.so.* "$prefix"/lib/*/libc.so.6; do
        if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
        id=$(eu-readelf -n "$f" | awk '/Build ID:/ { print $NF; exit }')
        dbg="$tmp/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
        if [ -n "$id" ] && [ -f "$dbg" ] && eu-unstrip -o "$f.unstripped" "$f" "$dbg"; then
            chmod 755 "$f.unstripped"
            mv -f "$f.unstripped" "$f"
        else
            log "warning: could not merge debug symbols into ${f#"$prefix"/} (valgrind may refuse it)"
            rm -f "$f.unstripped"
        fi
    done
    rm -rf "$tmp"
}

# build_prefix X.Y: build $CACHE/debian/pythonX.Y and set built_exe to its
# interpreter. Runs in an `if` (set -e is off there): check every step.
built_exe=
build_prefix() {
    local v=$1 prefix="$CACHE/debian/python$1" p r
    local -a pkgs=()
    case $v in *d) build_debug_prefix "$v"; return ;; esac
    debian_prepare || return 1
    for p in $COMMON_PKGS "python$v" "python$v-minimal" "libpython$v-minimal" "libpython$v-stdlib" \
        "libpython$v" "python$v-dev" "libpython$v-dev" "python$v-venv"; do
        r=$(resolve_pkg "$p") || true
        if [ -n "$r" ]; then
            [ "$r" = "$p" ] || log "using $r for $p"
            pkgs+=("$r")
        else
            case " $REQUIRED_COMMON python$v python$v-minimal libpython$v-minimal libpython$v-stdlib " in
                *" $p "*) debian_reason="Debian sid has no package $p"; return 1 ;;
            esac
            log "warning: Debian sid has no package $p; going on without it"
        fi
    done
    r=$(resolve_pkg libc6-dbg) || true
    [ -z "$r" ] || pkgs+=("$r")
    built_exe=
    if ! fetch_debs "${pkgs[@]}" || [ ${#fetched[@]} -ne ${#pkgs[@]} ]; then
        debian_reason="downloading from Debian sid failed"
        return 1
    fi

    install_prefix "$prefix" "python$v" patchelf || return 1
    built_exe=$prefix/usr/bin/python$v
}

# install_prefix PREFIX EXE-NAME patchelf|system-libc: unpack the .debs in
# ${fetched[@]} into PREFIX (anew) and make PREFIX/usr/bin/EXE-NAME run there:
# with `patchelf`, every ELF in usr/bin is pointed at the prefix's own loader and
# libraries (a newer glibc than the machine's); with `system-libc` the machine's
# loader and libraries serve (packages of the machine's own release). Then the
# C headers and ensurepip's wheels are looked for in the prefix, the stamp is
# written. Sets debian_reason on failure.
install_prefix() {
    local prefix=$1 name=$2 mode=$3 p r exe interp loader d triplet v
    local -a rpath=()
    v=${name#python}
    v=${v%d}
    log "building $prefix"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    for d in "${fetched[@]}"; do
        case ${d##*/} in libc6-dbg_*) continue ;; esac
        dpkg-deb -x "$d" "$prefix" || { debian_reason="dpkg-deb -x ${d##*/} failed"; return 1; }
    done
    # Absolute symlinks (e.g. sitecustomize.py -> /etc/...) point into the prefix.
    while IFS= read -r -d '' p; do
        ln -sfn "$prefix$(readlink "$p")" "$p"
    done < <(find "$prefix" -type l -lname '/*' -print0)

    exe="$prefix/usr/bin/$name"
    [ -f "$exe" ] || { debian_reason="no usr/bin/$name in the packages"; return 1; }
    if [ "$mode" = patchelf ]; then
        interp=$(patchelf --print-interpreter "$exe")
        loader=$(readlink -f "$prefix$interp" 2>/dev/null || true)
        if [ ! -f "$loader" ]; then
            loader=$(find "$prefix" -type f -name "${interp##*/}" -print -quit)
        fi
        case $loader in
            "$prefix"/*) ;;
            *) debian_reason="no dynamic loader ${interp##*/} in the prefix"; return 1 ;;
        esac
        triplet=$(basename "$(dirname "$(find "$prefix" -name libc.so.6 -print -quit)")")
        for d in "usr/lib/$triplet" "lib/$triplet" usr/lib64 lib64 usr/lib lib; do
            if compgen -G "$prefix/$d/lib*.so*" >/dev/null; then rpath+=("$prefix/$d"); fi
        done
        for p in "$prefix"/usr/bin/*; do
            if [ ! -f "$p" ] || [ -L "$p" ]; then continue; fi
            patchelf --print-interpreter "$p" >/dev/null 2>&1 || continue  # not a dynamic ELF
            patchelf --set-interpreter "$loader" --force-rpath \
                --set-rpath "$(IFS=:; printf '%s' "${rpath[*]}")" "$p" \
                || { debian_reason="patchelf failed on ${p#"$prefix"/}"; return 1; }
        done
    fi
    # pyconfig.h dispatches to <TRIPLET/pythonX.Y[d]/pyconfig.h>: make it relative.
    for p in "$prefix/usr/include/python$v/pyconfig.h" "$prefix/usr/include/python${v}d/pyconfig.h"; do
        [ -f "$p" ] || continue
        sed -i 's|^\(#[ \t]*include[ \t]*\)<\([^>]*/python[0-9.]*d\{0,1\}/pyconfig\.h\)>|\1"../\2"|' "$p"
    done
    # ensurepip's wheels and the C headers live in the prefix, not in /usr.
    patch_sysconfigdata "$exe" "$prefix" 'python3*' || return 1
    if [ "$mode" = patchelf ]; then
        r=
        for d in "${fetched[@]}"; do
            case ${d##*/} in libc6-dbg_*) r=$d ;; esac
        done
        if [ -n "$r" ]; then
            unstrip_libc "$prefix" "$r"
        else
            log "warning: no libc6-dbg in sid: valgrind will not run $name"
        fi
    fi
    "$exe" -m compileall -q -j0 "$prefix/usr/lib/python$v" >/dev/null 2>&1 || true
    if ! "$exe" -c "import $SMOKE_IMPORTS, glob, sysconfig
assert glob.glob(sysconfig.get_config_var('WHEEL_PKG_DIR') + '/pip-*.whl'), 'no pip wheel for ensurepip'" >&2; then
        debian_reason="the Debian $name in $prefix fails to import its standard modules"
        return 1
    fi
    printf 'recipe=%s\nversion=%s\n' "$RECIPE" "$("$exe" -c 'import sys; print(sys.version.split()[0])')" \
        >"$prefix/.pythons-stamp" || return 1
}

# build_debug_prefix X.Yd: build $CACHE/debian/pythonX.Yd, a debug CPython
# (Py_DEBUG: the interpreter's assertions and sys.gettotalrefcount()), and set
# built_exe to its pythonX.Yd. Debian's pythonX.Y-dbg and libpythonX.Y-dbg go
# beside the release packages they extend (the standard library, the headers,
# ensurepip's wheels). From the machine's own Debian release when its apt
# sources have pythonX.Y-dbg (bookworm: 3.11; it runs on the machine's glibc,
# which those libraries were built against), else from Debian sid with the
# prefix's own glibc (patchelf, as for the release prefixes).
build_debug_prefix() {
    local v=$1 base=${1%d} prefix="$CACHE/debian/python$1" p r mode where
    local -a pkgs=() names=()
    names=("python$base" "python$base-minimal" "libpython$base-minimal" "libpython$base-stdlib"
        "libpython$base" "python$base-dev" "libpython$base-dev" "python$base-venv"
        "python$base-dbg" "libpython$base-dbg")
    built_exe=
    if command -v apt-cache >/dev/null 2>&1; then
        r=$(apt-cache show --no-all-versions "python$base-dbg" 2>/dev/null) || r=
    fi
    if [[ ${r:-} == *Package:* ]]; then
        # The machine's apt state (read only; downloads go to our cache).
        local -a apt_opts=()
        [ "$(id -u)" != 0 ] || apt_opts+=(-o APT::Sandbox::User=root)
        mode=system-libc
        where="the machine's Debian release"
        names+=(python3-pip-whl python3-setuptools-whl)
    else
        debian_prepare || return 1
        mode=patchelf
        where="Debian sid"
        # shellcheck disable=SC2206  # a list of package names
        names=($COMMON_PKGS "${names[@]}")
    fi
    for p in "${names[@]}"; do
        r=$(resolve_pkg "$p") || true
        if [ -n "$r" ]; then
            pkgs+=("$r")
        else
            case " $REQUIRED_COMMON python$base python$base-minimal libpython$base-minimal libpython$base-stdlib python$base-dbg libpython$base-dbg " in
                *" $p "*) debian_reason="$where has no package $p"; return 1 ;;
            esac
            log "warning: $where has no package $p; going on without it"
        fi
    done
    if [ "$mode" = patchelf ]; then
        r=$(resolve_pkg libc6-dbg) || true
        [ -z "$r" ] || pkgs+=("$r")
    fi
    log "python$v: the debug build from $where"
    if ! fetch_debs "${pkgs[@]}" || [ ${#fetched[@]} -ne ${#pkgs[@]} ]; then
        debian_reason="downloading from $where failed"
        return 1
    fi
    install_prefix "$prefix" "python$v" "$mode" || return 1
    if ! check_py "$prefix/usr/bin/python$v" "$v"; then
        debian_reason="$prefix/usr/bin/python$v is not a debug build of $base"
        return 1
    fi
    built_exe=$prefix/usr/bin/python$v
}

# prefix_python X.Y: the ready prefix interpreter (stamp in place) or nothing.
prefix_python() {
    local prefix="$CACHE/debian/python$1"
    if grep -qx "recipe=$RECIPE" "$prefix/.pythons-stamp" 2>/dev/null \
        && check_py "$prefix/usr/bin/python$1" "$1"; then
        printf '%s\n' "$prefix/usr/bin/python$1"
    fi
}

# ---------------------------------------------------------------------------
# PyPy: pypy3.X next to python3.X in the bin dir.

# check_pypy EXE X.Y: EXE runs and is PyPy for Python X.Y.
check_pypy() {
    local out
    [ -x "$1" ] || return 1
    case $1 in "$BIN"/*|*/shims/*) return 1 ;; esac
    out=$("$1" -c 'import sys, platform
print("%d.%d" % sys.version_info[:2], platform.python_implementation())' 2>/dev/null) || return 1
    [ "$out" = "$2 PyPy" ]
}

find_pypy_pyenv() {
    local v=$1 root d
    for root in "${pyenv_roots[@]}"; do
        for d in "$root"/versions/pypy"$v"*; do
            if [ -d "$d" ]; then printf '%s\n' "$d"; fi
        done
    done | sort -V -r | while read -r d; do
        for exe in "$d/bin/pypy$v" "$d/bin/pypy3"; do
            if check_pypy "$exe" "$v"; then
                printf '%s\n' "$exe"
                break 2
            fi
        done
    done
}

find_pypy_uv() {
    local v=$1 p
    [ -n "$uv_bin" ] || return 0
    p=$(PATH="$search_path" UV_PYTHON_DOWNLOADS=never "$uv_bin" python find --system "pypy$v" 2>/dev/null) || return 0
    if [ -n "$p" ] && check_pypy "$p" "$v"; then printf '%s\n' "$p"; fi
}

find_pypy_system() {
    local v=$1 d name
    local -a dirs
    IFS=: read -r -a dirs <<<"$search_path"
    for d in "${dirs[@]}"; do
        for name in "pypy$v" pypy3; do
            if check_pypy "$d/$name" "$v"; then
                printf '%s\n' "$d/$name"
                return 0
            fi
        done
    done
}

# build_pypy_prefix X.Y: build $CACHE/debian/pypyX.Y from sid's pypy3 and set
# built_exe to its interpreter. Runs in an `if` (set -e is off): check every step.
build_pypy_prefix() {
    local v=$1 prefix="$CACHE/debian/pypy$1" p r exe interp loader d triplet sid_version
    local -a pkgs=() rpath=()
    debian_prepare || return 1
    sid_version=$(apt_cache show --no-all-versions pypy3 2>/dev/null | sed -n 's/^Version: //p' | head -n 1)
    if [ -z "$sid_version" ]; then
        debian_reason="Debian sid has no package pypy3"
        return 1
    fi
    for p in $COMMON_PKGS pypy3 pypy3-lib pypy3-dev pypy3-venv; do
        r=$(resolve_pkg "$p") || true
        if [ -n "$r" ]; then
            pkgs+=("$r")
        else
            case " $REQUIRED_COMMON pypy3 pypy3-lib " in
                *" $p "*) debian_reason="Debian sid has no package $p"; return 1 ;;
            esac
            log "warning: Debian sid has no package $p; going on without it"
        fi
    done
    built_exe=
    if ! fetch_debs "${pkgs[@]}" || [ ${#fetched[@]} -ne ${#pkgs[@]} ]; then
        debian_reason="downloading from Debian sid failed"
        return 1
    fi

    log "building $prefix (Debian sid's pypy3 $sid_version)"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    for d in "${fetched[@]}"; do
        dpkg-deb -x "$d" "$prefix" || { debian_reason="dpkg-deb -x ${d##*/} failed"; return 1; }
    done
    while IFS= read -r -d '' p; do
        ln -sfn "$prefix$(readlink "$p")" "$p"
    done < <(find "$prefix" -type l -lname '/*' -print0)

    exe="$prefix/usr/bin/pypy$v"
    if [ ! -f "$exe" ]; then
        debian_reason="Debian sid's pypy3 $sid_version is not for Python $v (no usr/bin/pypy$v: $(cd "$prefix/usr/bin" && echo pypy3.*))"
        return 1
    fi
    interp=$(patchelf --print-interpreter "$exe")
    loader=$(readlink -f "$prefix$interp" 2>/dev/null || true)
    if [ ! -f "$loader" ]; then
        loader=$(find "$prefix" -type f -name "${interp##*/}" -print -quit)
    fi
    case $loader in
        "$prefix"/*) ;;
        *) debian_reason="no dynamic loader ${interp##*/} in the prefix"; return 1 ;;
    esac
    triplet=$(basename "$(dirname "$(find "$prefix" -name libc.so.6 -print -quit)")")
    for d in "usr/lib/$triplet" "lib/$triplet" usr/lib64 lib64 usr/lib lib; do
        if compgen -G "$prefix/$d/lib*.so*" >/dev/null; then rpath+=("$prefix/$d"); fi
    done
    # The interpreter (its RPATH was $ORIGIN/) and libpypy3.X-c.so, which holds PyPy
    # itself and is what C extensions link against.
    patchelf --set-interpreter "$loader" --force-rpath \
        --set-rpath "$(IFS=:; printf '%s' "${rpath[*]}")" "$exe" \
        || { debian_reason="patchelf failed on ${exe#"$prefix"/}"; return 1; }
    for p in "$prefix/usr/lib/$triplet"/libpypy3*-c.so*; do
        if [ ! -f "$p" ] || [ -L "$p" ]; then continue; fi
        patchelf --force-rpath --set-rpath "$(IFS=:; printf '%s' "${rpath[*]}")" "$p" \
            || { debian_reason="patchelf failed on ${p#"$prefix"/}"; return 1; }
    done
    # ensurepip's wheels and the C headers live in the prefix, not in /usr.
    patch_sysconfigdata "$exe" "$prefix" 'pypy3*' || return 1
    "$exe" -m compileall -q "$prefix/usr/lib/pypy$v" >/dev/null 2>&1 || true
    if ! "$exe" -c "import ssl, sqlite3, ctypes, decimal, lzma, bz2, zlib, pyexpat, hashlib, venv, ensurepip, glob, os, sysconfig
assert glob.glob(sysconfig.get_config_var('WHEEL_PKG_DIR') + '/pip-*.whl'), 'no pip wheel for ensurepip'
assert os.path.exists(os.path.join(sysconfig.get_config_var('INCLUDEPY'), 'Python.h')), 'no Python.h'" >&2; then
        debian_reason="the sid pypy$v in $prefix fails to import its standard modules"
        return 1
    fi
    printf 'recipe=%s\nversion=%s\n' "$RECIPE" "$sid_version" >"$prefix/.pythons-stamp" || return 1
    built_exe=$exe
}

# find_pypy X.Y: set exe and src to a PyPy for Python X.Y (already on the machine,
# else the Debian sid prefix, built if need be), or leave src empty.
find_pypy() {
    local v=$1 prefix="$CACHE/debian/pypy$1"
    exe=$(find_pypy_pyenv "$v") && [ -n "$exe" ] && { src=pyenv; return 0; }
    exe=$(find_pypy_uv "$v") && [ -n "$exe" ] && { src=uv; return 0; }
    exe=$(find_pypy_system "$v") && [ -n "$exe" ] && { src=system; return 0; }
    debian_tried=1
    exe="$prefix/usr/bin/pypy$v"
    if grep -qx "recipe=$RECIPE" "$prefix/.pythons-stamp" 2>/dev/null && check_pypy "$exe" "$v"; then
        src="debian sid prefix"
    elif build_pypy_prefix "$v"; then
        exe=$built_exe
        src="debian sid prefix (built now)"
    else
        log "pypy$v from Debian sid: ${debian_reason:-failed}"
        exe=
    fi
}

# ---------------------------------------------------------------------------
missing=()
found=0
debian_tried=0
for v in $versions; do
    exe='' src=''
    case $v in
        pypy*)
            find_pypy "${v#pypy}"
            if [ -n "$src" ] && [ -n "$exe" ]; then
                ln -sfn "$exe" "$BIN/$v"
                found=$((found + 1))
                log "$v: $src: $exe"
            else
                [ ! -L "$BIN/$v" ] || rm -f "$BIN/$v"
                missing+=("$v")
            fi
            continue
            ;;
    esac
    exe=$(find_pyenv "$v") && [ -n "$exe" ] && src=pyenv
    [ -n "$src" ] || { exe=$(find_uv "$v") && [ -n "$exe" ] && src=uv; } || true
    [ -n "$src" ] || { exe=$(find_system "$v") && [ -n "$exe" ] && src=system; } || true
    if [ -z "$src" ]; then
        case " $DEBIAN_VERSIONS $DEBIAN_DEBUG_VERSIONS " in
            *" $v "*)
                debian_tried=1
                exe=$(prefix_python "$v")
                if [ -n "$exe" ]; then
                    src="debian prefix"
                elif build_prefix "$v"; then
                    exe=$built_exe
                    src="debian prefix (built now)"
                else
                    log "python$v from Debian: ${debian_reason:-failed}"
                    exe=
                fi
                ;;
        esac
    fi
    if [ -n "$src" ] && [ -n "$exe" ]; then
        ln -sfn "$exe" "$BIN/python$v"
        found=$((found + 1))
        log "python$v: $src: $exe"
    else
        [ ! -L "$BIN/python$v" ] || rm -f "$BIN/python$v"
        missing+=("$v")
    fi
done

# apt's binary caches are big and rebuilt from the lists on the next update.
[ "$debian_state" = unknown ] || rm -f "$APTDIR"/cache/*.bin
elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
if [ "$downloaded_bytes" -gt 0 ]; then
    log "downloaded $((downloaded_bytes / 1024 / 1024)) MiB of Debian packages"
fi
log "$found python(s) in $BIN ($((elapsed_ms / 1000)).$(printf '%03d' $((elapsed_ms % 1000)))s)"
status=0
if [ ${#missing[@]} -gt 0 ]; then
    names=()
    for v in "${missing[@]}"; do
        case $v in pypy*) names+=("$v") ;; *) names+=("python$v") ;; esac
    done
    log "MISSING: ${names[*]}"
    tried="pyenv (${pyenv_roots[*]:-no pyenv root}), uv (${uv_bin:-not installed}), the system PATH"
    if [ "$debian_tried" = 1 ]; then
        tried="$tried, and a Debian prefix for $DEBIAN_VERSIONS $DEBIAN_DEBUG_VERSIONS and PyPy${debian_reason:+: $debian_reason}"
    fi
    log "tried: $tried"
    log "to get them, either:"
    for v in "${missing[@]}"; do
        case $v in
            *d) log "    pyenv install --debug ${v%d}  (pyenv: https://github.com/pyenv/pyenv#installation)" ;;
            *t) log "    pyenv install ${v}     (a pyenv recent enough to list free-threaded builds)" ;;
            *) log "    pyenv install $v      (pyenv: https://github.com/pyenv/pyenv#installation)" ;;
        esac
    done
    for v in "${missing[@]}"; do
        case $v in
            *d) log "    uv python install ${v%d}+debug  (uv: https://docs.astral.sh/uv/getting-started/installation/)" ;;
            *) log "    uv python install $v  (uv: https://docs.astral.sh/uv/getting-started/installation/)" ;;
        esac
    done
    case " ${missing[*]} " in
        *" 3.14 "*|*" 3.15 "*)
            log "or, for 3.14 and 3.15 on a Debian-family machine, let this script fetch them"
            log "from Debian's archive (it needs apt-get, dpkg-deb, the debian-archive-keyring,"
            log "and patchelf, which it installs when run as root)"
            ;;
    esac
    case " ${missing[*]} " in
        *" 3.11d "*|*" 3.14d "*|*" 3.15d "*)
            log "or, for the debug builds 3.11d (from the machine's own Debian release, bookworm)"
            log "and 3.14d, 3.15d (Debian sid), let this script fetch Debian's pythonX.Y-dbg (as above)"
            ;;
    esac
    case " ${missing[*]} " in
        *"t "*)
            log "(Debian packages no free-threaded CPython: for 3.14t and 3.15t only pyenv and uv"
            log "have a route, and both download from GitHub or python.org)"
            ;;
    esac
    case " ${missing[*]} " in
        *" pypy"*)
            log "or, for PyPy on a Debian-family machine, let this script fetch Debian sid's"
            log "pypy3 (the same needs; only when sid's pypy3 is for that Python version)"
            ;;
    esac
    log "then run this again."
    [ "$require" = 0 ] || status=1
fi
printf '%s\n' "$BIN"
exit "$status"
