"""Sphinx configuration for cellgen (builds offline)."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import cellgen  # noqa: E402

project = "cellgen"
author = "the cellgen developers"
release = version = cellgen.__version__
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
exclude_patterns = ["_build"]
html_theme = "alabaster"
# No intersphinx: the documentation must build without network access.
