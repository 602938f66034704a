#!/usr/bin/python3
"""The PyTorch peer of bench_methods.lua: a co-process that times one training step of a method on
request, so that the two sides' samples alternate.

Protocol (peer_common.serve; bench/common.lua's peer() redirects stdout to a FIFO it reads):
  threads N                 -> "ok": torch's and OpenBLAS's threads (peer_common.set_threads)
  sample METHOD ITERS SEED  -> "<wall ms per step> <cpu ms per step>": ITERS steps of METHOD on a
                               fresh model (seeded with SEED) after 2 untimed steps
The peer exits when its stdin closes. '#' lines are notes, forwarded to the caller's stderr.

The model is the comparison CNN, ls.nn.cnn{channels = {16, 32}, hidden = 64} (scripts/
compare_methods.lua): Conv2d(1, 16, 3, padding=1, bias=False), BatchNorm2d(16), ReLU, MaxPool2d(2),
Conv2d(16, 32, 3, padding=1, bias=False), BatchNorm2d(32), ReLU, MaxPool2d(2), Flatten,
Linear(1568, 64), ReLU, Linear(64, 10); f32; a fixed random batch [128, 1, 28, 28] with random
labels; torch.optim.SGD(lr 0.01, momentum 0.9, weight decay 5e-4). The methods are written the way
the public PyTorch codes write them (davda54/sam's SAM with its batch-norm bypass, SamsungLabs/ASAM,
Zhao et al.'s finite-difference gradient norm, create_graph double and triple backward for the exact
penalties) and do the same work as ls.methods.<name> with the options bench_methods.lua gives.
"""
import time

from peer_common import machine_note, serve, set_threads, threads_note

import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

BATCH = 128
RHO, ASAM_RHO, ETA, LAMBDA_GN, R_GN, LAMBDA_TR, R_TR = 0.05, 0.5, 0.01, 0.1, 0.1, 1e-3, 0.1
ELR = 1e-3


def make_model():
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, 10))


def bn_momentum(model, m):   # davda54/sam example/utility/bypass_bn.py
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = m


def grad_norm(params):
    return torch.norm(torch.stack([p.grad.norm(2) for p in params if p.grad is not None]), 2)


