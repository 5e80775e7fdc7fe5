r"""Adapter: e3nn-jax (0.21) objects and arrays -> geomp_ref specs, params and layouts.

e3nn-jax is the JAX port of e3nn. Most conventions are e3nn's, and so ours: the real spherical
harmonics (polar axis +y, ``l = 1`` = ``(x, y, z)``), the Clebsch-Gordan tensors
(``e3nn_jax.clebsch_gordan`` is our :func:`~geomp_ref.o3.wigner_3j`), the Y-X-Y Euler angles
and Wigner D matrices, and the multiplicity-major layout of every irreps block
(``IrrepsArray.chunks[i]`` is block ``i`` reshaped ``(..., mul, 2l+1)``). Measured in float64
(``tests/peers/test_e3nn_jax.py``): spherical harmonics agree to 1.3e-14 relative (every
normalisation, ``l <= 8``, ``normalize`` on and off), Clebsch-Gordan tensors to 1.2e-15 (all 175
triples with ``l <= 6``), D matrices to 3.3e-15 (``l <= 8``).

Differences from e3nn and geomp_ref, each covered by a test, and the mapping this module gives:

* **Sort order.** e3nn-jax sorts irreps by ``(l, -p (-1)^l)``:
  ``0e < 0o < 1o < 1e < 2e < 2o``. e3nn and geomp_ref sort by ``(l, p)``:
  ``0o < 0e < 1o < 1e < 2o < 2e``. The two disagree at every even ``l``. The sort runs inside
  e3nn-jax's ``regroup``, ``tensor_product`` and the flax / haiku ``Linear``.
  :func:`e3nn_jax_sort` and :func:`regroup_columns` reproduce it on our ``Irreps``, with the
  feature permutation.
* **Spherical-harmonic normalisation.** ``e3nn_jax.spherical_harmonics`` defaults to
  ``'component'`` (``sum_m Y_m^2 = 2l+1``); e3nn and geomp_ref default to ``'integral'``.
  :func:`spherical_harmonics` has e3nn-jax's default.
* **No 1e-12 floor.** With ``normalize=True`` e3nn-jax divides by ``|x|``, and a zero vector
  gives ``Y^0`` only. e3nn divides by ``max(|x|, 1e-12)``, so the two differ for
  ``0 < |x| < 1e-12``. geomp_ref's default (``zero_vector='raise'``) agrees with e3nn-jax for
  every nonzero vector and raises on a zero one; its ``zero_vector='e3nn'`` mode agrees with
  e3nn. :func:`spherical_harmonics` follows e3nn-jax in both cases.
* **Weightless tensor product.** ``e3nn_jax.tensor_product`` has no weights and no path
  normalisation. It regroups both inputs, couples every pair of blocks into every allowed
  irrep with multiplicity ``mul1 * mul2`` (index ``u * mul2 + v``), and scales each
  Clebsch-Gordan tensor by ``sqrt(2l_out+1)`` (``'component'``) or ``sqrt((2l1+1)(2l2+1))``
  (``'norm'``). Then it sorts and regroups the output. :func:`weightless_tensor_product` gives
  our ``TensorProduct`` (weightless ``'uvuv'`` paths, ``path_normalization='none'``) plus the
  three permutations.
* **Weighted products and linears.** ``e3nn_jax.legacy.FunctionalTensorProduct`` and
  ``e3nn_jax.FunctionalLinear`` compute what e3nn's ``TensorProduct`` and ``Linear`` compute,
  with the same flat weight layout. With e3nn-jax's default ``gradient_normalization='path'``
  the path factor is applied in the forward, as ours. :func:`from_e3nn_jax` converts them.
  The object keeps only each path's final factor, so the spec reuses our normalisation names
  when they reproduce every factor, and otherwise uses ``'none'`` with path weight
  ``factor**2``. ``FunctionalTensorProduct.left_right`` takes unbatched inputs
  (``jax.vmap`` it). The flax / haiku ``Linear`` regroup their input and simplify their
  output first, and name each weight ``"w[i_in,i_out] 2x1e,3x1e"`` (bias ``"b[i_out] 4x0e"``):
  see :func:`linear_param_names`.
* **Gate.** ``e3nn_jax.gate(x)`` takes no irreps lists. The scalars are the ``0e``/``0o``
  blocks, the gated irreps are the others (each in input order), and the *last* scalars are
  the gates. Activations are chosen by parity. Each activation is divided by a deterministic
  constant from 1 000 001 normal quantiles, not e3nn's Monte-Carlo ``normalize2mom``: silu
  1/c = 1.6765621, sigmoid 1.8462292, tanh 1.5925386, relu 1.4142313, identity and abs
  1.0000126 (not treated as 1). Ours exact: 1.6765325, 1.8462285, 1.5925374, 1.4142136, 1.
  :func:`gate_from_e3nn_jax` gives our :class:`~geomp_ref.o3.Gate` (``normalize_act='none'``),
  the input permutation and the per-column constants. e3nn-jax's default activations
  (``gelu`` with the tanh approximation, ``soft_odd``) have no counterpart here and raise.
* **float32 unless x64.** JAX computes in float32 until
  ``jax.config.update("jax_enable_x64", True)``. Without it, e3nn-jax's spherical
  harmonics differ from float64 by 2.6e-7 relative. :func:`require_x64` refuses to compare
  in that state, and :func:`array_from_e3nn_jax` refuses float32 arrays.
* **Euler angles from a reflection.** ``e3nn_jax.matrix_to_angles`` does not check
  ``det R``: it returns angles for a reflection. geomp_ref's
  :func:`~geomp_ref.o3.matrix_to_angles` raises. ``D_from_matrix`` treats reflections the same
  way in both (``D = p^k D(det(R) R)``).

jax and e3nn-jax are imported only inside the functions that need them. A missing package
raises ImportError naming the ``peers`` extra.
"""

