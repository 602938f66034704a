#!/usr/bin/python3
"""The PyTorch peer of bench_autograd.lua (which runs this script once and reads its stdout).

The same workload as the Lua side: an MLP 784-128-128-10 (tanh or relu) on a batch of random inputs
with random labels, cross-entropy loss, written with the same ops (matmul, add, activation,
cross_entropy; not nn.Linear's fused addmm). Three timings per dtype and thread count:

  forward  loss = f(params), with the graph recorded (parameters require grad)
  grad     loss = f(params); torch.autograd.grad(loss, params)
  hvp      loss = f(params); g = torch.autograd.grad(loss, params, create_graph=True);
           torch.autograd.grad(g, params, grad_outputs=v)      (PyHessian's Hessian-vector product)

Timing as on the Lua side: one call to warm up and calibrate an inner loop so a sample lasts at
least --min-sample seconds, one warm-up round, then --reps rounds in which forward, grad and hvp
each take one sample in turn; the median sample per workload, in ms per call.

Threads: torch.set_num_threads(n) and, for the OpenBLAS that Debian's torch runs its matrix products
on (which torch.set_num_threads leaves at every core), openblas_set_num_threads(n) (peer_threads.py).

Prints `workload,dtype,threads,ms,cpu_ms` lines (cpu_ms: process CPU time, all threads), and
`#`-lines (peak RSS) the caller copies to stderr.
"""
import argparse
import resource
import statistics
import time

import torch

from peer_threads import openblas_libs, set_threads


def calibrate(fn, min_sample):
    t0 = time.perf_counter()
    fn()
    t = max(time.perf_counter() - t0, 1e-7)
    if t >= min_sample:
        return 1
    iters = int(min_sample / t) + 1
    probe = max(iters // 4, 1)
    t0 = time.perf_counter()
    for _ in range(probe):
        fn()
    t = max((time.perf_counter() - t0) / probe, 1e-9)
    return int(min_sample / t) + 1


def sample(fn, iters):
    """(wall, process CPU) seconds per call."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters, (time.process_time() - c0) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--acts", default="tanh")
    ap.add_argument("--dtypes", default="f32,f64")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--min-sample", type=float, default=0.04)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    sizes = [784, 128, 128, 10]
    libs = openblas_libs()
    if not libs:
        print("# peer_autograd.py: no OpenBLAS in the torch process; thread counts set with "
              "torch.set_num_threads only")
    for act_name in args.acts.split(","):
        act = {"tanh": torch.tanh, "relu": torch.relu}[act_name]
        for threads in (int(t) for t in args.threads.split(",")):
            set_threads(threads)
            for dn in args.dtypes.split(","):
                dt = dtypes[dn]
                g = torch.Generator().manual_seed(args.seed)
                x = torch.randn(args.batch, sizes[0], generator=g, dtype=dt)
                y = torch.randint(0, sizes[-1], (args.batch,), generator=g)
                params, vs = [], []
                for i in range(3):
                    w = torch.randn(sizes[i], sizes[i + 1], generator=g, dtype=dt) / sizes[i] ** 0.5
                    b = torch.randn(sizes[i + 1], generator=g, dtype=dt) * 0.01
                    params += [w.requires_grad_(), b.requires_grad_()]
                for p in params:
                    vs.append(torch.randn(p.shape, generator=g, dtype=dt))

                def loss_fn():
                    h = act(x @ params[0] + params[1])
                    h = act(h @ params[2] + params[3])
                    return torch.nn.functional.cross_entropy(h @ params[4] + params[5], y)

                def forward():
                    loss_fn()

                def grad():
                    torch.autograd.grad(loss_fn(), params)

                def hvp():
                    gs = torch.autograd.grad(loss_fn(), params, create_graph=True)
                    torch.autograd.grad(gs, params, grad_outputs=vs)

                fns = {"forward": forward, "grad": grad, "hvp": hvp}
                iters = {k: calibrate(f, args.min_sample) for k, f in fns.items()}
                for k, f in fns.items():
                    sample(f, iters[k])
                times = {k: [] for k in fns}
                for _ in range(args.reps):
                    for k, f in fns.items():
                        times[k].append(sample(f, iters[k]))
                for k in fns:
                    ms = 1e3 * statistics.median(t[0] for t in times[k])
                    cpu_ms = 1e3 * statistics.median(t[1] for t in times[k])
                    print(f"{k}_{act_name},{dn},{threads},{ms:.6f},{cpu_ms:.6f}", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"# peer_autograd.py (torch {torch.__version__}): peak RSS {rss / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
