"""peer_curvature.py: the PyTorch side of bench/bench_curvature.lua (PyHessian-style curvature), a
co-process answering requests (peer_common.serve).

    env -u LD_PRELOAD /usr/bin/python3 bench/peer_curvature.py --data FILE.safetensors

FILE holds "x" [N, 1, 28, 28] f32 and "y" [N] i64 with 1-based labels (written by the Lua side with
ls.io.save_safetensors; read here by hand with json + struct, as in tests/lua/torch_interop_spec.lua,
because python3-safetensors may be absent). The models are the torch twins of ls.nn.mlp{hidden =
{128, 128}} and ls.nn.cnn{channels = {32, 64}, hidden = 128, batchnorm = true}, in eval mode. When
FILE also holds "<model>.<dtype>.<name>" tensors (the Lua side writes them for the MLP: its own
state dict), they are loaded with load_state_dict(strict=True), so both sides work on the SAME
Hessian; otherwise the model keeps torch's own seed-1 random weights (the timing does not depend on
the values). A "v0" tensor (our Lanczos start vector, Rademacher of seed 1) is eigsh's start vector.

The Hessian is that of the mean cross-entropy over all N images in one batch, as PyHessian's
single-batch mode computes it: loss, then g = autograd.grad(loss, params, create_graph=True) built
ONCE per timed call (its cost is inside the timing), then every product is
autograd.grad(g, params, grad_outputs=v, retain_graph=True) on the list of parameter tensors.
Workloads (each timed call is one whole estimate):
  hutchinson      `probes` Rademacher probes, sum <v, Hv> / probes (no early stop)
  power_top3      PyHessian's eigenvalues(maxIter=100, tol=1e-3, top_n=3): power iteration with
                  deflation, step for step (only with --eigs)
  eigsh_top3      scipy.sparse.linalg.eigsh(LinearOperator, k=3, which='LA', tol=1e-4, v0) with v0
                  from FILE, else a Rademacher vector of numpy's seed 1 (only with --eigs)
Requests (one per line; the reply is one line):
  setup MODEL DTYPE THREADS PROBES   the model (mlp or cnn) in DTYPE with THREADS threads
                                     (peer_common.set_threads: torch's, and OpenBLAS's, which torch's
                                     and SciPy's matrix products run on); reply "ok"
  run WORKLOAD                       one timed call of hutchinson, power_top3 or eigsh_top3; reply
                                     "MS HVPS", with a '#' note of the estimate
The caller alternates its own calls with these. '#' lines: notes.
"""
import argparse
import json
import struct
import sys
import time

from peer_common import machine_note, serve, set_threads, threads_note

import numpy as np  # noqa: E402
import scipy.sparse.linalg  # noqa: E402,F401  (SciPy's BLAS loaded before set_threads looks)
import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)
import torch.nn as nn  # noqa: E402


def note(msg):
    print("# peer: " + msg, flush=True)


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    base = 8 + hlen
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64}
    out = {}
    for name, d in header.items():
        if name == "__metadata__":
            continue
        a, b = d["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=types[d["dtype"]]).reshape(d["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


def make_model(kind):
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 128),
                             nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))


# ---- PyHessian's helpers (pyhessian/utils.py), on lists of tensors ----
def group_product(xs, ys):
    return sum(torch.sum(x * y) for (x, y) in zip(xs, ys))


def group_add(params, update, alpha=1):
    for i, p in enumerate(params):
        params[i].data.add_(update[i] * alpha)
    return params


def normalization(v):
    s = group_product(v, v)
    s = s ** 0.5
    s = s.cpu().item()
    return [vi / (s + 1e-6) for vi in v]


def orthnormal(w, v_list):
    for v in v_list:
        w = group_add(w, v, alpha=-group_product(w, v))
    return normalization(w)


class Hessian:
    """The gradient graph of the mean loss, built once; hvp(v) is one double backward."""

    def __init__(self, model, x, y):
        self.params = [p for p in model.parameters() if p.requires_grad]
        loss = nn.functional.cross_entropy(model(x), y)
        self.g = torch.autograd.grad(loss, self.params, create_graph=True)
        self.hvps = 0

    def hvp(self, v):
        self.hvps += 1
        return torch.autograd.grad(self.g, self.params, grad_outputs=v, only_inputs=True,
                                   retain_graph=True)


