"""`geomp-ref verify` end to end: table, JSON, exit codes, filters."""

import json
import subprocess
import sys

from geomp_ref import cli


def test_verify_subset_passes(capsys):
    rc = cli.main(["verify", "--case", "DistanceMPNN", "--case", "NNConv", "--backends", "numba",
                   "--molecules", "1"])
    out = capsys.readouterr()
    assert rc == 0
    assert "DistanceMPNN/silu" in out.out and "PASS" in out.out
    assert "passed, 0 failed" in out.out
    assert "[1/" in out.err and "] NNConv/sum: PASS" in out.err  # a progress line per case
    assert "molecules: ['H2O']" in out.err
    # each measured value is followed by its tolerance; the legend names every group used
    row = next(line for line in out.out.splitlines() if line.startswith("DistanceMPNN/silu"))
    assert "(1e-07)" in row and "(1e-12)" in row
    assert "backends (tol 1e-13)" in out.out
    legend = out.out.split("Columns:")[1]
    for word in ("vjp:", "symmetry:", "backends:", "time:"):
        assert word in legend
    groups = {line.split()[1] for line in out.out.splitlines()
              if line.startswith(("DistanceMPNN", "NNConv"))}
    for g in groups:
        assert f"\n  {g} " in legend


def test_verify_numpy_only_passes_without_backend_rows(capsys):
    """--backends numpy runs the oracle alone: the cases pass, with no backend column to fill."""
    rc = cli.main(["verify", "--case", "DistanceMPNN", "--backends", "numpy", "--json",
                   "--molecules", "0"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["failed"] == [] and data["results"]
    assert all(r["passed"] and r["backends"] == {} for r in data["results"])


def test_verify_json(capsys):
    rc = cli.main(["verify", "--case", "RelativePositionMPNN", "--json", "--molecules", "0"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["failed"] == []
    r = data["results"][0]
    assert r["group"] == "T3" and r["vjp"] < 1e-7 and r["symmetry"] < 1e-12
    assert r["tolerances"] == {"vjp": 1e-7, "symmetry": 1e-12, "backends": 1e-13}


def test_verify_fails_on_broken_case(monkeypatch, capsys):
    """A case whose claim is false (RelativePositionMPNN claimed E3) must fail verify."""
    import dataclasses

    from geomp_ref import cases

    real = cases.cases

    def patched(family=None, *, errors=None):
        out = []
        for c in real(family, errors=errors):
            if c.name.startswith("RelativePositionMPNN"):
                c = dataclasses.replace(c, group="E3")
            out.append(c)
        return out

    monkeypatch.setattr(cases, "cases", patched)
    rc = cli.main(["verify", "--case", "RelativePositionMPNN", "--molecules", "0"])
    assert rc == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_usage_and_unknown(capsys):
    assert cli.main(["--help"]) == 0
    assert cli.main(["frobnicate"]) == 2
    assert cli.main(["verify", "--case", "NoSuchLayer"]) == 2
    assert cli.main(["verify", "--list"]) == 0
    assert "MPNN/paper" in capsys.readouterr().out


def test_console_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "geomp_ref.cli", "verify", "--case", "NNConv/sum"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "NNConv/sum" in r.stdout


def test_import_is_lazy():
    code = ("import sys, geomp_ref, geomp_ref.ops, geomp_ref.o3, geomp_ref.testing; "
            "print('numba' in sys.modules, 'sympy' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["False", "False"], r.stdout + r.stderr


def test_version_and_help_list_every_command_and_option(capsys):
    from geomp_ref import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"geomp-ref {__version__}"
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for command in ("verify", "golden", "nbody"):
        assert f"    {command} " in text
    assert cli.main(["verify", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--case", "None"), ("--json", "False"), ("--backends", "None"),
                            ("--molecules", "3"), ("--list", "False")):
        assert option in text
        after = text.split(option, 2)[-1]
        assert f"(default: {default})" in after.split("--")[0], option
    assert "H2O, CH3CH2OH, C6H6" in text  # the fixed molecule order
    assert cli.main([]) == 2


def _one_line_error(capsys, argv, *words):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert all(w in err[-1] for w in words), err


def test_bad_options_give_one_line_errors(capsys, monkeypatch):
    _one_line_error(capsys, ["verify", "--backends", "tpu"], "--backends", "tpu", "numba")
    _one_line_error(capsys, ["verify", "--backends", ","], "--backends")
    _one_line_error(capsys, ["verify", "--molecules", "-1"], "--molecules", "between 0 and 12")
    _one_line_error(capsys, ["verify", "--molecules", "13"], "--molecules", "got 13")
    _one_line_error(capsys, ["verify", "--molecules", "two"], "--molecules", "integer")

    from geomp_ref import backends

    real_get = backends.get

    def no_gpu(name="numpy"):
        if name == "cuda":
            raise RuntimeError("backend 'cuda' is not available here (no GPU); it needs ...")
        return real_get(name)

    monkeypatch.setattr(backends, "get", no_gpu)
    _one_line_error(capsys, ["verify", "--backends", "numba,cuda", "--case", "NNConv"],
                    "--backends", "cuda", "NUMBA_ENABLE_CUDASIM=1", "drop 'cuda'")


def test_molecules_follow_the_documented_order():
    from geomp_ref import molecules

    assert sorted(cli.MOLECULE_ORDER) == sorted(m.name for m in molecules.load())
    assert cli.MOLECULE_ORDER[:3] == ("H2O", "CH3CH2OH", "C6H6")


def test_subcommands_are_loaded_on_demand(capsys, monkeypatch):
    monkeypatch.setitem(cli._COMMANDS, "golden", ("geomp_ref._no_such_module", "gone"))
    _one_line_error(capsys, ["golden", "--help"], "not available in this installation")
    assert cli.main(["nbody", "--help"]) == 0  # argv after the command goes to its own main
    assert "generate" in capsys.readouterr().out


def test_a_broken_family_is_reported(capsys, monkeypatch):
    from geomp_ref import cases

    real = cases.cases

    def patched(family=None, *, errors=None):
        out = real(family, errors=errors)
        errors.append(("geomp_ref.cases.fake", ImportError("boom")))
        return out

    monkeypatch.setattr(cases, "cases", patched)
    assert cli.main(["verify", "--list"]) == 1
    assert "geomp_ref.cases.fake failed to register its cases: ImportError: boom" in (
        capsys.readouterr().err)
