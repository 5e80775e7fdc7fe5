r"""PyTorch Geometric adapters: a PyG module -> our spec and params (torch imported lazily).

:func:`schnet` converts ``torch_geometric.nn.models.SchNet``. What it maps:

* weights: torch's ``Linear`` stores (out, in); ours are (in, out), so every weight is transposed
  (``mlp.0`` -> ``filter/W0``, ``mlp.2`` -> ``filter/W1``, ``conv.lin1`` -> ``W_in``,
  ``conv.lin2`` -> ``W_out``/``b_out``, ``lin`` -> ``W``/``b``, ``lin1``/``lin2`` -> ``W_out1``...);
* constants: the module's own Gaussian ``offset`` buffer, ``gamma = -coeff`` and the
  shifted-softplus ``shift`` are copied into a :class:`~geomp_ref.layers.schnet.SchNetConstants`
  together with torch's softplus threshold 20, so the result matches the module bit for bit in its
  constants whether it was built under float32 (PyG's float32-born ln 2 and gamma) or float64
  default dtype (see variants_spec §3);
* readout ``add``/``mean``; ``cutoff``; embedding size (PyG: 100).

Not converted: the interaction graph. PyG builds it with ``radius_graph(max_num_neighbors=32)``
(a silent neighbour cap, pyg#2933) through torch-cluster; pass our graph (e.g.
``spec.graph(pos, batch)``, no cap) to both sides, on the PyG side through
``SchNet(interaction_graph=...)``. ``dipole``, ``mean``/``std``, ``atomref`` and ``scale`` are not
supported and raise ``ValueError``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["schnet"]


def _import_torch():
    try:
        import torch
        import torch_geometric  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "geomp_ref.interop.pyg needs torch and torch_geometric: install the `peers` extra "
            "(pip install 'geomp-ref[peers]')"
        ) from exc
    return torch


def _np(t) -> np.ndarray:
    return t.detach().cpu().to(dtype=__import__("torch").float64).numpy().copy()


def schnet(module, *, backend: str = "numpy"):
    """Spec and params equivalent to a PyG ``SchNet`` module.

    Parameters
    ----------
    module : torch_geometric.nn.models.SchNet
    backend : str
        Backend of the returned spec.

    Returns
    -------
    spec : geomp_ref.layers.schnet.SchNet
        With ``constants`` = the module's own constants (a ``SchNetConstants``).
    params : dict
        float64 copies of the module's weights in our (in, out) layout.

    Raises
    ------
    ImportError
        torch / torch_geometric are missing (the ``peers`` extra).
    TypeError
        ``module`` is not a PyG SchNet.
    ValueError
        The module uses an option the oracle does not model (``dipole``, ``mean``/``std``,
        ``atomref``, ``scale``) or a readout other than add/mean.
    """
    _import_torch()
    from torch_geometric.nn.models import SchNet as PygSchNet

    from ..layers.schnet import SchNet, SchNetConstants

    if not isinstance(module, PygSchNet):
        raise TypeError(
            f"module must be a torch_geometric.nn.models.SchNet; got {type(module).__name__}"
        )
    if module.dipole:
        raise ValueError("module: dipole=True is not supported by geomp_ref's SchNet")
    if module.mean is not None or module.std is not None:
        raise ValueError(
            "module: mean/std rescaling is not supported; build the module with mean=std=None"
        )
    if module.atomref is not None:
        raise ValueError("module: atomref is not supported; build the module with atomref=None")
    if getattr(module, "scale", None) is not None:
        raise ValueError("module: scale is not supported; leave module.scale = None")
    readout = {"SumAggregation": "add", "MeanAggregation": "mean"}.get(
        type(module.readout).__name__
    )
    if readout is None:
        raise ValueError(
            f"module: readout {type(module.readout).__name__} is not supported (add or mean)"
        )
    shifts = {float(module.act.shift)} | {float(b.act.shift) for b in module.interactions}
    shifts |= {float(b.mlp[1].shift) for b in module.interactions}
    if len(shifts) != 1:
        raise ValueError(
            f"module: shifted-softplus shifts differ between sub-modules: {sorted(shifts)}"
        )
    ds = module.distance_expansion
    constants = SchNetConstants(
        offsets=tuple(float(v) for v in _np(ds.offset)),
        gamma=-float(ds.coeff),
        shift=shifts.pop(),
        softplus_threshold=20.0,  # F.softplus(beta=1, threshold=20)
    )
    emb = module.embedding.weight
    spec = SchNet(
        hidden=int(module.hidden_channels),
        num_filters=int(module.num_filters),
        num_interactions=int(module.num_interactions),
        num_rbf=int(module.num_gaussians),
        cutoff=float(module.cutoff),
        readout=readout,
        max_z=int(emb.shape[0]),
        constants=constants,
        backend=backend,
    )
    inter = {}
    for t, blk in enumerate(module.interactions):
        inter[str(t)] = {
            "conv": {
                "W_in": _np(blk.conv.lin1.weight).T.copy(),
                "filter": {
                    "W0": _np(blk.mlp[0].weight).T.copy(),
                    "b0": _np(blk.mlp[0].bias),
                    "W1": _np(blk.mlp[2].weight).T.copy(),
                    "b1": _np(blk.mlp[2].bias),
                },
                "W_out": _np(blk.conv.lin2.weight).T.copy(),
                "b_out": _np(blk.conv.lin2.bias),
            },
            "W": _np(blk.lin.weight).T.copy(),
            "b": _np(blk.lin.bias),
        }
    params = {
        "embedding": _np(emb),
        "interactions": inter,
        "W_out1": _np(module.lin1.weight).T.copy(),
        "b_out1": _np(module.lin1.bias),
        "W_out2": _np(module.lin2.weight).T.copy(),
        "b_out2": _np(module.lin2.bias),
    }
    return spec, params
