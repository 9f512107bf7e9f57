#!/usr/bin/env bash
# pktgen.sh: builds Pktgen-DPDK against the system's DPDK 22.11, once, and
# caches the binary.
#
#   tools/pktgen.sh build   build unless cached; the last line printed is the binary's path
#   tools/pktgen.sh path    print the cached binary's path (exit 1 if it is not built)
#
#   PKTGEN_SRC     a Pktgen-DPDK source tree or release tarball. Default: the
#                  lab's copy, ../shared/vendor/pktgen-23.06.1.tar.gz beside
#                  the repository, when it exists. Elsewhere take the same
#                  release from upstream (https://github.com/pktgen/Pktgen-DPDK,
#                  tag pktgen-23.06.1) and point PKTGEN_SRC at it.
#   PKTGEN_CACHE   where builds are kept (default: target/pktgen)
#
# Exit status: 0 built (or cached), 3 no source to build from (PKTGEN_SRC
# unset and no lab copy: callers skip and say so), 1 anything else (a
# PKTGEN_SRC that does not exist included). Messages go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENDOR_COPY=$ROOT/../shared/vendor/pktgen-23.06.1.tar.gz
CACHE=${PKTGEN_CACHE:-${CARGO_TARGET_DIR:-$ROOT/target}/pktgen}

say() { echo "pktgen.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# The source to build from: PKTGEN_SRC, else the lab's copy; exit 3 without one.
source_path() {
    local src=${PKTGEN_SRC:-}
    if [ -z "$src" ]; then
        if [ -f "$VENDOR_COPY" ]; then
            src=$VENDOR_COPY
        else
            say "no Pktgen-DPDK source: PKTGEN_SRC is unset and $VENDOR_COPY does not exist;"
            say "fetch the release (https://github.com/pktgen/Pktgen-DPDK, tag pktgen-23.06.1) and set PKTGEN_SRC to the tarball or tree"
            exit 3
        fi
    fi
    [ -e "$src" ] || { say "PKTGEN_SRC=$src does not exist"; exit 1; }
    realpath "$src"
}

# A cache directory per source: the tarball's checksum, or the tree's path.
cache_dir() { # src
    if [ -f "$1" ]; then
        echo "$CACHE/$(basename "$1" | sed -E 's/\.(tar\.gz|tgz|tar\.xz|tar)$//')-$(sha256sum "$1" | cut -c1-12)"
    else
        echo "$CACHE/tree-$(echo -n "$1" | sha256sum | cut -c1-12)"
    fi
}

check_deps() {
    local missing=() p
    for p in meson ninja pkg-config cc; do command -v "$p" >/dev/null || missing+=("$p")
    done
    for p in libdpdk lua5.3 libpcap numa; do pkg-config --exists "$p" 2>/dev/null || missing+=("$p (pkg-config)")
    done
    [ ${#missing[@]} -eq 0 ] && return
    die "cannot build pktgen, missing: ${missing[*]} (tools/setup.sh installs meson ninja-build liblua5.3-dev libpcap-dev libnuma-dev)"
}

build() {
    local src dir tree
    src=$(source_path)
    dir=$(cache_dir "$src")
    if [ -f "$src" ] && [ -x "$dir/build/app/pktgen" ] && [ -f "$dir/build/app/Pktgen.lua" ]; then
        say "cached: $dir/build/app/pktgen (from $src)"
        echo "$dir/build/app/pktgen"
        return
    fi
    check_deps
    mkdir -p "$dir"
    # One build at a time per source (tests and a user may ask together).
    exec 9>"$dir/.lock"
    flock 9
    if [ -f "$src" ]; then
        if [ ! -f "$dir/src/meson.build" ]; then
            say "unpacking $src"
            rm -rf "$dir/src" && mkdir -p "$dir/src"
            tar xf "$src" -C "$dir/src" --strip-components=1 || die "cannot unpack $src"
        fi
        tree=$dir/src
    else
        tree=$src
    fi
    [ -f "$tree/meson.build" ] || die "$tree has no meson.build: not a Pktgen-DPDK source tree"
    if [ ! -f "$dir/build/build.ninja" ]; then
        say "configuring $tree (meson, with Lua)"
        # Without DPDK's include path the Lua library misses rte_version.h.
        CFLAGS="$(pkg-config --cflags libdpdk)" meson setup "$dir/build" "$tree" \
            -Denable_lua=true -Dbuildtype=release >"$dir/meson.log" 2>&1 ||
            { tail -n 30 "$dir/meson.log" >&2; die "meson setup failed (log: $dir/meson.log)"; }
    fi
    say "building (ninja; about a minute on an idle machine)"
    ninja -C "$dir/build" >"$dir/ninja.log" 2>&1 ||
        { tail -n 30 "$dir/ninja.log" >&2; die "ninja failed (log: $dir/ninja.log)"; }
    [ -x "$dir/build/app/pktgen" ] || die "the build produced no $dir/build/app/pktgen"
    # Scripts `require "Pktgen"` (the release's Pktgen.lua): keep it beside
    # the binary, where tools/pktgen-lab.sh points LUA_PATH.
    cp "$tree/Pktgen.lua" "$dir/build/app/"
    say "built $dir/build/app/pktgen"
    echo "$dir/build/app/pktgen"
}

path() {
    local src dir
    src=$(source_path)
    dir=$(cache_dir "$src")
    [ -x "$dir/build/app/pktgen" ] || { say "not built yet: tools/pktgen.sh build"; exit 1; }
    echo "$dir/build/app/pktgen"
}

case "${1:-}" in
build) build ;;
path) path ;;
*) sed -n '2,16p' "$0"; exit 2 ;;
esac
