"""`geomp-ref verify` end to end: table, JSON, exit codes, filters."""

import json
import subprocess
import sys

from geomp_ref import cli


def test_verify_subset_passes(capsys):
    rc = cli.main(["verify", "--case", "DistanceMPNN", "--case", "NNConv", "--backends", "numba"])
    out = capsys.readouterr()
    assert rc == 0
    assert "DistanceMPNN/silu" in out.out and "PASS" in out.out
    assert "passed, 0 failed" in out.out
    assert "[1/2]" in out.err  # a progress line per case


def test_verify_json(capsys):
    rc = cli.main(["verify", "--case", "RelativePositionMPNN", "--json", "--molecules", "0"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["failed"] == []
    r = data["results"][0]
    assert r["group"] == "T3" and r["vjp"] < 1e-7 and r["symmetry"] < 1e-12


def test_verify_fails_on_broken_case(monkeypatch, capsys):
    """A case whose claim is false (RelativePositionMPNN claimed E3) must fail verify."""
    import dataclasses

    from geomp_ref import cases

    real = cases.cases

    def patched(family=None):
        out = []
        for c in real(family):
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
