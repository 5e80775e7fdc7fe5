r"""Lesson: one network, two storages — why the same TFN trains at different speeds under Adam.

e3nn-style layers store a weight :math:`W` and use :math:`E = cW` in the forward pass, with the
fan-in constant :math:`c = 1/\sqrt{F}`; torch stores the effective weight :math:`E` itself.
:class:`geomp_ref.train.Rescaled` trains a block through stored :math:`P` with :math:`W = sP`
(:func:`geomp_ref.train.standard_parametrization`: :math:`s = 1/c`, so :math:`P = E`).

Claims, each checked below:

1. **Backward.** For :math:`L(P) = \tilde L(sP)`, :math:`\partial L/\partial P = s\,\partial
   \tilde L/\partial W` (chain rule; SymPy on an e3nn-style linear map with symbolic weights,
   scales and cotangent, against the library's ``Rescaled(o3.Linear).backward``).
2. **Plain gradient descent** with rate :math:`\eta` changes the effective weight by
   :math:`-\eta c^2\, \partial L/\partial E` when :math:`W` is stored and by
   :math:`-\eta\, \partial L/\partial E` when :math:`E` is stored (ratio :math:`c^2`; SymPy).
3. **Adam's first step** is :math:`-\eta\, g/(|g| + \epsilon)` per stored coordinate, whatever the
   gradient's scale (SymPy: invariant under :math:`g \to kg` as :math:`\epsilon \to 0`), so it
   moves :math:`E` by :math:`-\eta c\,\mathrm{sign}(g)` in the e3nn storage and by
   :math:`-\eta\,\mathrm{sign}(g)` in torch's (ratio :math:`c`, not :math:`c^2`).
4. **Every step.** Adam on :math:`W` with rate :math:`\eta/c` and :math:`\epsilon c` takes exactly
   the steps of Adam on :math:`E` with rate :math:`\eta` and :math:`\epsilon`: the moments of
   :math:`g_W = c\,g_E` are :math:`c` and :math:`c^2` times those of :math:`g_E` (SymPy, three
   steps with symbolic gradients); numerically, 25 steps of the library's Adam on
   ``standard_parametrization(TFNConv)`` against a hand-written Adam on the native weights with
   those per-weight rates agree to rounding, while the same rate :math:`\eta` on both does not
   (the counter-example).

So at one learning rate an e3nn-style model under Adam moves its effective weights
:math:`\sqrt{F}` times more slowly than the same network stored as torch stores it; on the
N-body TFN that is the gap between 1.23 and 0.48 times the published TFN's loss after six
epochs (``benchmarks/README.md``).

Run: ``python derivations/parametrization.py [--check]`` (a few seconds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import sympy as sp  # noqa: E402

from geomp_ref import o3  # noqa: E402
from geomp_ref.layers.tfn import TFNConv  # noqa: E402
from geomp_ref.params import flatten, tree_map2, unflatten  # noqa: E402
from geomp_ref.testing import random_graph  # noqa: E402
from geomp_ref.train import Adam, Rescaled, standard_parametrization  # noqa: E402

_ok = True


def report(name: str, ok: bool, detail: str = "") -> None:
    global _ok
    _ok &= bool(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f"  ({detail})" if detail else ""))


def check_backward() -> None:
    """Claim 1 on o3.Linear('2x0e', '1x0e'): out = c (W0 x0 + W1 x1), c = 1/sqrt(2)."""
    x0, x1, g, p0, p1, s0, s1 = sp.symbols("x0 x1 g p0 p1 s0 s1", positive=True)
    c = 1 / sp.sqrt(2)
    loss = g * c * (s0 * p0 * x0 + s1 * p1 * x1)
    grad = [sp.diff(loss, p) for p in (p0, p1)]
    expected = [s0 * g * c * x0, s1 * g * c * x1]  # s times dL/dW
    report("backward: dL/dP = s * dL/dW (SymPy)",
           all(sp.simplify(a - b) == 0 for a, b in zip(grad, expected)))
    lin = o3.Linear("2x0e", "1x0e")
    vals = {x0: 0.7, x1: -1.3, g: 0.4, p0: 0.9, p1: -0.2, s0: 2.5, s1: 0.3}
    model = Rescaled(lin, {"weight": np.array([vals[s0], vals[s1]])})
    P = {"weight": np.array([vals[p0], vals[p1]])}
    out, cache = model.forward(P, np.array([[vals[x0], vals[x1]]]))
    grads, (gx,) = model.backward(P, cache, np.array([[vals[g]]]))
    want = np.array([float(e.subs(vals)) for e in grad])
    err = float(np.max(np.abs(grads["weight"] - want)))
    report("backward: Rescaled(o3.Linear).backward equals the SymPy gradient", err < 1e-15,
           f"max error {err:.1e}")
    want_x = [float(sp.diff(loss, v).subs(vals)) for v in (x0, x1)]
    report("backward: the input gradient is the block's own",
           np.allclose(gx[0], want_x, rtol=1e-15, atol=0))


def check_sgd() -> None:
    """Claim 2: one SGD step in each storage, in terms of the effective weight E."""
    eta, c, gE = sp.symbols("eta c g_E", positive=True)
    gW = c * gE  # dL/dW = c dL/dE since E = cW
    dE_native = c * (-eta * gW)  # W moves by -eta gW, E = cW
    dE_standard = -eta * gE
    report("SGD: effective steps differ by c^2",
           sp.simplify(dE_native / dE_standard - c**2) == 0)


def check_adam_first_step() -> None:
    """Claim 3: Adam's first step, symbolic."""
    eta, eps, g, k, b1, b2 = sp.symbols("eta epsilon g k beta1 beta2", positive=True)

    def first_step(grad):
        m, v = (1 - b1) * grad, (1 - b2) * grad**2
        m_hat, v_hat = m / (1 - b1), v / (1 - b2)
        return -eta * m_hat / (sp.sqrt(v_hat) + eps)

    gr = sp.symbols("g_r", real=True)  # any sign
    report("Adam: first step = -eta g / (|g| + eps)",
           sp.simplify(first_step(gr) + eta * gr / (sp.Abs(gr) + eps)) == 0)
    step = first_step(g)  # g > 0 below (the step is odd in g)
    scaled = sp.limit(first_step(k * g), eps, 0)
    report("Adam: first step invariant under g -> k g as eps -> 0",
           sp.simplify(scaled - sp.limit(step, eps, 0)) == 0 and sp.simplify(scaled + eta) == 0)
    c = sp.symbols("c", positive=True)
    ratio = (c * sp.limit(first_step(c * g), eps, 0)) / sp.limit(first_step(g), eps, 0)
    report("Adam: effective steps differ by c (not c^2)", sp.simplify(ratio - c) == 0)


