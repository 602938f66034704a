#!/usr/bin/python3
"""The PyTorch peer of bench_study_job.lua: one job of the generalization-gap study, done the way
scripts/gg/measure.lua does it, run as a co-process so that the two sides' samples alternate.

The job: an MLP (Flatten, then per hidden layer Linear(d, width[, bias=False]) [BatchNorm1d] ReLU,
then Linear(d, 10)) trained with SGD (momentum 0.9, weight decay wd) on batches of `batch` examples
drawn from a fresh random permutation each epoch (the last batch of an epoch may be smaller), for
round(budget / batch) steps; at 10, 25, 50, 75 and 100 % of the steps:
  * cross-entropy and accuracy on the training set and the test set (eval mode, batches of 1000);
  * the margins of Jiang et al. at 4 slots (input, first hidden pre-activation, last hidden
    pre-activation, logits): one forward pass per batch of 500 that keeps the slots' activations,
    one backward pass of sum(f_y - f_j), d = (f_y - f_j) / sqrt(1e-6 + ||grad||^2), the total
    variation nu of each slot (float64 sums), the positive margins' P5, Q1, Q2, Q3, P95 and Tukey
    fences normalised by nu and not, and the 10th percentile of the raw output margin;
  * the norms (Frobenius, spectral by power iteration in float64, distance to the initial weights);
and at 100 % Keskar's sharpness (eps 1e-4, box eps (|w| + 1), 20 projected sign-ascent steps from
the box corner, a step that does not raise the loss halves the step size) on the first 1024 training
examples, batches of 1000.

Protocol: the data come from the safetensors file --data (x_train [n, 784] f32, y_train [n] i64
0-based, x_test, y_test) that the Lua side wrote, so both sides train on the same examples. The
peer serves requests (peer_common.serve, the co-process protocol of bench/common.lua): "job" runs
one job and replies "ms,cpu_ms" (wall and process CPU milliseconds), "rss" replies its peak RSS in
MiB. Threads: peer_common.set_threads (torch and every OpenBLAS); peer_common sets
OMP_WAIT_POLICY=passive before torch loads.
"""
import argparse
import json
import math
import struct
import sys
import time

from peer_common import machine_note, serve, set_threads, threads_note
from peer_train import peak_rss_mib

import numpy as np  # noqa: E402
import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

