#!/usr/bin/python3
"""The PyTorch peer of bench_train.lua, a co-process answering requests (peer_common.serve).

One "train step" on a fixed random batch [128, 1, 28, 28] with random labels, f32:
forward, cross-entropy, backward, SGD step (lr 0.01, momentum 0.9), zero_grad. Models:

  mlp_784_512_512_10  Flatten, Linear(784, 512), ReLU, Linear(512, 512), ReLU, Linear(512, 10)
  mlp_784_64_10       Flatten, Linear(784, 64), ReLU, Linear(64, 10)
  cnn                 ls.nn.cnn{channels = {32, 64}, hidden = 128, classes = 10, batchnorm = true}:
                      Conv2d(1, 32, 3, padding=1, bias=False), BatchNorm2d(32), ReLU, MaxPool2d(2),
                      Conv2d(32, 64, 3, padding=1, bias=False), BatchNorm2d(64), ReLU, MaxPool2d(2),
                      Flatten, Linear(3136, 128), ReLU, Linear(128, 10)
                      (ours pools before the relu: the same values and gradients)

Requests (one per line; the reply is one line):
  setup WORKLOAD THREADS MIN_SAMPLE   build the model and optimizer with THREADS threads
                                      (peer_common.set_threads: torch's and OpenBLAS's), 3 warm-up
                                      steps, calibrate an inner loop so a sample lasts at least
                                      MIN_SAMPLE seconds, one untimed sample; reply "ok ITERS"
  sample                              one sample; reply its ms per step (time.perf_counter)
The caller alternates: one sample of its own, one of ours.

--rss-child STEPS: instead, train the CNN for STEPS steps with one thread, drawing a fresh random
batch every step (as a data loader would hand one over), and print `rss,<VmHWM in MiB>`.
"""
import argparse
import time

from peer_common import machine_note, openblas_libs, serve, set_threads, threads_note

import torch  # noqa: E402  (after peer_common, which sets the OpenMP wait policy)
from torch import nn  # noqa: E402

BATCH = 128


def make_model(name):
    if name == "mlp_784_512_512_10":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                             nn.ReLU(), nn.Linear(512, 10))
    if name == "mlp_784_64_10":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    raise SystemExit(f"peer_train.py: unknown workload {name}")


def make_step(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        # set_to_none=False (torch 1.13's default): the gradients are zeroed in place. Ours drops them
        # (opt:zero_grad() sets p.grad = nil, like set_to_none=True), but torch is faster this way on
        # this VM (MLP 512 step 6.6-7.6 ms against 11.0-12.8 with set_to_none=True, whose fresh
        # gradient buffers page-fault every step), so this is the fair peer
        opt.zero_grad(set_to_none=False)
        return loss

    return step


def sample(fn, iters):
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t0) / iters


def peak_rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_child(steps):
    set_threads(1)
    torch.manual_seed(1)
    step = make_step(make_model("cnn"))
    for _ in range(steps):
        x = torch.randn(BATCH, 1, 28, 28)
        y = torch.randint(0, 10, (BATCH,))
        step(x, y)
    print(f"rss,{peak_rss_mib():.1f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rss-child", type=int, default=0)
    args = ap.parse_args()
    if args.rss_child > 0:
        rss_child(args.rss_child)
        return
    print(machine_note("peer_train.py"), flush=True)
    if not openblas_libs():
        print("# peer_train.py: no OpenBLAS in the torch process; thread counts set with "
              "torch.set_num_threads only", flush=True)
    state = {}

    def handle(w):
        if w[0] == "setup":
            name, threads, min_sample = w[1], int(w[2]), float(w[3])
            set_threads(threads)
            print(threads_note("peer_train.py"), flush=True)
            torch.manual_seed(1)
            x = torch.randn(BATCH, 1, 28, 28)
            y = torch.randint(0, 10, (BATCH,))
            step = make_step(make_model(name))
            fn = lambda: step(x, y)  # noqa: E731
            for _ in range(3):
                fn()
            t = max(sample(fn, 1), 1e-7)
            iters = 1 if t >= min_sample else int(min_sample / t) + 1
            sample(fn, iters)
            state.update(fn=fn, iters=iters)
            return f"ok {iters}"
        if w[0] == "sample":
            return f"{1e3 * sample(state['fn'], state['iters']):.6f}"
        raise SystemExit(f"peer_train.py: unknown request {' '.join(w)}")

    serve(handle)
    print(f"# torch peer peak RSS {peak_rss_mib():.1f} MiB", flush=True)


if __name__ == "__main__":
    main()