from __future__ import annotations

import math

import numpy as np

from ..o3 import Irreps
from ._e3nn_jax_maps import (
    GateMap,
    ProductMap,
    e3nn_jax_sort,
    gate_from_e3nn_jax,
    linear_from_e3nn_jax,
    linear_param_names,
    normalize_function_constant,
    regroup_columns,
    tensor_product_from_e3nn_jax,
    weightless_tensor_product,
)

__all__ = [
    "SUPPORTED",
    "GateMap",
    "ProductMap",
    "array_from_e3nn_jax",
    "array_to_e3nn_jax",
    "axis_to_mul",
    "e3nn_jax_sort",
    "from_e3nn_jax",
    "gate_from_e3nn_jax",
    "irreps_from_e3nn_jax",
    "irreps_to_e3nn_jax",
    "linear_param_names",
    "matches",
    "mul_to_axis",
    "normalize_function_constant",
    "regroup_columns",
    "require_x64",
    "spherical_harmonics",
    "weights_to_e3nn_jax",
    "weightless_tensor_product",
]

#: The e3nn-jax objects :func:`from_e3nn_jax` converts.
SUPPORTED = ("e3nn_jax.legacy.FunctionalTensorProduct", "e3nn_jax.FunctionalLinear")

_TP_ATTRS = ("irreps_in1", "irreps_in2", "irreps_out", "instructions", "left_right")
_LINEAR_ATTRS = ("irreps_in", "irreps_out", "instructions", "split_weights")


def _import():
    try:
        import e3nn_jax
        import jax
    except ImportError as exc:
        raise ImportError(
            "e3nn-jax interop needs jax and e3nn-jax: pip install geomp-ref[peers]") from exc
    return jax, e3nn_jax


def require_x64() -> None:
    """Raise ``RuntimeError`` unless JAX computes in float64."""
    jax, _ = _import()
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            "JAX computes in float32: call jax.config.update('jax_enable_x64', True) at "
            "start-up before comparing with the float64 oracle")


def _kind(obj) -> str | None:
    names = {c.__name__ for c in type(obj).__mro__}
    if "FunctionalTensorProduct" in names and all(hasattr(obj, a) for a in _TP_ATTRS):
        return "tp"
    if "FunctionalLinear" in names and all(hasattr(obj, a) for a in _LINEAR_ATTRS):
        return "linear"
    return None


def matches(obj) -> bool:
    """Whether :func:`from_e3nn_jax` converts ``obj`` (by class name and attributes)."""
    return _kind(obj) is not None


def from_e3nn_jax(obj, weights=None):
    """``(spec, params)`` for a ``FunctionalTensorProduct`` or ``FunctionalLinear`` and the
    weights passed to it (a flat array or a list of per-instruction arrays, as e3nn-jax takes).

    Raises
    ------
    TypeError
        ``obj`` is neither (see :data:`SUPPORTED`).
    ValueError
        An option without a counterpart (named), or weights of the wrong size.
    """
    kind = _kind(obj)
    if kind == "tp":
        return tensor_product_from_e3nn_jax(obj, weights)
    if kind == "linear":
        return linear_from_e3nn_jax(obj, weights)
    raise TypeError(f"from_e3nn_jax converts {', '.join(SUPPORTED)}; got {type(obj).__name__}")


