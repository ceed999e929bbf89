"""Every public name has a valid numpydoc docstring, and the docs build offline."""

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest
from numpydoc.validate import validate

import cellgen

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["cellgen", "cellgen.utils", "cellgen.datasets", "cellgen.io", "cellgen.preprocessing",
            "cellgen.nn", "cellgen.module", "cellgen.train", "cellgen.estimators",
            "cellgen.analysis", "cellgen.plotting"]
# Checks we hold every public docstring to: present, a summary, parameters documented
# and matching the signature, an Examples section.
CHECKS = {"GL08", "SS01", "PR01", "PR02", "EX01"}


def _public():
    seen = {}
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return seen


PUBLIC = _public()


@pytest.mark.parametrize("qualname", sorted(PUBLIC))
def test_public_docstrings(qualname):
    obj = PUBLIC[qualname]
    name = f"{obj.__module__}.{obj.__qualname__}"
    errors = [(code, msg) for code, msg in validate(name)["errors"] if code in CHECKS]
    assert errors == []


def test_public_methods_documented():
    missing = []
    for est in (cellgen.ReferenceVAE, cellgen.ConditionalStructureVAE, cellgen.StatisticalCell):
        for name, member in inspect.getmembers(est, inspect.isfunction):
            if not name.startswith("_") and member.__module__.startswith("cellgen"):
                if not (member.__doc__ or "").strip():
                    missing.append(f"{est.__name__}.{name}")
    assert missing == []


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-W", "-q", str(ROOT / "docs"),
         str(tmp_path / "html")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
