"""Whole models, float64: ours (numpy, numba and cuda backends) against torch autograd.

Workloads (``--workloads``, comma separated; default all):

* ``schnet``: SchNet energy + forces, 1000 atoms uniform in a 21.7 Å cube, PyG defaults
  (hidden 128, 128 filters, 6 interactions, 50 Gaussians), cutoff 5 Å (~38.6k edges). Ours:
  forward + the forces-only backward (``param_grads=False``); torch: PyG's ``SchNet`` on the same
  edges and weights, ``autograd.grad(E, pos)``. Both compute what an MD step needs. The row
  ``schnet (+weights)`` times the full backward on both sides (forces and every weight gradient).
* ``egnn``: EGNN_vel N-body training step, 100 five-body systems (complete graphs, 2000 edges),
  hidden 64, 4 layers: forward, MSE loss, backward. Torch: EGNN_vel written from the equations
  (``model_peers.torch_egnn_vel``) or, with ``--egnn-peer PATH``, the published class loaded from
  a vgsatorras/egnn checkout at PATH.
* ``segnn``: one SEGNN layer 32x0e+32x1o with l <= 1 attributes from positions, N = 1000,
  E = 10k, forward + backward, against the e3nn-built torch layer of the peer tests.
* ``tfn``: one TFN convolution (e3nn's ``gate_points_2101.Convolution`` + gate),
  32x0e+32x1o -> 32x0e+32x1o, l <= 2 harmonics, N = 1000, E = 10k, forward + backward.
* ``lieconv``: the LieConv workload of the lie layers (see :func:`build_lieconv`).

Allocator: by default the script first calls :func:`geomp_ref.backends.tune_allocator`, so that
glibc keeps freed memory and large temporaries start on touched pages; the setting is
process-wide, so it holds for every method timed, torch included (``--no-tune-allocator``
keeps the C library's defaults). The memory-peak subprocesses never tune: a tuned heap keeps the
warm-up call's pages, which would hide the peak.

Timing: the methods of a workload run interleaved (each round times every method once) after two
warm-up calls; the table shows medians and ratios to the torch time (< 1 means faster than torch).
Torch runs with ``torch.set_num_threads(--threads)``; NumPy's BLAS and Numba use their defaults
(the machine line says how many threads each has). ``--memory`` (default on) runs every
(workload, method) once more in a fresh subprocess and reports the peak resident memory that the
call added (``VmHWM`` after resetting it, Linux).

``--device cuda`` (a machine with an NVIDIA GPU): torch runs float64 on the GPU (its default
device is set there), ours runs with the numba backend on the host CPUs and with the cuda backend
(aggregations on the GPU, the rest on the host), ``--threads`` sets torch's CPU threads; no memory
or BLAS tables.

Usage::

    python3 benchmarks/models.py                       # every workload, 7 rounds
    python3 benchmarks/models.py --workloads schnet,egnn --rounds 11 --no-memory
    python3 benchmarks/models.py --egnn-peer /path/to/egnn   # the published EGNN_vel
    python3 benchmarks/models.py --device cuda --threads 16 --rounds 5   # GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script folder)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import model_peers as peers  # noqa: E402  (after the path setup)

from geomp_ref.backends import NAMES  # noqa: E402  (ours: the backend names)

WORKLOADS = ("schnet", "egnn", "segnn", "tfn", "lieconv")


def machine(threads: int) -> str:
    import numba
    import torch

    cpu = cpu_name()
    blas = "?"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{cfg['name']} {cfg['version']}"
    except Exception:  # noqa: BLE001  (older NumPy: no dict mode)
        pass
    return (f"{cpu}, {os.cpu_count()} logical CPUs; Python {platform.python_version()}, numpy "
            f"{np.__version__} ({blas}, OPENBLAS_NUM_THREADS="
            f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}), numba {numba.__version__} "
            f"({numba.config.NUMBA_NUM_THREADS} threads, layer {numba.config.THREADING_LAYER}), "
            f"torch {torch.__version__} ({threads} threads)")


# --- workloads: each returns (description, {method: callable}, check) --------------------------


def build_schnet(args):
    from geomp_ref.graph import radius_graph

    rng = np.random.default_rng(0)
    pos = rng.uniform(0.0, 21.7, (1000, 3))
    z = rng.choice([1, 6, 7, 8], 1000)
    graph = radius_graph(pos, 5.0)
    net, spec, params = peers.pyg_schnet(graph)
    peers.to_default_device(net)
    specs = {b: _with_backend(spec, b) for b in _backends(args)}

    def ours(b, weights=False):
        s = specs[b]

        def run():  # forces only (as torch's autograd.grad), or every weight gradient too
            e, cache = s.forward(params, graph, z, pos)
            _, (_, g_pos) = s.backward(params, cache, np.ones_like(e), param_grads=weights)
            return e, -g_pos
        return run

    def check(results):
        e_t, f_t = results["torch"]
        return {b: max(_rel(results[b][0], e_t), _rel(results[b][1], f_t)) for b in specs}

    methods = {b: ours(b) for b in specs}
    methods["torch"] = lambda: peers.schnet_forces(net, z, pos)
    if args.weights:
        fast = "numba" if "numba" in specs else next(iter(specs))
        methods[f"{fast} (+weights)"] = ours(fast, weights=True)
        methods["torch (+weights)"] = lambda: peers.schnet_forces_and_weights(net, z, pos)
    desc = (f"SchNet energy + forces, N = 1000, E = {graph.num_edges}, 128/128/6/50, cutoff 5 A")
    return desc, methods, check


def build_egnn(args):
    import dataclasses

    import torch

    from geomp_ref.graph import complete_graph, concat_graphs
    from geomp_ref.models.nbody import NBodyEGNN

    rng = np.random.default_rng(0)
    systems = 100
    graph = concat_graphs([complete_graph(5)] * systems)
    n = graph.num_nodes
    x, v = rng.normal(size=(n, 3)), rng.normal(size=(n, 3))
    q = rng.choice([-1.0, 1.0], (n, 1))
    target = x + 0.1 * rng.normal(size=(n, 3))
    spec = NBodyEGNN(hidden=64, num_layers=4)
    params = spec.init(rng)
    specs = {b: dataclasses.replace(spec, backend=b) for b in _backends(args)}

    def ours(b):
        s = specs[b]

        def run():
            y, cache = s.forward(params, graph, x, v, q)
            loss = float(np.mean((y - target) ** 2))
            s.backward(params, cache, 2.0 * (y - target) / y.size)
            return loss
        return run

    row, col = torch.as_tensor(np.array(graph.dst)), torch.as_tensor(np.array(graph.src))
    xt, vt, tt = peers._t(x), peers._t(v), peers._t(target)
    qt = peers._t(q)
    diff0 = xt[row] - xt[col]
    a = torch.cat([qt[row] * qt[col], (diff0 * diff0).sum(1, keepdim=True)], 1)  # data, as
    # published (detached edge attributes)
    if args.egnn_peer:
        pub = peers.published_egnn_vel(args.egnn_peer, params)
        edges = [row, col]

        def theirs():
            y = pub(vt.norm(dim=1, keepdim=True), xt.clone(), edges, vt, a)
            loss = ((y - tt) ** 2).mean()
            loss.backward()
            pub.zero_grad(set_to_none=True)
            return float(loss)
    else:
        tp = peers.egnn_params_to_torch(params)
        leaves = [t for t in _leaves(tp)]

        def theirs():
            y = peers.torch_egnn_vel(tp, row, col, xt, vt, a)
            loss = ((y - tt) ** 2).mean()
            loss.backward()
            for t in leaves:
                t.grad = None
            return float(loss)

    def check(results):
        return {b: abs(results[b] - results["torch"]) / abs(results["torch"]) for b in specs}

    which = "published EGNN_vel" if args.egnn_peer else "EGNN_vel from the equations"
    desc = (f"EGNN_vel N-body training step, {systems} x 5 bodies (N = {n}, E = "
            f"{graph.num_edges}), H = 64, 4 layers; torch: {which}")
    return desc, {**{b: ours(b) for b in specs}, "torch": theirs}, check


def _steerable_peers():
    sys.path.insert(0, str(ROOT / "tests" / "peers"))
    import test_e3nn_steerable as tp  # the e3nn-built torch layers of the peer tests

    return tp


def _random_graph(rng, n: int, e: int):
    """``(graph, pos)``: ``e`` random edges, no self-loops, on ``n`` nodes; positions ~ N(0, 9)."""
    from geomp_ref.graph import make_graph

    src = rng.integers(0, n, size=e)
    dst = (src + rng.integers(1, n, size=e)) % n
    graph = make_graph(np.stack([src, dst]).astype(np.int64), n)
    return graph, rng.normal(size=(n, 3)) * 3.0


def build_segnn(args):
    from geomp_ref.layers.segnn import SEGNN
    from geomp_ref.layers.segnn_attributes import segnn_attributes, segnn_attributes_vjp

    tp = _steerable_peers()
    rng = np.random.default_rng(0)
    n, e = 1000, 10_000
    graph, pos = _random_graph(rng, n, e)
    hid = "32x0e+32x1o"
    net0 = SEGNN(hid, hid, hid, num_layers=1, lmax_attr=1, task="node", mode="reference")
    params = net0.layer.init(rng)
    h = rng.normal(size=(n, net0.layer.irreps_hidden.dim))
    cot = rng.normal(size=h.shape)
    with peers.cpu_build():
        mods = tp._torch_layer(net0.layer, params)
    peers.to_default_device(*mods.values())

    def ours(b):
        net = _with_backend(net0, b)
        lay = net.layer

        def run():
            (a_ij, a_i, s_ij), att = segnn_attributes(net, graph, pos, None, None, None)
            out, cache = lay.forward(params, graph, h, a_ij, a_i, s_ij)
            _, (g_h, g_aij, g_ai, g_s) = lay.backward(params, cache, cot)
            segnn_attributes_vjp(net, att, g_aij, g_ai, g_s)
            return out, g_h
        return run

    def theirs():
        ht, pt = peers._t(h, True), peers._t(pos, True)
        ea, na, sq = tp._torch_attributes(net0, graph, pt)
        out = tp._torch_layer_forward(mods, graph, ht, ea, na, sq)
        out.backward(peers._t(cot))
        for m in mods.values():
            m.zero_grad(set_to_none=True)
        return peers._np(out), peers._np(ht.grad)

    return (f"SEGNN layer {hid}, l <= 1 attributes, N = {n}, E = {e}, forward + backward",
            {**{b: ours(b) for b in _backends(args)}, "torch": theirs}, _pair_check)


def build_tfn(args):
    from geomp_ref.layers.tfn import TFNConv

    tp = _steerable_peers()
    rng = np.random.default_rng(0)
    n, e = 1000, 10_000
    graph, pos = _random_graph(rng, n, e)
    irr = "32x0e+32x1o"
    lay0 = TFNConv(irreps_in=irr, irreps_out=irr, lmax=2, max_radius=10.0, num_basis=10,
                   radial_neurons=64, num_neighbors=10.0, gate=True)
    params = lay0.init(rng)
    f = rng.normal(size=(n, lay0.irreps_in.dim))
    with peers.cpu_build():
        conv, gate = tp._tfn_torch(lay0)
    tp._tfn_load(conv, params)
    peers.to_default_device(conv, gate)
    out0, _ = lay0.forward(params, graph, f, pos)
    cot = rng.normal(size=out0.shape)

    def ours(b):
        lay = _with_backend(lay0, b)

        def run():
            out, cache = lay.forward(params, graph, f, pos)
            _, (g_f, _g_pos) = lay.backward(params, cache, cot)
            return out, g_f
        return run

    def theirs():
        ft, pt = peers._t(f, True), peers._t(pos, True)
        out = tp._tfn_torch_forward(lay0, conv, gate, graph, ft, pt)
        out.backward(peers._t(cot))
        conv.zero_grad(set_to_none=True)
        return peers._np(out), peers._np(ft.grad)

    return (f"TFN conv {irr} -> {irr} + gate, l <= 2, N = {n}, E = {e}, forward + backward",
            {**{b: ours(b) for b in _backends(args)}, "torch": theirs}, _pair_check)


def build_lieconv(args):
    import dataclasses

    import torch

    from geomp_ref import interop

    sys.path.insert(0, str(ROOT / "tests" / "peers"))
    import test_lieconv as tl  # the LieConv test double of the peer tests (published structure)

    rng = np.random.default_rng(0)
    bs, pts, lifts, ch = 8, 64, 2, 32
    inp = tl.lifted(rng, "SE3", bs, pts, lifts, ch)
    n = pts * lifts
    d = peers._np(tl.SE3().distance(inp[0]))
    radius = float(np.quantile(d, 0.25))  # balls holding a quarter of each cloud
    ball = d < radius
    torch.manual_seed(0)
    layer = tl.LieConv(ch, ch, group=tl.SE3(), mean=True,
                       mc_samples=int(ball.sum(-1).max())).to(torch.float64).eval()
    layer.r.fill_(radius)
    peers.to_default_device(layer)
    spec0, params = interop.from_torch(layer)
    graph, inputs = interop.inputs_from_torch(layer, inp)
    cot = rng.normal(size=(bs, n, ch))

    def ours(b):
        spec = dataclasses.replace(spec0, conv=dataclasses.replace(spec0.conv, backend=b))

        def run():
            (_, out, _), cache = spec.forward(params, graph, *inputs)
            _, (_, g_v, _) = spec.backward(params, cache, (None, cot, None))
            return out, g_v
        return run

    def theirs():
        v = inp[1].clone().requires_grad_(True)
        out = layer((inp[0], v, inp[2]))[1]
        out.backward(peers._t(cot))
        layer.zero_grad(set_to_none=True)
        return peers._np(out), peers._np(v.grad)

    desc = (f"LieConv SE(3) layer {ch} -> {ch}, {bs} clouds x {pts} points x {lifts} lifts "
            f"(N = {bs * n}, E = {graph.num_edges}, ball radius {radius:.2f}), mean, forward + "
            "backward; torch: the published structure (test double), which also picks the "
            "neighbourhoods")
    return desc, {**{b: ours(b) for b in _backends(args)}, "torch": theirs}, _pair_check


def coexistence(args) -> list[str]:
    """Time the same matrix product right after an activation pass of each backend.

    The numpy backend's pass (NumPy ufuncs) is the baseline; the numba backend's as it runs in the
    models (below the parallel threshold: the serial twin); and the parallel twin forced, which
    wakes Numba's thread pool. Only the product is timed; rounds interleave the three.
    """
    from geomp_ref.backends import _nbjit
    from geomp_ref.backends import numba_elementwise as ne
    from geomp_ref.ops import activations

    rng = np.random.default_rng(0)
    rows = []
    for label, (m, k, n) in (("SchNet filter, 19298 x 128 @ 128 x 128", (19298, 128, 128)),
                             ("EGNN edge MLP, 2000 x 131 @ 131 x 64", (2000, 131, 64))):
        x, w = rng.normal(size=(m, k)), rng.normal(size=(k, n))
        z = rng.normal(size=(m, n))
        def before(which, z=z, par_min=_nbjit.PARALLEL_MIN_WORK):
            if which == "numpy":
                activations.derivative("silu", z)
                return activations.silu(z)
            _nbjit.PARALLEL_MIN_WORK = 0 if which == "numba parallel twin" else par_min
            try:
                return ne.activation_with_grad("silu", z)
            finally:
                _nbjit.PARALLEL_MIN_WORK = par_min

        kinds = ("numpy", "numba (as run)", "numba parallel twin")
        times = {kd: [] for kd in kinds}
        reps = max(3 * args.rounds, 15)
        for kd in kinds:  # warm-up (compilation)
            before(kd)
        for _ in range(reps):
            for kd in kinds:
                before(kd)
                t0 = time.perf_counter()
                x @ w
                times[kd].append(time.perf_counter() - t0)
        med = {kd: statistics.median(v) for kd, v in times.items()}
        base = med["numpy"]
        rows.append(f"| {label} | " + " | ".join(
            f"{1e3 * med[kd]:.2f} ({med[kd] / base:.2f})" for kd in kinds) + " |")
    return rows


BUILDERS = {"schnet": build_schnet, "egnn": build_egnn, "segnn": build_segnn, "tfn": build_tfn,
            "lieconv": build_lieconv}


# --- helpers -----------------------------------------------------------------------------------


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a - b))) / scale if scale > 0 else 0.0


def _pair_check(results):
    o_t, g_t = results["torch"]
    return {b: max(_rel(results[b][0], o_t), _rel(results[b][1], g_t))
            for b in results if b in NAMES}


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


def _backends(args) -> tuple:
    """Our backends to time (``--backends``; the CPU table's default is numpy and numba)."""
    return tuple(getattr(args, "backends", None) or ("numpy", "numba"))


def _with_backend(spec, backend):
    import dataclasses

    return dataclasses.replace(spec, backend=backend)


def _hwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for ln in fh:
                if ln.startswith("VmHWM:"):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def child(args) -> int:
    """One (workload, method) in this fresh process: the peak memory one call adds, in MiB."""
    _setup_torch(args.threads)
    _, methods, _ = BUILDERS[args.child[0]](args)
    fn = methods[args.child[1]]
    fn()  # warm-up: compiled kernels, torch's allocator pools
    import gc

    gc.collect()
    ok = _reset_hwm()
    base = _hwm_kib()
    fn()
    peak = _hwm_kib()
    print(json.dumps({"peak_mib": None if not ok or base is None or peak is None
                      else (peak - base) / 1024.0}))
    return 0


def memory_peak(args, workload, method) -> float | None:
    cmd = [sys.executable, __file__, "--child", workload, method, "--threads", str(args.threads),
           "--backends", ",".join(_backends(args))]
    if args.egnn_peer:
        cmd += ["--egnn-peer", args.egnn_peer]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def _setup_torch(threads: int, device: str = "cpu") -> None:
    import torch

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float64)
    if device != "cpu":  # every peer tensor and module is then built on the GPU
        torch.set_default_device(device)


