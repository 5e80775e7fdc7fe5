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


def test_save_load_round_trips_exactly(tmp_path, rng):
    tree = {"w": rng.normal(size=(2, 3)), "child": {}, "layers": {"0": {"b": rng.normal(size=2)},
                                                                  "1": {}}, "s": np.float64(2.5)}
    path = tmp_path / "params"  # no suffix: the file is written under exactly this name
    P.save(path, tree)
    assert path.exists() and not (tmp_path / "params.npz").exists()
    back = P.load(path)
    assert back.keys() == tree.keys() and back["child"] == {} and back["layers"]["1"] == {}
    np.testing.assert_array_equal(back["w"], tree["w"])
    np.testing.assert_array_equal(back["layers"]["0"]["b"], tree["layers"]["0"]["b"])
    assert back["s"].shape == () and back["s"] == 2.5
    P.save(str(tmp_path / "empty.npz"), {})
    assert P.load(str(tmp_path / "empty.npz")) == {}


def test_save_and_load_refuse_junk(tmp_path):
    bad = [
        ({"a": None}, TypeError, r"params\['a'\] must be a float array"),
        ({"a": [np.zeros(2)]}, TypeError, r"params\['a'\]"),
        ({"a": {"b": "text"}}, TypeError, r"params\['a/b'\]"),
        ({"a": np.array(["x"])}, TypeError, "real numbers"),
        ({"a": True}, TypeError, r"params\['a'\]"),
        ({1: np.zeros(2)}, TypeError, "key 1 must be a non-empty str"),
        ({"a/b": np.zeros(2)}, ValueError, "must not contain"),
        ([np.zeros(2)], TypeError, "params must be a dict"),
    ]
    for tree, exc, words in bad:
        with pytest.raises(exc, match=words):
            P.save(tmp_path / "x.npz", tree)
    with pytest.raises(TypeError, match="path"):
        P.save(None, {"a": np.zeros(1)})
    np.savez(tmp_path / "c.npz", a=np.ones(2, complex))
    with pytest.raises(ValueError, match="'a' holds dtype complex128"):
        P.load(tmp_path / "c.npz")
    with pytest.raises(FileNotFoundError):
        P.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="runs through the leaf 'b'"):
        P.unflatten({"a/b": np.zeros(1), "a/b/c": np.zeros(1)})
    with pytest.raises(ValueError, match="both a leaf and a sub-tree"):
        P.unflatten({"a/b/c": np.zeros(1), "a/b": np.zeros(1)})
