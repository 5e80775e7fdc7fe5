"""SchNet's forces-only backward: ``param_grads=False`` on CFConv, SchNetInteraction and SchNet,
and ``SchNet.forces``.

The input gradients of the skip path must be *bit-identical* to the full backward's (the same
operations in the same order), on both code paths of CFConv (the reference ops on ``"numpy"``, the
fused kernels on ``"numba"``, with and without edge pairs). The forces are also checked against
central differences of the energy, an independent route.
"""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import backends, testing
from geomp_ref.graph import make_graph
from geomp_ref.layers.schnet import CFConv, SchNet, SchNetInteraction

BACKENDS = [b for b in ("numpy", "numba") if b in backends.available()]
ELEMENTS = np.array([1, 6, 7, 8])
GRAPHS = ("radius", "batched", "asymmetric")


def _model(backend, readout="add", **kw):
    opts = dict(hidden=16, num_filters=12, num_interactions=2, num_rbf=8, cutoff=3.0, max_z=10)
    opts.update(kw)
    return SchNet(readout=readout, backend=backend, **opts)


def _problem(kind, backend, rng, n=30):
    """``(model, graph, z, pos)`` for one of GRAPHS.

    ``radius``: one molecule-like cloud, its radius graph (symmetric: the fused path pairs
    edges). ``batched``: two clouds of 17 and 13 atoms, mean readout. ``asymmetric``: the radius
    graph with a fifth of its edges dropped plus a few edges longer than the cutoff, so no edge
    pairing exists (the fused path takes ``pairs=None``) and the cutoff mask is exercised.
    """
    pos = testing.random_points(rng, n, min_dist=0.8)
    z = rng.choice(ELEMENTS, n)
    if kind == "batched":
        model = _model(backend, readout="mean")
        batch = np.repeat([0, 1], [17, n - 17])
        pos[17:] += 50.0  # far apart anyway; the graph never crosses graphs
        return model, model.graph(pos, batch), z, pos
    model = _model(backend)
    graph = model.graph(pos)
    if kind == "asymmetric":
        ei = graph.edge_index
        keep = rng.random(ei.shape[1]) >= 0.2
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        far = np.argwhere(d > model.cutoff)[:5].T  # (2, 5) sender, receiver beyond the cutoff
        graph = make_graph(np.concatenate([ei[:, keep], far], axis=1), n)
    return model, graph, z, pos


def _assert_pairing(model, cache, kind):
    """The fused path pairs the radius graphs and cannot pair the asymmetric one."""
    conv_cache = cache.interactions[0].conv
    if model.backend == "numba":
        assert conv_cache.dz1 is not None  # the fused path ran
        assert (conv_cache.pairs is None) == (kind == "asymmetric")
    else:
        assert conv_cache.dz1 is None and conv_cache.pairs is None


# --- SchNet -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", GRAPHS)
def test_schnet_skip_path_is_bit_identical(kind, backend, rng):
    model, graph, z, pos = _problem(kind, backend, rng)
    params = model.init(rng)
    energy, cache = model.forward(params, graph, z, pos)
    _assert_pairing(model, cache, kind)
    g_E = rng.normal(size=energy.shape)
    skip = model.backward(params, cache, g_E, param_grads=False)
    grads, (g_z, g_pos) = model.backward(params, cache, g_E)
    again = model.backward(params, cache, g_E, param_grads=False)  # the cache is not consumed
    assert grads is not None and g_z is None
    assert grads["embedding"].shape == params["embedding"].shape
    for sk in (skip, again):
        assert sk[0] is None and sk[1][0] is None
        assert sk[1][1].shape == pos.shape and sk[1][1].dtype == np.float64
        assert np.array_equal(sk[1][1], g_pos)
    assert np.max(np.abs(g_pos)) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", GRAPHS)