def _adam_sym(grads, lr, eps, b1, b2):
    """Symbolic Adam updates (torch's form) for a list of gradients."""
    m = v = 0
    steps = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g**2
        steps.append(-lr / (1 - b1**t) * m / (sp.sqrt(v) / sp.sqrt(1 - b2**t) + eps))
    return steps


def check_adam_every_step() -> None:
    """Claim 4, symbolic: three steps with symbolic gradients."""
    eta, eps, c, b1, b2 = sp.symbols("eta epsilon c beta1 beta2", positive=True)
    gs = sp.symbols("g1:4", positive=True)
    on_E = _adam_sym(list(gs), eta, eps, b1, b2)
    on_W = _adam_sym([c * g for g in gs], eta / c, eps * c, b1, b2)
    same = all(sp.simplify(c * w - e) == 0 for w, e in zip(on_W, on_E))
    report("Adam: rate eta/c and eps*c on W = rate eta on E, three steps (SymPy)", same)


def _hand_adam(params, grads, state, lr, eps, b1=0.9, b2=0.999):
    """Adam with per-coordinate rate and eps trees (the equations of geomp_ref.train.optim)."""
    t, m, v = state
    t += 1
    m = tree_map2(lambda a, g: a + (1 - b1) * (g - a), m, grads)
    v = tree_map2(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
    fp, fm, fv, flr, feps = (flatten(x) for x in (params, m, v, lr, eps))
    out = {key: fp[key] - flr[key] / (1 - b1**t)
           * fm[key] / (np.sqrt(fv[key]) / np.sqrt(1 - b2**t) + feps[key]) for key in fp}
    return unflatten(out), (t, m, v)


def check_adam_numerically(steps: int = 25) -> None:
    """Claim 4 on TFNConv: library Adam on the standard storage vs hand Adam on the native one."""
    rng = np.random.default_rng(0)
    conv = TFNConv("2x0e+1x1o", "3x0e+2x1o", lmax=2, max_radius=4.0, num_basis=5,
                   radial_neurons=6, radial_layers=1)
    graph = random_graph(rng, 7, avg_degree=3.0)
    f = rng.normal(size=(7, conv.irreps_in.dim))
    pos = rng.normal(size=(7, 3))
    cot = rng.normal(size=(7, conv.irreps_out.dim))
    lr, eps = 1e-2, 1e-8
    coeff = conv.weight_normalization()
    standard = standard_parametrization(conv)

    def grad(block, p):
        out, cache = block.forward(p, graph, f, pos)
        return block.backward(p, cache, cot)[0]

    W0 = conv.init(rng)
    P, opt = standard.stored_params(W0), Adam(lr, eps=eps)
    state = opt.init(P)
    zeros = tree_map2(lambda a, _: np.zeros_like(a), W0, W0)
    for per_weight, label in ((True, "rate eta/c, eps*c"), (False, "rate eta (counter-example)")):
        k = 1.0 if per_weight else 0.0  # exponent of c in the rate and eps
        rate = tree_map2(lambda c, _, k=k: lr / c**k, coeff, W0)
        epsw = tree_map2(lambda c, _, k=k: eps * c**k, coeff, W0)
        W, hstate = W0, (0, zeros, zeros)
        p, s = P, state
        for _ in range(steps):
            p, s = opt.step(p, grad(standard, p), s)
            W, hstate = _hand_adam(W, grad(conv, W), hstate, rate, epsw)
        E = flatten(tree_map2(lambda c, w: c * w, coeff, W))
        err = max(float(np.max(np.abs(E[k] - v) / (np.abs(v) + 1e-3)))
                  for k, v in flatten(p).items())
        if per_weight:
            report(f"Adam on TFNConv, {steps} steps: standard storage = native with {label}",
                   err < 1e-9, f"max relative difference {err:.1e}")
        else:
            report(f"Adam on TFNConv, {steps} steps: native with {label} differs", err > 1e-2,
                   f"max relative difference {err:.1e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="run every check (the default)")
    parser.parse_args(argv)
    check_backward()
    check_sgd()
    check_adam_first_step()
    check_adam_every_step()
    check_adam_numerically()
    return 0 if _ok else 1


if __name__ == "__main__":
    sys.exit(main())
