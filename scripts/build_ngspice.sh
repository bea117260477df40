#!/usr/bin/env bash
# Build ngspice 46 with KLU and `--enable-predictor`, for faster `memspice validate`.
#
#   bash scripts/build_ngspice.sh [SOURCE]
#
# SOURCE (or NGSPICE_SRC): an ngspice source tarball or source tree. Without one, the official
# ngspice-46 release tarball is downloaded from SourceForge (or from NGSPICE_URL, a mirror) and
# checked against its pinned SHA-256 before anything is unpacked. NGSPICE_SHA256 checks a given
# tarball the same way (and replaces the pinned checksum for NGSPICE_URL).
# The build lands in NGSPICE_PREFIX (default: .ngspice/46 in the repository, git-ignored);
# memspice finds it there by itself (see docs/simulator.md). Prints the binary's path.
#
# Idempotent: a second call with the same source and flags does nothing. Atomic: everything is
# built and installed under a fresh directory next to the prefix; only a successful, tested
# build replaces the previous one (one rename of a symbolic link), so a build that fails
# halfway leaves the previous build usable.
#
# Why: Debian 12's ngspice 39.3 has no KLU sparse solver, and in a DC sweep it extrapolates
# every device from the two previous sweep points, which is noise when consecutive points are
# unrelated samples. ngspice 46 compiles KLU in (memspice selects it at run time) and
# `--enable-predictor` starts each point from the previous operating point instead.
#
# Needs a C compiler, make, bison, flex, autoconf, automake and libtool (installed with apt-get
# when missing, as root or through passwordless sudo). A few minutes on 2 cores. The binary is
# tuned for this machine: CFLAGS default to "-O3 -march=native -flto=auto" (LDFLAGS to
# -flto=auto); such a binary only runs on CPUs like the one it was built on, so set CFLAGS
# (e.g. CFLAGS=-O2) for a portable one.
set -euo pipefail

readonly VERSION=46
readonly RELEASE_URLS=(
    "https://downloads.sourceforge.net/project/ngspice/ng-spice-rework/$VERSION/ngspice-$VERSION.tar.gz"
    "https://downloads.sourceforge.net/project/ngspice/ng-spice-rework/old-releases/$VERSION/ngspice-$VERSION.tar.gz"
)
readonly RELEASE_SHA256=a0d1699af1940b06649276dcd6ff5a566c8c0cad01b2f7b5e99dedbb4d64c19b
# --disable-openmp: memspice runs every ngspice with one thread (one process per core), where
# the OpenMP BSIM4 path only adds a per-device copy; measured on a 464-sample 64-32-10 validation
# deck, 13 interleaved runs: 0.70 against 0.72 s of CPU (lower in 11 runs, equal in 2), raw
# output identical bit for bit.
readonly CONFIGURE_OPTS=(--enable-predictor --enable-klu --disable-openmp --disable-debug --without-x --with-readline=no)
readonly MARKER=memspice-build.txt   # written next to the binary: how it was built

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${1:-${NGSPICE_SRC:-}}"
prefix="${NGSPICE_PREFIX:-$here/.ngspice/$VERSION}"
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac
prefix="${prefix%/}"

