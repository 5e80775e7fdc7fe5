"""CUDA aggregation kernel against torch ``index_add_`` and the card's copy bandwidth.

E = 1e7 edges, N = E / 16 receivers, C = 64 channels, float32 and float64, receivers sorted or
random. Messages are generated on the GPU with torch and handed to ``geomp_ref``'s CUDA backend
through ``__cuda_array_interface__`` (no copy); the graph is made device-resident once
(``numba_cuda.to_device``). Times are medians of ``--repeats`` synchronized calls:

* ``ours_call``: ``backends.get("cuda").aggregate(dgraph, m)`` (validation, output allocation,
  launch);
* ``ours_kernel``: the CSR kernel alone into a preallocated output;
* ``torch``: ``torch.zeros(N, C).index_add_(0, dst, m)`` (atomics; order-dependent last bits).

Bandwidth: bytes that must move (``E*C*s + 8E + 8(N+1) + N*C*s``) divided by the time, as a
fraction of a device-to-device copy measured in the same run (read + write bytes counted).
Goal (issue 6): >= 70% of the copy bandwidth and at least torch's speed. A fused
``weighted_aggregate`` line (filter per edge and channel) against torch's
``index_select * W`` + ``index_add_`` is printed as well.

Usage: ``python3 benchmarks/aggregate_gpu.py [--edges 1e7] [--channels 64] [--repeats 10]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
from numba import cuda

from geomp_ref import make_graph
from geomp_ref.backends import get


def sync():
    cuda.synchronize()
    torch.cuda.synchronize()


def timeit(fn, repeats: int) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def copy_bandwidth(nbytes: int, repeats: int) -> float:
    a = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda").uniform_()
    b = torch.empty_like(a)
    t = timeit(lambda: b.copy_(a), repeats)
    return 2 * a.numel() * 4 / t


def bench_dtype(cb, dg, dst_t, src_t, order, tdt, name, c, bw, repeats) -> bool:
    """Print the aggregate and weighted rows of one (order, dtype) cell; True if goal met."""
    n, e = dg.num_nodes, dg.num_edges
    s = 4 if tdt == torch.float32 else 8
    m = torch.randn(e, c, dtype=tdt, device="cuda")
    kern = cb._KERNELS[np.dtype(name)]["sum"]
    out = cuda.device_array((n, c), dtype=np.dtype(name))
    mk = cuda.as_cuda_array(m)

    def ours_call():
        return cb.aggregate(dg, m)

    def ours_kernel():
        cb._launch(kern, n * c, mk, dg.dst_perm, dg.dst_ptr, out, False)

    def torch_add():
        return torch.zeros(n, c, dtype=tdt, device="cuda").index_add_(0, dst_t, m)

    t_call = timeit(ours_call, repeats)
    t_kern = timeit(ours_kernel, repeats)
    t_torch = timeit(torch_add, repeats)
    ours = torch.as_tensor(ours_call(), device="cuda")
    ref = torch_add()
    diff = ((ours - ref).abs().max() / ref.abs().max()).item()
    nbytes = e * c * s + 8 * e + 8 * (n + 1) + n * c * s
    frac = nbytes / t_kern / bw
    print(f"| aggregate | {order} | {name} | {nbytes / bw * 1e3:.3g} | {t_call * 1e3:.3g} | "
          f"{t_kern * 1e3:.3g} | {t_torch * 1e3:.3g} | {100 * frac:.0f}% | "
          f"{t_torch / t_call:.2f} | {diff:.1e} |")
    met = frac >= 0.7 and t_call <= t_torch
    # fused weighted aggregate (cfconv): W per edge and channel
    f = torch.randn(n, c, dtype=tdt, device="cuda")
    w = torch.randn(e, c, dtype=tdt, device="cuda")

    def ours_w():
        return cb.weighted_aggregate(dg, f, w)

    def torch_w():
        return torch.zeros(n, c, dtype=tdt, device="cuda").index_add_(
            0, dst_t, f.index_select(0, src_t) * w)

    tw = timeit(ours_w, repeats)
    tt = timeit(torch_w, repeats)
    ours = torch.as_tensor(ours_w(), device="cuda")
    ref = torch_w()
    diff = ((ours - ref).abs().max() / ref.abs().max()).item()
    nbytes = e * c * s + 16 * e + 8 * (n + 1) + 2 * n * c * s
    print(f"| weighted | {order} | {name} | {nbytes / bw * 1e3:.3g} | {tw * 1e3:.3g} | - | "
          f"{tt * 1e3:.3g} | {100 * nbytes / tw / bw:.0f}% | {tt / tw:.2f} | {diff:.1e} |")
    return met


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--edges", type=float, default=1e7)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    e, c = int(args.edges), args.channels
    n = e // 16
    cb = get("cuda")
    props = torch.cuda.get_device_properties(0)
    print(f"# device: {props.name}, {props.total_memory / 2**30:.0f} GiB, "
          f"{props.multi_processor_count} SMs; torch {torch.__version__}")
    bw = copy_bandwidth(1 << 31, args.repeats)
    print(f"# device-to-device copy bandwidth (read+write): {bw / 1e12:.2f} TB/s")
    print(f"# E = {e:.0e}, N = {n}, C = {c}; median of {args.repeats}")
    print("| kernel | order | dtype | floor ms | ours_call ms | ours_kernel ms | torch ms | "
          "ours % of copy bw | torch/ours | max rel diff vs torch |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    rng = np.random.default_rng(0)
    ok = True
    for order in ("sorted", "random"):
        t0 = time.perf_counter()
        dst = rng.integers(0, n, e)
        if order == "sorted":
            dst.sort()
        src = rng.integers(0, n, e)
        g = make_graph(np.stack([src, dst]), n)
        dg = cb.to_device(g)
        dst_t = torch.from_numpy(g.dst).cuda()
        src_t = torch.from_numpy(g.src).cuda()
        print(f"# graph ({order}) built in {time.perf_counter() - t0:.1f} s")
        for tdt, name in ((torch.float32, "float32"), (torch.float64, "float64")):
            ok &= bench_dtype(cb, dg, dst_t, src_t, order, tdt, name, c, bw, args.repeats)
            torch.cuda.empty_cache()
        del dg, dst_t, src_t, g
    print(f"# goal (aggregate: kernel >= 70% of copy bandwidth, call not slower than torch): "
          f"{'MET' if ok else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
