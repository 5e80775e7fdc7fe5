"""Sphinx configuration of the geomp_ref documentation.

Build (warnings are errors; about half a minute on two cores)::

    .venv/bin/pip install -e ".[docs]"
    .venv/bin/sphinx-build -W --keep-going -b html docs docs/_build/html

The API pages document the package in place (``sys.path`` gets the repository root, so the
build reads the checkout, not an installed copy). Equations in docstrings are ``:math:`` roles
rendered by MathJax; docstrings are numpydoc.
"""

from __future__ import annotations

import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

import geomp_ref  # noqa: E402  (after the path is set)

project = "geomp_ref"
author = "the geomp_ref authors"
copyright = "the geomp_ref authors"  # noqa: A001  (Sphinx reads this name)
release = geomp_ref.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
root_doc = "index"

# --- autodoc / autosummary / numpydoc ----------------------------------------------------------
autosummary_generate = False  # the API pages are written by hand: one page per package
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # shapes and dtypes live in the numpydoc type lines
autodoc_default_options = {"show-inheritance": False}
numpydoc_show_class_members = False  # methods are documented in the class docstrings
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# --- HTML ------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"geomp_ref {release}"
html_theme_options = {
    "description": "Float64 ground truth for geometric message passing",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []

# Shapes such as ``(*d.shape, K)`` in a few one-line docstrings of geomp_ref.ops.radial are
# written outside literals; reStructuredText reads "*d.shape" as the start of emphasis. Escape
# the star of a leading "(*name" inside those docstrings only (the source files belong to the
# ops module; once they use literals this hook changes nothing).
_STAR_SHAPE = re.compile(r"(?<![`\\])\(\*(?=[A-Za-z_])")


def _escape_shape_stars(app, what, name, obj, options, lines):
    if name.startswith("geomp_ref.ops."):
        lines[:] = [_STAR_SHAPE.sub(r"(\\*", line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _escape_shape_stars)
