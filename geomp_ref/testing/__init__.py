r"""Public testing kit: VJP checks, symmetry checks, backend agreement, random problems.

Users check their own layers with the same tools the library's suite uses.

* :func:`check_vjp` compares, for every parameter leaf and every differentiable input, the
  fourth-order central difference (stencil ±eps, ±2 eps) of
  :math:`L(\theta) = \langle \bar y, y(\theta)\rangle` along a random unit direction :math:`d`
  with :math:`\langle \nabla L, d \rangle` from the block's hand-written ``backward``. Inputs of
  kind ``"pose"`` are perturbed on the group, :math:`g \exp(t\,\xi)`, so they stay valid. The
  reported error is :math:`|fd - an| / \max(\lVert \nabla L \rVert, 10^{-8}(|L| + 1))`: the error
  of the directional derivative relative to the size of the gradient.
* :func:`assert_equivariant` transforms inputs by a random group element drawn for the case's
  ``group`` (orthogonal matrices *with* reflections for E(3)/O(3)), a translation, a node
  relabelling inside each graph and an edge reordering, and compares the output with the
  transformed output, each transformation separately so that a failure names its cause.
* :func:`assert_backends_agree` runs a block on every available backend and compares with NumPy
  (and checks that two runs are bit-identical); a backend that returns other arrays than NumPy,
  or no backend to compare at all, fails.
* :func:`random_points`, :func:`random_graph`, :func:`random_orthogonal` make random problems;
  :func:`graph_strategy` is a Hypothesis strategy for graphs.

Kinds and groups: see :mod:`geomp_ref.cases`. New kinds and groups can be added with
:func:`register_kind` and :func:`register_group`.

Inputs and outputs may be ``None`` (blocks take an explicit ``None`` for an unused optional
input): ``None`` inputs are neither perturbed nor transformed, ``None`` outputs get no cotangent.

Layout: ``_random`` (random problems), ``_vjp`` (finite-difference checks), ``_symmetry``
(kinds, groups and the symmetry check), ``_backends`` (backend agreement), ``_strategies``
(Hypothesis), ``_blocks`` (how the kit calls a block and compares outputs).
"""

from __future__ import annotations

from ._backends import assert_backends_agree, backend_errors
from ._random import random_graph, random_orthogonal, random_points
from ._strategies import graph_strategy
from ._symmetry import _group_sampler as _group_sampler  # the registry test reaches these
from ._symmetry import _kind_transform as _kind_transform
from ._symmetry import assert_equivariant, register_group, register_kind, symmetry_errors
from ._vjp import check_case_vjp, check_vjp, check_vjp_fn, vjp

__all__ = [
    "check_vjp",
    "check_case_vjp",
    "check_vjp_fn",
    "vjp",
    "symmetry_errors",
    "assert_equivariant",
    "assert_backends_agree",
    "backend_errors",
    "random_orthogonal",
    "random_points",
    "random_graph",
    "register_kind",
    "register_group",
    "graph_strategy",
]
