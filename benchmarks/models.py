"""Whole models, float64, on the CPU: ours (numpy and numba backends) against torch autograd.

Workloads (``--workloads``, comma separated; default all):

* ``schnet``: SchNet energy + forces, 1000 atoms uniform in a 21.7 Å cube, PyG defaults
  (hidden 128, 128 filters, 6 interactions, 50 Gaussians), cutoff 5 Å (~38.6k edges). Ours:
  forward + backward (forces and every weight gradient). Torch: PyG's ``SchNet`` on the same edges
  and weights, ``autograd.grad(E, pos)`` (forces only, what an MD step needs); the row
  ``schnet (+weights)`` times PyG's full ``backward`` (forces and weight gradients, our work).
* ``egnn``: EGNN_vel N-body training step, 100 five-body systems (complete graphs, 2000 edges),
  hidden 64, 4 layers: forward, MSE loss, backward. Torch: EGNN_vel written from the equations
  (``model_peers.torch_egnn_vel``) or, with ``--egnn-peer PATH``, the published class loaded from
  a vgsatorras/egnn checkout at PATH.
* ``segnn``: one SEGNN layer 32x0e+32x1o with l <= 1 attributes from positions, N = 1000,
  E = 10k, forward + backward, against the e3nn-built torch layer of the peer tests.
* ``tfn``: one TFN convolution (e3nn's ``gate_points_2101.Convolution`` + gate),
  32x0e+32x1o -> 32x0e+32x1o, l <= 2 harmonics, N = 1000, E = 10k, forward + backward.
* ``lieconv``: the LieConv workload of the lie layers (see :func:`build_lieconv`).

Timing: the methods of a workload run interleaved (each round times every method once) after two
warm-up calls; the table shows medians and ratios to the torch time (< 1 means faster than torch).
Torch runs with ``torch.set_num_threads(--threads)``; NumPy's BLAS and Numba use their defaults
(the machine line says how many threads each has). ``--memory`` (default on) runs every
(workload, method) once more in a fresh subprocess and reports the peak resident memory that the
call added (``VmHWM`` after resetting it, Linux).

Usage::

    python3 benchmarks/models.py                       # every workload, 7 rounds
    python3 benchmarks/models.py --workloads schnet,egnn --rounds 11 --no-memory
    python3 benchmarks/models.py --egnn-peer /path/to/egnn   # the published EGNN_vel
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
    specs = {b: _with_backend(spec, b) for b in ("numpy", "numba")}

    def ours(b):
        s = specs[b]

        def run():
            e, cache = s.forward(params, graph, z, pos)
            _, (_, g_pos) = s.backward(params, cache, np.ones_like(e))
            return e, -g_pos
        return run

    def check(results):
        e_t, f_t = results["torch"]
        return {b: max(_rel(results[b][0], e_t), _rel(results[b][1], f_t)) for b in specs}

    methods = {"numpy": ours("numpy"), "numba": ours("numba"),
               "torch": lambda: peers.schnet_forces(net, z, pos)}
    if args.weights:
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
    specs = {b: dataclasses.replace(spec, backend=b) for b in ("numpy", "numba")}

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
    return desc, {"numpy": ours("numpy"), "numba": ours("numba"), "torch": theirs}, check


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
    mods = tp._torch_layer(net0.layer, params)

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
        return out.detach().numpy(), ht.grad.numpy()

    return (f"SEGNN layer {hid}, l <= 1 attributes, N = {n}, E = {e}, forward + backward",
            {"numpy": ours("numpy"), "numba": ours("numba"), "torch": theirs}, _pair_check)


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
    conv, gate = tp._tfn_torch(lay0)
    tp._tfn_load(conv, params)
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
        return out.detach().numpy(), ft.grad.numpy()

    return (f"TFN conv {irr} -> {irr} + gate, l <= 2, N = {n}, E = {e}, forward + backward",
            {"numpy": ours("numpy"), "numba": ours("numba"), "torch": theirs}, _pair_check)


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
    d = tl.SE3().distance(inp[0]).numpy()
    radius = float(np.quantile(d, 0.25))  # balls holding a quarter of each cloud
    ball = d < radius
    torch.manual_seed(0)
    layer = tl.LieConv(ch, ch, group=tl.SE3(), mean=True,
                       mc_samples=int(ball.sum(-1).max())).to(torch.float64).eval()
    layer.r.fill_(radius)
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
        return out.detach().numpy(), v.grad.numpy()

    desc = (f"LieConv SE(3) layer {ch} -> {ch}, {bs} clouds x {pts} points x {lifts} lifts "
            f"(N = {bs * n}, E = {graph.num_edges}, ball radius {radius:.2f}), mean, forward + "
            "backward; torch: the published structure (test double), which also picks the "
            "neighbourhoods")
    return desc, {"numpy": ours("numpy"), "numba": ours("numba"), "torch": theirs}, _pair_check


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
            for b in ("numpy", "numba")}


def _leaves(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from _leaves(v)
    else:
        yield tree


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
    cmd = [sys.executable, __file__, "--child", workload, method, "--threads", str(args.threads)]
    if args.egnn_peer:
        cmd += ["--egnn-peer", args.egnn_peer]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def _setup_torch(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.set_default_dtype(torch.float64)


def run_workload(args, name):
    desc, methods, check = BUILDERS[name](args)
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
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in names if w not in BUILDERS]
    if bad:
        ap.error(f"unknown workload(s) {bad}; choose from {WORKLOADS}")
    _setup_torch(args.threads)
    print(f"# machine: {machine(args.threads)}")
    print(f"# float64; {args.rounds} interleaved rounds after 2 warm-up calls; medians in ms; "
          "ratio = time / torch time (< 1: faster than torch)")
    rows = []
    for name in names:
        try:
            desc, med, spread, errs = run_workload(args, name)
        except (ImportError, NotImplementedError, AttributeError, TypeError) as exc:
            print(f"# {name}: skipped ({type(exc).__name__}: {exc})")
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
    print("| workload | torch ms | numpy ms (ratio) | numba ms (ratio) | numba / numpy | "
          "peak MiB numpy / numba / torch |")
    print("|---|---:|---:|---:|---:|---|")
    for name, med, mem in rows:
        t = med["torch"]
        extra = [m for m in med if m not in ("numpy", "numba", "torch")]

        def cell(m, med=med, t=t):
            return f"{1e3 * med[m]:.1f} ({med[m] / t:.2f})"
        peaks = " / ".join("-" if mem.get(m) is None else f"{mem[m]:.0f}"
                           for m in ("numpy", "numba", "torch"))
        print(f"| {name} | {1e3 * t:.1f} | {cell('numpy')} | {cell('numba')} | "
              f"{med['numba'] / med['numpy']:.2f} | {peaks} |")
        for m in extra:
            peak = "-" if mem.get(m) is None else f"{mem[m]:.0f}"
            print(f"| {name} vs {m} | {1e3 * med[m]:.1f} | {med['numpy'] / med[m]:.2f} | "
                  f"{med['numba'] / med[m]:.2f} | | {peak} |")
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
