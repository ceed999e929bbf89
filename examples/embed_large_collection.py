"""Embed and score a collection chunk by chunk over its manifest, in two worker processes.

A collection too large to load at once is described by a manifest (one row per cell
file). ``map_manifest`` reads it a chunk of rows at a time, applies a fitted model to
each chunk in parallel worker processes and gathers the results in manifest order:
here the embedding (``transform``), written to an ``.npy`` file chunk by chunk, and
the per-cell ELBO (``score_samples``), kept in memory. Only the chunks being worked
on are ever held as images. Run::

    python examples/embed_large_collection.py --out example_output
    python examples/embed_large_collection.py --bbbc021 BBBC021/ --out example_output

Without ``--bbbc021``, synthetic cells are saved as OME-TIFFs with a manifest first.
The model is fitted on a few hundred cells read in memory, the usual way to learn
from a sample and then embed everything. Under a minute on a 2-core CPU.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import make_pipeline

from cellgen import ReferenceVAE
from cellgen.analysis import map_manifest
from cellgen.datasets import make_cells
from cellgen.io import load_manifest, save_cells
from cellgen.preprocessing import IntensityNormalizer, PadCrop

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--bbbc021", default=None, help="folder with manifest.csv and cells/")
parser.add_argument("--out", default="example_output")
parser.add_argument("--chunk-size", type=int, default=256)
parser.add_argument("--n-jobs", type=int, default=2)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

if args.bbbc021:
    manifest = Path(args.bbbc021) / "manifest.csv"
    # Raw intensities, 68x68 crops: normalize each cell and crop to a size the
    # encoder halves cleanly, while each chunk is read.
    prepare = make_pipeline(IntensityNormalizer(), PadCrop((64, 64)))
else:
    X, y, _ = make_cells(2000, shape=(32, 32), random_state=0)
    save_cells(out / "synthetic_cells", X, channel_names=["membrane", "DNA", "structure"],
               metadata=pd.DataFrame({"structure": y}), overwrite=True)
    manifest = out / "synthetic_cells" / "manifest.csv"
    prepare = None
    print("no --bbbc021 given: 2000 synthetic cells saved as OME-TIFFs")

table = pd.read_csv(manifest)
sample = table.sample(min(400, len(table)), random_state=0)
X_fit, _ = load_manifest(sample, root=manifest.parent, preprocessor=prepare)
model = ReferenceVAE(n_latent=8, widths=(16, 32), max_epochs=3, batch_size=32, device="cpu",
                     random_state=0).fit(X_fit)
print(f"fitted on {len(X_fit)} of {len(table)} cells")

start = time.perf_counter()
Z = map_manifest(model, manifest, preprocessor=prepare, chunk_size=args.chunk_size,
                 n_jobs=args.n_jobs, out=out / "embedding.npy")
elapsed = time.perf_counter() - start
print(f"transform: {len(Z)} cells in {elapsed:.1f} s ({len(Z) / elapsed:.0f} cells/s, "
      f"including starting the workers) -> {out / 'embedding.npy'} {Z.shape}")

start = time.perf_counter()
elbo = map_manifest(model, manifest, method="score_samples", preprocessor=prepare,
                    chunk_size=args.chunk_size, n_jobs=args.n_jobs)
elapsed = time.perf_counter() - start
print(f"score_samples: {len(elbo)} cells in {elapsed:.1f} s ({len(elbo) / elapsed:.0f} cells/s)")
least = np.argsort(elbo)[:3]
print("least typical cells (lowest ELBO):", table["path"].iloc[least].tolist())