def rademacher(params, gen):
    return [torch.randint(0, 2, p.shape, generator=gen, dtype=p.dtype) * 2 - 1 for p in params]


def hutchinson(model, x, y, probes):
    H = Hessian(model, x, y)
    gen = torch.Generator().manual_seed(1)
    acc = 0.0
    for _ in range(probes):
        v = rademacher(H.params, gen)
        acc += group_product(H.hvp(v), v).item()
    return acc / probes, H.hvps


def power_top3(model, x, y, top_n=3, max_iter=100, tol=1e-3):
    H = Hessian(model, x, y)
    torch.manual_seed(1)
    values, vectors = [], []
    while len(values) < top_n:
        eigenvalue = None
        v = normalization([torch.randn(p.size(), dtype=p.dtype) for p in H.params])
        for _ in range(max_iter):
            v = orthnormal(v, vectors)
            Hv = H.hvp(v)
            tmp = group_product(Hv, v).cpu().item()
            v = normalization(Hv)
            if eigenvalue is None:
                eigenvalue = tmp
            elif abs(eigenvalue - tmp) / (abs(eigenvalue) + 1e-6) < tol:
                break
            else:
                eigenvalue = tmp
        values.append(eigenvalue)
        vectors.append(v)
    return values, H.hvps


def eigsh_top3(model, x, y, v0=None, tol=1e-4):
    from scipy.sparse.linalg import LinearOperator, eigsh
    H = Hessian(model, x, y)
    shapes = [p.shape for p in H.params]
    sizes = [p.numel() for p in H.params]
    n = sum(sizes)
    npdt = np.float32 if H.params[0].dtype == torch.float32 else np.float64

    def matvec(u):
        t = torch.from_numpy(np.ascontiguousarray(u, dtype=npdt).reshape(-1))
        parts = [c.view(s) for c, s in zip(torch.split(t, sizes), shapes)]
        hv = H.hvp(parts)
        return torch.cat([h.reshape(-1) for h in hv]).numpy()

    op = LinearOperator((n, n), matvec=matvec, dtype=npdt)
    if v0 is None:
        v0 = np.random.default_rng(1).integers(0, 2, n) * 2 - 1
    v0 = np.asarray(v0).astype(npdt)
    vals = eigsh(op, k=3, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
    return sorted(vals.tolist(), reverse=True), H.hvps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    a = ap.parse_args()
    data = load_safetensors(a.data)
    x32, y = data["x"], data["y"] - 1
    v0 = data["v0"].numpy() if "v0" in data else None
    print(machine_note("peer_curvature.py"), flush=True)
    note("%d images" % x32.shape[0])
    state = {}

    def handle(w):
        if w[0] == "setup":
            kind, dt, th, probes = w[1], w[2], int(w[3]), int(w[4])
            set_threads(th)
            print(threads_note("peer_curvature.py"), flush=True)
            tdt = torch.float32 if dt == "f32" else torch.float64
            torch.manual_seed(1)
            model = make_model(kind).to(tdt).eval()
            prefix = "%s.%s." % (kind, dt)
            sd = {k[len(prefix):]: v.to(tdt) for k, v in data.items() if k.startswith(prefix)}
            if sd:
                model.load_state_dict(sd, strict=True)
            note("%s %s: %s weights, %s start vector for eigsh" % (
                kind, dt, "the Lua side's" if sd else "torch's own random",
                "the Lua side's" if v0 is not None else "numpy's"))
            x = x32.to(tdt)
            state.update(label="%s %s %d threads" % (kind, dt, th), work={
                "hutchinson": lambda: hutchinson(model, x, y, probes),
                "power_top3": lambda: power_top3(model, x, y),
                "eigsh_top3": lambda: eigsh_top3(model, x, y, v0)})
            return "ok"
        if w[0] == "run":
            t0 = time.perf_counter()
            res, hvps = state["work"][w[1]]()
            ms = 1000 * (time.perf_counter() - t0)
            note("%s %s: %s (%d hvps)" % (w[1], state["label"], res, hvps))
            return "%.3f %d" % (ms, hvps)
        raise SystemExit("peer_curvature.py: unknown request " + " ".join(w))

    serve(handle)


if __name__ == "__main__":
    sys.exit(main())