FRACTIONS = [0.1, 0.25, 0.5, 0.75, 1.0]
DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    with open(path, "rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(hlen))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(data[lo:hi], dtype=DTYPES[e["dtype"]]).reshape(e["shape"]).copy())
    return out


def make_model(width, depth, bn):
    layers, d = [nn.Flatten()], 784
    for _ in range(depth):
        layers.append(nn.Linear(d, width, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        d = width
    layers.append(nn.Linear(d, 10))
    return nn.Sequential(*layers)


def slot_positions(model):
    """Child positions (1-based, as in the Lua side) of the first and last hidden pre-activation:
    the output of the first/last Linear before the final one, or of the BatchNorm right after."""
    ch = list(model)
    lin = [k for k, c in enumerate(ch, 1) if isinstance(c, nn.Linear)][:-1]

    def after(k):
        return k + 1 if k < len(ch) and isinstance(ch[k], nn.BatchNorm1d) else k
    return after(lin[0]), after(lin[-1])


def evaluate(model, x, y, batch=1000):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            f = model(x[i:i + batch])
            loss += F.cross_entropy(f, y[i:i + batch], reduction="sum").item()
            correct += (f.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return loss / len(y), correct / len(y)


def stats(d):
    """P5, Q1, Q2, Q3, P95 and the fences of a 1-D float64 tensor (linear quantiles)."""
    if d.numel() == 0:
        return [math.nan] * 7
    q = torch.quantile(d, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
    iqr = q[3] - q[1]
    return q.tolist() + [(q[1] - 1.5 * iqr).item(), (q[3] + 1.5 * iqr).item()]


def margins(model, x, y, batch=500, eps=1e-6):
    model.eval()
    ch = list(model)
    first, last = slot_positions(model)
    capture = sorted({first, last})
    raw = {k: [] for k in ["input"] + capture}
    sums = {k: None for k in ["input"] + capture + ["out"]}
    outs = []

    def tv_add(key, z):
        z = z.detach().double().flatten(1)
        s, s2 = z.sum(0), (z * z).sum(0)
        if sums[key] is None:
            sums[key] = [s, s2, z.shape[0]]
        else:
            sums[key][0] += s
            sums[key][1] += s2
            sums[key][2] += z.shape[0]

    for i in range(0, len(y), batch):
        xb, yb = x[i:i + batch], y[i:i + batch]
        x0 = xb.clone().requires_grad_()
        h, acts = x0, {}
        for k, c in enumerate(ch, 1):
            h = c(h)
            if k in capture:
                acts[k] = h
        f = h
        fy = f.gather(1, yb[:, None])[:, 0]
        masked = f.detach().clone()
        masked.scatter_(1, yb[:, None], -math.inf)
        j = masked.argmax(1)
        m = fy - f.gather(1, j[:, None])[:, 0]
        grads = torch.autograd.grad(m.sum(), [x0] + [acts[k] for k in capture])
        md = m.detach().double()
        outs.append(md)
        for key, z, g in zip(["input"] + capture, [x0] + [acts[k] for k in capture], grads):
            gn = g.double().flatten(1).pow(2).sum(1)
            raw[key].append(md / torch.sqrt(eps + gn))
            tv_add(key, z)
        tv_add("out", f)
    model.train()
    out = torch.cat(outs)
    keep = out > 0
    res = {}

    def nu(key):
        s, s2, n = sums[key]
        return math.sqrt(max(0.0, (s2 / n - (s / n) ** 2).sum().item()))
    for name, key in [("input", "input"), ("first", first), ("last", last)]:
        d = torch.cat(raw[key])[keep]
        res[name] = (stats(d / nu(key)), stats(d), nu(key))
    d = (out / math.sqrt(eps + 2))[keep]
    res["output"] = (stats(d / nu("out")), stats(d), nu("out"))
    res["out_margin_p10"] = torch.quantile(out, 0.1).item()
    return res


def spectral(W, iters=200):
    W = W.detach().double()
    v = torch.ones(W.shape[1], dtype=torch.float64)
    v /= v.norm()
    s = 0.0
    for _ in range(iters):
        w = W.t() @ (W @ v)
        nw = w.norm().item()
        if nw == 0:
            return 0.0
        s_new = math.sqrt(nw)
        v = w / nw
        if abs(s_new - s) <= 1e-6 * s_new:
            return s_new
        s = s_new
    return s


def norms(model, w0):
    out = {"l2_sq": 0.0, "log_prod_fro": 0.0, "log_prod_spec": 0.0}
    d2 = 0.0
    with torch.no_grad():
        for p, p0 in zip(model.parameters(), w0):
            d2 += (p.double() - p0).pow(2).sum().item()
            if p.dim() == 2:
                f2 = p.double().pow(2).sum().item()
                out["l2_sq"] += f2
                out["log_prod_fro"] += math.log(f2)
                out["log_prod_spec"] += 2 * math.log(spectral(p))
    out["dist_init"] = math.sqrt(d2)
    return out


def loss_grad(model, x, y, batch=1000):
    params = list(model.parameters())
    grads = [torch.zeros_like(p) for p in params]
    total = 0.0
    for i in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum") / len(y)
        gs = torch.autograd.grad(loss, params)
        for a, g in zip(grads, gs):
            a += g
        total += loss.item()
    return total, grads


def keskar(model, x, y, eps=1e-4, steps=20, step_size=2.0):
    model.eval()
    params = list(model.parameters())
    w0 = [p.detach().clone() for p in params]
    c = [eps * (w.abs() + 1) for w in w0]
    L0, g = loss_grad(model, x, y)
    u = [torch.zeros_like(w) for w in w0]
    best, eta = L0, step_size
    for _ in range(steps):
        un = [(ui + torch.sign(gi * ci) * eta).clamp(-1, 1) for ui, gi, ci in zip(u, g, c)]
        with torch.no_grad():
            for p, w, ui, ci in zip(params, w0, un, c):
                p.copy_(w + ui * ci)
        L, gn = loss_grad(model, x, y)
        if L > best:
            u, best, g = un, L, gn
        else:
            eta /= 2
    with torch.no_grad():
        for p, w in zip(params, w0):
            p.copy_(w)
    model.train()
    return 100 * (best - L0) / (1 + L0)


def run_job(cfg, data, seed):
    torch.manual_seed(seed)
    xtr, ytr, xte, yte = data
    model = make_model(cfg["width"], cfg["depth"], cfg["bn"])
    w0 = [p.detach().double().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr_step"], momentum=0.9,
                          weight_decay=cfg["wd"])
    n, B = len(ytr), cfg["batch"]
    steps = max(1, math.floor(cfg["budget"] / B + 0.5))
    marks = {max(1, math.floor(f * steps + 0.5)): f for f in FRACTIONS}
    rows, step = [], 0
    model.train()
    while step < steps:
        perm = torch.randperm(n)
        for i in range(0, n, B):
            idx = perm[i:i + B]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=False)
            loss.backward()
            opt.step()
            step += 1
            if step in marks:
                row = {"frac": marks[step]}
                row["train_loss"], row["train_acc"] = evaluate(model, xtr, ytr)
                row["test_loss"], row["test_acc"] = evaluate(model, xte, yte)
                row["margins"] = margins(model, xtr, ytr)
                row.update(norms(model, w0))
                if marks[step] == 1.0:
                    row["sharpness"] = keskar(model, xtr[:1024], ytr[:1024])
                rows.append(row)
            if step >= steps:
                break
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--config", required=True, help="the job's settings as JSON")
    args = ap.parse_args()
    cfg = json.loads(args.config)
    t = load_safetensors(args.data)
    data = (t["x_train"], t["y_train"], t["x_test"], t["y_test"])
    set_threads(args.threads)
    print(machine_note("peer_study_job"), file=sys.stderr, flush=True)
    print(threads_note("peer_study_job"), file=sys.stderr, flush=True)
    count = [0]

    def handle(words):
        if words[0] == "rss":
            return f"{peak_rss_mib():.1f}"
        count[0] += 1
        t0, c0 = time.perf_counter(), time.process_time()
        rows = run_job(cfg, data, seed=count[0])
        ms, cpu = 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)
        last = rows[-1]
        print(f"# peer job {count[0]}: {ms:.0f} ms (CPU {cpu:.0f} ms), train acc "
              f"{last['train_acc']:.4f}, test acc {last['test_acc']:.4f}, sharpness "
              f"{last['sharpness']:.4f}", file=sys.stderr, flush=True)
        return f"{ms},{cpu}"

    serve(handle)


if __name__ == "__main__":
    main()
