r"""SchNet's numerical constants, explicitly: Gaussian centres and width, softplus shift and
threshold.

SchNet expands an edge length :math:`d` in Gaussians
:math:`e_k(d) = \exp(-\gamma (d - \mu_k)^2)` with :math:`\mu` = linspace(0, r_c, G) and
:math:`\gamma = \tfrac12 / (\mu_1 - \mu_0)^2`, and uses the shifted softplus
:math:`\mathrm{ssp}(x) = \log(1 + e^x) - \ln 2`.

Two sets of values are built in:

* ``"exact"``: the correctly rounded :math:`\ln 2`, :math:`\mu` from ``np.linspace`` and
  :math:`\gamma = 0.5/\delta^2` in float64, the exact softplus.
* ``"pyg"``: what a PyG ``SchNet`` built under torch's default float32 dtype holds after a cast to
  float64. Its centres are a float32 ``linspace``, its ``coeff = -0.5/\delta^2`` is computed from
  the float32 spacing read back as a Python float, its shift is ``log(2)`` rounded to float32
  (:data:`geomp_ref.ops.activations.LN2_PYG`, 1.9e-9 above the true value), and
  ``torch.nn.functional.softplus`` returns ``x`` itself above the threshold 20.

Torch's vectorised float32 ``linspace`` can differ from NumPy's by an ulp, so a bit-exact match with
a given module needs its buffer copied into a :class:`SchNetConstants`, which is what
``geomp_ref.interop.pyg`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._validate import check_positive
from ..ops import activations, radial

__all__ = ["SchNetConstants", "resolve_constants"]


@dataclass(frozen=True)
class SchNetConstants:
    r"""Every numerical constant of SchNet's edge and activation functions.

    Attributes
    ----------
    offsets : tuple of float
        Gaussian centres :math:`\mu_k` (G values).
    gamma : float
        Gaussian width :math:`\gamma > 0` (PyG stores ``coeff = -gamma``).
    shift : float
        Shift of the shifted softplus (``ln 2``).
    softplus_threshold : float or None
        ``None`` for the exact softplus; ``20.0`` for torch's ``F.softplus`` (returns ``x`` above).
    """

    offsets: tuple
    gamma: float
    shift: float
    softplus_threshold: float | None = None

    @classmethod
    def exact(cls, cutoff: float, num_rbf: int) -> SchNetConstants:
        mu, gamma = radial.gaussian_centers(0.0, cutoff, num_rbf)
        return cls(tuple(float(m) for m in mu), float(gamma), activations.LN2, None)

    @classmethod
    def pyg(cls, cutoff: float, num_rbf: int) -> SchNetConstants:
        # float32 centres; coeff from their float32 spacing read back as a Python float
        mu32 = np.linspace(0.0, cutoff, num_rbf, dtype=np.float32)
        delta = float(mu32[1] - mu32[0])
        return cls(tuple(float(m) for m in mu32), 0.5 / delta**2, activations.LN2_PYG, 20.0)


def resolve_constants(constants, cutoff: float, num_rbf: int, owner: str) -> SchNetConstants:
    """The :class:`SchNetConstants` that ``constants`` names (``"exact"``, ``"pyg"`` or an
    instance); errors name ``<owner>.constants``."""
    if isinstance(constants, SchNetConstants):
        if len(constants.offsets) != num_rbf:
            raise ValueError(
                f"{owner}.constants.offsets must hold num_rbf = {num_rbf} centres; "
                f"got {len(constants.offsets)}"
            )
        check_positive(constants.gamma, f"{owner}.constants.gamma")
        if not np.all(np.isfinite(np.asarray(constants.offsets, dtype=np.float64))):
            raise ValueError(f"{owner}.constants.offsets must be finite")
        return constants
    if isinstance(constants, str) and constants == "exact":
        return SchNetConstants.exact(cutoff, num_rbf)
    if isinstance(constants, str) and constants == "pyg":
        return SchNetConstants.pyg(cutoff, num_rbf)
    raise ValueError(
        f"{owner}.constants must be 'exact', 'pyg' or a SchNetConstants; got {constants!r}"
    )
