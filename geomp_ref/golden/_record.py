"""One golden problem: inputs, params, outputs, cotangents, VJPs and a symmetry record.

The draws come from one generator per (case, problem), seeded with the CRC-32 of
``"<case name>|<problem>"``, in this order: the problem (``case.make_inputs(rng, RANDOM_NODES)``
or the case's ``from_molecule(rng, molecule)`` hook), ``layer.init(rng)``, one standard-normal
cotangent per output (in output order), then the group element (``Q``, ``t``) from the testing
kit's sampler for the case's group (its second draw, ``trial = 1``, which is a reflection for
groups that contain reflections).
"""

from __future__ import annotations

import inspect
import zlib
from typing import NamedTuple

import numpy as np

from ..params import flatten
from ..testing import _group_sampler, _kind_transform
from ..testing._symmetry import _group_dim

__all__ = ["MOLECULE", "RANDOM_NODES", "Problem", "input_names", "record", "seed"]

#: Node count of the random problem (two graphs in the batch for the graph blocks).
RANDOM_NODES = 7
#: The shipped molecule of the molecule problem (cases with a ``from_molecule`` hook).
MOLECULE = "CH3CH2OH"


class Problem(NamedTuple):
    """What a golden file holds, before it is written.

    ``arrays`` maps npz keys to arrays in file order; ``info`` is the manifest record of the
    problem (input names, which inputs are None, output count, seed).
    """

    arrays: dict
    info: dict


def seed(case_name: str, problem: str) -> int:
    return zlib.crc32(f"{case_name}|{problem}".encode())


def input_names(case, count: int) -> list[str]:
    """The forward's argument names after ``params`` (and ``graph``), one per input slot."""
    try:
        sig = inspect.signature(case.layer.forward)
    except (TypeError, ValueError):
        return [str(k) for k in range(count)]
    ps = list(sig.parameters.values())
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in ps):
        return [str(k) for k in range(count)]
    names = [p.name for p in ps][1 + int(case.takes_graph):]
    if len(names) < count:
        return [str(k) for k in range(count)]
    return names[:count]


def _as_tuple(out) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def _call(case, params, graph, inputs):
    if graph is None:
        return case.layer.forward(params, *inputs)
    return case.layer.forward(params, graph, *inputs)


def record(case, problem: str, molecule=None) -> Problem:
    """Build the golden problem ``problem`` (``"random"`` or ``"molecule"``) of ``case``."""
    rng = np.random.default_rng(seed(case.name, problem))
    if problem == "molecule":
        graph, inputs = case.extra["from_molecule"](rng, molecule)
    else:
        graph, inputs = case.make_inputs(rng, RANDOM_NODES)
    inputs = tuple(inputs)
    names = input_names(case, len(inputs))
    params = case.layer.init(rng)
    out, cache = _call(case, params, graph, inputs)
    outs = _as_tuple(out)
    cots = tuple(None if o is None else rng.standard_normal(np.shape(o)) for o in outs)
    grad_params, grad_inputs = case.layer.backward(
        params, cache, cots if isinstance(out, tuple) else cots[0])
    sampler = _group_sampler(case.group)
    Q, t = sampler(rng, _group_dim(case.group, inputs, case.input_kinds), 1)
    sym_in = tuple(None if x is None else _kind_transform(k)(x, k, Q, t)
                   for x, k in zip(inputs, case.input_kinds))
    sym_out = tuple(None if o is None else _kind_transform(k)(o, k, Q, t)
                    for o, k in zip(outs, case.output_kinds))

    arrays: dict = {}
    if graph is not None:
        arrays["graph/edge_index"] = graph.edge_index
        arrays["graph/num_nodes"] = np.int64(graph.num_nodes)
        arrays["graph/batch"] = graph.batch
        arrays["graph/num_graphs"] = np.int64(graph.num_graphs)
    for name, x in zip(names, inputs):
        if x is not None:
            arrays[f"inputs/{name}"] = x
    for path, v in flatten(params).items():
        arrays[f"params/{path}"] = v
    for k, o in enumerate(outs):
        if o is not None:
            arrays[f"outputs/{k}"] = o
    for k, c in enumerate(cots):
        if c is not None:
            arrays[f"cotangents/{k}"] = c
    for path, v in flatten(grad_params).items():
        arrays[f"grad_params/{path}"] = v
    for name, g in zip(names, grad_inputs):
        if g is not None:
            arrays[f"grad_inputs/{name}"] = g
    arrays["symmetry/Q"] = Q
    arrays["symmetry/t"] = t
    for name, x in zip(names, sym_in):
        if x is not None:
            arrays[f"symmetry/inputs/{name}"] = x
    for k, o in enumerate(sym_out):
        if o is not None:
            arrays[f"symmetry/outputs/{k}"] = o

    info = {
        "problem": problem,
        "seed": seed(case.name, problem),
        "inputs": names,
        "none_inputs": [n for n, x in zip(names, inputs) if x is None],
        "no_grad_inputs": [n for n, x, g in zip(names, inputs, grad_inputs)
                           if x is not None and g is None],
        "num_outputs": len(outs),
        "output_is_tuple": isinstance(out, tuple),
        "empty_param_subtrees": _empty_subtrees(params),
    }
    if problem == "molecule":
        info["molecule"] = molecule.name
    return Problem(arrays, info)


def _empty_subtrees(tree, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(tree):
        v = tree[k]
        if isinstance(v, dict):
            out += [f"{prefix}{k}"] if not v else _empty_subtrees(v, f"{prefix}{k}/")
    return out
