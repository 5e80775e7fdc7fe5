"""Parameter trees: nested ``dict[str, ndarray | dict]`` of float64 arrays.

``grad_params`` returned by every ``backward`` has exactly the structure of ``params``, so the
helpers here serve both. ``save``/``load`` use npz with ``"a/b"`` keys.
"""

from __future__ import annotations

import numpy as np

__all__ = ["tree_map", "tree_map2", "flatten", "unflatten", "num_params", "save", "load", "zeros_like"]


def tree_map(fn, tree):
    """Apply ``fn`` to every array leaf, keeping the dict structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    return fn(tree)


def tree_map2(fn, a, b):
    """Apply ``fn(leaf_a, leaf_b)`` over two trees of the same structure."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            raise ValueError(f"trees differ in structure: keys {sorted(a)} vs {sorted(b) if isinstance(b, dict) else b}")
        return {k: tree_map2(fn, a[k], b[k]) for k in a}
    return fn(a, b)


def zeros_like(tree):
    return tree_map(np.zeros_like, tree)


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a/b": leaf}`` for every leaf, in sorted key order."""
    out: dict[str, np.ndarray] = {}
    for k in sorted(tree):
        v = tree[k]
        if "/" in k:
            raise ValueError(f"parameter key {k!r} must not contain '/'")
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "/"))
        else:
            out[name] = v
    return out


def unflatten(flat: dict[str, np.ndarray]):
    """Inverse of :func:`flatten`."""
    tree: dict = {}
    for name, v in flat.items():
        node = tree
        parts = name.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = np.asarray(v)
    return tree


def num_params(tree) -> int:
    return int(sum(np.size(v) for v in flatten(tree).values()))


def save(path, tree) -> None:
    np.savez(path, **flatten(tree))


def load(path):
    with np.load(path) as data:
        return unflatten({k: data[k].astype(np.float64) for k in data.files})
