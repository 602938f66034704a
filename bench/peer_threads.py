"""Thread counts for the PyTorch peers (peer_autograd.py, peer_train.py, peer_curvature.py).

torch.set_num_threads(n) sets torch's own intra-op pool, but not the OpenBLAS that Debian's torch
(and SciPy) run their matrix products on, which would otherwise use every core even at "1 thread".
set_threads(n) sets both, like ls.set_threads on our side. It looks for OpenBLAS among the libraries
mapped into the process at the time of the call, so import everything that loads BLAS (torch,
scipy.sparse.linalg) before calling it.
"""
import ctypes

import torch

_libs = {}


def openblas_libs():
    """The OpenBLAS libraries now loaded into this process that export openblas_set_num_threads."""
    paths = set()
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if "openblas" in path and ".so" in path:
                paths.add(path)
    for path in sorted(paths - set(_libs)):
        lib = ctypes.CDLL(path)
        _libs[path] = lib if hasattr(lib, "openblas_set_num_threads") else None
    return [lib for lib in _libs.values() if lib is not None]


def set_threads(n):
    """torch.set_num_threads(n) and openblas_set_num_threads(n) on every OpenBLAS loaded; returns the
    number of OpenBLAS libraries set (0: none found, so only torch's pool was set)."""
    torch.set_num_threads(n)
    libs = openblas_libs()
    for lib in libs:
        lib.openblas_set_num_threads(n)
    return len(libs)
