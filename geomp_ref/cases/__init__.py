r"""The case registry: one :class:`Case` per registered variant configuration.

``geomp-ref verify``, the test suite and external checks iterate over :func:`cases`. Each layer
family registers its cases in its own module of this package (``cases/<family>.py``) through a
module-level function ``register() -> list[Case]``; every module of the package is collected, in
alphabetical order, so adding a family needs no edit here.

Kinds vocabulary (``input_kinds`` / ``output_kinds``; one entry per array input / output)
---------------------------------------------------------------------------------------------
=====================  ======================================================================
kind                   shape and transformation
=====================  ======================================================================
``"node_scalar"``      (N, ...) invariant per-node values; follow node permutations.
``"node_label"``       (N,) integer per-node labels (e.g. atomic numbers); invariant, not
                       differentiated (its gradient is ``None``).
``"edge_scalar"``      (E, ...) invariant per-edge values; follow edge reordering.
``"graph_scalar"``     (B, ...) invariant per-graph values.
``"position"``         (N, D) points: ``x -> x Q^T + t`` (rotates, reflects and translates).
``"vector"``           (N, D) per-node vectors: ``v -> v Q^T`` (rotate and reflect only).
``"edge_vector"``      (E, D) per-edge vectors: ``v -> v Q^T``.
``"irreps:<irreps>"``  (N, dim) node features in e3nn layout, ``x -> x D(Q)^T`` with parity.
``"pose"``             (N, D+1, D+1) homogeneous group elements, ``g -> T g`` (left action).
``"grid:<name>"``      (N, G, ...) signals on a rotation grid: for a rotation of the grid's own
                       subgroup the grid axis is permuted (see ``geomp_ref.testing``).
=====================  ======================================================================

Group vocabulary (``group``): the symmetry the case must satisfy exactly.
``"E3"`` = O(3) x T(3) (reflections included), ``"SE3"`` = SO(3) x T(3), ``"T3"`` = translations
only, ``"O3"`` / ``"SO3"`` rotations (and reflections) without translations, ``"E2"``, ``"SE2"``,
``"T2"``, ``"C<n>xT2"`` (cyclic rotations by 2 pi / n and translations), ``"T12xT3"`` /
``"O24xT3"`` / ``"I60xT3"`` (the tetrahedral / octahedral / icosahedral rotation groups and
translations, registered by ``cases/group_conv.py``), ``"none"`` (node permutations and edge
reordering only). Node permutations and edge reordering are always checked.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Case", "cases", "get_case"]


@dataclass(frozen=True)
class Case:
    """One registered configuration of a layer.

    Attributes
    ----------
    name : str
        Starts with the layer's class name, e.g. ``"DistanceMPNN/default"``.
    layer : object
        The block spec: ``init(rng)``, ``forward(params, [graph,] *inputs)``, ``backward``.
    make_inputs : callable
        ``make_inputs(rng, num_nodes) -> (graph, inputs)``: a generic random valid problem of about
        that size; ``graph`` is ``None`` for blocks that take no graph.
    input_kinds, output_kinds : tuple of str
        One kind per array input / output (see the module docstring).
    group : str
        The symmetry the case satisfies exactly.
    differentiable : tuple of bool, optional
        Which inputs are differentiated (default: all except ``node_label``).
    vjp_rtol : float
        Tolerance for the finite-difference VJP check (relative).
    sym_atol : float
        Tolerance on the symmetry error (relative to the output scale).
    fd_eps : float
        Step of the central differences.
    notes : str
    extra : dict
        Optional hooks: ``"takes_graph": False`` for blocks without a graph;
        ``"from_molecule": fn(rng, molecule) -> (graph, inputs)`` builds the case on a shipped real
        molecule (:mod:`geomp_ref.molecules`), used by ``geomp-ref verify``.
    """

    name: str
    layer: Any
    make_inputs: Callable
    input_kinds: tuple
    output_kinds: tuple
    group: str
    vjp_rtol: float = 1e-7
    sym_atol: float = 1e-12
    fd_eps: float = 1e-5
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def takes_graph(self) -> bool:
        return self.extra.get("takes_graph", True)


def _family_modules():
    pkg = importlib.import_module(__name__)
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if not m.name.startswith("_"))


def cases(family: str | None = None, *, errors: list | None = None) -> list[Case]:
    """Every registered case (optionally only those of one family module), in a fixed order.

    A family module that fails to import or register raises, naming the module; with an
    ``errors`` list the failure is appended to it as ``(module_name, exception)`` instead and the
    other families are still returned (``geomp-ref verify`` reports such a family as failed).
    """
    out: list[Case] = []
    names = _family_modules()
    if family is not None:
        if family not in names:
            raise ValueError(f"family must be one of {names}; got {family!r}")
        names = [family]
    for mod_name in names:
        try:
            mod = importlib.import_module(f"{__name__}.{mod_name}")
            found = list(mod.register())
        except Exception as exc:
            if errors is None:
                raise RuntimeError(
                    f"case family {__name__}.{mod_name} failed to register its cases: "
                    f"{type(exc).__name__}: {exc}") from exc
            errors.append((f"{__name__}.{mod_name}", exc))
            continue
        for c in found:
            if not isinstance(c, Case):
                raise TypeError(f"{__name__}.{mod_name}.register() must return Case objects; "
                                f"got {type(c).__name__}")
        out.extend(found)
    seen = set()
    for c in out:
        if c.name in seen:
            raise RuntimeError(f"duplicate case name {c.name!r}")
        seen.add(c.name)
    return out


def get_case(name: str) -> Case:
    """The registered case called ``name``."""
    for c in cases():
        if c.name == name:
            return c
    raise KeyError(f"no case named {name!r}; see geomp_ref.cases.cases()")
