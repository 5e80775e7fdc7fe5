r"""Adam, with the arithmetic of ``torch.optim.Adam`` (non-fused, single-tensor CPU path).

For every parameter leaf :math:`p` with gradient :math:`g` at step :math:`t = 1, 2, \dots`:

.. math::

    g &\leftarrow g + \lambda p \quad (\text{only when } \lambda \ne 0) \\
    m &\leftarrow m + (1 - \beta_1)(g - m) \\
    v &\leftarrow \beta_2 v + (1 - \beta_2)\, g\, g \\
    p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
        \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

Weight decay :math:`\lambda` is the classic L2 term added to the gradient (not AdamW's decoupled
decay); it is one number for every leaf, or a tree of numbers shaped like the parameters (torch's
parameter groups: e.g. decay on weights, none on biases and normalisation scales). A step may
be given its own learning rate (a schedule's value). The scalars :math:`1 - \beta_1^t`,
:math:`1 - \beta_2^t`, the step size and
:math:`\sqrt{1 - \beta_2^t}` are computed in Python floats, and :math:`\epsilon` is added after
the division by the bias correction, exactly as torch does; the first moment is updated with
torch's ``lerp`` form :math:`m + w(g - m)`. Results agree with torch to rounding (torch's
vectorised kernels may fuse a multiply-add).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .._validate import check_int
from ..params import flatten, tree_map

__all__ = ["Adam", "AdamState", "CosineWarmup", "clip_grad_norm"]


class AdamState(NamedTuple):
    """Optimizer state: the step count and both moment trees (same structure as the params)."""

    step: int
    exp_avg: dict
    exp_avg_sq: dict


def _nonneg_float(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def _check_tree(tree, name: str, reference=None, path: str = "") -> None:
    """Every leaf a finite float64 array; with ``reference``, the same keys and shapes."""
    where = f"{name}{path}"
    if isinstance(tree, dict):
        if reference is not None and (not isinstance(reference, dict)
                                      or set(tree) != set(reference)):
            expected = sorted(reference) if isinstance(reference, dict) else "an array"
            raise ValueError(f"{where} must have the structure of params ({expected}); got keys "
                             f"{sorted(tree)}")
        for k, v in tree.items():
            _check_tree(v, name, None if reference is None else reference[k], f"{path}[{k!r}]")
        return
    if isinstance(reference, dict):
        raise TypeError(f"{where} must be a dict with keys {sorted(reference)}; got an array")
    # 0-d results of NumPy arithmetic are scalars (np.float64), accepted like 0-d arrays
    if not isinstance(tree, (np.ndarray, np.float64)) or np.asarray(tree).dtype != np.float64:
        raise TypeError(f"{where} must be a float64 ndarray; got "
                        f"{getattr(tree, 'dtype', type(tree).__name__)}")
    if reference is not None and np.shape(tree) != np.shape(reference):
        raise ValueError(f"{where} has shape {np.shape(tree)}; params has {np.shape(reference)}")
    if not np.all(np.isfinite(tree)):
        raise ValueError(f"{where} contains nan or inf")


@dataclass(frozen=True)
class Adam:
    """Adam optimizer over parameter trees (nested dicts of float64 arrays).

    Parameters
    ----------
    lr : float
        Learning rate :math:`\\eta >= 0`.
    betas : (float, float)
        :math:`(\\beta_1, \\beta_2)`, each in [0, 1).
    eps : float
    weight_decay : float or dict
        L2 coefficient :math:`\\lambda` added to the gradient; a tree with the structure of
        the parameters and one number per leaf gives each leaf its own (torch's parameter
        groups).
    """

    lr: float
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "lr", _nonneg_float(self.lr, "Adam.lr"))
        object.__setattr__(self, "eps", _nonneg_float(self.eps, "Adam.eps"))
        object.__setattr__(self, "weight_decay", _decay(self.weight_decay, "Adam.weight_decay"))
        betas = self.betas
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Adam.betas must be a pair (beta1, beta2); got {betas!r}")
        b = tuple(_nonneg_float(x, f"Adam.betas[{i}]") for i, x in enumerate(betas))
        for i, x in enumerate(b):
            if x >= 1.0:
                raise ValueError(f"Adam.betas[{i}] must be in [0, 1); got {x!r}")
        object.__setattr__(self, "betas", b)

    def hyper(self) -> dict:
        """The hyper-parameters as a JSON-ready dict."""
        return {"name": "Adam", "lr": self.lr, "betas": list(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay}

    def init(self, params) -> AdamState:
        """Zero moments shaped like ``params`` and step 0."""
        _check_tree(params, "params")
        zeros = tree_map(lambda a: np.zeros(np.shape(a)), params)
        return AdamState(0, zeros, tree_map(np.copy, zeros))

    def step(self, params, grads, state: AdamState, *, lr: float | None = None):
        """One update; returns new ``(params, state)`` and modifies nothing.

        Parameters
        ----------
        params, grads : dict
            Trees of the same structure and shapes.
        state : AdamState
        lr : float, optional
            This step's learning rate instead of ``self.lr`` (a schedule's value, as a torch
            scheduler sets the group's ``lr`` before the step).
        """
        _check_tree(params, "params")
        _check_tree(grads, "grads", params)
        if not isinstance(state, AdamState):
            raise TypeError(f"state must be the AdamState returned by Adam.init/step; got "
                            f"{type(state).__name__}")
        _check_tree(state.exp_avg, "state.exp_avg", params)
        _check_tree(state.exp_avg_sq, "state.exp_avg_sq", params)
        beta1, beta2 = self.betas
        lr = self.lr if lr is None else _nonneg_float(lr, "lr")
        eps = self.eps
        wd = self.weight_decay
        if isinstance(wd, dict):
            wd = _decay_tree(wd, params)  # checked against the params' structure
        step = state.step + 1
        # torch reads its float32 step counter back as a Python float
        bias1 = 1 - beta1 ** float(step)
        bias2 = 1 - beta2 ** float(step)
        step_size = lr / bias1
        bias2_sqrt = bias2 ** 0.5
        w1 = 1 - beta1
        w2 = 1 - beta2

        def leaf(p, g, m, v, wd):
            if wd != 0:
                g = g + wd * p
            m = m + w1 * (g - m)  # torch's lerp(m, g, w1) for w1 < 0.5
            v = v * beta2 + w2 * g * g  # torch's addcmul: v + (w2 * g) * g
            denom = np.sqrt(v) / bias2_sqrt + eps
            new_p = p + (-step_size) * m / denom  # torch's addcdiv: p + (s * m) / denom
            return np.asarray(new_p), np.asarray(m), np.asarray(v)

        new_params, exp_avg, exp_avg_sq = _walk(leaf, params, grads, state.exp_avg,
                                                state.exp_avg_sq, wd)
        return new_params, AdamState(step, exp_avg, exp_avg_sq)


def _walk(fn, p, g, m, v, wd):
    """Apply ``fn(p, g, m, v, wd) -> (p', m', v')`` leaf by leaf; returns the three new trees
    (``wd``: a tree like ``p``, or one number for every leaf)."""
    if isinstance(p, dict):
        sub = wd if not isinstance(wd, dict) else None
        out = {k: _walk(fn, p[k], g[k], m[k], v[k], wd[k] if sub is None else sub) for k in p}
        return tuple({k: out[k][i] for k in p} for i in range(3))
    return fn(p, g, m, v, wd)


def _decay(value, name: str):
    """A weight decay: one number >= 0, or a tree (nested dicts) of them."""
    if isinstance(value, dict):
        return {str(k): _decay(v, f"{name}[{k!r}]") for k, v in value.items()}
    return _nonneg_float(value, name)


def _decay_tree(wd, params, path: str = ""):
    """``wd`` spread over the structure of ``params`` (a number applies to every leaf)."""
    if not isinstance(wd, dict):
        if isinstance(params, dict):
            return {k: _decay_tree(wd, v, f"{path}[{k!r}]") for k, v in params.items()}
        return wd
    if not isinstance(params, dict) or set(wd) != set(params):
        expected = sorted(params) if isinstance(params, dict) else "a number (params is a leaf)"
        raise ValueError(f"Adam.weight_decay{path} must have the structure of params "
                         f"({expected}); got keys {sorted(wd)}")
    return {k: _decay_tree(wd[k], params[k], f"{path}[{k!r}]") for k in params}


def clip_grad_norm(grads, max_norm: float):
    r"""``torch.nn.utils.clip_grad_norm_`` on a gradient tree: ``(clipped, total_norm)``.

    :math:`n = \lVert (\lVert g_1 \rVert_2, \lVert g_2 \rVert_2, \dots) \rVert_2` over the
    leaves; every leaf is multiplied by :math:`\min(1, m / (n + 10^{-6}))` (a new tree; the
    input is not modified). PyTorch Lightning's ``gradient_clip_val=m`` does this before each
    optimizer step.
    """
    max_norm = _nonneg_float(max_norm, "max_norm")
    _check_tree(grads, "grads")
    norms = [float(np.sqrt(np.sum(g * g))) for g in flatten(grads).values()]
    total = float(np.sqrt(np.sum(np.square(norms)))) if norms else 0.0
    coef = min(1.0, max_norm / (total + 1e-6))
    return tree_map(lambda g: np.asarray(g) * coef, grads), total


@dataclass(frozen=True)
class CosineWarmup:
    r"""PONITA's learning-rate schedule (``CosineWarmupScheduler``), a factor per epoch:

    .. math::

        s(e) = \tfrac12 \big(1 + \cos(\pi e / E)\big) \cdot
        \begin{cases} (e + 10^{-6}) / (W + 10^{-6}) & e \le W \\ 1 & e > W \end{cases}

    for epoch :math:`e = 0, 1, \dots` (the torch scheduler steps once per epoch), ``warmup``
    :math:`W` and ``total`` :math:`E` epochs. ``lr(base, epoch)`` is :math:`\text{base}\, s(e)`.
    """

    warmup: int
    total: int

    def __post_init__(self):
        object.__setattr__(self, "warmup", check_int(self.warmup, "CosineWarmup.warmup"))
        object.__setattr__(self, "total", check_int(self.total, "CosineWarmup.total", minimum=1))

    def factor(self, epoch: int) -> float:
        f = 0.5 * (1 + math.cos(math.pi * epoch / self.total))
        if epoch <= self.warmup:
            f *= (epoch + 1e-6) * 1.0 / (self.warmup + 1e-6)
        return f

    def lr(self, base: float, epoch: int) -> float:
        return base * self.factor(epoch)

    def hyper(self) -> dict:
        return {"name": "CosineWarmup", "warmup": int(self.warmup), "total": int(self.total)}
