"""Speed of cellgen.preprocessing on real cells: BBBC021 2D crops and an Allen 3D cell.

Measures, median of ``--repeats`` runs (the images are read first, untimed):
- BBBC021, all 1996 68×68 3-channel crops through IntensityNormalizer →
  CellAligner(axis_channel=1, center_channel=0) → PadCrop((96, 96)): cells/s for
  n_jobs=1 and n_jobs=2 (threads, the default), and n_jobs=2 under joblib's
  process backend (loky) for comparison; plus each step alone at n_jobs=1;
- the Allen 3D cell (65×292×204, 3 channels): CellAligner(order=0) and (order=1),
  IntensityNormalizer and VoxelResampler from the file's voxel size to the paper's cubic
  0.317 um voxels, seconds.
Writes ``benchmarks/out/preprocessing.json`` and prints a markdown table.

Run: ``python benchmarks/bench_preprocessing.py [--data-dir ../shared/data] [--repeats 5]``
"""

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import scipy
import sklearn
import tifffile
from joblib import parallel_config
from sklearn.pipeline import make_pipeline

import cellgen
from cellgen.datasets import load_bbbc021
from cellgen.io import read_image
from cellgen.preprocessing import (
    CellAligner,
    IntensityNormalizer,
    PadCrop,
    VoxelResampler,
)

ROOT = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", type=Path,
                    default=Path(os.environ.get("CELLGEN_SHARED_DATA",
                                                ROOT.parent / "shared" / "data")))
parser.add_argument("--repeats", type=int, default=5)
args = parser.parse_args()


def median_seconds(func, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return statistics.median(times), times


def bbbc021_pipeline(n_jobs):
    return make_pipeline(IntensityNormalizer(n_jobs=n_jobs),
                         CellAligner(axis_channel=1, center_channel=0, n_jobs=n_jobs),
                         PadCrop((96, 96)))


results = {}
rows = []

paths = sorted((args.data_dir / "bbbc021" / "cells").glob("*.ome.tif"))
if paths:
    X2 = np.stack([tifffile.imread(p) for p in paths])  # (n, 3, 68, 68) uint16, untimed
    n = len(X2)
    settings = [("n_jobs=1", 1, None), ("n_jobs=2 (threads)", 2, None),
                ("n_jobs=2 (processes, loky)", 2, "loky")]
    for label, n_jobs, backend in settings:
        def run(n_jobs=n_jobs, backend=backend):
            if backend is None:
                return bbbc021_pipeline(n_jobs).fit_transform(X2)
            with parallel_config(backend=backend):
                return bbbc021_pipeline(n_jobs).fit_transform(X2)

        med, times = median_seconds(run, args.repeats)
        results[f"bbbc021 pipeline {label}"] = dict(
            seconds=med, runs=times, cells=n, cells_per_s=n / med)
        rows.append((f"BBBC021 normalize → align → pad, {label}", f"{n / med:.0f} cells/s",
                     f"{med:.2f} s for {n} cells"))
    normalized = IntensityNormalizer().fit_transform(X2)
    aligned = CellAligner(axis_channel=1, center_channel=0).fit_transform(normalized)
    steps = [("IntensityNormalizer", IntensityNormalizer(), X2),
             ("CellAligner", CellAligner(axis_channel=1, center_channel=0), normalized),
             ("PadCrop((96, 96))", PadCrop((96, 96)), aligned)]
    for label, est, data in steps:
        med, times = median_seconds(lambda est=est, data=data: est.fit_transform(data),
                                    args.repeats)
        results[f"bbbc021 {label}"] = dict(seconds=med, runs=times, cells_per_s=n / med)
        rows.append((f"BBBC021 {label} alone, n_jobs=1", f"{n / med:.0f} cells/s",
                     f"{med:.3f} s"))
    for n_jobs in (1, 2):
        med, times = median_seconds(
            lambda n_jobs=n_jobs: load_bbbc021(args.data_dir / "bbbc021", n_jobs=n_jobs),
            args.repeats)
        results[f"bbbc021 load_bbbc021 n_jobs={n_jobs}"] = dict(seconds=med, runs=times,
                                                                 cells_per_s=n / med)
        rows.append((f"BBBC021 reading: load_bbbc021, n_jobs={n_jobs} (threads)",
                     f"{n / med:.0f} cells/s", f"{med:.2f} s for {n} files"))
else:
    print(f"BBBC021 cells not found under {args.data_dir}; skipped.")

allen = args.data_dir / "allen" / "AICS-10_5_5_segmentations.ome.tif"
if allen.exists():
    image, info = read_image(allen)  # (C, Z, Y, X) with the file's voxel size
    X3 = np.ascontiguousarray(image)[None]
    voxel = tuple(info["pixel_size"])
    cases = [("CellAligner(order=0)", CellAligner(axis_channel=0, center_channel=1, order=0)),
             ("CellAligner(order=1)", CellAligner(axis_channel=0, center_channel=1, order=1)),
             ("IntensityNormalizer", IntensityNormalizer()),
             (f"VoxelResampler({voxel} -> 0.317 um, the paper's)",
              VoxelResampler(voxel, target_voxel_size=0.317))]
    for label, est in cases:
        est.fit(X3)
        med, times = median_seconds(lambda est=est: est.transform(X3), args.repeats)
        shape = est.transform(X3).shape
        results[f"allen {label}"] = dict(seconds=med, runs=times, output_shape=shape)
        rows.append((f"Allen 3D cell {X3.shape[2:]}, 3 channels: {label}", f"{med:.3f} s",
                     f"output {shape[2:]}"))
else:
    print(f"Allen cell not found at {allen}; skipped.")

info = dict(cellgen=cellgen.__version__, numpy=np.__version__, scipy=scipy.__version__,
            sklearn=sklearn.__version__, platform=platform.platform(),
            machine=platform.machine(), cpu_count=os.cpu_count(),
            python=platform.python_version(), repeats=args.repeats)
out = ROOT / "benchmarks" / "out"
out.mkdir(parents=True, exist_ok=True)
(out / "preprocessing.json").write_text(json.dumps(dict(info=info, results=results), indent=2))
print(json.dumps(info))
print("| measurement | median | detail |")
print("|---|---|---|")
for row in rows:
    print("| " + " | ".join(row) + " |")
