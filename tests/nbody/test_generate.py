"""The vectorised N-body generator against a one-simulation test double and the published files.

Bit-identity is checked two ways: against ``nbody_reference.py`` (plain per-simulation code
written from the published semantics), and against the sha256 of files that the published
generator itself wrote (``published_sha256.json`` records the commands).
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbody_reference as ref

from geomp_ref.nbody import (
    GeneratorConfig,
    SimulationError,
    file_name,
    generate,
    simulate,
    write_dataset,
)
from geomp_ref.nbody.generate import KINDS, SPLITS

HERE = Path(__file__).resolve().parent
PUBLISHED = json.loads((HERE / "published_sha256.json").read_text())


def _npy_sha(array) -> str:
    buf = io.BytesIO()
    np.save(buf, array)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _assert_same_bits(ours, theirs):
    for split in SPLITS:
        for kind in KINDS:
            a, b = ours[split][kind], theirs[split][kind]
            assert a.dtype == b.dtype == np.float64, (split, kind)
            assert a.shape == b.shape, (split, kind)
            assert a.tobytes() == b.tobytes(), f"{kind} {split} differs in some bit"


def _ref_args(config: GeneratorConfig):
    return dict(num_train=config.num_train, num_valid=config.num_valid, num_test=config.num_test,
                length=config.length, length_test=config.length_test,
                sample_freq=config.sample_freq, n_balls=config.n_balls, seed=config.seed,
                initial_vel=config.initial_vel)


@pytest.mark.parametrize("config, block", [
    (GeneratorConfig(num_train=5, num_valid=3, num_test=2, length=600, length_test=400,
                     seed=11), 2),
    (GeneratorConfig(num_train=4, num_valid=2, num_test=1, length=300, length_test=300,
                     sample_freq=50, n_balls=2, seed=3, initial_vel=False), 3),
    (GeneratorConfig(num_train=3, num_valid=1, num_test=1, length=200, length_test=200,
                     n_balls=12, seed=9), 1000),
])
def test_vectorised_matches_one_simulation_double(config, block):
    _assert_same_bits(generate(config, block=block), ref.reference_dataset(**_ref_args(config)))


def test_block_size_does_not_change_bits():
    config = GeneratorConfig(num_train=7, num_valid=2, num_test=2, length=300, length_test=300,
                             seed=5)
    base = generate(config, block=1)
    for block in (2, 3, 11):
        _assert_same_bits(generate(config, block=block), base)


def _platform_matches() -> bool:
    return hashlib.sha256(ref.force_probe()).hexdigest() == PUBLISHED["probe_sha256"]


@pytest.mark.parametrize("name", sorted(PUBLISHED["configs"]))
def test_matches_files_written_by_the_published_generator(name, tmp_path):
    if not _platform_matches():
        pytest.skip("this machine's BLAS dot kernel or libm pow rounds differently from the "
                    "machine that recorded the published hashes (see published_sha256.json)")
    entry = PUBLISHED["configs"][name]
    config = GeneratorConfig(**entry["config"])
    paths = write_dataset(tmp_path, config)
    got = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    assert got == entry["sha256"], f"published command: {entry['command']}"


def test_double_matches_a_published_configuration():
    # the test double itself is checked against the published bytes once
    if not _platform_matches():
        pytest.skip("platform rounds differently (see published_sha256.json)")
    entry = PUBLISHED["configs"]["A"]
    cfg = entry["config"]
    data = ref.reference_dataset(**{k: v for k, v in cfg.items() if k != "suffix"})
    for split in SPLITS:
        for kind in KINDS:
            fname = file_name(kind, split, cfg["n_balls"], cfg["initial_vel"], cfg["suffix"])
            assert _npy_sha(data[split][kind]) == entry["sha256"][fname]


def test_file_names_shapes_and_dtypes(tmp_path):
    config = GeneratorConfig(num_train=3, num_valid=2, num_test=1, length=400, length_test=300,
                             seed=1, suffix="small")
    paths = write_dataset(tmp_path / "new" / "dir", config)
    names = sorted(Path(p).name for p in paths)
    expected = sorted(f"{k}_{s}_charged5_initvel1small.npy" for k in KINDS for s in SPLITS)
    assert names == expected
    loc = np.load(tmp_path / "new" / "dir" / "loc_train_charged5_initvel1small.npy")
    assert loc.shape == (3, 3, 3, 5) and loc.dtype == np.float64
    assert np.load(tmp_path / "new/dir/vel_test_charged5_initvel1small.npy").shape == (1, 2, 3, 5)
    edges = np.load(tmp_path / "new/dir/edges_valid_charged5_initvel1small.npy")
    charges = np.load(tmp_path / "new/dir/charges_valid_charged5_initvel1small.npy")
    assert edges.shape == (2, 5, 5) and charges.shape == (2, 5, 1)
    assert set(np.unique(charges)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(edges, charges * charges.transpose(0, 2, 1))


def test_numpy_global_random_state_is_untouched():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    generate(GeneratorConfig(num_train=2, num_valid=1, num_test=1, length=200, length_test=200))
    assert np.array_equal(np.random.get_state()[1], before)


@pytest.mark.parametrize("n", [*range(1, 20), 24, 64, 127, 128, 129, 130, 200, 300])
def test_row_sum_is_numpys_reduction_order(n):
    rng = np.random.default_rng(n)
    # wide dynamic range and signed zeros make every reordering visible
    rows = rng.standard_normal((50, n)) * 10.0 ** rng.integers(-8, 9, size=(50, n))
    rows[0] = -0.0
    rows[1, ::2] = 0.0
    got = simulate.row_sum(lambda k: rows[:, k].copy(), n)
    want = rows.sum(axis=-1)
    assert got.tobytes() == want.tobytes()


def test_initial_reflection_and_its_limits():
    loc = np.array([[[5.5, -7.0, 1.0]], [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]]).reshape(1, 3, 3)
    vel = np.full((1, 3, 3), 0.25)
    new_loc, new_vel = simulate.reflect_into_box(loc, vel)
    np.testing.assert_array_equal(new_loc[0, 0], [4.5, -3.0, 1.0])
    np.testing.assert_array_equal(new_vel[0, 0], [-0.25, 0.25, 0.25])
    loc[0, 1, 2] = 15.0
    with pytest.raises(SimulationError, match="simulation 7"):
        simulate.reflect_into_box(loc, vel, first_sim=7)


def test_negligible_forces_are_refused_like_the_published_assertion():
    loc = np.zeros((2, 3, 3))
    loc[:, 0] = [0.0, 1.0, 2.0]
    loc[1, 0, 2] = 1e4  # simulation 1: |q_i q_j| / r^3 = 1e-12 for a far particle
    coupling = np.ones((2, 3))
    simulate.forces(loc[:1], coupling[:1], check_first_sim=0)
    with pytest.raises(SimulationError, match="simulation 1"):
        simulate.forces(loc, coupling, check_first_sim=0)


@pytest.mark.parametrize("field, value, exc, match", [
    ("num_train", 0, ValueError, "GeneratorConfig.num_train must be >= 1"),
    ("num_valid", 2.0, TypeError, "GeneratorConfig.num_valid must be an int"),
    ("length", 150, ValueError, "GeneratorConfig.length must be a multiple of sample_freq"),
    ("length_test", 100, ValueError, "at least 2 \\* sample_freq"),
    ("sample_freq", 0, ValueError, "GeneratorConfig.sample_freq must be >= 1"),
    ("n_balls", 1, ValueError, "GeneratorConfig.n_balls must be >= 2"),
    ("seed", 2**32, ValueError, "GeneratorConfig.seed must be <="),
    ("seed", -1, ValueError, "GeneratorConfig.seed must be >= 0"),
    ("initial_vel", 1, TypeError, "initial_vel"),
    ("suffix", "a/b", ValueError, "GeneratorConfig.suffix"),
    ("suffix", 3, TypeError, "GeneratorConfig.suffix must be a str"),
])
def test_bad_arguments_are_named(field, value, exc, match):
    with pytest.raises(exc, match=match):
        GeneratorConfig(**{field: value})


def test_generate_refuses_a_non_config():
    with pytest.raises(TypeError, match="config must be a GeneratorConfig"):
        generate({"num_train": 1})
    with pytest.raises(ValueError, match="block must be >= 1"):
        generate(GeneratorConfig(num_train=1, num_valid=1, num_test=1, length=200,
                                 length_test=200), block=0)


@pytest.mark.slow
def test_larger_run_matches_double():
    config = GeneratorConfig(num_train=40, num_valid=10, num_test=10, length=5000, seed=43,
                             suffix="small")
    _assert_same_bits(generate(config, block=16), ref.reference_dataset(**_ref_args(config)))


@pytest.mark.slow
def test_full_nbody_small_set_matches_the_published_files(tmp_path):
    # about 100 s of CPU: the whole "nbody_small" set (10000/2000/2000, seed 43)
    if not _platform_matches():
        pytest.skip("platform rounds differently (see published_sha256.json)")
    entry = PUBLISHED["full_nbody_small"]
    paths = write_dataset(tmp_path, GeneratorConfig(**entry["config"]))
    got = {Path(p).name: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}
    assert got == entry["sha256"], f"published command: {entry['command']}"
