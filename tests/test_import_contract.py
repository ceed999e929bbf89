"""The layers of cellgen point one way; this AST walk keeps them honest."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "cellgen"

# Layer -> top-level packages it must never import.
FORBIDDEN = {
    "utils": {"skorch", "cellgen.nn", "cellgen.module", "cellgen.train", "cellgen.estimators",
              "cellgen.analysis", "cellgen.plotting", "cellgen.cli", "torch"},
    "datasets": {"torch", "skorch", "cellgen.nn", "cellgen.module", "cellgen.train",
                 "cellgen.estimators", "cellgen.analysis", "cellgen.plotting"},
    "io": {"torch", "skorch", "cellgen.datasets", "cellgen.nn", "cellgen.module",
           "cellgen.train", "cellgen.preprocessing", "cellgen.estimators", "cellgen.analysis",
           "cellgen.plotting"},
    "nn": {"sklearn", "skorch", "cellgen.module", "cellgen.train", "cellgen.estimators",
           "cellgen.analysis", "cellgen.plotting", "cellgen.datasets"},
    "module": {"sklearn", "skorch", "cellgen.train", "cellgen.estimators", "cellgen.analysis",
               "cellgen.plotting", "cellgen.datasets"},
    "train": {"sklearn", "cellgen.estimators", "cellgen.analysis", "cellgen.plotting"},
    "preprocessing": {"torch", "skorch", "cellgen.nn", "cellgen.module", "cellgen.train",
                      "cellgen.estimators"},
    "estimators": {"cellgen.analysis", "cellgen.plotting", "cellgen.cli"},
    "plotting": {"torch", "skorch", "sklearn", "cellgen.nn", "cellgen.module", "cellgen.train"},
}


def _imports(path: Path):
    """Absolute module names imported by a file (relative imports resolved)."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:
                    for alias in node.names:
                        yield f"{mod}.{alias.name}", node.lineno
                    continue
            else:
                mod = node.module
            yield mod, node.lineno


def _violations(layer_dir: Path, forbidden: set[str]):
    found = []
    for path in sorted(layer_dir.rglob("*.py")):
        for mod, line in _imports(path):
            for bad in forbidden:
                if mod == bad or mod.startswith(bad + "."):
                    found.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down(layer):
    layer_dir = PKG / layer
    if not layer_dir.exists():
        pytest.skip(f"cellgen.{layer} does not exist yet")
    assert _violations(layer_dir, FORBIDDEN[layer]) == []


def test_torch_confined_to_one_utils_file():
    users = [p.name for p in (PKG / "utils").rglob("*.py")
             if any(m == "torch" or m.startswith("torch.") for m, _ in _imports(p))]
    assert len(users) <= 1, users


@pytest.mark.parametrize("folder", ["examples", "benchmarks"])
def test_examples_and_benchmarks_use_public_names(folder):
    bad = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for mod, line in _imports(path):
            if mod.startswith("cellgen") and any(part.startswith("_") for part in mod.split(".")):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert bad == []


def test_analysis_uses_public_estimator_api():
    bad = []
    for path in sorted((PKG / "analysis").rglob("*.py")):
        for mod, line in _imports(path):
            if mod.startswith("cellgen.") and any(p.startswith("_") for p in mod.split(".")[1:]) \
                    and not mod.startswith("cellgen.analysis"):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {mod}")
    assert bad == []


def test_contract_catches_a_violation(tmp_path):
    # The walker itself must see an upward import, or the tests above prove nothing.
    fake = PKG / "nn" / "_contract_probe_tmp.py"
    fake.write_text("from ..estimators import ReferenceVAE\nimport sklearn\n")
    try:
        found = _violations(PKG / "nn", FORBIDDEN["nn"])
    finally:
        fake.unlink()
    assert any("cellgen.estimators" in f for f in found)
    assert any("sklearn" in f for f in found)
