"""Shared pieces of the lockstep training tests (our model with hand gradients and
:class:`geomp_ref.train.Adam` against a torch module with autograd and ``torch.optim.Adam``):
a small N-body set written by our generator and the loop that trains both sides."""

from __future__ import annotations

import numpy as np
import torch

from geomp_ref.nbody import GeneratorConfig, NBodyDataset, write_dataset
from geomp_ref.train import Adam, mse_loss


def small_nbody_set(folder, suffix: str = "lock") -> NBodyDataset:
    """Ten simulations of our generator, 300 steps: input frame 0, target frame 1."""
    write_dataset(folder, GeneratorConfig(num_train=10, num_valid=1, num_test=1, length=300,
                                          length_test=300, seed=43, suffix=suffix))
    return NBodyDataset(folder, "train", suffix=suffix, frames=(0, 1))


def lockstep(model, params, module, torch_loss, data, *, lr: float, weight_decay: float,
             steps: int = 20, batch_size: int = 5):
    """``steps`` Adam steps on each side over the same batches (drawn from
    ``np.random.default_rng(0)``); ``torch_loss(batch)`` is the module's loss tensor. Returns our
    final params and the (steps, 2) array of losses (ours, torch's), torch on one thread."""
    topt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    opt = Adam(lr, weight_decay=weight_decay)
    state = opt.init(params)
    rng = np.random.default_rng(0)
    batches = [b for _ in range(steps // 2) for b in data.batches(batch_size, rng)][:steps]
    assert len(batches) == steps
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    losses = []
    try:
        for b in batches:
            pred, cache = model.forward(params, b.graph, b.x, b.v, b.charges)
            loss, grad = mse_loss(pred, b.target)
            grads, _ = model.backward(params, cache, grad)
            params, state = opt.step(params, grads, state)
            topt.zero_grad()
            tloss = torch_loss(b)
            tloss.backward()
            topt.step()
            losses.append((loss, tloss.item()))
    finally:
        torch.set_num_threads(before)
    return params, np.array(losses)