def _synced(fn):
    """``fn`` followed by a wait for the GPU (torch launches asynchronously)."""
    import torch

    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


def run_workload(args, name):
    desc, methods, check = BUILDERS[name](args)
    if args.device != "cpu":
        methods = {m: _synced(fn) for m, fn in methods.items()}
    results = {}
    for m, fn in methods.items():
        fn()
        results[m] = fn()
    errs = check(results) if check else {}
    times = {m: [] for m in methods}
    for _ in range(args.rounds):
        for m, fn in methods.items():
            t0 = time.perf_counter()
            fn()
            times[m].append(time.perf_counter() - t0)
    med = {m: statistics.median(ts) for m, ts in times.items()}
    spread = {m: (min(ts), max(ts)) for m, ts in times.items()}
    return desc, med, spread, errs


def table(rows, backends) -> str:
    """The markdown ratio table: torch time, each backend's time (ratio to torch), peaks."""
    head = " | ".join(f"{b} ms (ratio)" for b in backends)
    both = "numpy" in backends and "numba" in backends
    lines = [f"| workload | torch ms | {head} |" + (" numba / numpy |" if both else "")
             + " peak MiB " + " / ".join((*backends, "torch")) + " |",
             "|---|---:|" + "---:|" * (len(backends) + both) + "---|"]
    for name, med, mem in rows:
        for tag in ("", " (+weights)"):
            t = med.get(f"torch{tag}")
            if t is None:
                continue
            cells = [f"{1e3 * med[b + tag]:.1f} ({med[b + tag] / t:.2f})" if b + tag in med
                     else "-" for b in backends]
            ratio = ([f"{med['numba' + tag] / med['numpy' + tag]:.2f}"
                      if f"numpy{tag}" in med and f"numba{tag}" in med else ""] if both else [])
            peaks = " / ".join("-" if mem.get(m + tag) is None else f"{mem[m + tag]:.0f}"
                               for m in (*backends, "torch"))
            lines.append(f"| {name}{tag} | {1e3 * t:.1f} | " + " | ".join(cells + ratio)
                         + f" | {peaks} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", default=",".join(WORKLOADS),
                    help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (median)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                    help="peak memory per (workload, method) in subprocesses")
    ap.add_argument("--weights", action=argparse.BooleanOptionalAction, default=True,
                    help="also time PyG's SchNet backward with weight gradients")
    ap.add_argument("--egnn-peer", default=None,
                    help="path of a vgsatorras/egnn checkout: time its published EGNN_vel")
    ap.add_argument("--coexistence", action=argparse.BooleanOptionalAction, default=True,
                    help="time a BLAS product after each backend's activation pass")
    ap.add_argument("--backends", default=None,
                    help="our backends to time, comma separated (default numpy,numba; with "
                         "--device cuda: numba,cuda)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="cuda: torch runs on the GPU; ours on the host CPUs (numba) and with "
                         "the cuda backend (aggregations on the GPU); no memory or BLAS columns")
    ap.add_argument("--tune-allocator", action=argparse.BooleanOptionalAction, default=True,
                    help="call geomp_ref.backends.tune_allocator() first: glibc keeps freed "
                         "memory for reuse, for every method timed (torch included); the "
                         "memory-peak subprocesses never tune")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    gpu = args.device != "cpu"
    args.backends = tuple(b.strip() for b in (args.backends or
                                               ("numba,cuda" if gpu else "numpy,numba"))
                          .split(",") if b.strip())
    if gpu:
        args.memory = args.coexistence = False
    if args.child:
        return child(args)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in names if w not in BUILDERS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    _setup_torch(args.threads, args.device)
    print(f"# machine: {machine(args.threads)}")
    if args.tune_allocator:
        from geomp_ref.backends import tune_allocator

        print(f"# allocator: tune_allocator() -> {tune_allocator()} (glibc keeps freed memory; "
              "every method of this process)")
    else:
        print("# allocator: the C library's defaults (--no-tune-allocator)")
    if gpu:
        import torch

        print(f"# GPU: {torch.cuda.get_device_name()}, torch float64 on it")
    print(f"# float64; {args.rounds} interleaved rounds after 2 warm-up calls; medians in ms; "
          "ratio = time / torch time (< 1: faster than torch)")
    rows = []
    for name in names:
        try:
            desc, med, spread, errs = run_workload(args, name)
        except (ImportError, NotImplementedError, AttributeError, TypeError) as exc:
            print(f"# {name}: skipped ({type(exc).__name__}: {exc})")
            continue
        except Exception as exc:  # noqa: BLE001  (GPU runs: report, go on with the next)
            if not gpu:
                raise
            import traceback

            traceback.print_exc()
            print(f"# {name}: failed on {args.device} ({type(exc).__name__}: {exc})")
            continue
        print(f"# {name}: {desc}")
        for m in med:
            lo, hi = spread[m]
            err = f", max rel diff vs torch {errs[m]:.1e}" if m in errs else ""
            print(f"#   {m:<18} {1e3 * med[m]:9.2f} ms  (min {1e3 * lo:.2f}, max {1e3 * hi:.2f})"
                  f"{err}")
        mem = {}
        if args.memory:
            mem = {m: memory_peak(args, name, m) for m in med}
        rows.append((name, med, mem))
    print()
    print(table(rows, _backends(args)))
    if args.coexistence:
        print()
        print(f"BLAS product (ms, median of {max(3 * args.rounds, 15)}; ratio to after NumPy) "
              "right after an activation pass of:")
        print()
        print("| product | numpy | numba (as run) | numba parallel twin |")
        print("|---|---:|---:|---:|")
        for row in coexistence(args):
            print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
