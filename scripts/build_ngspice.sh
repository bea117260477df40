#!/usr/bin/env bash
# Build ngspice with its own `--enable-predictor` configure option, for faster `memspice validate`.
#
#   bash scripts/build_ngspice.sh [PREFIX]        # default PREFIX: .ngspice-predictor in the repository
#   memspice validate NETWORK --ngspice PREFIX/bin/ngspice ...
#
# Why: in a DC sweep, stock ngspice starts every sweep point from a linear extrapolation of
# each MOSFET's voltages at the two points before it. Validation sweeps through unrelated
# samples, where that extrapolation overshoots; built with --enable-predictor, the devices
# start from the previous operating point instead. Measured on a trained digits 64-32-10
# (built-in card, 1,797 samples): 8.03 -> 6.30 Newton iterations per sample, outputs within
# 2.4e-7 V of Debian's build. Nothing else changes for DC; transient analyses use ngspice's
# node-voltage predictor (NIpred) instead of the devices' own.
#
# Source: Debian's ngspice source package (`apt-get source ngspice`, the same 39.3 that
# `apt-get install ngspice` gives on Debian 12), or any ngspice source tree or tarball given
# as NGSPICE_SRC=/path. Needs a C compiler, make, bison, flex, autoconf, automake and libtool
# (installed with apt-get when missing, as root or through passwordless sudo). About 4 minutes
# on 2 cores. Nothing outside PREFIX and a temporary build directory is written, except the
# packages above. The binary is tuned for this machine: CFLAGS default to
# "-O3 -march=native -flto=auto" (and LDFLAGS to -flto=auto). Against ngspice's own -O2, on the
# digits 64-32-10 (1,797 samples, 2 workers, 6 interleaved runs): median 1,453 against 1,407
# samples/s, faster in every pair, outputs within 1e-13 V. Such a binary only runs on CPUs like
# the one it was built on; set CFLAGS (e.g. CFLAGS=-O2) for a portable one.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-$here/.ngspice-predictor}"
case "$prefix" in /*) ;; *) prefix="$PWD/$prefix" ;; esac

say() { printf 'build-ngspice: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
    else return 1
    fi
}

tools=(gcc make bison flex autoconf automake libtoolize dpkg-source)
missing=()
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "missing build tools: ${missing[*]}; installing them"
    command -v apt-get >/dev/null 2>&1 || die "install ${missing[*]} and re-run"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential bison flex autoconf \
        automake libtool dpkg-dev >&2 \
        || die "could not install the build tools (needs root or passwordless sudo): apt-get install build-essential bison flex autoconf automake libtool dpkg-dev"
fi

work="$(mktemp -d)"  # a fresh build directory under $TMPDIR, removed on exit
trap 'rm -rf "$work"' EXIT
cd "$work"

if [ -n "${NGSPICE_SRC:-}" ]; then
    if [ -d "$NGSPICE_SRC" ]; then
        cp -a "$NGSPICE_SRC" src
    elif [ -f "$NGSPICE_SRC" ]; then
        mkdir src
        tar -xf "$NGSPICE_SRC" -C src --strip-components=1 || die "cannot unpack $NGSPICE_SRC"
    else
        die "NGSPICE_SRC=$NGSPICE_SRC is neither a directory nor a tarball"
    fi
else
    say "fetching Debian's ngspice source package"
    apt-get source -qq ngspice >&2 2>"$work/apt-source.log" || die "apt-get source ngspice failed: \
$(tail -n 1 "$work/apt-source.log"). Enable source packages (a 'deb-src' line, or 'Types: deb deb-src' in \
/etc/apt/sources.list.d/debian.sources, then apt-get update), or set NGSPICE_SRC to an ngspice source tree or tarball"
    src_dir="$(find . -maxdepth 1 -type d -name 'ngspice-*' | head -n 1)"
    [ -n "$src_dir" ] || die "apt-get source ngspice produced no source directory"
    mv "$src_dir" src
fi

cd src
[ -x configure ] || { say "generating configure"; ./autogen.sh >"$work/autogen.log" 2>&1 || die "autogen.sh failed (see a copy of $work/autogen.log)"; }
mkdir -p build && cd build
if [ -z "${CFLAGS+x}" ]; then
    export CFLAGS="-O3 -march=native -flto=auto" LDFLAGS="${LDFLAGS:+$LDFLAGS }-flto=auto"
fi
say "CFLAGS: $CFLAGS"
say "configuring (--enable-predictor) for $prefix"
../configure --prefix="$prefix" --enable-predictor --disable-debug --without-x --with-readline=no \
    >"$work/configure.log" 2>&1 || { tail -n 20 "$work/configure.log" >&2; die "configure failed"; }
grep -q "PREDICTOR algorithm enabled" "$work/configure.log" || die "configure did not enable the predictor option"
say "compiling (a few minutes)"
make -j "$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)" >"$work/make.log" 2>&1 \
    || { tail -n 20 "$work/make.log" >&2; die "make failed"; }
make install >"$work/install.log" 2>&1 || { tail -n 20 "$work/install.log" >&2; die "make install into $prefix failed"; }

"$prefix/bin/ngspice" -v >/dev/null 2>&1 || die "the installed $prefix/bin/ngspice does not run"
say "done: $prefix/bin/ngspice ($("$prefix/bin/ngspice" -v 2>/dev/null | grep -o 'ngspice-[0-9.]*' | head -n 1))"
say "use it with: memspice validate NETWORK --ngspice $prefix/bin/ngspice"
echo "$prefix/bin/ngspice"