say() { printf 'build-ngspice: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

check_sha256() {  # FILE EXPECTED [NAME]: dies on a mismatch
    local got
    got="$(sha256_of "$1")"
    [ "$got" = "$2" ] || die "checksum mismatch for ${3:-$1}: expected SHA-256 $2, got $got"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 1
    fi
}

# --- the source and its identity ---------------------------------------------------------
[ -z "$src" ] || [ -f "$src" ] || [ -d "$src" ] \
    || die "ngspice source not found: $src (give an ngspice source tarball or source tree)"
parent="$(dirname "$prefix")"
mkdir -p "$parent" || die "cannot create $parent"
work="$(mktemp -d "$parent/.build-$(basename "$prefix").XXXXXX")"
cleanup() { chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

if [ -z "$src" ]; then
    tarball="$work/ngspice-$VERSION.tar.gz"
    fetched=""
    urls=("${RELEASE_URLS[@]}")
    [ -z "${NGSPICE_URL:-}" ] || urls=("$NGSPICE_URL")
    for url in "${urls[@]}"; do
        say "downloading $url"
        if command -v curl >/dev/null 2>&1; then
            curl -fsSL --retry 2 -o "$tarball" "$url" && { fetched=1; break; }
        elif command -v wget >/dev/null 2>&1; then
            wget -q -O "$tarball" "$url" && { fetched=1; break; }
        else
            die "neither curl nor wget is installed; download ngspice-$VERSION.tar.gz yourself and pass its path"
        fi
    done
    [ -n "$fetched" ] || die "cannot download ngspice-$VERSION.tar.gz; download it yourself and pass its path"
    expected="${NGSPICE_SHA256:-$RELEASE_SHA256}"
    check_sha256 "$tarball" "$expected" "$url"
    src="$tarball"
    source_id="sha256:$expected"
elif [ -f "$src" ]; then
    [ -z "${NGSPICE_SHA256:-}" ] || check_sha256 "$src" "$NGSPICE_SHA256"
    source_id="sha256:$(sha256_of "$src")"
elif [ -d "$src" ]; then
    # a tree: its identity is the hash of every file's path and content
    source_id="tree:$(cd "$src" && find . -type f ! -path './.git/*' -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)"
else
    die "ngspice source not found: $src (give an ngspice source tarball or source tree)"
fi
src="$(cd "$(dirname "$src")" && pwd)/$(basename "$src")"

if [ -z "${CFLAGS+x}" ]; then
    export CFLAGS="-O3 -march=native -flto=auto" LDFLAGS="${LDFLAGS:+$LDFLAGS }-flto=auto"
fi
build_key="ngspice-$VERSION $source_id configure ${CONFIGURE_OPTS[*]} CFLAGS=$CFLAGS LDFLAGS=${LDFLAGS:-}"

# --- nothing to do? ----------------------------------------------------------------------
# The prefix is a symbolic link this script manages; anything else there is not replaced.
if [ -e "$prefix" ] && [ ! -L "$prefix" ]; then
    die "$prefix exists and is not a build of this script; remove it or set NGSPICE_PREFIX elsewhere"
fi
if [ -f "$prefix/bin/$MARKER" ] && grep -qxF "key: $build_key" "$prefix/bin/$MARKER" \
        && "$prefix/bin/ngspice" -v >/dev/null 2>&1; then
    say "up to date: $prefix/bin/ngspice (same source and flags)"
    echo "$prefix/bin/ngspice"
    exit 0
fi

# --- build tools -------------------------------------------------------------------------
tools=(gcc make bison flex autoconf automake libtoolize)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing build tools: ${missing[*]}; installing them"
    command -v apt-get >/dev/null 2>&1 || die "install ${missing[*]} and re-run"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential bison flex \
        autoconf automake libtool >&2 \
        || die "could not install the build tools (needs root or passwordless sudo): apt-get install build-essential bison flex autoconf automake libtool"
fi

# --- unpack, configure, compile, install into a fresh directory --------------------------
if [ -d "$src" ]; then
    cp -a "$src" "$work/src"
else
    mkdir "$work/src"
    tar -xf "$src" -C "$work/src" --strip-components=1 2>"$work/tar.log" \
        || die "cannot unpack $src: $(tail -n 1 "$work/tar.log")"
fi
cd "$work/src"
[ -f configure.ac ] || [ -x configure ] || die "$src is not an ngspice source tree (no configure or configure.ac)"
if [ ! -x configure ]; then
    say "generating configure (autogen.sh)"
    ./autogen.sh >"$work/autogen.log" 2>&1 || { tail -n 20 "$work/autogen.log" >&2; die "autogen.sh failed"; }
fi

# The build is configured for its final prefix and installed under $work/stage (DESTDIR);
# ngspice finds its init script and code models through the prefix, which becomes a link.
mkdir -p build && cd build
say "CFLAGS: $CFLAGS"
say "configuring (${CONFIGURE_OPTS[*]}) for $prefix"
../configure --prefix="$prefix" "${CONFIGURE_OPTS[@]}" >"$work/configure.log" 2>&1 \
    || { tail -n 20 "$work/configure.log" >&2; die "configure failed"; }
grep -q "PREDICTOR algorithm enabled" "$work/configure.log" || die "configure did not enable the predictor option"
say "compiling (a few minutes)"
make -j "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)" >"$work/make.log" 2>&1 \
    || { tail -n 20 "$work/make.log" >&2; die "make failed"; }
make install DESTDIR="$work/stage" >"$work/install.log" 2>&1 \
    || { tail -n 20 "$work/install.log" >&2; die "make install failed"; }

built="$work/stage$prefix"
full="$(printf 'version -f\nquit\n' | "$built/bin/ngspice" -p 2>/dev/null || true)"
grep -q "ngspice-$VERSION" <<<"$full" || die "the built ngspice does not run or is not ngspice-$VERSION"
grep -q "Compiled with KLU" <<<"$full" || die "the built ngspice has no KLU solver"
grep -q -- "--enable-predictor" <<<"$full" || die "the built ngspice lacks --enable-predictor"
{
    echo "key: $build_key"
    echo "source: $src"
    echo "configure: ${CONFIGURE_OPTS[*]}"
    echo "cflags: $CFLAGS"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$built/bin/$MARKER"

# --- swap: the prefix is a symbolic link to the newest complete build --------------------
slot="$parent/.$(basename "$prefix")-$(date -u +%Y%m%d%H%M%S)-$$"
mv "$built" "$slot"
old=""
[ -L "$prefix" ] && old="$(readlink "$prefix")"
ln -s "$(basename "$slot")" "$prefix.new-$$"
mv -T "$prefix.new-$$" "$prefix"
case "$old" in  # remove the replaced build only when this script made it
    .$(basename "$prefix")-[0-9]*) [ "$parent/$old" = "$slot" ] || rm -rf "${parent:?}/$old" ;;
esac

say "done: $prefix/bin/ngspice (ngspice-$VERSION, KLU, --enable-predictor)"
echo "$prefix/bin/ngspice"