def test_schnet_forces_equal_minus_full_grad_pos(kind, backend, rng):
    model, graph, z, pos = _problem(kind, backend, rng)
    params = model.init(rng)
    energy, forces = model.forces(params, graph, z, pos)
    E, cache = model.forward(params, graph, z, pos)
    _, (_, g_pos) = model.backward(params, cache, np.ones(graph.num_graphs))
    assert energy.shape == (graph.num_graphs,)
    assert np.array_equal(energy, E)
    assert np.array_equal(forces, -g_pos)
    # no net force on an isolated molecule (translation invariance), per graph
    for b in range(graph.num_graphs):
        net = forces[graph.batch == b].sum(axis=0)
        assert np.max(np.abs(net)) <= 1e-12 * np.max(np.abs(forces)) * graph.num_nodes


# --- CFConv and SchNetInteraction alone ---------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", GRAPHS)
def test_cfconv_skip_path_is_bit_identical(kind, backend, rng):
    model, graph, _z, pos = _problem(kind, backend, rng)
    conv = CFConv(16, 10, 12, num_rbf=8, cutoff=3.0, backend=backend)
    params = conv.init(rng)
    f = rng.normal(size=(graph.num_nodes, 16))
    out, cache = conv.forward(params, graph, f, pos)
    assert (cache.dz1 is not None) == (backend == "numba")
    g = rng.normal(size=out.shape)
    grads, (g_f, g_pos) = conv.backward(params, cache, g)
    none, (s_f, s_pos) = conv.backward(params, cache, g, param_grads=False)
    assert none is None and grads is not None
    assert np.array_equal(s_f, g_f) and np.array_equal(s_pos, g_pos)
    assert np.max(np.abs(g_f)) > 0 and np.max(np.abs(g_pos)) > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", GRAPHS)
def test_interaction_skip_path_is_bit_identical(kind, backend, rng):
    model, graph, _z, pos = _problem(kind, backend, rng)
    block = SchNetInteraction(16, 12, num_rbf=8, cutoff=3.0, backend=backend)
    params = block.init(rng)
    h = rng.normal(size=(graph.num_nodes, 16))
    v, cache = block.forward(params, graph, h, pos)
    g = rng.normal(size=v.shape)
    grads, (g_h, g_pos) = block.backward(params, cache, g)
    none, (s_h, s_pos) = block.backward(params, cache, g, param_grads=False)
    assert none is None and set(grads) == {"conv", "W", "b"}
    assert np.array_equal(s_h, g_h) and np.array_equal(s_pos, g_pos)


# --- an independent route: finite differences ---------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("readout", ["add", "mean"])
def test_forces_match_central_differences(readout, backend, rng):
    """forces = -d(sum_b E_b)/dx by central differences (h = 1e-6) on two tiny molecules."""
    model = _model(backend, readout=readout, hidden=8, num_filters=6, num_rbf=10)
    params = model.init(rng)
    n = 7
    pos = testing.random_points(rng, n, min_dist=0.9, scale=1.2)
    pos[4:] += 20.0
    batch = np.array([0, 0, 0, 0, 1, 1, 1])
    graph = model.graph(pos, batch)
    z = rng.choice(ELEMENTS, n)
    energy, forces = model.forces(params, graph, z, pos)
    assert graph.num_edges > 0 and np.max(np.abs(forces)) > 0
    h = 1e-6
    fd = np.zeros_like(pos)
    for a in range(n):
        for k in range(3):
            d = np.zeros_like(pos)
            d[a, k] = h
            e_plus = model.forward(params, graph, z, pos + d)[0].sum()
            e_minus = model.forward(params, graph, z, pos - d)[0].sum()
            fd[a, k] = -(e_plus - e_minus) / (2 * h)
    err = np.max(np.abs(fd - forces)) / np.max(np.abs(forces))
    assert err <= 1e-6, err


