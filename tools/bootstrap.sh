#!/usr/bin/env bash
# Installs the Debian packages landscape needs (only those missing), then configures and builds into
# build/ (or $LANDSCAPE_BUILD_DIR). Used by run.sh and test.sh; `--test` also installs the test oracles
# (python3-torch, python3-numpy, python3-scipy, python3-sklearn) and Slurm with MUNGE (slurm-wlm,
# munge: the study runner's spec starts a single-node cluster); `--fuzz` installs those plus clang
# and its libFuzzer runtime and configures the fuzz build (ls_core and tests/fuzz only, clang, ASan +
# UBSan; see docs/hardening.md). Extra arguments go to cmake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs="build-essential cmake pkg-config lua5.4 liblua5.4-dev libopenblas-dev liblapacke-dev
      lua-filesystem libcsv-dev zlib1g-dev dataset-fashion-mnist gnuplot-nox"
pkgs="$pkgs libedit-dev libjansson-dev"   # the REPL's line editor, the safetensors header's JSON
mode="${1:-}"
fuzz_args=()
if [ "$mode" = "--test" ] || [ "$mode" = "--fuzz" ]; then
    shift
    pkgs="$pkgs lua-busted python3-torch python3-numpy python3-scipy python3-sklearn slurm-wlm munge"
    pkgs="$pkgs luarocks"   # tools/check_install.sh: the rockspec's install
fi
if [ "$mode" = "--fuzz" ]; then
    pkgs="$pkgs clang libclang-rt-dev"
    fuzz_args=(-DCMAKE_C_COMPILER=clang -DLS_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug)
fi

missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "landscape: installing Debian packages:$missing"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends $missing
fi

build="${LANDSCAPE_BUILD_DIR:-build}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${fuzz_args[@]+"${fuzz_args[@]}"} "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
