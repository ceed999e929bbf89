"""MoA profiling on the 1996 BBBC021 crops: cellgen embeddings against two baselines.

One protocol for every method (Ljosa et al. 2013; data README, BBBC021 section):
per-cell features -> mean per well -> median per treatment -> 1-nearest-neighbour MoA by
cosine similarity, DMSO excluded, neighbours from other compounds (NSC) or from other
compounds in other batches (NSCB); each method also with ZCA whitening on the DMSO cells.

Methods:
- pixel PCA: IntensityNormalizer, flattened, PCA(50) fitted on all cells;
- ImageFeatures: IntensityNormalizer -> ImageFeatures -> StandardScaler;
- cellgen: IntensityNormalizer -> CellAligner -> VoxelResampler (x1/2) -> PadCrop((32, 32))
  -> ReferenceVAE on DNA, F-actin and beta-tubulin -> posterior means ("latent"), and
  the pooled maps of the encoder's last two blocks ("encoder features",
  ``ReferenceVAE.encoder_features``) -> StandardScaler; with several seeds, also the
  standardized encoder features of all the fits side by side;
- the two baselines again on the aligned 32x32 cells the model sees, so that the
  alignment's share of any gain is visible.

Writes ``benchmarks/out/profiling.json`` and prints a markdown table.

Run: ``python benchmarks/bench_profiling.py [--data-dir ../shared/data]`` (defaults: flip
augmentation, latent 64, beta 0.005, 60 epochs, batch 64, seeds 0, 1, 2; about 70 s a
fit on 2 CPU cores).
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy
import sklearn
import torch
from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

import cellgen
from cellgen import ReferenceVAE
from cellgen.analysis import aggregate_profiles, moa_accuracy
from cellgen.datasets import load_bbbc021
from cellgen.preprocessing import (
    CellAligner,
    ImageFeatures,
    IntensityNormalizer,
    PadCrop,
    VoxelResampler,
)

ROOT = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser()
parser.add_argument("--data-dir", default=os.environ.get("CELLGEN_SHARED_DATA")
                    or str(ROOT.parent / "shared" / "data"))
parser.add_argument("--epochs", type=int, default=60)
parser.add_argument("--n-latent", type=int, default=64)
parser.add_argument("--widths", default="16,32,64,128")
parser.add_argument("--beta", type=float, default=0.005)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--size", type=int, default=32, help="32 (resampled x1/2) or 64")
parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds, one fit each")
parser.add_argument("--blocks", default="-2,-1", help="encoder blocks pooled for the features")
parser.add_argument("--augment", choices=["none", "flips"], default="flips",
                    help="flips: train on random Y/X flips, embed as the mean over the 4 flips")
parser.add_argument("--shrinkage", type=float, default=0.1, help="whitening regularization")
parser.add_argument("--skip-vae", action="store_true")
parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "profiling.json"))
args = parser.parse_args()
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def evaluate(name, Z, meta, settings, seconds):
    rows = []
    for aggregate in ("mean", "mean+sd"):
        for whiten in (None, "control"):
            prof = aggregate_profiles(Z, meta, method=aggregate, whiten=whiten,
                                      shrinkage=args.shrinkage)
            res = moa_accuracy(prof, holdout="both")
            rows.append(_row(name, aggregate, whiten, Z, res, seconds, settings))
    return rows


def _row(name, aggregate, whiten, Z, res, seconds, settings):
    return {"method": name, "aggregate": aggregate, "whiten": whiten or "none",
            "n_features": int(np.shape(Z)[1]),
            "n_treatments": int(res["NSC"][1].shape[0]),
            "NSC": res["NSC"][0], "NSCB": res["NSCB"][0],
            "NSCB_dropped": res["NSCB"][1].attrs["n_dropped"],
            "seconds": round(seconds, 1), "settings": settings}


t0 = time.perf_counter()
data = load_bbbc021(Path(args.data_dir) / "bbbc021")
meta = data.metadata
Xn = IntensityNormalizer().fit_transform(data.images)
t_load = time.perf_counter() - t0
results = []

def baselines(X, where, suffix=""):
    t = time.perf_counter()
    flatten = FunctionTransformer(lambda X: X.reshape(len(X), -1))
    Z = make_pipeline(flatten, PCA(50, random_state=0)).fit_transform(X)
    rows = evaluate("pixel PCA" + suffix, Z, meta,
                    f"IntensityNormalizer, {where}, flattened, PCA(50)", time.perf_counter() - t)
    t = time.perf_counter()
    F = make_pipeline(ImageFeatures(channels=["DNA", "Factin", "tubulin"]), StandardScaler()
                      ).set_output(transform="pandas").fit_transform(X)
    return rows + evaluate("ImageFeatures" + suffix, F, meta,
                           f"IntensityNormalizer, {where}, 48 features, StandardScaler",
                           time.perf_counter() - t)


results += baselines(Xn, "68x68x3")

t = time.perf_counter()
steps = [CellAligner(axis_channel=1, center_channel=0)]
if args.size != 64:
    steps.append(VoxelResampler(voxel_size=1, target_voxel_size=64 / args.size))
steps.append(PadCrop((args.size, args.size)))
Xa = make_pipeline(*steps).fit_transform(Xn)
prep_seconds = time.perf_counter() - t
results += baselines(Xa, f"aligned {args.size}x{args.size}x3", " (aligned input)")

if not args.skip_vae:
    widths = tuple(int(w) for w in args.widths.split(","))
    blocks = tuple(int(b) for b in args.blocks.split(","))
    augment = None if args.augment == "none" else args.augment
    per_seed = []
    for seed in (int(v) for v in args.seeds.split(",")):
        t = time.perf_counter()
        vae = ReferenceVAE(n_latent=args.n_latent, widths=widths, beta=args.beta, lr=args.lr,
                           max_epochs=args.epochs, batch_size=args.batch_size, device="cpu",
                           augment=augment, random_state=seed).fit(Xa)
        fit_seconds = prep_seconds + time.perf_counter() - t
        settings = (f"aligned, {args.size}x{args.size}, ReferenceVAE(n_latent={args.n_latent}, "
                    f"widths={widths}, beta={args.beta}, lr={args.lr}, epochs={args.epochs}, "
                    f"batch={args.batch_size}, augment={augment}, seed={seed})")
        t = time.perf_counter()
        Z = vae.transform(Xa)
        results += evaluate("cellgen latent", Z, meta, settings,
                            fit_seconds + time.perf_counter() - t)
        t = time.perf_counter()
        F = StandardScaler().fit_transform(vae.encoder_features(Xa, blocks=blocks))
        results += evaluate("cellgen encoder features", F, meta,
                            f"{settings}, blocks={blocks}, StandardScaler",
                            fit_seconds + time.perf_counter() - t)
        per_seed.append((F, fit_seconds + time.perf_counter() - t))
    if len(per_seed) > 1:
        # Fits differ in what they pick up; side by side, each fit's standardized
        # features weigh equally in the cosine.
        results += evaluate(f"cellgen encoder features, {len(per_seed)} fits side by side",
                            np.hstack([F for F, _ in per_seed]), meta,
                            f"the fits above, seeds {args.seeds}, features concatenated",
                            sum(s for _, s in per_seed))

record = {
    "date": time.strftime("%Y-%m-%d"),
    "machine": {"platform": platform.platform(), "machine": platform.machine(),
                "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                "gpu": torch.cuda.is_available()},
    "versions": {"python": platform.python_version(), "numpy": np.__version__,
                 "pandas": pd.__version__, "scipy": scipy.__version__,
                 "scikit-learn": sklearn.__version__, "torch": torch.__version__,
                 "cellgen": cellgen.__version__},
    "data": {"n_cells": int(len(meta)), "load_and_normalize_s": round(t_load, 1)},
    "protocol": "well mean -> treatment median -> 1-NN cosine, DMSO excluded; "
                f"whiten=control: ZCA on DMSO cells (shrinkage {args.shrinkage})",
    "results": results,
}
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(record, indent=2))

print("| method | per well | whitening | features | NSC | NSCB | NSCB dropped | seconds "
      "| settings |")
print("|---|---|---|---|---|---|---|---|---|")
for r in results:
    print(f"| {r['method']} | {r['aggregate']} | {r['whiten']} | {r['n_features']} | "
          f"{r['NSC']:.1%} | "
          f"{r['NSCB']:.1%} | {r['NSCB_dropped']} | {r['seconds']} | {r['settings']} |")

# One line per method and protocol: the mean over seeds (baselines have one "seed").
print("\n| method | per well | whitening | runs | NSC mean (min-max) | NSCB mean (min-max) |")
print("|---|---|---|---|---|---|")
summary = pd.DataFrame(results).groupby(["method", "aggregate", "whiten"], sort=False)
for (method, aggregate, whiten), g in summary:
    print(f"| {method} | {aggregate} | {whiten} | {len(g)} | "
          f"{g.NSC.mean():.1%} ({g.NSC.min():.1%}-{g.NSC.max():.1%}) | "
          f"{g.NSCB.mean():.1%} ({g.NSCB.min():.1%}-{g.NSCB.max():.1%}) |")
