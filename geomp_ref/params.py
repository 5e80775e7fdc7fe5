"""Parameter trees: nested ``dict[str, ndarray | dict]`` of float64 arrays.

``grad_params`` returned by every ``backward`` has exactly the structure of ``params``, so the
helpers here serve both. :func:`save` / :func:`load` use an ``.npz`` file with ``"a/b"`` keys;
an empty sub-dict (a child block without parameters) is stored as the key ``"a/"`` so that a
round trip returns exactly the tree that was saved.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

__all__ = ["tree_map", "tree_map2", "flatten", "unflatten", "num_params", "save", "load",
           "zeros_like"]


def tree_map(fn, tree):
    """Apply ``fn`` to every array leaf, keeping the dict structure."""
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    return fn(tree)


def tree_map2(fn, a, b):
    """Apply ``fn(leaf_a, leaf_b)`` over two trees of the same structure."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b):
            other = sorted(b) if isinstance(b, dict) else b
            raise ValueError(f"trees differ in structure: keys {sorted(a)} vs {other}")
        return {k: tree_map2(fn, a[k], b[k]) for k in a}
    return fn(a, b)


def zeros_like(tree):
    return tree_map(np.zeros_like, tree)


def _check_key(k, prefix: str) -> None:
    if not isinstance(k, str) or not k:
        raise TypeError(f"parameter key {prefix}{k!r} must be a non-empty str")
    if "/" in k:
        raise ValueError(f"parameter key {prefix}{k!r} must not contain '/'")


def flatten(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a/b": leaf}`` for every leaf, in sorted key order (empty sub-dicts give nothing)."""
    if not isinstance(tree, dict):
        raise TypeError(
            f"params must be a dict (nested dicts of arrays); got {type(tree).__name__}")
    for k in tree:
        _check_key(k, prefix)
    out: dict[str, np.ndarray] = {}
    for k in sorted(tree):
        v = tree[k]
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "/"))
        else:
            out[name] = v
    return out


def unflatten(flat: dict[str, np.ndarray]):
    """Inverse of :func:`flatten` (keys ending in ``"/"`` stand for empty sub-dicts)."""
    if not isinstance(flat, dict):
        raise TypeError(f"flat must be a dict {{'a/b': array}}; got {type(flat).__name__}")
    tree: dict = {}
    for name, v in flat.items():
        if not isinstance(name, str) or not name or name.startswith("/") or "//" in name:
            raise ValueError(f"flat key {name!r} must be 'a/b/c' made of non-empty names")
        node = tree
        parts = name.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"flat key {name!r} runs through the leaf {p!r}")
        if parts[-1]:  # "a/" only creates the empty sub-dict "a"
            if isinstance(node.get(parts[-1]), dict):
                raise ValueError(f"flat key {name!r} is both a leaf and a sub-tree")
            node[parts[-1]] = np.asarray(v)
    return tree


def num_params(tree) -> int:
    return int(sum(np.size(v) for v in flatten(tree).values()))


def _empty_dicts(tree, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        if isinstance(v, dict):
            out += [f"{prefix}{k}/"] if not v else _empty_dicts(v, f"{prefix}{k}/")
    return out


def save(path, tree) -> None:
    """Write ``tree`` to ``path`` (exactly that file name: no ``.npz`` is appended).

    Raises
    ------
    TypeError, ValueError
        ``tree`` is not a dict of str keys, or a leaf is not a real-valued array.
    """
    flat = flatten(tree)
    arrays = {}
    for name, v in flat.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (np.ndarray, numbers.Real)):
            raise TypeError(
                f"params[{name!r}] must be a float array; got {type(v).__name__} (save only "
                "what init(rng) returns)")
        arr = np.asarray(v)
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"params[{name!r}] must hold real numbers; got dtype {arr.dtype}")
        arrays[name] = arr
    for name in _empty_dicts(tree):
        arrays[name] = np.zeros(0)
    if not isinstance(path, (str, bytes, os.PathLike)):
        raise TypeError(f"path must be a file name; got {type(path).__name__}")
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def load(path):
    """Read a tree written by :func:`save`; leaves come back as float64 arrays."""
    with np.load(path, allow_pickle=False) as data:
        flat = {}
        for k in data.files:
            arr = data[k]
            if arr.dtype.kind not in "fiu":
                raise ValueError(f"{path}: entry {k!r} holds dtype {arr.dtype}, not real numbers")
            flat[k] = arr.astype(np.float64)
    return unflatten(flat)
