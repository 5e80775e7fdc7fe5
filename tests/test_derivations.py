"""Run every ``derivations/*.py`` lesson with ``--check`` and check that each one teaches.

The scripts are discovered by glob, so a new lesson is tested as soon as it exists. Each runs in
its own interpreter (``sys.executable``) from the repository root, with a 120 s timeout; exit code
0 means every symbolic/numeric check in it passed.

``KNOWN_DEFECTS`` lists checks that fail on purpose because they expose a reported defect in the
library (the lead fixes the library, not the check). For such a script the test asserts that
exactly those checks fail; once the library is fixed the test fails with a message asking to
remove the entry, so nothing stays silently excused.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "derivations").glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 120

#: script name -> {check function name: reason}
KNOWN_DEFECTS: dict[str, dict[str, str]] = {}

_FAILED_LINE = re.compile(r"^\s*(check_\w+)\b.*\bFAILED\b", re.MULTILINE)


def _run(script: Path) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, str(script), "--check"],
            check=False,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(
            f"{script.name} --check took more than {TIMEOUT_S} s (each lesson's check "
            f"should take < 20 s); output so far:\n{(out or '')[-3000:]}"
        )


def test_scripts_found():
    names = {p.name for p in SCRIPTS}
    assert {"gather_scatter.py", "dense_activations.py", "mpnn.py"} <= names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_derivation_check_passes(script: Path):
    proc = _run(script)
    log = f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    known = KNOWN_DEFECTS.get(script.name)
    if not known:
        assert proc.returncode == 0, f"{script.name} --check exited {proc.returncode}\n{log}"
        return
    failed = set(_FAILED_LINE.findall(proc.stdout))
    if proc.returncode == 0:
        pytest.fail(
            f"{script.name}: the known defects {sorted(known)} no longer fail; the library "
            "was fixed, so remove them from KNOWN_DEFECTS in tests/test_derivations.py"
        )
    assert failed == set(known), (
        f"{script.name}: failing checks {sorted(failed)} differ from the known defects "
        f"{sorted(known)}\n{log}"
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_derivation_has_lesson_docstring(script: Path):
    tree = ast.parse(script.read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    lines = [ln for ln in doc.splitlines() if ln.strip()]
    assert len(doc) >= 400 and len(lines) >= 8, (
        f"{script.name}: the module docstring is the lesson (what the forward computes, how the "
        f"cotangent flows back, why); got {len(doc)} characters in {len(lines)} lines"
    )
    funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "main" in funcs, f"{script.name}: define main(argv=None) handling --check"


def test_known_defects_name_existing_checks():
    for name, checks in KNOWN_DEFECTS.items():
        path = ROOT / "derivations" / name
        assert path.exists(), f"KNOWN_DEFECTS names a missing script {name}"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        funcs = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert set(checks) <= funcs, f"{name}: unknown checks {set(checks) - funcs}"
