#!/usr/bin/python3
"""The PyTorch peer of bench_elementwise (which runs this script once and reads its stdout).

Times torch.add / mul / exp / relu / sum on contiguous 1-D tensors of the given sizes, float32 and
float64, with 1 and 2 threads (torch.set_num_threads), the same way the C side does: one call to
warm up and calibrate an inner loop so that a sample lasts at least --min-sample seconds, one
warm-up sample, then the median of --reps samples, in milliseconds per call.

Threads: torch.set_num_threads(n), and openblas_set_num_threads(n) on the OpenBLAS in the process
(as in peer_autograd.py; these ops do not call BLAS).

Prints `op,dtype,threads,n,ms` lines, and `#`-lines with notes (peak RSS) that the caller copies to
stderr.
"""
import argparse
import resource
import statistics
import time

import torch

from peer_threads import set_threads


def per_call(fn, reps, min_sample):
    t0 = time.perf_counter()
    fn()
    t = max(time.perf_counter() - t0, 1e-7)
    iters = 1
    if t < min_sample:
        iters = int(min_sample / t) + 1
        probe = max(iters // 4, 1)
        t0 = time.perf_counter()
        for _ in range(probe):
            fn()
        t = max((time.perf_counter() - t0) / probe, 1e-9)
        iters = int(min_sample / t) + 1

    def sample():
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        return (time.perf_counter() - t0) / iters

    sample()
    return 1e3 * statistics.median(sample() for _ in range(reps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--dtypes", default="f32,f64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--min-sample", type=float, default=0.04)
    args = ap.parse_args()
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    torch.set_grad_enabled(False)
    ops = [
        ("add", lambda a, b: torch.add(a, b)),
        ("mul", lambda a, b: torch.mul(a, b)),
        ("exp", lambda a, b: torch.exp(a)),
        ("relu", lambda a, b: torch.relu(a)),
        ("sum", lambda a, b: torch.sum(a)),
    ]
    for threads in (int(t) for t in args.threads.split(",")):
        set_threads(threads)
        for dn in args.dtypes.split(","):
            for n in (int(s) for s in args.sizes.split(",")):
                g = torch.Generator().manual_seed(1)
                a = torch.rand(n, generator=g, dtype=dtypes[dn]) * 2 - 1
                b = torch.rand(n, generator=g, dtype=dtypes[dn]) * 2 - 1
                for name, op in ops:
                    ms = per_call(lambda: op(a, b), args.reps, args.min_sample)
                    print(f"{name},{dn},{threads},{n},{ms:.6f}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"# peer_elementwise.py (torch {torch.__version__}): peak RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