class Method:
    def __init__(self, name, model):
        self.name, self.model = name, model
        self.params = list(model.parameters())
        self.opt = torch.optim.SGD(self.params, lr=0.01, momentum=0.9, weight_decay=5e-4)
        self.names = [n for n, _ in model.named_parameters()]
        # the scale-invariant weights: the convolutions followed by batch norm
        self.si = [i for i, n in enumerate(self.names) if n in ("0.weight", "4.weight")]
        self.radii = {i: self.params[i].detach().norm().item() for i in self.si}
        self.buf = {}

    def loss(self, x, y):
        return F.cross_entropy(self.model(x), y)

    def step(self, x, y):
        getattr(self, "step_" + self.name)(x, y)
        self.opt.zero_grad(set_to_none=False)

    def step_plain(self, x, y):
        self.loss(x, y).backward()
        self.opt.step()

    def _perturbed(self, x, y, eps):
        """grad at w + eps (batch-norm statistics frozen), weights restored from a copy"""
        old = [p.data.clone() for p in self.params]
        with torch.no_grad():
            for p, e in zip(self.params, eps):
                p.add_(e)
        self.opt.zero_grad(set_to_none=False)
        bn_momentum(self.model, 0.0)
        self.loss(x, y).backward()
        bn_momentum(self.model, 0.1)
        with torch.no_grad():
            for p, o in zip(self.params, old):
                p.data = o

    def step_sam(self, x, y):
        self.loss(x, y).backward()
        scale = RHO / (grad_norm(self.params) + 1e-12)
        self._perturbed(x, y, [p.grad * scale for p in self.params])
        self.opt.step()

    def step_asam(self, x, y):
        self.loss(x, y).backward()
        with torch.no_grad():
            t = [p.abs() + ETA if "weight" in n else None for n, p in zip(self.names, self.params)]
            tg = [p.grad * ti if ti is not None else p.grad for p, ti in zip(self.params, t)]
            s = ASAM_RHO / (torch.norm(torch.stack([g.norm(2) for g in tg]), 2) + 1e-12)
            eps = [g * ti * s if ti is not None else g * s for g, ti in zip(tg, t)]
        self._perturbed(x, y, eps)
        self.opt.step()

    def step_rsam(self, x, y):
        ps = self.params
        self.loss(x, y).backward()
        with torch.no_grad():
            r = [p.grad.clone() for p in ps]
            for i in self.si:   # angular metric: r = R^2 P(g)
                w = ps[i]
                r[i] = (r[i] - w * ((r[i] * w).sum() / (w * w).sum())) * self.radii[i] ** 2
            sq = sum((r[i] * r[i]).sum() / (self.radii[i] ** 2 if i in self.radii else 1)
                     for i in range(len(ps)))
            s = RHO / (sq.sqrt() + 1e-12)
            old = [p.data.clone() for p in ps]
            for i, p in enumerate(ps):
                p.add_(r[i] * s)
                if i in self.radii:
                    p.mul_(self.radii[i] / p.norm())
        self.opt.zero_grad(set_to_none=False)
        bn_momentum(self.model, 0.0)
        self.loss(x, y).backward()
        bn_momentum(self.model, 0.1)
        with torch.no_grad():
            for p, o in zip(ps, old):
                p.data = o
            gs = {}
            for i in self.si:   # transport back by projection, then off the optimizer's list
                w, g = ps[i], ps[i].grad
                gs[i] = g - w * ((g * w).sum() / (w * w).sum())
                ps[i].grad = None
        self.opt.step()
        with torch.no_grad():
            for i in self.si:
                w, R = ps[i], self.radii[i]
                m = gs[i]
                if i in self.buf:
                    b = self.buf[i]
                    m = (b - w * ((b * w).sum() / (w * w).sum())) * 0.9 + m
                self.buf[i] = m
                u = w - m * (ELR * R * R)
                w.copy_(u * (R / u.norm()))
                ps[i].grad = gs[i]

    def step_grad_norm(self, x, y):
        loss = self.loss(x, y)
        g = torch.autograd.grad(loss, self.params, create_graph=True)
        n = torch.sqrt(sum((t * t).sum() for t in g))
        (loss + LAMBDA_GN * n).backward()
        self.opt.step()

    def step_grad_norm_fd(self, x, y):
        self.loss(x, y).backward()
        g = [p.grad.clone() for p in self.params]
        n = grad_norm(self.params) + 1e-12
        self._perturbed(x, y, [t * (R_GN / n) for t in g])
        a = LAMBDA_GN / R_GN
        with torch.no_grad():
            for p, t in zip(self.params, g):
                p.grad.mul_(a).add_(t, alpha=1 - a)
        self.opt.step()

    def probe(self):
        return [torch.randint(0, 2, p.shape, dtype=p.dtype) * 2 - 1 for p in self.params]

    def step_trace(self, x, y):
        v = self.probe()
        loss = self.loss(x, y)
        g = torch.autograd.grad(loss, self.params, create_graph=True)
        gv = sum((t * vi).sum() for t, vi in zip(g, v))
        hv = torch.autograd.grad(gv, self.params, create_graph=True)
        s = sum((h * vi).sum() for h, vi in zip(hv, v))
        (loss + LAMBDA_TR * s).backward()
        self.opt.step()

    def step_trace_fd(self, x, y):
        v = self.probe()
        self.loss(x, y).backward()
        g = [p.grad.clone() for p in self.params]
        step = R_TR / sum(vi.numel() for vi in v) ** 0.5
        acc = None
        for sign in (1, -1):
            self._perturbed(x, y, [vi * (sign * step) for vi in v])
            gp = [p.grad.clone() for p in self.params]
            acc = gp if acc is None else [a + b for a, b in zip(acc, gp)]
        c = LAMBDA_TR / step ** 2
        with torch.no_grad():
            for p, t, a in zip(self.params, g, acc):
                p.grad.copy_(t + (a - 2 * t) * c)
        self.opt.step()


def sample(name, iters, seed):
    torch.manual_seed(seed)
    x = torch.randn(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))
    model = make_model()
    model.train()
    m = Method(name, model)
    for _ in range(2):
        m.step(x, y)
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(iters):
        m.step(x, y)
    w1, c1 = time.perf_counter(), time.process_time()
    return 1e3 * (w1 - w0) / iters, 1e3 * (c1 - c0) / iters


def main():
    print(machine_note("peer_methods.py"), flush=True)

    def handle(w):
        if w[0] == "threads":
            set_threads(int(w[1]))
            print(threads_note("peer_methods.py"), flush=True)
            return "ok"
        if w[0] == "sample":
            wall, cpu = sample(w[1], int(w[2]), int(w[3]))
            return f"{wall:.6f} {cpu:.6f}"
        return "error unknown command " + w[0]

    serve(handle)


if __name__ == "__main__":
    main()
