#!/usr/bin/env bash
# The main job: the generalization-gap study (scripts/gg_study.lua, docs/study.md). Installs what is
# missing, builds, trains the study's networks on local workers (resumable: after Ctrl-C or a kill,
# run it again and it continues), then analyses them and prints the claims table.
#   ./run.sh            the full study: 384 MLPs + 24 second-seed reruns, out/gg
#   ./run.sh --quick    the same pipeline on a 128-network grid, out/gg-quick (about two minutes)
# Other arguments go to the script (e.g. --lr-scaling linear --out out/gg-linear); LANDSCAPE_JOBS
# sets the number of workers (default: the number of cores). A run after completion re-analyses.
set -euo pipefail
cd "$(dirname "$0")"
tools/bootstrap.sh
grid=full
out=out/gg
if [[ "${1:-}" == "--quick" ]]; then
    grid=quick
    out=out/gg-quick
    shift
fi
jobs="${LANDSCAPE_JOBS:-$(nproc)}"
echo "run.sh: start $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
build/landscape scripts/gg_study.lua --grid "$grid" --out "$out" --jobs "$jobs" "$@"
echo "run.sh: trained $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec build/landscape scripts/gg_study.lua --grid "$grid" --out "$out" --analyze "$@"
