r"""The tensor product's VJP, and the Gate's normalisation constants.

The lesson
----------
1. A tensor-product path is *trilinear* in (x1, x2, W):

       z_{w,k} = c sum_{u,v,i,j} W_{uvw} C_{ijk} x1_{u,i} x2_{v,j}          (mode uvw)

   so each gradient of L = <g, z> is the same sum with one factor removed:

       dL/dW_{uvw}  = c sum_{ijk} C_{ijk} x1_{u,i} x2_{v,j} g_{w,k}  = c sum_k s_{uv,k} g_{w,k}
       dL/dx1_{u,i} = c sum_{vjwk} W_{uvw} C_{ijk} x2_{v,j} g_{w,k}  = sum_{vk} sbar_{uv,k} t_{v,ik}
       dL/dx2_{v,j} = c sum_{uiwk} W_{uvw} C_{ijk} x1_{u,i} g_{w,k}  = sum_{ik} tbar_{v,ik} C_{ijk}

   with t_{v,ik} = sum_j C_{ijk} x2_{v,j}, s_{uv,k} = sum_i x1_{u,i} t_{v,ik},
   sbar_{uv,k} = c sum_w W_{uvw} g_{w,k} and tbar_{v,ik} = sum_u sbar_{uv,k} x1_{u,i} — exactly
   the order in which geomp_ref.o3.tensor_product's backward reverses its forward. The other
   modes (uvu, uvv, uuw, uuu, uvuv) only change which indices W carries; the derivative rule is
   the same. Below, SymPy differentiates the scalar L for every mode on small irreps with the
   exact coupling tensors (geomp_ref.o3.wigner.exact_coupling) and symbolic inputs; the
   gradients are then evaluated at random points and compared with the hand-written backward.

2. The Gate rescales each activation f by c_f = E[f(z)^2]^{-1/2}, z ~ N(0, 1), so that
   unit-variance inputs give unit second moments. Closed forms: identity and abs have
   E[z^2] = 1; relu has E = 1/2 (half of the Gaussian mass), so c = sqrt(2). The others
   (silu, tanh, sigmoid, softplus, shifted softplus) have no closed form; we integrate
   f(z)^2 exp(-z^2/2)/sqrt(2 pi) with mpmath's tanh-sinh quadrature at 40 digits, split at 0,
   and round once. The table must equal geomp_ref.o3.gating.EXACT_CONSTANTS bit for bit.
   The gate's own VJP, out = c f(g) y: d/dy = c f(g), d/dg = c f'(g) y (product rule), is
   checked symbolically too.

3. Weights first. When a path takes a single copy of its x2 irrep (m2 = 1, as with spherical
   harmonics), the uvw sum factors through the input degree i:

       z_{w,k} = c sum_{u,i,j} W_{uw} C_{ijk} x1_{u,i} x2_j = sum_i y_{i,w} t_{i,k},
       y_{i,w} = c sum_u x1_{u,i} W_{uw},   t_{i,k} = sum_j C_{ijk} x2_j,

   and paths sharing x2's block, the output block and the input degree share t, so their y add
   up before the coupling. y is linear in x1, so for a message network whose x1 is
   [h_dst, h_src] the contraction x1 W can run on the node rows: (h W)[dst] + (h W')[src]. The
   reverse mode then sees h read by several edges: dL/dh_n sums the edge cotangents of every
   edge that reads node n (as receiver or sender) before the node-sized products. SymPy expands
   the difference of the literal and the reordered sums to 0, and differentiates the summed
   loss of a small graph with respect to the node features; the numbers must match
   O3TensorProduct.forward_gathered / backward_gathered on the numba backend, which evaluates
   exactly this way (geomp_ref.o3._tp_split).

Run ``python3 derivations/tensor_product.py --check`` (default): exit status 0 on success.
``--print`` prints the constant table for pasting into gate.py.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np
import sympy as sp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# (irreps_in1, irreps_in2, irreps_out, instructions): small, both parities, every mode.
EXAMPLES = [
    (
        "2x1o",
        "1x1o+1x0e",
        "1x1e+1x0e+2x1o",
        [(0, 0, 0, "uvw", True), (0, 0, 1, "uvw", True, 2.0), (0, 1, 2, "uvu", True)],
    ),
    ("2x1o", "1x2e", "2x2o+1x1o", [(0, 0, 0, "uvu", False), (0, 0, 1, "uvv", True)]),
    (
        "2x1o",
        "2x1e",
        "2x1o+1x2o+4x0o",
        [(0, 0, 0, "uuu", True), (0, 0, 1, "uuw", False), (0, 0, 2, "uvuv", True)],
    ),
]


def _exact_C(l1, l2, l3):
    from geomp_ref.o3.wigner import exact_coupling

    C = sp.MutableDenseNDimArray.zeros(2 * l1 + 1, 2 * l2 + 1, 2 * l3 + 1)
    for (a, b, c), v in exact_coupling(l1, l2, l3).items():
        C[a, b, c] = v
    return C


def derive_output(spec):
    """Symbolic output z (list of SymPy expressions) and the symbols (x1, x2, w)."""
    x1 = sp.symbols(f"x1_0:{spec.irreps_in1.dim}")
    x2 = sp.symbols(f"x2_0:{spec.irreps_in2.dim}")
    w = sp.symbols(f"w_0:{spec.weight_numel}") if spec.weight_numel else ()
    z = [sp.Integer(0)] * spec.irreps_out.dim
    offs, start = [], 0
    for ins in spec.instructions:
        offs.append(start)
        if ins.has_weight:
            start += int(np.prod(ins.path_shape))

    def blocks(irreps):
        out, s = [], 0
        for mul, ir in irreps:
            out.append((mul, ir.l, s))
            s += mul * (2 * ir.l + 1)
        return out

    b1, b2, bo = blocks(spec.irreps_in1), blocks(spec.irreps_in2), blocks(spec.irreps_out)
    for ins, off in zip(spec.instructions, offs):
        (m1, l1, s1), (m2, l2, s2), (mo, lo, so) = b1[ins.i_in1], b2[ins.i_in2], bo[ins.i_out]
        d1, d2, do = 2 * l1 + 1, 2 * l2 + 1, 2 * lo + 1
        C = _exact_C(l1, l2, lo)
        # c_p with the same formula as the module docstring (alpha/F * path_weight), exact.
        same = [q for q in spec.instructions if q.i_out == ins.i_out]
        F = sum(
            {
                "uvw": b1[q.i_in1][0] * b2[q.i_in2][0],
                "uvu": b2[q.i_in2][0],
                "uvv": b1[q.i_in1][0],
                "uuw": b1[q.i_in1][0],
                "uuu": 1,
                "uvuv": 1,
            }[q.connection_mode]
            for q in same
        )
        c = sp.sqrt(sp.Rational(do) / F * sp.nsimplify(ins.path_weight))
        mode = ins.connection_mode

        def W(*idx, ins=ins, off=off):
            if not ins.has_weight:
                return sp.Integer(1)
            flat = int(np.ravel_multi_index(idx, ins.path_shape))
            return w[off + flat]

        def pair(u, v, k, s1=s1, s2=s2, d1=d1, d2=d2, C=C):
            return sum(
                C[i, j, k] * x1[s1 + u * d1 + i] * x2[s2 + v * d2 + j]
                for i in range(d1)
                for j in range(d2)
                if C[i, j, k] != 0
            )

        for k in range(do):
            for wo in range(mo):
                if mode == "uvw":
                    val = sum(W(u, v, wo) * pair(u, v, k) for u in range(m1) for v in range(m2))
                elif mode == "uvu":
                    val = sum(W(wo, v) * pair(wo, v, k) for v in range(m2))
                elif mode == "uvv":
                    val = sum(W(u, wo) * pair(u, wo, k) for u in range(m1))
                elif mode == "uuw":
                    val = sum(W(u, wo) * pair(u, u, k) for u in range(m1))
                elif mode == "uuu":
                    val = W(wo) * pair(wo, wo, k)
                else:  # uvuv
                    u, v = divmod(wo, m2)
                    val = W(u, v) * pair(u, v, k)
                z[so + wo * do + k] += c * val
    return z, x1, x2, w


def check_tp_vjp(rng) -> float:
    """Max relative error between SymPy's gradients of <g, z> and the module's backward."""
    from geomp_ref.o3.tensor_product import TensorProduct

    worst = 0.0
    for a, b, o, ins in EXAMPLES:
        spec = TensorProduct(a, b, o, ins)
        z, x1, x2, w = derive_output(spec)
        g = sp.symbols(f"g_0:{len(z)}")
        L = sum(gi * zi for gi, zi in zip(g, z))
        grads = [[sp.diff(L, s) for s in syms] for syms in (x1, x2, w)]
        f = sp.lambdify(
            (x1, x2, w, g),
            [sp.Matrix(z)] + [sp.Matrix(gr) if gr else sp.Matrix() for gr in grads],
            "numpy",
        )
        for _ in range(3):
            v1 = rng.standard_normal(len(x1))
            v2 = rng.standard_normal(len(x2))
            vw = rng.standard_normal(len(w))
            vg = rng.standard_normal(len(g))
            ref = [np.asarray(r, dtype=float).ravel() for r in f(v1, v2, vw, vg)]
            params = {"weight": vw} if spec.internal_weights else {}
            out, cache = spec.forward(params, v1[None], v2[None])
            gp, (gx1, gx2, _) = spec.backward(params, cache, vg[None])
            got = [out[0], gx1[0], gx2[0]] + ([gp["weight"]] if w else [])
            for r, h in zip(ref, got):
                worst = max(
                    worst,
                    float(np.max(np.abs(r - h), initial=0.0))
                    / max(1.0, float(np.max(np.abs(r), initial=0.0))),
                )
    return worst


def check_gate_vjp(rng) -> float:
    """d/dg and d/dy of c f(g) y symbolically vs Gate.backward, for every activation."""
    from geomp_ref.o3.gating import ACTIVATIONS, EXACT_CONSTANTS, Gate

    gs, ys = sp.symbols("g y", real=True)
    sym = {
        "identity": gs,
        "silu": gs / (1 + sp.exp(-gs)),
        "tanh": sp.tanh(gs),
        "sigmoid": 1 / (1 + sp.exp(-gs)),
        "relu": sp.Max(gs, 0),
        "abs": sp.Abs(gs),
        "softplus": sp.log(1 + sp.exp(gs)),
        "shifted_softplus": sp.log(1 + sp.exp(gs)) - sp.log(2),
    }
    worst = 0.0
    for name in ACTIVATIONS:
        c = EXACT_CONSTANTS[name]
        out = c * sym[name] * ys
        dg = sp.lambdify((gs, ys), sp.diff(out, gs), "mpmath")
        dy = sp.lambdify((gs, ys), sp.diff(out, ys), "mpmath")
        for _ in range(3):
            gv, yv, cot = rng.standard_normal(3)
            gv = gv if abs(gv) > 1e-3 else 0.5  # avoid the kink of relu/abs
            x = np.array([gv, yv])  # layout: gate (0e) then gated (0e)
            gate = Gate("", [], "1x0e", [name], "1x0e")
            _, cache = gate.forward({}, x)
            got = gate.backward({}, cache, np.array([cot]))[1][0]
            want = [float(dg(gv, yv)) * cot, float(dy(gv, yv)) * cot]
            worst = max(worst, float(np.max(np.abs(got - want))) / max(1.0, max(map(abs, want))))
    return worst


def derive_gate_constants(dps: int = 40) -> dict:
    """``{name: (E[f^2] as mpf, c = E^{-1/2} rounded once to float64)}``."""
    import mpmath as mp

    mp.mp.dps = dps
    def phi(z):
        return mp.exp(-z * z / 2) / mp.sqrt(2 * mp.pi)

    def sig(z):
        return 1 / (1 + mp.exp(-z))

    def sp_(z):
        return mp.log1p(mp.exp(z))

    fs = {
        "silu": lambda z: z * sig(z),
        "tanh": mp.tanh,
        "sigmoid": sig,
        "softplus": sp_,
        "shifted_softplus": lambda z: sp_(z) - mp.log(2),
    }
    out = {}
    for name, f in fs.items():
        m2 = mp.quad(lambda z, f=f: f(z) ** 2 * phi(z), [-mp.inf, 0, mp.inf])
        out[name] = (m2, float(1 / mp.sqrt(m2)))
    # closed forms, by SymPy: E[z^2] = 1 (identity, abs), E[relu(z)^2] = 1/2
    z = sp.symbols("z", real=True)
    dens = sp.exp(-(z**2) / 2) / sp.sqrt(2 * sp.pi)
    e_id = sp.integrate(z**2 * dens, (z, -sp.oo, sp.oo))
    e_relu = sp.integrate(z**2 * dens, (z, 0, sp.oo))
    assert e_id == 1 and e_relu == sp.Rational(1, 2)
    for name, m2 in (("identity", e_id), ("abs", e_id), ("relu", e_relu)):
        out[name] = (mp.mpf(int(m2.p)) / int(m2.q), float(1 / sp.sqrt(m2)))
    return out


def check_weights_first(rng) -> float:
    """Part 3: the reordered sum equals the literal one (expanded to 0), and the gathered
    backward on a 3-node graph equals SymPy's gradients; returns the max relative error."""
    from geomp_ref import make_graph
    from geomp_ref.layers.segnn_blocks import O3TensorProduct

    blk = O3TensorProduct("1x0e+1x1o+1x0e+1x1o", "1x0e+1x1o", "1x0e+1x1o")
    spec = blk.tp
    z, x1, x2, w = derive_output(spec)
    # the reordered evaluation: per path y = c x1 W, per key t = x2 C, z = sum_i y t
    z2 = [sp.Integer(0)] * spec.irreps_out.dim
    for ins, tab in zip(spec.instructions, spec._tables):
        sl1, sl2, slo, (m1, m2, mo), (d1, d2, do), _, slw, _ = tab
        assert ins.connection_mode == "uvw" and m2 == 1
        C = _exact_C((d1 - 1) // 2, (d2 - 1) // 2, (do - 1) // 2)
        fan = sum(q.path_shape[0] * q.path_shape[1] for q in spec.instructions
                  if q.i_out == ins.i_out)  # uvw: F = sum of m1 m2 into this output
        cp = sp.sqrt(sp.Rational(do, fan) * sp.nsimplify(ins.path_weight))  # exact, as derived
        for wo in range(mo):
            for k in range(do):
                z2[slo.start + wo * do + k] += sum(
                    (cp * sum(x1[sl1.start + u * d1 + i] * w[slw.start + u * mo + wo]
                              for u in range(m1)))
                    * sum(C[i, j, k] * x2[sl2.start + j] for j in range(d2))
                    for i in range(d1))
    for a, b in zip(z, z2):
        assert sp.expand(a - b) == 0, "weights-first sum differs from the literal one"
    # a 3-node graph: every edge reads h at its receiver and its sender
    edges = np.array([[0, 1, 2, 2], [1, 2, 0, 1]])  # (src, dst)
    g = make_graph(edges, 3)
    h = sp.Matrix(3, 4, sp.symbols("h_0:12"))
    a = sp.Matrix(4, 4, sp.symbols("a_0:16"))
    # O3TensorProduct multiplies by sqrt(F_o), F_o = sum of m1 m2 into output block o (exact)
    fans = [sum(q.path_shape[0] * q.path_shape[1] for q in spec.instructions if q.i_out == o)
            for o in range(len(spec.irreps_out))]
    scale = [sp.sqrt(fan) for fan, (mul, ir) in zip(fans, spec.irreps_out)
             for _ in range(mul * ir.dim)]
    L, gs = 0, sp.Matrix(4, 4, sp.symbols("g_0:16"))
    for e, (j, i) in enumerate(edges.T):  # sender j, receiver i
        sub = dict(zip(x1, list(h.row(i)) + list(h.row(j))))
        sub.update(zip(x2, a.row(e)))
        for k, zk in enumerate(z):  # O3TensorProduct: z sqrt(F) (+ a bias, zero here)
            L += gs[e, k] * zk.subs(sub) * scale[k]
    syms = list(h) + list(a) + list(w)
    f = sp.lambdify((syms, list(gs)), [sp.diff(L, s) for s in syms], "numpy")
    worst = 0.0
    for _ in range(2):
        vh, va = rng.standard_normal((3, 4)), rng.standard_normal((4, 4))
        vw, vg = rng.standard_normal(len(w)), rng.standard_normal((4, 4))
        ref = np.array(f(list(vh.ravel()) + list(va.ravel()) + list(vw), list(vg.ravel())),
                       dtype=float)
        params = {"weight": vw, "bias": np.zeros(blk.num_bias)}
        _, cache = blk.forward_gathered(params, g, [("dst", vh), ("src", vh)], va, "numba")
        gp, ((gd, gsrc), ga) = blk.backward_gathered(params, cache, vg)
        got = np.concatenate([(gd + gsrc).ravel(), ga.ravel(), gp["weight"]])
        worst = max(worst, float(np.max(np.abs(got - ref)) / max(1.0, np.max(np.abs(ref)))))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="verify (default)")
    mode.add_argument("--print", action="store_true", help="print the gate constant table")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    consts = derive_gate_constants()
    if args.print:
        for name, (m2, c) in consts.items():
            print(f'    "{name}": {c!r},  # E f^2 = {m2}')
        return 0
    from geomp_ref.o3.gating import EXACT_CONSTANTS

    ok = True
    for name, (_, c) in consts.items():
        if EXACT_CONSTANTS[name] != c:
            print(f"MISMATCH gate constant {name}: table {EXACT_CONSTANTS[name]!r}, derived {c!r}")
            ok = False
    print(
        f"gate constants: {len(consts)} derived, {'all equal' if ok else 'MISMATCH'} "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    rng = np.random.default_rng(0)
    e_tp = check_tp_vjp(rng)
    print(f"tensor product: SymPy gradients vs backward, max rel error {e_tp:.1e}")
    e_gate = check_gate_vjp(rng)
    print(f"gate: SymPy derivatives vs Gate.backward, max rel error {e_gate:.1e}")
    e_wf = check_weights_first(rng)
    print(f"weights first: literal = reordered (SymPy), gathered backward vs SymPy, max rel "
          f"error {e_wf:.1e}")
    ok = ok and e_tp < 1e-13 and e_gate < 1e-13 and e_wf < 1e-13
    print(f"{'OK' if ok else 'FAILED'} in {time.perf_counter() - t0:.1f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
