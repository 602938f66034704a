#!/usr/bin/python3
"""The PyTorch peer of bench_autograd.lua, a co-process answering requests (peer_common.serve).

The same workload as the Lua side: an MLP 784-128-128-10 (tanh or relu) on a batch of random inputs
with random labels, cross-entropy loss, written with the same ops (matmul, add, activation,
cross_entropy; not nn.Linear's fused addmm). Three workloads:

  forward  loss = f(params), with the graph recorded (parameters require grad)
  grad     loss = f(params); torch.autograd.grad(loss, params)
  hvp      loss = f(params); g = torch.autograd.grad(loss, params, create_graph=True);
           torch.autograd.grad(g, params, grad_outputs=v)      (PyHessian's Hessian-vector product)

Requests (one per line; the reply is one line):
  setup ACT DTYPE THREADS BATCH SEED MIN_SAMPLE   the problem (f32 or f64) with THREADS threads
      (peer_common.set_threads: torch's and OpenBLAS's); each workload is called once to warm up
      and calibrate an inner loop so a sample lasts at least MIN_SAMPLE seconds, then one untimed
      sample each; reply "ok"
  sample WORKLOAD                                 one sample; reply "MS CPU_MS" per call (wall,
      and process CPU time of all threads)
The caller alternates: in each round, for each workload, one sample of its own, then one of ours.
"""
import resource
import time

from peer_common import machine_note, openblas_libs, serve, set_threads, threads_note

import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)


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


def problem(act_name, dt, batch, seed):
    """The three workloads as functions of no arguments."""
    act = {"tanh": torch.tanh, "relu": torch.relu}[act_name]
    sizes = [784, 128, 128, 10]
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sizes[0], generator=g, dtype=dt)
    y = torch.randint(0, sizes[-1], (batch,), generator=g)
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

    return {"forward": forward, "grad": grad, "hvp": hvp}


def main():
    print(machine_note("peer_autograd.py"), flush=True)
    if not openblas_libs():
        print("# peer_autograd.py: no OpenBLAS in the torch process; thread counts set with "
              "torch.set_num_threads only", flush=True)
    dtypes = {"f32": torch.float32, "f64": torch.float64}
    state = {}

    def handle(w):
        if w[0] == "setup":
            act, dn, threads, batch, seed, min_sample = w[1], w[2], int(w[3]), int(w[4]), \
                int(w[5]), float(w[6])
            set_threads(threads)
            print(threads_note("peer_autograd.py"), flush=True)
            fns = problem(act, dtypes[dn], batch, seed)
            iters = {k: calibrate(f, min_sample) for k, f in fns.items()}
            for k, f in fns.items():
                sample(f, iters[k])
            state.update(fns=fns, iters=iters)
            return "ok"
        if w[0] == "sample":
            k = w[1]
            ms, cpu = sample(state["fns"][k], state["iters"][k])
            return f"{1e3 * ms:.6f} {1e3 * cpu:.6f}"
        raise SystemExit(f"peer_autograd.py: unknown request {' '.join(w)}")

    serve(handle)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"# peer_autograd.py (torch {torch.__version__}): peak RSS {rss / 1024:.1f} MiB",
          flush=True)


if __name__ == "__main__":
    main()
