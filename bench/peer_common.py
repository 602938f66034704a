"""What the PyTorch peers share (peer_autograd.py, peer_train.py, peer_curvature.py,
peer_elementwise.py, peer_methods.py): thread pinning, the OpenMP wait policy, a report of what
runs the numbers, and the request loop through which the Lua and C benchmarks alternate their
samples with the peer's.

Import this module before torch: it sets OMP_WAIT_POLICY=passive unless the environment says
otherwise (libgomp reads it once, when torch loads it). With the default spinning, torch's OpenMP
workers held a core after every call; on this shared 2-core VM that made torch's 2-thread step up
to 17x slower than its 1-thread step whenever another job held the other core.

set_threads(n) sets torch's intra-op pool (torch.set_num_threads) and every OpenBLAS loaded into
the process (openblas_set_num_threads): Debian's torch (and SciPy) run their matrix products on
OpenBLAS, which torch.set_num_threads leaves at every core. It looks for OpenBLAS among the
libraries mapped at the time of the call, so import everything that loads BLAS (torch,
scipy.sparse.linalg) before calling it.

serve(handle) is the peer's side of the co-process protocol (bench/common.lua's peer(), and
bench_util's bench_peer in C): one request per line on stdin, `handle(words)` returns the reply
line, which is written and flushed at once; '#' lines printed by the handler go to the caller's
stderr. The caller takes one sample of its own, asks for one of ours, and so on: both sides see
the same drift of the machine.
"""
import ctypes
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

import torch  # noqa: E402  (after the wait policy)

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


def threads_note(who):
    """A '#' line: torch's threads, each OpenBLAS's threads and kernel, the wait policy."""
    blas = []
    for lib in openblas_libs():
        lib.openblas_get_corename.restype = ctypes.c_char_p
        b = f"{lib.openblas_get_num_threads()} ({lib.openblas_get_corename().decode()})"
        if b not in blas:
            blas.append(b)
    return (f"# {who}: threads: torch {torch.get_num_threads()}, OpenBLAS "
            f"{', '.join(blas) or 'not loaded'}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")


def machine_note(who):
    """A '#' line: torch's version and the build settings that pick its kernels."""
    keys = ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP", "PERF_WITH_AVX512")
    found = [w.strip(" ,") for w in torch.__config__.show().split()
             if w.startswith(keys)]
    return f"# {who}: torch {torch.__version__}; {' '.join(found) or 'build settings unknown'}"


def serve(handle):
    """Answer requests from stdin until it closes (see the module's docstring)."""
    for line in sys.stdin:
        words = line.split()
        if words:
            print(handle(words), flush=True)
