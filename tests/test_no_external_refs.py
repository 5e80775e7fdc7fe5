"""No file of the project points at a document that is not in the repository.

Early versions of the code cited design notes and reference write-ups that lived next to the
repository (a design document, a style guide, notes on the published variants, the Lie-group
formulas, e3nn's conventions, peer measurements, performance anchors). A user of the package
cannot open them, so every fact they held is now written where it is used (docstrings, the docs
site under ``docs/``). This test greps every text file of the tree for those names and for paths
that leave the repository, so such a pointer cannot come back.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).resolve()

#: what a pointer outside the repository looks like
PATTERNS = (
    r"variants_spec",
    r"lie_spec",
    r"e3nn_conventions",
    r"peer_findings",
    r"performance_anchors",
    r"jax_and_egnn_pytorch",
    r"DESIGN\.md",
    r"STYLE\.md",
    r"\.\./shared",
    r"(?<![\w-])shared/",
    r"/work/(?:shared|peers|plan|main)",
)
_RX = re.compile("|".join(f"(?:{p})" for p in PATTERNS))

#: directories never scanned (environments, caches, build output)
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", ".hypothesis",
             "_build", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".rst", ".txt", ".toml", ".cfg", ".ini", ".json", ".yml", ".yaml",
                 ".sh", ".xyz", ".html", ""}


def _files() -> list[Path]:
    """The files git tracks or would add (untracked, not ignored); a plain walk without git."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT, capture_output=True, check=True, timeout=60,
        ).stdout.decode()
        paths = [ROOT / p for p in out.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        paths = []
        for dirpath, dirnames, filenames in os.walk(ROOT):
            dirnames[:] = [d for d in dirnames
                           if d not in SKIP_DIRS and not d.endswith(".egg-info")]
            paths.extend(Path(dirpath) / f for f in filenames)
    keep = []
    for p in paths:
        rel = p.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            continue
        if p.suffix in TEXT_SUFFIXES and p.is_file() and p.resolve() != THIS:
            keep.append(p)
    return keep


def test_the_scan_sees_the_tree():
    names = {p.relative_to(ROOT).as_posix() for p in _files()}
    assert {"README.md", "pyproject.toml", "geomp_ref/__init__.py"} <= names


def test_the_patterns_catch_pointers():
    for text in ("see ../shared/reference/lie_spec.md", "DESIGN.md section 3",
                 "facts from variants_spec", "in /work/shared/notes", "shared/reference"):
        assert _RX.search(text), text
    for text in ("shared_weights=True", "kernel bases shared across layers", "a shared-basis"):
        assert not _RX.search(text), text


def test_no_file_points_outside_the_repository():
    hits = []
    for path in _files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            m = _RX.search(line)
            if m:
                hits.append(f"{path.relative_to(ROOT)}:{lineno}: {m.group(0)!r}: {line.strip()}")
    assert not hits, (
        "pointers to documents outside the repository (write the fact itself instead):\n"
        + "\n".join(hits[:60])
    )
