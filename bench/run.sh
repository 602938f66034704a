#!/usr/bin/env bash
# Builds what is needed and runs every benchmark, printing one CSV on stdout (the header once, then
# the rows of bench_flops, bench_matmul, bench_elementwise, bench_crosscore, bench_autograd.lua and
# any other bench/bench_*.lua)
# and notes on stderr ('#' lines: the machine, the load, GFLOP/s, page faults, CPU times, peak RSS
# of each process).
#
#   bench/run.sh [--quick] [other options passed to every benchmark] > results.csv
#
# LANDSCAPE_BUILD_DIR: the build directory (default: build). LANDSCAPE_PYTHON: the interpreter with
# PyTorch for the peers (default /usr/bin/python3). OPENBLAS_* settings in the environment are used
# as they are, by both sides: OPENBLAS_CORETYPE picks OpenBLAS's kernels (unset, OpenBLAS 0.3.21
# picks its AVX-512 "Cooperlake" kernels on this Zen 5 machine; Haswell gives AVX2 ones); every
# benchmark prints the kernel in use. The benchmarks are not part of ctest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${LANDSCAPE_BUILD_DIR:-$root/build}"

note() { echo "# $*" >&2; }

if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >&2
fi
cmake --build "$build" -j"$(nproc)" --target bench_flops bench_matmul bench_elementwise bench_crosscore \
    landscape >&2

# OpenBLAS threads busy-wait after each call for OPENBLAS_THREAD_TIMEOUT (2^n cycles); with the
# default, bench_matmul's peer threads held the second core during our alternated 2-thread samples.
# The minimum (4) puts them to sleep at once. Set it yourself to measure otherwise.
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"

cpu="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
note "date: $(date -u '+%Y-%m-%d %H:%M UTC'); command: bench/run.sh $*"
note "machine: ${cpu:-unknown CPU}, $(nproc) cores; $(uname -sr)"
note "environment: $(env | grep '^OPENBLAS_' | tr '\n' ' ' || true)"
note "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

first=1
failed=0
# Runs one benchmark; its header line is dropped after the first benchmark's. A benchmark that fails
# is reported and the others still run; the exit status says whether all succeeded.
run() {
    local name="$1"
    shift
    note "running $name"
    local t0=$SECONDS status=0
    if [ "$first" = 1 ]; then
        "$@" || status=$?
        first=0
    else
        "$@" | tail -n +2 || status=$?
    fi
    [ "$status" = 0 ] || { note "$name FAILED (exit status $status)"; failed=1; }
    note "$name took $((SECONDS - t0)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
}

run bench_flops "$build/bench/bench_flops" "$@"
run bench_matmul "$build/bench/bench_matmul" "$@"
run bench_elementwise "$build/bench/bench_elementwise" "$@"
run bench_crosscore "$build/bench/bench_crosscore" "$@"
run bench_autograd.lua "$build/landscape" "$root/bench/bench_autograd.lua" "$@"
# benchmarks of other areas written to the same format
for script in "$root"/bench/bench_*.lua; do
    [ "$(basename "$script")" = bench_autograd.lua ] && continue
    run "$(basename "$script")" "$build/landscape" "$script" "$@"
done
exit "$failed"
