#!/usr/bin/python3
"""The PyTorch peer of bench_elementwise, a co-process answering requests (peer_common.serve).

Times torch.add / mul / exp / relu / sum on contiguous 1-D tensors, float32 and float64, the same
way the C side does: one call to warm up and calibrate an inner loop so that a sample lasts at least
MIN_SAMPLE seconds, one warm-up sample, then samples on request, in milliseconds per call.

Requests (one per line; the reply is one line):
  setup OP DTYPE THREADS N MIN_SAMPLE   the op on N elements with THREADS threads
                                        (peer_common.set_threads: torch's and OpenBLAS's; these ops
                                        do not call BLAS), calibrated and warmed up; reply "ok"
  sample                                one sample; reply its ms per call
The caller takes one sample of ours after each pair of its own (the engine's op, and stream).
"""
import resource
import time

from peer_common import machine_note, serve, set_threads, threads_note

import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)

OPS = {
    "add": lambda a, b: torch.add(a, b),
    "mul": lambda a, b: torch.mul(a, b),
    "exp": lambda a, b: torch.exp(a),
    "relu": lambda a, b: torch.relu(a),
    "sum": lambda a, b: torch.sum(a),
}


def run(fn, iters):
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def calibrate(fn, min_sample):
    t = max(run(fn, 1), 1e-7)
    if t >= min_sample:
        return 1
    iters = int(min_sample / t) + 1
    probe = max(iters // 4, 1)
    t = max(run(fn, probe), 1e-9)
    return int(min_sample / t) + 1


def main():
    print(machine_note("peer_elementwise.py"), flush=True)
    torch.set_grad_enabled(False)
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    state = {"threads": None}

    def handle(w):
        if w[0] == "setup":
            op, dn, threads, n, min_sample = w[1], w[2], int(w[3]), int(w[4]), float(w[5])
            if threads != state["threads"]:
                set_threads(threads)
                state["threads"] = threads
                print(threads_note("peer_elementwise.py"), flush=True)
            g = torch.Generator().manual_seed(1)
            a = torch.rand(n, generator=g, dtype=dtypes[dn]) * 2 - 1
            b = torch.rand(n, generator=g, dtype=dtypes[dn]) * 2 - 1
            fn = lambda: OPS[op](a, b)  # noqa: E731
            iters = calibrate(fn, min_sample)
            run(fn, iters)
            state.update(fn=fn, iters=iters)
            return "ok"
        if w[0] == "sample":
            return f"{1e3 * run(state['fn'], state['iters']):.6f}"
        raise SystemExit(f"peer_elementwise.py: unknown request {' '.join(w)}")

    serve(handle)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"# peer_elementwise.py (torch {torch.__version__}): peak RSS {rss / 1024:.1f} MiB",
          flush=True)


if __name__ == "__main__":
    main()
