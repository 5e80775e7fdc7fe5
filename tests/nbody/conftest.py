"""Fixtures of the N-body training tests: a tiny generated set and its frames."""

from __future__ import annotations

import pytest

from geomp_ref.nbody import GeneratorConfig, write_dataset


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Six training, three validation and two test systems of 300 steps (two stored frames)."""
    folder = tmp_path_factory.mktemp("tiny")
    write_dataset(folder, GeneratorConfig(num_train=6, num_valid=3, num_test=2, length=300,
                                          length_test=300, seed=43, suffix="t"))
    return folder


@pytest.fixture
def first_frames(monkeypatch):
    """The published frames 30 -> 40 replaced by 0 -> 1 (the tiny set stores two frames)."""
    monkeypatch.setattr("geomp_ref.nbody.dataset.default_frames", lambda suffix: (0, 1))
