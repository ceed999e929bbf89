"""Smoke runs of the benchmark scripts in their quick modes (subprocesses, CPU, seconds)."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _known_failure(row):
    """Why a setting fails because of a known cellgen problem, or None."""
    error = row.get("error", "")
    # A seeded 3D fit with precision="bf16" on the CPU sometimes ends in a NaN loss
    # (about 1 run in 12 for the conditional model, rarer for the reference one, same
    # seed, one thread): torch 2.13's bfloat16 CPU kernel for the weight gradient of a
    # 3D convolution gives wrong, run-to-run different values (benchmarks/RESULTS.md).
    # The CPU default is float32, fit warns, and docs/scaling.rst states the limitation.
    if (row["dim"] == 3 and row["precision"] == "bf16" and "loss became nan" in error):
        return "3D bf16 training on the CPU sometimes gives a NaN loss"
    return None


@pytest.mark.slow
def test_bench_training_quick(tmp_path):
    out = tmp_path / "t.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_training.py"), "--quick",
         "--device", "cpu", "--out", str(out)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.exists(), proc.stdout + proc.stderr
    record = json.loads(out.read_text())
    config, rows = record["config"], record["results"]
    assert record["info"]["torch"] and record["info"]["cellgen"]

    # Every requested model, size and precision, plus the other-layout row, is there.
    expected = {(m, d, p) for m in config["models"] for d in config["dims"]
                for p in config["precisions"]}
    assert {(r["model"], r["dim"], r["precision"]) for r in rows} >= expected
    assert len(rows) == len(expected) + len(config["models"]) * len(config["dims"])
    assert all(_positive(f["flops"]) for f in record["flops_per_step"])

    known = []
    for row in rows:
        if _known_failure(row):
            known.append(_known_failure(row))
            continue
        assert "error" not in row, row.get("error")
        for part in ("estimator", "plain"):
            assert _positive(row[part]["cells_per_s"]), (row["model"], part)
            assert _positive(row[part]["tflops"])
            assert len(row[part]["steps_s"]) == config["warmup"] + config["steps"]
        assert _positive(row["ratio"])
        inference = row["inference"]
        methods = ["transform", "score_samples", "sample"]
        methods += ["impute"] if row["model"] == "conditional" else []
        assert "errors" not in inference, inference.get("errors")
        assert all(_positive(inference[m]) for m in methods), inference
        assert _positive(inference["transform_over_training"])
    # The script reports failures in its exit status, and only those.
    assert proc.returncode == (1 if known else 0), proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "## Training" in proc.stdout and "## Inference" in proc.stdout
    if known:
        warnings.warn("known problems (every other setting passed): "
                      + "; ".join(sorted(set(known))), stacklevel=1)


@pytest.mark.slow
def test_bench_profiling_tiny_run(tmp_path):
    from .conftest import SHARED_DATA

    if not (SHARED_DATA / "bbbc021").is_dir():
        pytest.skip("the BBBC021 cells are not available")
    out = tmp_path / "p.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_profiling.py"),
         "--data-dir", str(SHARED_DATA), "--epochs", "1", "--seeds", "0,1",
         "--widths", "8,16,32,64", "--n-latent", "8", "--out", str(out)],
        env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = json.loads(out.read_text())["results"]
    methods = {r["method"] for r in rows}
    assert methods == {"pixel PCA", "ImageFeatures", "pixel PCA (aligned input)",
                       "ImageFeatures (aligned input)", "cellgen latent",
                       "cellgen encoder features", "cellgen encoder features, 2 fits side by side"}
    # 2 aggregates x 2 whitenings per method and fit; the features are the last two blocks.
    assert len(rows) == 4 * (len(methods) + 2)
    assert {r["n_features"] for r in rows if r["method"] == "cellgen encoder features"} == {
        2 * (32 + 64)}
    assert {r["n_features"] for r in rows if "side by side" in r["method"]} == {4 * (32 + 64)}
    # 103 treatments; accuracies are fractions that one treatment moves by about 1%.
    assert all(r["n_treatments"] == 103 and 0 <= r["NSC"] <= 1 for r in rows)
    assert "NSC mean (min-max)" in proc.stdout


def test_bench_coupling_oracle_small_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_coupling_oracle.py"),
         "--size", "24", "--n-cells", "12", "--renders", "6", "--n-swaps", "2",
         "--out", str(tmp_path)],
        env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = pd.read_csv(tmp_path / "coupling_oracle.csv").set_index(
        ["structure", "cell_cycle_phase"])
    assert len(table) == 20
    # A band at fixed depth inside the membrane: an ideal model loses most of its fit
    # when the membrane is swapped and nothing when the nucleus is.
    periphery = table.loc[("cell_periphery", "interphase")]
    assert periphery["oracle_membrane"] > 0.8 and abs(periphery["oracle_nucleus"]) < 0.2
    envelope = table.loc[("nuclear_envelope", "interphase")]
    assert envelope["oracle_nucleus"] > 0.8 and abs(envelope["oracle_membrane"]) < 0.2
    assert "Spearman rho, ground truth vs oracle strength" in proc.stdout
    share = pd.read_csv(tmp_path / "coupling_oracle_dna_share.csv").set_index("structure")
    assert len(share) == 5
    # Another cell's outline always fits a structure worse than its own.
    assert (share["sse_other_cells_outline"] > share["sse_true_outline"]).all()
    # A band at fixed depth needs the exact outline; the mitotic nucleoli's faint puncta
    # are placed about as well from the DNA plate, which is why fits disagree on them.
    assert share.loc["cell_periphery", "extra_error_from_dna"] > 1.0
    assert abs(share.loc["nucleoli", "extra_error_from_dna"]) < 0.1

    # --compare: a model equal to the ideal one on the rendered values and random on the
    # controls (which the oracle writes in) ranks at 1 on the 24 rendered values.
    rng = np.random.default_rng(0)
    model = table.reset_index()
    control = model["structure"].isin(["control_blank", "control_dna", "control_membrane",
                                       "control_random"]).to_numpy()
    model["c_membrane"] = np.where(control, rng.random(len(model)),
                                   1 - model["oracle_membrane"])
    model["c_nucleus"] = np.where(control, rng.random(len(model)),
                                  1 - model["oracle_nucleus"])
    model.to_csv(tmp_path / "model.csv", index=False)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_coupling_oracle.py"),
         "--size", "24", "--n-cells", "12", "--renders", "6", "--n-swaps", "2",
         "--out", str(tmp_path), "--compare", str(tmp_path / "model.csv")],
        env=dict(os.environ, OMP_NUM_THREADS="1"), cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "the 24 rendered values: Spearman rho, oracle vs model strength 1.000" in proc.stdout
