"""Golden vectors: an outside loader rebuilds every stored problem and reruns the library.

The loader here reads only ``manifest.json`` and the ``.npz`` files (NumPy's own reader, its own
rebuilding of the params tree) and shares no code with the writer in ``geomp_ref.golden``; it
expects outputs bit for bit, VJPs to 1e-12 and the symmetry record to the case's ``sym_atol``.
The files are written once per session; every registered case is checked.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from geomp_ref import cases as registry
from geomp_ref import golden
from geomp_ref.graph import make_graph

CASE_NAMES = [c.name for c in registry.cases()]
#: Cases written a second time in the default run to check byte identity (all under -m slow).
REPEAT = ("Linear/biases", "EGNNLayer/gcl-vel-att-norm-tanh", "SchNet/add", "LieConv/SE3-sum",
          "GRUCell/torch")


@pytest.fixture(scope="session")
def golden_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden")
    golden.write(out)
    return out


@pytest.fixture(scope="session")
def manifest(golden_dir) -> dict:
    return json.loads((golden_dir / "manifest.json").read_text(encoding="utf-8"))


# --- the outside loader ----------------------------------------------------------------------


def load_problem(directory: Path, info: dict):
    """``(graph, inputs, params, data)`` from one stored problem, rebuilt from the file."""
    data = dict(np.load(directory / info["file"], allow_pickle=False))
    graph = None
    if "graph/edge_index" in data:
        graph = make_graph(data["graph/edge_index"], int(data["graph/num_nodes"]),
                           data["graph/batch"], int(data["graph/num_graphs"]))
    inputs = tuple(data.get(f"inputs/{name}") for name in info["inputs"])
    params: dict = {}
    for path in info["empty_param_subtrees"]:
        node = params
        for part in path.split("/"):
            node = node.setdefault(part, {})
    for key, value in data.items():
        if key.startswith("params/"):
            *parents, leaf = key.split("/")[1:]
            node = params
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return graph, inputs, params, data


def leaves(tree, prefix=""):
    for k, v in tree.items():
        if isinstance(v, dict):
            yield from leaves(v, f"{prefix}{k}/")
        else:
            yield f"{prefix}{k}", v


def rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    scale = np.max(np.abs(b))
    return float(np.max(np.abs(a - b)) / (scale if scale > 0 else 1.0))


def run(layer, params, graph, inputs):
    return layer.forward(params, *inputs) if graph is None else layer.forward(
        params, graph, *inputs)


def entry_of(manifest, name):
    found = [e for e in manifest["cases"] if e["name"] == name]
    assert found, f"{name} missing from the manifest (failed: {manifest['failed']})"
    return found[0]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_outside_loader_reproduces_case(golden_dir, manifest, name):
    case = registry.get_case(name)
    entry = entry_of(manifest, name)
    assert entry["group"] == case.group
    assert entry["input_kinds"] == list(case.input_kinds)
    assert entry["output_kinds"] == list(case.output_kinds)
    expected = ["random"] + (["molecule"] if case.extra.get("from_molecule") else [])
    assert [p["problem"] for p in entry["problems"]] == expected
    for info in entry["problems"]:
        graph, inputs, params, data = load_problem(golden_dir, info)
        assert (graph is None) == (not case.takes_graph)
        for name_, x in zip(info["inputs"], inputs):
            assert (x is None) == (name_ in info["none_inputs"])
        out, cache = run(case.layer, params, graph, inputs)
        outs = out if info["output_is_tuple"] else (out,)
        assert isinstance(out, tuple) == info["output_is_tuple"]
        assert len(outs) == info["num_outputs"]
        for k, o in enumerate(outs):
            stored = data[f"outputs/{k}"]
            assert o.shape == stored.shape and np.array_equal(o, stored), f"outputs/{k}"
        cots = tuple(data[f"cotangents/{k}"] for k in range(len(outs)))
        grad_params, grad_inputs = case.layer.backward(
            params, cache, cots if info["output_is_tuple"] else cots[0])
        got = dict(leaves(grad_params))
        assert set(got) == {k[len("grad_params/"):] for k in data if k.startswith("grad_params/")}
        for path, g in got.items():
            assert rel(g, data[f"grad_params/{path}"]) <= 1e-12, path
        for name_, g in zip(info["inputs"], grad_inputs):
            key = f"grad_inputs/{name_}"
            assert (g is None) == (key not in data), key
            if g is not None:
                assert rel(g, data[key]) <= 1e-12, key
        sym_in = tuple(data.get(f"symmetry/inputs/{n}") for n in info["inputs"])
        sym_out = run(case.layer, params, graph, sym_in)[0]
        for k, o in enumerate(sym_out if info["output_is_tuple"] else (sym_out,)):
            assert rel(o, data[f"symmetry/outputs/{k}"]) <= entry["sym_atol"], f"symmetry {k}"


# --- format ----------------------------------------------------------------------------------


def test_manifest_covers_every_case_with_hashes(golden_dir, manifest):
    assert manifest["failed"] == []
    assert [e["name"] for e in manifest["cases"]] == CASE_NAMES
    assert manifest["format_version"] == 1
    for key in ("edge_direction", "irreps", "rotations", "lie_groups", "symmetry_record"):
        assert len(manifest["conventions"][key]) > 80
    for e in manifest["cases"]:
        assert {"name", "file", "sha256", "group", "input_kinds", "output_kinds"} <= set(e)
        assert (e["file"], e["sha256"]) == (e["problems"][0]["file"], e["problems"][0]["sha256"])
        for info in e["problems"]:
            blob = (golden_dir / info["file"]).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == info["sha256"]


def test_arrays_are_float64_or_documented_integers(golden_dir, manifest):
    integer_keys = {"graph/edge_index", "graph/num_nodes", "graph/batch", "graph/num_graphs"}
    seen_label = False
    for e in manifest["cases"]:
        for info in e["problems"]:
            with np.load(golden_dir / info["file"]) as data:
                for k in data.files:
                    dt = data[k].dtype
                    if k in integer_keys:
                        assert dt == np.dtype("<i8"), k
                    elif dt.kind in "iu":
                        assert k.startswith(("inputs/", "symmetry/inputs/")), k
                        seen_label = True
                    else:
                        assert dt == np.dtype("<f8"), (e["name"], k, dt)
                assert ("graph/edge_index" in data.files) == e["takes_graph"]
                if e["takes_graph"]:
                    assert data["graph/num_nodes"].shape == data["graph/num_graphs"].shape == ()
    assert seen_label  # SchNet's atomic numbers stay integers


def test_zip_entries_carry_no_timestamp(golden_dir, manifest):
    info = entry_of(manifest, "EGNNLayer/gcl")["problems"][1]
    assert info["molecule"] == "CH3CH2OH"
    with zipfile.ZipFile(golden_dir / info["file"]) as zf:
        dates = {z.date_time for z in zf.infolist()}
        names = [z.filename for z in zf.infolist()]
    assert dates == {(1980, 1, 1, 0, 0, 0)}
    assert names[:4] == ["graph/edge_index.npy", "graph/num_nodes.npy", "graph/batch.npy",
                         "graph/num_graphs.npy"]


def test_symmetry_record_uses_a_reflection_for_E3(golden_dir, manifest):
    info = entry_of(manifest, "EGNNLayer/gcl")["problems"][0]
    with np.load(golden_dir / info["file"]) as data:
        Q, t = data["symmetry/Q"], data["symmetry/t"]
        assert np.allclose(Q @ Q.T, np.eye(3), atol=1e-14)
        assert np.linalg.det(Q) < 0 and np.linalg.norm(t) > 0
        np.testing.assert_allclose(data["symmetry/inputs/x"], data["inputs/x"] @ Q.T + t,
                                   rtol=0, atol=1e-14)


def _same_bytes(a: Path, b: Path, files) -> None:
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_two_runs_are_byte_identical(golden_dir, tmp_path):
    golden.write(tmp_path / "a", list(REPEAT))
    golden.write(tmp_path / "b", list(REPEAT))
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len(files) > len(REPEAT)
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    _same_bytes(tmp_path / "a", tmp_path / "b", files)
    _same_bytes(tmp_path / "a", golden_dir, [f for f in files if f != "manifest.json"])


@pytest.mark.slow
def test_full_rerun_is_byte_identical(golden_dir, tmp_path):
    golden.write(tmp_path)
    files = sorted(p.name for p in golden_dir.iterdir())
    assert files == sorted(p.name for p in tmp_path.iterdir())
    _same_bytes(golden_dir, tmp_path, files)


# --- command line ----------------------------------------------------------------------------


def test_cli_writes_and_checks(tmp_path, capsys):
    from geomp_ref import cli

    out = tmp_path / "g"
    assert cli.main(["golden", "--out", str(out), "--case", "Linear/biases"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["name"] for e in manifest["cases"]] == ["Linear/biases"]
    assert golden.main(["--check", str(out)]) == 0
    # tamper with one stored output: --check must notice (new hash in the manifest too)
    info = manifest["cases"][0]["problems"][0]
    data = dict(np.load(out / info["file"]))
    data["outputs/0"] = data["outputs/0"] + 1e-15 * np.abs(data["outputs/0"]).max()
    from geomp_ref.golden._zip import npz_bytes

    blob = npz_bytes(data)
    (out / info["file"]).write_bytes(blob)
    assert golden.main(["--check", str(out)]) == 1
    info["sha256"] = hashlib.sha256(blob).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert golden.main(["--check", str(out)]) == 1
    assert "outputs/0 differs" in capsys.readouterr().out


def test_cli_usage_errors(tmp_path, capsys):
    assert golden.main(["--out", str(tmp_path), "--case", "NoSuchLayer/xyz"]) == 2
    assert "matches no case" in capsys.readouterr().err
    assert golden.main([]) == 2
