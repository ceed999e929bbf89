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


def _message_templates(paths):
    """Every string literal in ``paths``, f-string fields rendered as ``{}``."""
    import ast

    out = []
    for path in paths:
        for node in ast.walk(ast.parse(Path(path).read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                out.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                out.append("".join(v.value if isinstance(v, ast.Constant) else "{}"
                                   for v in node.values))
    return out


def test_error_table_quotes_real_messages():
    # The docs' error table names messages by the words they contain; each quoted
    # fragment must occur in a message cellgen (or scikit-learn's validation) raises.
    import re

    import sklearn

    text = (ROOT / "docs" / "persistence.rst").read_text()
    table = text.split("What each error means", 1)[1]
    fragments = [f for row in re.findall(r"^     - (.*)$", table, flags=re.M)[::2]
                 for f in re.findall(r"``([^`]+)``", row)]
    assert len(fragments) >= 25
    sk = Path(sklearn.__file__).parent / "utils"
    templates = _message_templates([*ROOT.joinpath("cellgen").rglob("*.py"),
                                    sk / "validation.py", sk / "_param_validation.py"])
    missing = [f for f in fragments if not any(f in t for t in templates)]
    assert not missing, f"the error table quotes messages nobody raises: {missing}"
