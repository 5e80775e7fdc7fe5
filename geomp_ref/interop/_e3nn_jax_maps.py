r"""e3nn-jax blocks as geomp_ref specs: functional tensor products and linears, the weightless
``tensor_product`` and the input-driven ``gate`` (used by :mod:`geomp_ref.interop.e3nn_jax`).

Nothing here imports jax: the e3nn-jax objects are read through their attributes, and the
gate's normalisation constants are recomputed in NumPy from e3nn-jax's published rule.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np

from ..o3 import Irreps

__all__ = [
    "GateMap",
    "ProductMap",
    "e3nn_jax_sort",
    "gate_from_e3nn_jax",
    "linear_from_e3nn_jax",
    "normalize_function_constant",
    "regroup_columns",
    "tensor_product_from_e3nn_jax",
    "weightless_tensor_product",
]


def _blocks(irreps) -> list[tuple[int, int, int]]:
    return [(int(mul), int(ir.l), int(ir.p)) for mul, ir in Irreps(str(irreps))]


def _to_irreps(blocks) -> Irreps:
    return Irreps([(m, (l_, p)) for m, l_, p in blocks])


def _slices(blocks) -> list[np.ndarray]:
    out, start = [], 0
    for m, l_, _ in blocks:
        out.append(np.arange(start, start + m * (2 * l_ + 1)))
        start += m * (2 * l_ + 1)
    return out


def _key(block) -> tuple:
    # e3nn-jax orders irreps by (l, -p (-1)^l): the parity of a vector's harmonics first
    _, l_, p = block
    return (l_, -p * (-1) ** l_)


def e3nn_jax_sort(irreps) -> tuple[Irreps, tuple, tuple]:
    """``(sorted, p, inv)`` as e3nn-jax's ``Irreps.sort``: stable, ``0e < 0o < 1o < 1e < 2e``.

    ``sorted[k] = irreps[inv[k]]`` and ``p`` is the inverse permutation (e3nn-jax's names).
    """
    blocks = _blocks(irreps)
    inv = tuple(sorted(range(len(blocks)), key=lambda i: (_key(blocks[i]), i)))
    p = tuple(int(v) for v in np.argsort(inv)) if inv else ()
    return _to_irreps([blocks[i] for i in inv]), p, inv


def _simplify(blocks) -> list:
    out = []
    for m, l_, p in blocks:
        if m == 0:
            continue
        if out and out[-1][1:] == (l_, p):
            out[-1] = (out[-1][0] + m, l_, p)
        else:
            out.append((m, l_, p))
    return out


def regroup_columns(irreps) -> tuple[Irreps, np.ndarray]:
    """``(regrouped, columns)``: e3nn-jax's ``regroup`` (sort, then merge equal neighbours and
    drop zero multiplicities) and the feature permutation ``x_regrouped = x[..., columns]``."""
    blocks = _blocks(irreps)
    _, _, inv = e3nn_jax_sort(irreps)
    sl = _slices(blocks)
    cols = np.concatenate([sl[i] for i in inv]) if inv else np.zeros(0, dtype=np.int64)
    return _to_irreps(_simplify([blocks[i] for i in inv])), cols.astype(np.int64)


# --- FunctionalTensorProduct / FunctionalLinear ------------------------------------------------


def _close(a, b, rtol=1e-14) -> bool:
    return len(a) == len(b) and all(
        abs(x - y) <= rtol * max(abs(x), abs(y), 1e-300) for x, y in zip(a, b))


def _flat(weights, numel: int, owner: str) -> np.ndarray:
    if isinstance(weights, (list, tuple)):
        parts = [np.asarray(w, dtype=np.float64).reshape(-1) for w in weights]
        flat = np.concatenate(parts) if parts else np.zeros(0)
    else:
        flat = np.asarray(weights, dtype=np.float64).reshape(-1)
    if flat.size != numel:
        raise ValueError(f"weights of the {owner} must hold {numel} numbers; got {flat.size}")
    return flat.copy()


def tensor_product_from_e3nn_jax(tp, weights=None):
    """``(spec, params)`` for an ``e3nn_jax.legacy.FunctionalTensorProduct`` and its weights.

    The e3nn-jax object keeps only each path's final forward factor (``path_weight``), not the
    normalisation names, variances or user path weights that produced it. The spec reuses our
    normalisation names when one pair of them reproduces every factor to 1e-14; otherwise it
    uses ``irrep_normalization='none'``, ``path_normalization='none'`` and the user path weight
    ``path_weight**2``, whose square root gives the factor back to an ulp.
    """
    from ..o3.tensor_product import MODES, TensorProduct

    i1, i2, io = (str(tp.irreps_in1), str(tp.irreps_in2), str(tp.irreps_out))
    for k, ins in enumerate(tp.instructions):
        if ins.connection_mode not in MODES:
            raise ValueError(
                f"instructions[{k}].connection_mode={ins.connection_mode!r} has no geomp_ref "
                f"counterpart (supported: {', '.join(MODES)})")
    base = [(i.i_in1, i.i_in2, i.i_out, i.connection_mode, bool(i.has_weight))
            for i in tp.instructions]
    target = [float(i.path_weight) for i in tp.instructions]
    spec = None
    for irrep_norm in ("component", "norm", "none"):
        for path_norm in ("element", "path", "none"):
            cand = TensorProduct(i1, i2, io, base, irrep_normalization=irrep_norm,
                                 path_normalization=path_norm)
            if _close(cand.path_coefficients, target):
                spec = cand
                break
        if spec is not None:
            break
    if spec is None:
        if any(c < 0 for c in target):
            raise ValueError("a negative path_weight cannot be written as a square root")
        spec = TensorProduct(i1, i2, io, [b + (c * c,) for b, c in zip(base, target)],
                             irrep_normalization="none", path_normalization="none")
    if spec.weight_numel == 0:
        return spec, {}
    if weights is None:
        raise ValueError(f"weights is required: this tensor product has {spec.weight_numel}")
    return spec, {"weight": _flat(weights, spec.weight_numel, "tensor product")}


def _linear_coefficients(irreps_in, instructions, path_normalization: str) -> list[float]:
    mul = [m for m, _, _ in _blocks(irreps_in)]
    out = []
    for i_in, i_out in instructions:
        same = [a for a, b in instructions if b == i_out]
        fan = sum(mul[a] for a in same) if path_normalization == "element" else (
            mul[i_in] * len(same))
        out.append(1.0 / math.sqrt(fan) if fan > 0 else 1.0)
    return out


def linear_from_e3nn_jax(lin, weights=None):
    """``(spec, params)`` for an ``e3nn_jax.FunctionalLinear`` and its flat weights (weights of
    each instruction ``(mul_in, mul_out)`` row-major, then the biases: the layout of
    ``FunctionalLinear.split_weights``, which is ours ``weight`` then ``bias``).

    Raises
    ------
    ValueError
        The path factors match neither ``path_normalization`` (e.g. e3nn-jax's
        ``gradient_normalization='element'``, which moves the factor into the weights).
    """
    from ..o3.linear import Linear

    weighted = [i for i in lin.instructions if i.i_in != -1]
    biased = {i.i_out for i in lin.instructions if i.i_in == -1}
    if any(i.i_in != -1 for i in lin.instructions[len(weighted):]):
        raise ValueError("instructions must list every weight before the biases")
    ins = [(int(i.i_in), int(i.i_out)) for i in weighted]
    target = [float(i.path_weight) for i in weighted]
    i_in, i_out = str(lin.irreps_in), str(lin.irreps_out)
    for path_norm in ("element", "path"):
        if _close(_linear_coefficients(i_in, ins, path_norm), target):
            break
    else:
        raise ValueError(
            "path_normalization/gradient_normalization: the path factors "
            f"{target} match neither 'element' nor 'path' with the factor in the forward "
            "(geomp_ref's Linear keeps N(0, 1) weights and the factor in the forward, as "
            "e3nn-jax's default gradient_normalization='path')")
    flags = [k in biased for k in range(len(_blocks(i_out)))]
    spec = Linear(i_in, i_out, biases=flags, instructions=ins, path_normalization=path_norm)
    if weights is None:
        raise ValueError(
            f"weights is required: this linear has {spec.weight_numel + spec.bias_numel}")
    flat = _flat(weights, spec.weight_numel + spec.bias_numel, "linear")
    params = {"weight": flat[: spec.weight_numel]}
    if spec.bias_numel:
        params["bias"] = flat[spec.weight_numel:]
    return spec, params


def linear_param_names(spec) -> list[tuple[str, str, slice, tuple]]:
    """``(e3nn-jax name, our leaf, slice of the leaf, shape)`` for each parameter of a
    :class:`~geomp_ref.o3.Linear`, in e3nn-jax's order.

    Names are those the flax / haiku ``Linear`` give (``"w[i_in,i_out] 2x1e,3x1e"``,
    ``"b[i_out] 4x0e"``), with indices into the linear's own ``irreps_in`` / ``irreps_out``;
    the flax / haiku modules first regroup their input and simplify their output (see
    :func:`regroup_columns`), so build the spec on those irreps.
    """
    bi, bo = list(spec.irreps_in), list(spec.irreps_out)
    out, w, b = [], 0, 0
    for i_in, i_out in spec.instructions:
        shape = (bi[i_in].mul, bo[i_out].mul)
        n = shape[0] * shape[1]
        out.append((f"w[{i_in},{i_out}] {bi[i_in]},{bo[i_out]}", "weight", slice(w, w + n), shape))
        w += n
    for i_out, (mul, ir) in enumerate(bo):
        if (ir.l, ir.p) == (0, 1) and _has_bias(spec, i_out):
            out.append((f"b[{i_out}] {bo[i_out]}", "bias", slice(b, b + mul), (mul,)))
            b += mul
    return out


def _has_bias(spec, i_out: int) -> bool:
    flags = spec.biases
    if isinstance(flags, (bool, np.bool_)):
        return bool(flags)
    return bool(flags[i_out])


# --- the weightless tensor_product ------------------------------------------------------------


class ProductMap(NamedTuple):
    """``e3nn_jax.tensor_product(x1, x2)`` as our block: ``out = spec.forward({}, x1[...,
    in1_columns], x2[..., in2_columns])[0][..., out_columns]``, laid out as ``irreps_out``."""

    spec: object
    in1_columns: np.ndarray
    in2_columns: np.ndarray
    out_columns: np.ndarray
    irreps_out: Irreps


def weightless_tensor_product(irreps1, irreps2, filter_ir_out=None,
                              irrep_normalization: str = "component") -> ProductMap:
    """The mapping of ``e3nn_jax.tensor_product`` (no weights, no path normalisation).

    e3nn-jax regroups both inputs in its own sort order, couples every pair of blocks into
    every allowed output irrep (multiplicity ``mul1 * mul2``, index ``u * mul2 + v``), scales
    each Clebsch-Gordan tensor by the irrep normalisation only, then sorts and regroups the
    output. Here: our ``TensorProduct`` with ``'uvuv'`` weightless paths and
    ``path_normalization='none'`` on the regrouped inputs, and the output permutation.
    """
    from ..o3.tensor_product import TensorProduct

    r1, c1 = regroup_columns(irreps1)
    r2, c2 = regroup_columns(irreps2)
    keep = None if filter_ir_out is None else {
        (ir.l, ir.p) for _, ir in Irreps([str(i) for i in filter_ir_out])}
    blocks, ins = [], []
    for a, (m1, l1, p1) in enumerate(_blocks(r1)):
        for b, (m2, l2, p2) in enumerate(_blocks(r2)):
            for lo in range(abs(l1 - l2), l1 + l2 + 1):
                if keep is not None and (lo, p1 * p2) not in keep:
                    continue
                ins.append((a, b, len(blocks), "uvuv", False))
                blocks.append((m1 * m2, lo, p1 * p2))
    spec = TensorProduct(str(r1), str(r2), str(_to_irreps(blocks)), ins,
                         irrep_normalization=irrep_normalization, path_normalization="none")
    out_sorted, _, inv = e3nn_jax_sort(_to_irreps(blocks))
    sl = _slices(blocks)
    cols = np.concatenate([sl[i] for i in inv]).astype(np.int64) if inv else np.zeros(0, int)
    return ProductMap(spec, c1, c2, cols, _to_irreps(_simplify(_blocks(out_sorted))))


# --- gate --------------------------------------------------------------------------------------


@functools.cache
def normalize_function_constant(name: str) -> float:
    r"""e3nn-jax's ``normalize_function`` constant for our activation ``name``.

    e3nn-jax divides :math:`\phi` by :math:`c = (\frac1n \sum_i \phi(x_i)^2)^{1/2}` on the
    deterministic normal quantiles :math:`x_i = \sqrt 2\,\mathrm{erfinv}(-1 + 2i/(n+1))`,
    :math:`i = 1..n`, :math:`n = 1\,000\,001` (not a Monte-Carlo sample, not the exact
    integral), and keeps :math:`\phi` unchanged when ``allclose(c, 1)`` (rtol 1e-5, atol 1e-8).
    Returns the multiplier :math:`1/c` (1.0 in the unchanged case).
    """
    from scipy.special import erfinv

    from ..o3.activations import ACTIVATIONS

    n = 1_000_001
    x = math.sqrt(2.0) * erfinv(np.linspace(-1.0, 1.0, n + 2)[1:-1])
    c = float(np.sqrt(np.mean(ACTIVATIONS[name][0](x) ** 2)))
    return 1.0 if abs(c - 1.0) <= 1e-8 + 1e-5 else 1.0 / c


class GateMap(NamedTuple):
    """``e3nn_jax.gate(x, ...)`` as our :class:`~geomp_ref.o3.Gate` (``normalize_act='none'``):
    ``out = spec.forward({}, x[..., input_columns])[0] * output_scale``, laid out as
    ``irreps_out`` (e3nn-jax's output irreps, simplified)."""

    spec: object
    input_columns: np.ndarray
    output_scale: np.ndarray
    irreps_out: Irreps


def _act_name(role: str, act) -> str:
    from ..o3.activations import ACTIVATIONS, ALIASES

    name = ALIASES.get(act, act) if isinstance(act, str) else act
    if name not in ACTIVATIONS:
        raise ValueError(
            f"{role}={act!r} has no geomp_ref counterpart (e3nn-jax's defaults gelu and soft_odd "
            f"have none); use one of {sorted(ACTIVATIONS)}")
    return name


def gate_from_e3nn_jax(irreps, even_act=None, odd_act=None, even_gate_act="sigmoid",
                       odd_gate_act="tanh", normalize_act: bool = True) -> GateMap:
    """The mapping of ``e3nn_jax.gate`` on an input laid out as ``irreps``.

    e3nn-jax takes no irreps lists: the scalars are every ``0e``/``0o`` block and the gated
    irreps every other block, each in input order; the **last** ``num_irreps(gated)`` scalars
    are the gates; activations are chosen by parity (``even_act``/``odd_act`` for the other
    scalars, ``even_gate_act``/``odd_gate_act`` for the gates). Activations are our names; an
    activation a block needs must be given.
    """
    from ..o3.gating import Gate

    blocks = _blocks(irreps)
    sl = _slices(blocks)
    scal = [k for k, b in enumerate(blocks) if b[1] == 0]
    vec = [k for k, b in enumerate(blocks) if b[1] != 0]
    n_gates = sum(blocks[k][0] for k in vec)
    n_scal = sum(blocks[k][0] for k in scal)
    if n_scal < n_gates:
        raise ValueError(f"irreps={irreps} holds {n_scal} scalars for {n_gates} gated irreps")
    extra, gates, left = [], [], n_scal - n_gates
    extra_cols, gate_cols = [], []
    for k in scal:
        m, _, p = blocks[k]
        a = min(m, left)
        if a:
            extra.append((a, 0, p))
            extra_cols.append(sl[k][:a])
        if m - a:
            gates.append((m - a, 0, p))
            gate_cols.append(sl[k][a:])
        left -= a

    def acts(part, even, odd, role):
        return [_act_name(role[0] if p == 1 else role[1], even if p == 1 else odd)
                for _, _, p in part]

    a_s = acts(extra, even_act, odd_act, ("even_act", "odd_act"))
    a_g = acts(gates, even_gate_act, odd_gate_act, ("even_gate_act", "odd_gate_act"))
    spec = Gate(str(_to_irreps(extra)), a_s, str(_to_irreps(gates)), a_g,
                str(_to_irreps([blocks[k] for k in vec])), normalize_act="none")
    written = np.concatenate(extra_cols + gate_cols + [sl[k] for k in vec] + [np.zeros(0, int)])
    scale = np.ones(spec.irreps_out.dim)
    if normalize_act:
        c_s = np.repeat([normalize_function_constant(a) for a in a_s], [m for m, *_ in extra])
        c_g = np.repeat([normalize_function_constant(a) for a in a_g], [m for m, *_ in gates])
        copies = [2 * blocks[k][1] + 1 for k in vec for _ in range(blocks[k][0])]
        scale = np.concatenate([c_s, np.repeat(c_g, copies)])
    return GateMap(spec, written.astype(np.int64)[spec.input_columns], scale,
                   spec.irreps_out.simplify())
