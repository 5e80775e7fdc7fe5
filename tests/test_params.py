"""Parameter trees: flatten/unflatten, save/load, tree maps."""

import numpy as np
import pytest

from geomp_ref import params as P
from geomp_ref.layers.mpnn import MPNN


def test_roundtrip(tmp_path, rng):
    tree = MPNN(3, 2, hidden=4, edge_hidden=4).init(rng)
    flat = P.flatten(tree)
    assert "conv/edge_net/W0" in flat
    back = P.unflatten(flat)
    P.tree_map2(np.testing.assert_array_equal, tree, back)
    P.save(tmp_path / "p.npz", tree)
    loaded = P.load(tmp_path / "p.npz")
    P.tree_map2(np.testing.assert_array_equal, tree, loaded)
    assert P.num_params(tree) == sum(v.size for v in flat.values())
    z = P.zeros_like(tree)
    assert all(np.all(v == 0) for v in P.flatten(z).values())


def test_errors():
    with pytest.raises(ValueError, match="must not contain"):
        P.flatten({"a/b": np.zeros(1)})
    with pytest.raises(ValueError, match="structure"):
        P.tree_map2(lambda a, b: a, {"a": np.zeros(1)}, {"b": np.zeros(1)})
