"""Training in lockstep: our NBodyEGNN with hand gradients and :class:`geomp_ref.train.Adam`
against a torch ``EGNN_vel`` trained with autograd and ``torch.optim.Adam``.

The torch model below is written here from the layer's equations, with the published module
structure (vgsatorras/egnn ``n_body_system/model.py`` ``EGNN_vel`` and ``models/gcl.py``
``E_GCL_vel``: the class, submodule and parameter names and the forward signature), so that
:func:`geomp_ref.interop.from_torch` maps its weights to ours without any hand mapping. Per edge
(receiver ``row`` = i, sender ``col`` = j):

    m_ij = phi_e([h_i, h_j, |x_i - x_j|^2, a_ij]),
    x_i <- x_i + mean_j clamp((x_i - x_j) phi_x(m_ij), -100, 100) + phi_v(h_i) v_i,
    h_i <- h_i + phi_h([h_i, sum_j m_ij]),

with ``h0 = Lin(1 -> H)(|v|)`` and ``a_ij = [q_i q_j, |x_i^0 - x_j^0|^2]`` built from the input
frame and detached, as the published training script builds them.

Both start from the same weights, see the same batches of a small data set written by our
generator (float64), use the published learning rate and weight decay, and after 20 steps every
parameter agrees to 1e-9 relative (the runs differ only by rounding).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from geomp_ref import interop  # noqa: E402
from geomp_ref.models.nbody import NBodyEGNN  # noqa: E402
from geomp_ref.params import flatten  # noqa: E402

from ._lockstep import lockstep, small_nbody_set  # noqa: E402

F64 = torch.float64
HIDDEN, LAYERS, STEPS, BATCH = 16, 4, 20, 5
LR, WD = 5e-4, 1e-12
SILU = nn.SiLU()


# --- the torch double (our code, the published structure) ---------------------------------------


def _segment_sum(values, index, size):
    out = values.new_zeros((size, values.shape[1]))
    return out.index_add_(0, index, values)


class E_GCL(nn.Module):  # noqa: N801  (the published class name)
    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, act_fn=SILU,
                 recurrent=True, coords_weight=1.0):
        super().__init__()
        self.recurrent, self.coords_weight = recurrent, coords_weight
        self.attention, self.norm_diff, self.tanh = False, False, False
        self.edge_mlp = nn.Sequential(nn.Linear(2 * input_nf + 1 + edges_in_d, hidden_nf), act_fn,
                                      nn.Linear(hidden_nf, hidden_nf), act_fn)
        self.node_mlp = nn.Sequential(nn.Linear(hidden_nf + input_nf, hidden_nf), act_fn,
                                      nn.Linear(hidden_nf, output_nf))
        head = nn.Linear(hidden_nf, 1, bias=False)
        nn.init.xavier_uniform_(head.weight, gain=0.001)
        self.coord_mlp = nn.Sequential(nn.Linear(hidden_nf, hidden_nf), act_fn, head)

    def edge_model(self, source, target, radial, edge_attr):
        return self.edge_mlp(torch.cat([source, target, radial, edge_attr], dim=1))

    def node_model(self, h, edge_index, m):
        agg = _segment_sum(m, edge_index[0], h.shape[0])
        out = self.node_mlp(torch.cat([h, agg], dim=1))
        return h + out if self.recurrent else out


class E_GCL_vel(E_GCL):  # noqa: N801
    def __init__(self, input_nf, output_nf, hidden_nf, edges_in_d=0, act_fn=SILU,
                 recurrent=True, coords_weight=1.0):
        super().__init__(input_nf, output_nf, hidden_nf, edges_in_d, act_fn, recurrent,
                         coords_weight)
        self.coord_mlp_vel = nn.Sequential(nn.Linear(input_nf, hidden_nf), act_fn,
                                           nn.Linear(hidden_nf, 1))

    def forward(self, h, edge_index, coord, vel, edge_attr):
        row, col = edge_index
        diff = coord[row] - coord[col]
        radial = (diff ** 2).sum(dim=1, keepdim=True)
        m = self.edge_model(h[row], h[col], radial, edge_attr)
        trans = torch.clamp(diff * self.coord_mlp(m), -100, 100)
        count = _segment_sum(torch.ones_like(trans[:, :1]), row, h.shape[0]).clamp(min=1)
        coord = coord + self.coords_weight * _segment_sum(trans, row, h.shape[0]) / count
        coord = coord + self.coord_mlp_vel(h) * vel
        return self.node_model(h, edge_index, m), coord


class EGNN_vel(nn.Module):  # noqa: N801
    def __init__(self, in_node_nf, in_edge_nf, hidden_nf, act_fn=SILU, n_layers=4,
                 recurrent=True, coords_weight=1.0):
        super().__init__()
        self.n_layers = n_layers
        self.embedding = nn.Linear(in_node_nf, hidden_nf)
        for k in range(n_layers):
            self.add_module(f"gcl_{k}", E_GCL_vel(hidden_nf, hidden_nf, hidden_nf, in_edge_nf,
                                                  act_fn, recurrent, coords_weight))

    def forward(self, h, x, edges, vel, edge_attr):
        h = self.embedding(h)
        for k in range(self.n_layers):
            h, x = getattr(self, f"gcl_{k}")(h, edges, x, vel, edge_attr)
        return x


# --- the lockstep run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return small_nbody_set(tmp_path_factory.mktemp("nbody"))


def _ours_from_torch(module):
    """Our params for the torch module, via the adapter; only the two embedding leaves move from
    the adapter's generic EGNN block into NBodyEGNN's layout (the layer params are shared)."""
    spec, params = interop.from_torch(module)
    model = NBodyEGNN(hidden=HIDDEN, num_layers=LAYERS)
    assert spec.egnn.layer == model.layer and spec.egnn.num_layers == LAYERS
    p = params["egnn"]
    return model, {"embedding": {"W0": p["W_in"], "b0": p["b_in"]}, "layers": p["layers"]}


def _torch_loss(module, batch):
    t = lambda a: torch.tensor(a, dtype=F64)  # noqa: E731
    x, v, q, target = t(batch.x), t(batch.v), t(batch.charges), t(batch.target)
    rows, cols = torch.tensor(batch.graph.dst), torch.tensor(batch.graph.src)
    speed = torch.sqrt((v ** 2).sum(dim=1, keepdim=True))
    dist = ((x[rows] - x[cols]) ** 2).sum(dim=1, keepdim=True)
    edge_attr = torch.cat([q[rows] * q[cols], dist], dim=1)
    return nn.functional.mse_loss(module(speed, x, [rows, cols], v, edge_attr), target)


def test_twenty_adam_steps_agree_with_torch(data):
    torch.manual_seed(0)
    module = EGNN_vel(1, 2, HIDDEN, n_layers=LAYERS).to(F64)
    model, params = _ours_from_torch(module)
    initial = params
    params, losses = lockstep(model, params, module, lambda b: _torch_loss(module, b), data,
                              lr=LR, weight_decay=WD, steps=STEPS, batch_size=BATCH)
    _, theirs = _ours_from_torch(module)
    ours_loss, torch_loss = losses.T
    np.testing.assert_allclose(ours_loss, torch_loss, rtol=1e-10)
    assert ours_loss[-1] < ours_loss[0]  # it trained
    for key, ours in flatten(params).items():
        if key.startswith(f"layers/{LAYERS - 1}/phi_h/"):
            continue  # unused by the output: checked below
        ref = flatten(theirs)[key]
        err = np.max(np.abs(ours - ref)) / max(np.max(np.abs(ref)), 1e-300)
        assert err <= 1e-9, f"{key}: relative difference {err:.2e} after {STEPS} steps"
        assert not np.array_equal(ours, flatten(initial)[key]), f"{key} did not train"
    # The last layer's feature update never reaches the output: torch leaves its .grad None and
    # Adam skips it, while our backward returns exact zeros, which the weight decay term turns
    # into Adam steps of about lr. Its value cannot change any prediction.
    for key, ours in flatten(params).items():
        if key.startswith(f"layers/{LAYERS - 1}/phi_h/"):
            ref = flatten(theirs)[key]
            assert np.array_equal(ref, flatten(initial)[key]), f"torch moved {key}"
            assert np.max(np.abs(ours - ref)) <= LR * STEPS * (1 + 1e-9), key
