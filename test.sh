#!/usr/bin/env bash
# The test suite: installs what is missing (including the PyTorch oracle), builds, and runs ctest.
# Extra arguments go to ctest (e.g. ./test.sh -R gradcheck).
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh --test
build="${LANDSCAPE_BUILD_DIR:-build}"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
