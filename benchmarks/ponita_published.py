"""Run the published PONITA N-body script (ebekkers/ponita ``main_nbody.py``) on this machine.

The script runs unchanged, from its checkout, on the data files you give; only what this
environment lacks is replaced, before the script starts:

* ``torch_scatter`` (no wheel for current torch): a module whose ``scatter_mean`` is
  ``torch_geometric.utils.scatter(..., reduce="mean")`` (PONITA imports it for its point-cloud
  mode only);
* ``torch_geometric.nn.radius_graph`` (needs ``pyg-lib``): all pairs within the radius, per
  graph (the N-body loader's radius 1000 keeps every pair, as published);
* PyG 2.8's ``BaseTransform`` declares ``forward`` abstract; PONITA's transforms, written for an
  older PyG, override ``__call__`` (what is called), so the abstract mark is lifted;
* the Weights & Biases logger becomes Lightning's ``CSVLogger`` (no network): ``--log True``
  writes ``logs/PONITA-nbody_small/version_N/metrics.csv`` with the validation MSE after every
  5th epoch and the test MSE at the best validation epoch;
* ``THREADS`` (environment, default 1) torch threads, and checkpoints are read back with
  ``weights_only=False`` (torch >= 2.6 refuses Lightning's checkpoints otherwise).

Needs torch, torch_geometric, pytorch_lightning, torchmetrics and pyyaml. Usage::

    ln -s DATA/*.npy PONITA_CHECKOUT/n_body_system/dataset/
    cd PONITA_CHECKOUT && THREADS=1 python GEOMP_REF/benchmarks/ponita_published.py \\
        --gpus 0 --epochs 10 --seed 0 --log True

``python benchmarks/nbody.py ponita --runs RUNS`` compares such logs (copied to
``RUNS/pub_ponita_<E>_s<S>.csv``) with ``geomp-ref nbody train --model ponita`` runs.
"""

from __future__ import annotations

import os
import runpy
import sys
import types


def _radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target",
                  **_):
    import torch

    n = x.size(0)
    batch = torch.zeros(n, dtype=torch.long) if batch is None else batch
    ok = (torch.cdist(x, x) <= r) & (batch[:, None] == batch[None, :])
    if not loop:
        ok.fill_diagonal_(False)
    dst, src = ok.nonzero(as_tuple=True)
    return torch.stack([src, dst])


def main() -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch

    torch.set_num_threads(int(os.environ.get("THREADS", "1")))
    import torch_geometric.nn as tgnn
    from torch_geometric.utils import scatter

    shim = types.ModuleType("torch_scatter")
    shim.scatter_mean = lambda src, index, dim=0, dim_size=None: scatter(
        src, index, dim=dim, dim_size=dim_size, reduce="mean")
    sys.modules.setdefault("torch_scatter", shim)
    tgnn.radius_graph = _radius_graph
    sys.path.insert(0, os.getcwd())
    import ponita.transforms as transforms
    from ponita.transforms.random_rotate import RandomRotate

    for cls in [RandomRotate] + [getattr(transforms, n) for n in dir(transforms)]:
        if isinstance(cls, type) and getattr(cls, "__abstractmethods__", None):
            cls.__abstractmethods__ = frozenset()
    import pytorch_lightning as pl

    def csv_logger(project=None, name=None, config=None, save_dir="logs", **_):
        return pl.loggers.CSVLogger(save_dir=save_dir, name=project)

    pl.loggers.WandbLogger = csv_logger
    sys.argv = ["main_nbody.py"] + sys.argv[1:]
    runpy.run_path("main_nbody.py", run_name="__main__")


if __name__ == "__main__":
    main()
