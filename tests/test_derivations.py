"""Run every ``derivations/*.py`` lesson with ``--check`` and check that each one teaches.

The scripts are discovered by glob (files starting with ``_`` are helpers, not lessons), so a new
lesson is tested as soon as it exists. Each runs in its own interpreter (``sys.executable``) from
the repository root, with a 120 s timeout; exit code 0 means every symbolic and numeric check in
it passed (a lesson that proves a claim also runs its counter-examples, which must fail where the
claim does not hold). Each lesson must also have a lesson docstring and a ``main``, and appear in
the reading order of ``derivations/README.md``, which follows the lecture.
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

#: the lessons of the lecture's sequence that must exist (lessons 1-8 of derivations/README.md)
COURSE = (
    "message_passing.py", "geometric_message_passing.py", "pointconv.py", "schnet.py",
    "egnn.py", "lieconv.py", "group_conv.py", "position_orientation.py", "tfn.py", "segnn.py",
    "special_cases.py",
)


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
    assert {"gather_scatter.py", "dense_activations.py", *COURSE} <= names, (
        sorted({"gather_scatter.py", "dense_activations.py", *COURSE} - names))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_derivation_check_passes(script: Path):
    proc = _run(script)
    log = f"--- stdout ---\n{proc.stdout[-6000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, f"{script.name} --check exited {proc.returncode}\n{log}"


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


def test_every_lesson_is_in_the_reading_order():
    readme = (ROOT / "derivations" / "README.md").read_text(encoding="utf-8")
    order = readme.split("## Reading order", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`(\w+\.py)`", order))
    missing = sorted(p.name for p in SCRIPTS if p.name not in listed)
    assert not missing, f"derivations/README.md's reading order does not list {missing}"
    unknown = sorted(n for n in listed if not (ROOT / "derivations" / n).exists())
    assert not unknown, f"derivations/README.md lists lessons that do not exist: {unknown}"
    # the lecture's sequence: each lesson appears after the one before it
    positions = [order.index(f"`{name}`") for name in COURSE]
    assert positions == sorted(positions), "the reading order must follow the lecture (COURSE)"
