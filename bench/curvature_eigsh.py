"""Matvec counts: SciPy eigsh (ARPACK, implicitly restarted Lanczos) against landscape's Lanczos
(full reorthogonalisation, no restarts) for the top eigenvalue to tol 1e-4, on the spectrum of
tests/c/test_curvature.c:test_lanczos_vs_plain (n = 300, lambda_i = 1 - 1.5 i / n + 0.01 sin i).
Not part of ctest. Run: /usr/bin/python3 bench/curvature_eigsh.py (Debian python3-scipy)"""
import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

n = 300
lam = np.array([1.0 - 1.5 * i / n + 0.01 * np.sin(i) for i in range(n)])
rng = np.random.default_rng(0)
Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
A = (Q * lam) @ Q.T
top = lam.max()
for ncv in (None, 20, 40):
    counts, errs = [], []
    for s in range(10):
        calls = [0]

        def mv(v):
            calls[0] += 1
            return A @ v

        op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
        v0 = np.random.default_rng(100 + s).choice([-1.0, 1.0], n)
        w = eigsh(op, k=1, which="LA", tol=1e-4, v0=v0, ncv=ncv, return_eigenvectors=False)
        counts.append(calls[0])
        errs.append(abs(w[0] - top) / top)
    print(f"eigsh k=1 which=LA tol=1e-4 ncv={ncv or 'default (20)'}: matvecs median {int(np.median(counts))}"
          f" (min {min(counts)}, max {max(counts)}), max rel. error {max(errs):.1e}")
