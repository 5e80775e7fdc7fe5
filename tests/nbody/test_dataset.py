"""NBodyDataset: the published loader's semantics, graphs in the published edge order, batching."""

from __future__ import annotations

import numpy as np
import pytest

from geomp_ref import Graph
from geomp_ref.nbody import GeneratorConfig, NBodyDataset, complete_edges, file_name, write_dataset

N = 5


def _write_fake(folder, sizes=None, frames=49, suffix="small"):
    """Files in the published layout whose values encode (sim, frame, coord, particle)."""
    sizes = sizes or {"train": 7, "valid": 4, "test": 3}
    rng = np.random.default_rng(0)
    for split, s in sizes.items():
        sim, t, d, i = np.meshgrid(np.arange(s), np.arange(frames), np.arange(3), np.arange(N),
                                   indexing="ij")
        loc = sim * 1000.0 + t * 10.0 + d + i * 0.1 + 1e-9  # 1e-9: not representable in float32
        q = rng.choice([-1.0, 1.0], size=(s, N, 1))
        np.save(folder / file_name("loc", split, suffix=suffix), loc)
        np.save(folder / file_name("vel", split, suffix=suffix), -loc)
        np.save(folder / file_name("edges", split, suffix=suffix), q * q.transpose(0, 2, 1))
        np.save(folder / file_name("charges", split, suffix=suffix), q)
    return folder


@pytest.fixture
def data_dir(tmp_path):
    return _write_fake(tmp_path)


def test_published_sample_semantics(data_dir):
    ds = NBodyDataset(data_dir, "train")
    loc = np.load(data_dir / "loc_train_charged5_initvel1small.npy")
    edges = np.load(data_dir / "edges_train_charged5_initvel1small.npy")
    assert len(ds) == 7 and ds.frames == (30, 40)
    for s in range(7):
        for i in range(N):
            for d in range(3):  # frame 30 in, frame 40 out, (coord, particle) -> (particle, coord)
                assert ds.x[s, i, d] == loc[s, 30, d, i]
                assert ds.v[s, i, d] == -loc[s, 30, d, i]
                assert ds.target[s, i, d] == loc[s, 40, d, i]
        pairs = [(i, j) for i in range(N) for j in range(N) if i != j]  # the published loops
        assert ds.edge_attr[s, :, 0].tolist() == [edges[s, i, j] for i, j in pairs]


def test_partitions_max_samples_and_frames(data_dir):
    assert len(NBodyDataset(data_dir, "val")) == 4  # read from the *_valid_* files
    assert len(NBodyDataset(data_dir, "test")) == 3
    ds = NBodyDataset(data_dir, "train", max_samples=3, frames=(6, 8))
    assert len(ds) == 3 and ds.frames == (6, 8)
    assert ds.x[2, 4, 1] == 2 * 1000.0 + 6 * 10.0 + 1 + 0.4 + 1e-9
    assert len(NBodyDataset(data_dir, "train", max_samples=100)) == 7


def test_float32_rounding_like_torch_tensor(data_dir):
    ds64 = NBodyDataset(data_dir, "train")
    ds32 = NBodyDataset(data_dir, "train", float32=True)
    assert ds32.x.dtype == np.float64
    np.testing.assert_array_equal(ds32.x, ds64.x.astype(np.float32))
    assert not np.array_equal(ds32.x, ds64.x)


def test_edge_order_is_the_published_one():
    ei = complete_edges(N, 3)
    expected = []
    for b in range(3):  # published get_edges: rows i + n b, cols j + n b, graph after graph
        expected += [(j + N * b, i + N * b) for i in range(N) for j in range(N) if i != j]
    assert list(zip(ei[0].tolist(), ei[1].tolist())) == expected


def test_batch_is_a_graph_of_simulations(data_dir):
    ds = NBodyDataset(data_dir, "train")
    b = ds.batch([4, 1])
    assert isinstance(b.graph, Graph)
    assert b.graph.num_nodes == 10 and b.graph.num_graphs == 2 and b.graph.num_edges == 40
    np.testing.assert_array_equal(b.graph.batch, np.repeat([0, 1], N))
    np.testing.assert_array_equal(b.x[:N], ds.x[4])
    np.testing.assert_array_equal(b.target[N:], ds.target[1])
    np.testing.assert_array_equal(b.edge_attr[:, 0], np.concatenate([ds.edge_attr[4, :, 0],
                                                                     ds.edge_attr[1, :, 0]]))
    np.testing.assert_array_equal(b.charges[:, 0], np.concatenate([ds.charges[4, :, 0],
                                                                   ds.charges[1, :, 0]]))
    # edge attribute = q_receiver q_sender of the graph's own edges
    q = b.charges[:, 0]
    np.testing.assert_array_equal(b.edge_attr[:, 0], q[b.graph.dst] * q[b.graph.src])


def test_training_batches_shuffle_and_drop_last(data_dir):
    ds = NBodyDataset(data_dir, "train")
    epoch = list(ds.batches(3, np.random.default_rng(5)))
    assert [b.index.size for b in epoch] == [3, 3]  # 7 samples: the incomplete batch is dropped
    again = list(ds.batches(3, np.random.default_rng(5)))
    assert all(np.array_equal(a.index, b.index) for a, b in zip(epoch, again))
    seen = np.concatenate([b.index for b in epoch])
    assert len(set(seen.tolist())) == 6
    rng = np.random.default_rng(1)
    orders = {tuple(np.concatenate([b.index for b in ds.batches(3, rng)])) for _ in range(10)}
    assert len(orders) > 1  # a new permutation each epoch from the same generator
    assert ds.num_batches(3) == 2


def test_evaluation_batches_are_ordered_and_complete(data_dir):
    ds = NBodyDataset(data_dir, "val")
    batches = list(ds.batches(3))
    assert [b.index.tolist() for b in batches] == [[0, 1, 2], [3]]
    assert ds.num_batches(3) == 2


def test_errors_are_named(data_dir, tmp_path):
    with pytest.raises(ValueError, match="partition"):
        NBodyDataset(data_dir, "valid")
    with pytest.raises(FileNotFoundError, match="nbody generate"):
        NBodyDataset(tmp_path / "nothing", "train")
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        NBodyDataset(data_dir, "train", max_samples=0)
    with pytest.raises(ValueError, match="frames\\[1\\] must be <= 48"):
        NBodyDataset(data_dir, "train", frames=(30, 49))
    with pytest.raises(ValueError, match="needs rng"):
        next(NBodyDataset(data_dir, "train").batches(2))
    with pytest.raises(IndexError, match="index must lie"):
        NBodyDataset(data_dir, "test").batch([3])


def test_unknown_suffix_needs_frames(tmp_path):
    write_dataset(tmp_path, GeneratorConfig(num_train=2, num_valid=1, num_test=1, length=300,
                                            length_test=300, suffix="tiny"))
    with pytest.raises(ValueError, match="pass frames"):
        NBodyDataset(tmp_path, "train", suffix="tiny")
    ds = NBodyDataset(tmp_path, "train", suffix="tiny", frames=(0, 1))
    loc = np.load(tmp_path / "loc_train_charged5_initvel1tiny.npy")
    np.testing.assert_array_equal(ds.target, loc[:, 1].transpose(0, 2, 1))