def weights_to_e3nn_jax(spec, params) -> np.ndarray:
    """The flat weight vector e3nn-jax takes for our ``TensorProduct`` / ``Linear`` params
    (weights, then biases)."""
    parts = [np.asarray(params.get(k, np.zeros(0)), dtype=np.float64).reshape(-1)
             for k in ("weight", "bias")]
    return np.concatenate(parts)


# --- irreps and arrays ---------------------------------------------------------------------


def irreps_from_e3nn_jax(irreps) -> Irreps:
    """Our ``Irreps`` for an e3nn-jax ``Irreps`` (or its string): same grammar, same order."""
    return Irreps(str(irreps))


def irreps_to_e3nn_jax(irreps):
    """The e3nn-jax ``Irreps`` of ours (blocks kept in the order written, never sorted)."""
    _, e3nn_jax = _import()
    return e3nn_jax.Irreps(str(Irreps(irreps)))


def array_from_e3nn_jax(x) -> tuple[Irreps, np.ndarray]:
    """``(irreps, array)`` of an ``IrrepsArray``: the data is already in our layout.

    Raises
    ------
    ValueError
        The array is not float64 (JAX without x64 computes in float32).
    """
    arr = np.asarray(x.array)
    if arr.dtype != np.float64:
        raise ValueError(
            f"IrrepsArray holds {arr.dtype}, not float64: enable x64 in JAX "
            "(jax.config.update('jax_enable_x64', True))")
    return irreps_from_e3nn_jax(x.irreps), arr.copy()


def array_to_e3nn_jax(irreps, x):
    """An e3nn-jax ``IrrepsArray`` holding our features ``x`` (..., dim) laid out as
    ``irreps``."""
    require_x64()
    jax, e3nn_jax = _import()
    irreps = Irreps(irreps)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != irreps.dim:
        raise ValueError(f"x must have shape (..., {irreps.dim}) for {irreps}; got {x.shape}")
    return e3nn_jax.IrrepsArray(str(irreps), jax.numpy.asarray(x))


def mul_to_axis(irreps, x, factor: int | None = None) -> tuple[Irreps, np.ndarray]:
    """e3nn-jax's ``IrrepsArray.mul_to_axis`` on our arrays: ``(..., dim)`` ->
    ``(..., factor, dim / factor)``, each block's copies split as ``u = f * (mul/factor) + u'``.

    ``factor`` defaults to the gcd of the multiplicities.
    """
    irreps = Irreps(irreps)
    x = np.asarray(x, dtype=np.float64)
    muls = [mul for mul, _ in irreps]
    if factor is None:
        factor = math.gcd(*muls) if muls else 1
    if factor < 1 or any(m % factor for m in muls):
        raise ValueError(f"factor {factor} does not divide every multiplicity of {irreps}")
    batch, parts, start = x.shape[:-1], [], 0
    for mul, ir in irreps:
        width = mul * ir.dim
        parts.append(x[..., start:start + width].reshape(batch + (factor, width // factor)))
        start += width
    out = np.concatenate(parts, axis=-1) if parts else np.zeros(batch + (factor, 0))
    return Irreps([(m // factor, (ir.l, ir.p)) for m, ir in irreps]), out


def axis_to_mul(irreps, x) -> tuple[Irreps, np.ndarray]:
    """The inverse of :func:`mul_to_axis` (e3nn-jax's ``axis_to_mul`` with ``axis=-2``)."""
    irreps = Irreps(irreps)
    x = np.asarray(x, dtype=np.float64)
    factor, batch, parts, start = x.shape[-2], x.shape[:-2], [], 0
    for mul, ir in irreps:
        width = mul * ir.dim
        parts.append(x[..., start:start + width].reshape(batch + (factor * width,)))
        start += width
    out = np.concatenate(parts, axis=-1) if parts else np.zeros(batch + (0,))
    return Irreps([(m * factor, (ir.l, ir.p)) for m, ir in irreps]), out


def spherical_harmonics(ls, x, normalize: bool, normalization: str | None = None) -> np.ndarray:
    """``e3nn_jax.spherical_harmonics`` in NumPy float64, with e3nn-jax's semantics.

    ``normalization=None`` is ``'component'`` (e3nn-jax's default); ``normalize=True`` divides
    by ``|x|`` with no floor, and a zero vector gives ``Y^0`` only. Computed with
    :func:`geomp_ref.o3.spherical_harmonics` on the normalised vectors.
    """
    from .. import o3

    x = np.asarray(x, dtype=np.float64)
    if normalize:
        r2 = np.sum(x * x, axis=-1, keepdims=True)
        x = x / np.sqrt(np.where(r2 == 0.0, 1.0, r2))
    return o3.spherical_harmonics(ls, x, False, normalization or "component")
