"""Checkpoints: parameters and optimizer state in ``.npz``, everything else in ``.json``.

``save_checkpoint(prefix, ...)`` writes ``prefix.npz`` with the arrays under ``params/...``,
``exp_avg/...`` and ``exp_avg_sq/...`` (the parameter tree flattened with ``/``) and
``prefix.json`` with the epoch, the optimizer step, the hyper-parameters and the metrics. Both
files are written to a temporary name first and then renamed, so an interrupted run never leaves
a half-written checkpoint. Floats survive the round trip bit for bit.
"""

from __future__ import annotations

import json
import math
import os
from typing import NamedTuple

import numpy as np

from ..params import flatten, unflatten
from .optim import AdamState

__all__ = ["Checkpoint", "load_checkpoint", "save_checkpoint", "to_json"]

FORMAT = "geomp_ref.checkpoint/1"


class Checkpoint(NamedTuple):
    """What :func:`load_checkpoint` returns.

    Attributes
    ----------
    params : dict
    opt_state : AdamState or None
    meta : dict
        ``epoch``, ``hyper``, ``metrics`` and any other key given to :func:`save_checkpoint`.
    """

    params: dict
    opt_state: AdamState | None
    meta: dict


def to_json(value):
    """``value`` with NumPy scalars/arrays turned into Python numbers/lists and nan/inf to None."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _prefix(path) -> str:
    path = os.fspath(path)
    for ext in (".npz", ".json"):
        if path.endswith(ext):
            return path[: -len(ext)]
    return path


def save_checkpoint(path, params, opt_state: AdamState | None = None, *, epoch: int | None = None,
                    hyper: dict | None = None, metrics: dict | None = None, **extra) -> tuple:
    """Write ``path.npz`` and ``path.json`` (``path`` may end in either extension).

    Returns
    -------
    (str, str)
        The two file names.
    """
    prefix = _prefix(path)
    if opt_state is not None and not isinstance(opt_state, AdamState):
        raise TypeError(f"opt_state must be an AdamState or None; got {type(opt_state).__name__}")
    arrays = {f"params/{k}": v for k, v in flatten(params).items()}
    if opt_state is not None:
        arrays.update({f"exp_avg/{k}": v for k, v in flatten(opt_state.exp_avg).items()})
        arrays.update({f"exp_avg_sq/{k}": v for k, v in flatten(opt_state.exp_avg_sq).items()})
    meta = {"format": FORMAT, "epoch": epoch,
            "optimizer_step": None if opt_state is None else int(opt_state.step),
            "hyper": hyper or {}, "metrics": metrics or {}, **extra}
    text = json.dumps(to_json(meta), indent=2, sort_keys=True)
    folder = os.path.dirname(prefix)
    if folder:
        os.makedirs(folder, exist_ok=True)
    npz, js = prefix + ".npz", prefix + ".json"
    with open(npz + ".tmp", "wb") as fh:
        np.savez(fh, **arrays)
    with open(js + ".tmp", "w") as fh:
        fh.write(text + "\n")
    os.replace(npz + ".tmp", npz)
    os.replace(js + ".tmp", js)
    return npz, js


def load_checkpoint(path) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    prefix = _prefix(path)
    with open(prefix + ".json") as fh:
        meta = json.load(fh)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{prefix}.json is not a geomp_ref checkpoint (format "
                         f"{meta.get('format')!r}, expected {FORMAT!r})")
    groups: dict = {"params": {}, "exp_avg": {}, "exp_avg_sq": {}}
    with np.load(prefix + ".npz") as data:
        for key in data.files:
            group, _, name = key.partition("/")
            if group not in groups:
                raise ValueError(f"{prefix}.npz has an unexpected array {key!r}")
            groups[group][name] = data[key]
    params = unflatten(groups["params"])
    state = None
    if meta.get("optimizer_step") is not None:
        state = AdamState(int(meta["optimizer_step"]), unflatten(groups["exp_avg"]),
                          unflatten(groups["exp_avg_sq"]))
    return Checkpoint(params, state, meta)