# --- edge cases -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_without_edges_has_zero_forces(backend, rng):
    model = _model(backend)
    params = model.init(rng)
    n = 5
    pos = testing.random_points(rng, n, min_dist=0.8)
    z = rng.choice(ELEMENTS, n)
    graph = make_graph(np.zeros((2, 0), np.int64), n)
    energy, forces = model.forces(params, graph, z, pos)
    E, cache = model.forward(params, graph, z, pos)
    assert np.array_equal(energy, E)
    assert forces.shape == (n, 3) and np.array_equal(forces, np.zeros((n, 3)))
    _, (_, g_pos) = model.backward(params, cache, np.ones(1))
    assert np.array_equal(g_pos, np.zeros((n, 3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_without_nodes(backend, rng):
    model = _model(backend)
    params = model.init(rng)
    graph = make_graph(np.zeros((2, 0), np.int64), 0)
    energy, forces = model.forces(params, graph, np.zeros(0, np.int64), np.zeros((0, 3)))
    assert energy.shape == (graph.num_graphs,) and forces.shape == (0, 3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_isolated_atoms_feel_no_force(backend, rng):
    """Atoms with no neighbour within the cutoff get exactly 0; the others match the full path."""
    model = _model(backend)
    params = model.init(rng)
    pos = testing.random_points(rng, 12, min_dist=0.8)
    pos[10] = [100.0, 0.0, 0.0]
    pos[11] = [0.0, -100.0, 0.0]
    z = rng.choice(ELEMENTS, 12)
    graph = model.graph(pos)
    assert np.all(graph.in_degree()[10:] == 0)
    energy, forces = model.forces(params, graph, z, pos)
    _, cache = model.forward(params, graph, z, pos)
    _, (_, g_pos) = model.backward(params, cache, np.ones(1))
    assert np.array_equal(forces, -g_pos)
    assert np.array_equal(forces[10:], np.zeros((2, 3)))
    assert np.max(np.abs(forces[:10])) > 0


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, np.array([True])])
def test_param_grads_must_be_a_bool(bad, rng):
    model = _model("numpy", num_interactions=1)
    params = model.init(rng)
    pos = testing.random_points(rng, 4, min_dist=0.8)
    graph = model.graph(pos)
    z = np.array([1, 6, 8, 1])
    energy, cache = model.forward(params, graph, z, pos)
    with pytest.raises(TypeError, match="param_grads"):
        model.backward(params, cache, np.ones(1), param_grads=bad)
    inter_cache = cache.interactions[0]
    p = params["interactions"]["0"]
    with pytest.raises(TypeError, match="param_grads"):
        model.interaction.backward(p, inter_cache, np.ones((4, 16)), param_grads=bad)
    with pytest.raises(TypeError, match="param_grads"):
        model.interaction.conv.backward(p["conv"], inter_cache.conv, np.ones((4, 16)),
                                        param_grads=bad)


def test_param_grads_is_keyword_only(rng):
    model = _model("numpy", num_interactions=1)
    params = model.init(rng)
    pos = testing.random_points(rng, 4, min_dist=0.8)
    graph = model.graph(pos)
    _, cache = model.forward(params, graph, np.array([1, 6, 8, 1]), pos)
    with pytest.raises(TypeError):
        model.backward(params, cache, np.ones(1), False)
    # NumPy bools are accepted, as by check_bool elsewhere
    assert model.backward(params, cache, np.ones(1), param_grads=np.False_)[0] is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("proper", [True, False])
def test_forces_rotate_and_relabel_with_the_atoms(backend, proper, rng):
    """E(3) and permutations: forces(Q x + t, relabelled) = (Q forces(x)) relabelled, energy kept.

    The graph is rebuilt from the moved positions (a radius graph is a function of distances),
    so the check also covers a different edge order."""
    model, graph, z, pos = _problem("radius", backend, rng)
    params = model.init(rng)
    energy, forces = model.forces(params, graph, z, pos)
    Q = testing.random_orthogonal(rng, 3, proper=proper)
    perm = rng.permutation(len(z))
    moved = (pos @ Q.T + rng.normal(size=3) * 5.0)[perm]
    e2, f2 = model.forces(params, model.graph(moved), z[perm], moved)
    scale = np.max(np.abs(forces))
    assert scale > 0
    np.testing.assert_allclose(e2, energy, rtol=1e-12, atol=0)
    np.testing.assert_allclose(f2, (forces @ Q.T)[perm], rtol=0, atol=1e-12 * scale)
