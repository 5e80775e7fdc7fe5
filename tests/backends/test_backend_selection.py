"""Backend selection: which module ``get`` picks, errors naming the extra, lazy numba import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from geomp_ref import backends
from geomp_ref.backends import numpy_backend

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ("scatter_sum", "scatter_mean", "scatter_max", "aggregate", "weighted_aggregate",
           "edge_product")


def _python(code: str, env_extra: dict | None = None, drop=()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False)


def test_numpy_is_the_reference_module():
    assert backends.get("numpy") is numpy_backend
    assert backends.get() is numpy_backend


def test_numba_picks_numba_cpu():
    mod = backends.get("numba")
    assert mod.__name__ == "geomp_ref.backends.numba_cpu"
    for name in KERNELS:
        assert callable(getattr(mod, name)), name


def test_available_lists_numpy_and_numba_first():
    names = backends.available()
    assert names[:2] == ["numpy", "numba"]
    assert set(names) <= set(backends.NAMES)


def test_cuda_module_when_available():
    try:
        mod = backends.get("cuda")
    except RuntimeError:
        pytest.skip("no GPU and NUMBA_ENABLE_CUDASIM unset")
    assert mod.__name__ == "geomp_ref.backends.numba_cuda"
    assert mod.is_available()
    for name in KERNELS:
        assert callable(getattr(mod, name)), name


def test_cudasim_makes_cuda_available():
    r = _python(
        "from geomp_ref import backends; m = backends.get('cuda'); print(m.__name__); "
        "print(backends.available())",
        {"NUMBA_ENABLE_CUDASIM": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert "geomp_ref.backends.numba_cuda" in r.stdout
    assert "'cuda'" in r.stdout


@pytest.mark.parametrize("name", ["torch", "NumPy", "", None, 3])
def test_unknown_name_is_a_value_error(name):
    with pytest.raises(ValueError, match="backend must be one of"):
        backends.get(name)


def test_unavailable_cuda_names_the_extra(monkeypatch):
    # A GPU-less machine without CUDASIM: is_available() is False (forced here, so that the
    # test also runs on GPU machines and in CI).
    from geomp_ref.backends import numba_cuda

    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setattr(numba_cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"geomp-ref\[cuda\]") as info:
        backends.get("cuda")
    assert "'cuda'" in str(info.value) and "NUMBA_ENABLE_CUDASIM" in str(info.value)


def test_missing_numba_cuda_package_names_the_extra(monkeypatch):
    monkeypatch.setattr(backends, "_cache", {})
    monkeypatch.setitem(sys.modules, "geomp_ref.backends.numba_cuda", None)  # import -> ImportError
    with pytest.raises(RuntimeError, match=r"geomp-ref\[cuda\]"):
        backends.get("cuda")


def test_unavailable_without_gpu_or_sim_reason():
    r = _python(
        "from geomp_ref.backends import numba_cuda as m; print(m.is_available()); "
        "print(repr(m.unavailable_reason()))",
        drop=("NUMBA_ENABLE_CUDASIM",),
    )
    assert r.returncode == 0, r.stderr
    avail, reason = r.stdout.split("\n")[:2]
    assert (avail == "True") == (reason == "''")


def test_import_does_not_import_numba():
    r = _python(
        "import sys, geomp_ref, geomp_ref.backends as b; b.get('numpy'); "
        "print('numba' in sys.modules)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_numba_cache_dir_defaults_outside_the_tree(tmp_path):
    r = _python(
        "import os, numba; from geomp_ref import backends; backends.get('numba'); "
        "print(os.environ['NUMBA_CACHE_DIR']); print(numba.config.CACHE_DIR)",
        {"HOME": str(tmp_path)},
        drop=("NUMBA_CACHE_DIR",),
    )
    assert r.returncode == 0, r.stderr
    want = str(tmp_path / ".cache" / "geomp_ref" / "numba")
    assert r.stdout.split("\n")[:2] == [want, want]


def test_user_numba_cache_dir_is_kept(tmp_path):
    r = _python(
        "import os; from geomp_ref import backends; backends.get('numba'); "
        "print(os.environ['NUMBA_CACHE_DIR'])",
        {"NUMBA_CACHE_DIR": str(tmp_path / "mine")},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(tmp_path / "mine")
