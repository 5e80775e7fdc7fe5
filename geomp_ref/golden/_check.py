"""``geomp-ref golden --check DIR``: rerun the library on stored problems and compare.

For every problem of every case in ``DIR/manifest.json``: the file's SHA-256, the outputs bit for
bit, the VJPs to :data:`VJP_RTOL` (relative to the largest stored entry of each array), and the
symmetry record to the case's ``sym_atol``.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ._zip import sha256

__all__ = ["VJP_RTOL", "check_dir", "check_problem"]

VJP_RTOL = 1e-12


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = float(np.max(np.abs(b)))
    diff = float(np.max(np.abs(a - b)))
    return diff / scale if scale > 0 else diff


def _tree(data, prefix: str, empty: list) -> dict:
    from ..params import unflatten

    flat = {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}
    flat.update({f"{p}/": np.zeros(0) for p in empty})
    return unflatten(flat)


def check_problem(case, entry: dict, info: dict, data) -> list[str]:
    """Messages for each mismatch between the library and one stored problem (empty: ok)."""
    from .. import params as P
    from ..graph import make_graph

    graph = None
    if "graph/edge_index" in data.files:
        graph = make_graph(data["graph/edge_index"], int(data["graph/num_nodes"]),
                           data["graph/batch"], int(data["graph/num_graphs"]))
    names = info["inputs"]
    inputs = tuple(data[f"inputs/{n}"] if f"inputs/{n}" in data.files else None for n in names)
    params = _tree(data, "params/", info["empty_param_subtrees"])
    call = ((lambda xs: case.layer.forward(params, *xs)) if graph is None
            else (lambda xs: case.layer.forward(params, graph, *xs)))
    out, cache = call(inputs)
    outs = out if isinstance(out, tuple) else (out,)
    bad = []
    for k, o in enumerate(outs):
        key = f"outputs/{k}"
        stored = data[key] if key in data.files else None
        if (o is None) != (stored is None) or (o is not None and not (
                np.shape(o) == stored.shape and np.array_equal(o, stored, equal_nan=True))):
            bad.append(f"{key} differs from the stored output")
    cots = tuple(data[f"cotangents/{k}"] if f"cotangents/{k}" in data.files else None
                 for k in range(len(outs)))
    gp, gi = case.layer.backward(params, cache, cots if isinstance(out, tuple) else cots[0])
    for path, v in P.flatten(gp).items():
        err = _rel(v, data[f"grad_params/{path}"])
        if not err <= VJP_RTOL:
            bad.append(f"grad_params/{path}: relative error {err:.1e}")
    for n, g in zip(names, gi):
        key = f"grad_inputs/{n}"
        if (g is None) != (key not in data.files):
            bad.append(f"{key}: present on one side only")
        elif g is not None and not _rel(g, data[key]) <= VJP_RTOL:
            bad.append(f"{key}: relative error {_rel(g, data[key]):.1e}")
    sym_in = tuple(data[f"symmetry/inputs/{n}"] if f"symmetry/inputs/{n}" in data.files
                   else None for n in names)
    sym = call(sym_in)[0]
    for k, o in enumerate(sym if isinstance(sym, tuple) else (sym,)):
        key = f"symmetry/outputs/{k}"
        if o is not None and not _rel(o, data[key]) <= entry["sym_atol"]:
            bad.append(f"{key}: symmetry error {_rel(o, data[key]):.1e} > {entry['sym_atol']}")
    return bad


def check_dir(path, wanted) -> int:
    """Check every case of ``path/manifest.json`` (or those whose name contains one of
    ``wanted``); print one line per problem; return 0 if all agree, else 1."""
    from .. import cases as _cases

    with open(os.path.join(path, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    known = {c.name: c for c in _cases.cases(errors=[])}
    failures = 0
    for entry in manifest["cases"]:
        if wanted and not any(s in entry["name"] for s in wanted):
            continue
        for info in entry["problems"]:
            label = f"{entry['name']} [{info['problem']}]"
            file = os.path.join(path, info["file"])
            with open(file, "rb") as fh:
                blob = fh.read()
            if entry["name"] not in known:
                bad = ["no such case in this library"]
            elif sha256(blob) != info["sha256"]:
                bad = ["file hash differs from the manifest"]
            else:
                with np.load(file, allow_pickle=False) as data:
                    try:
                        bad = check_problem(known[entry["name"]], entry, info, data)
                    except Exception as exc:  # a layer that raises fails its line
                        bad = [f"{type(exc).__name__}: {exc}"]
            failures += bool(bad)
            print(f"{'FAIL' if bad else 'ok  '} {label}" + "".join(f"\n    {b}" for b in bad))
    print(f"geomp-ref golden --check: {failures} problem(s) differ", file=sys.stderr)
    return 1 if failures else 0
