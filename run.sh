#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the project's headline script on real data.
# Arguments are passed to the script.
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
exec build/landscape scripts/train_fashion_mnist.lua "$@"
