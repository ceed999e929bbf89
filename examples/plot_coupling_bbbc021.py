"""Coupling on real cells, validated with the paper's controls (BBBC021).

BBBC021 tags one structure (beta-tubulin) beside DNA and F-actin, which stands in
for the cell body. As the Statistical Cell paper did (Table 1), the five control
structures are made from the real cells: a blank channel, a copy of the DNA, a copy
of the F-actin, noise inside the cell, and another cell's tubulin. A conditional
structure model is fitted on all six, and the coupling of each structure to each
reference channel is measured (Eq. 4 and 5, ``cellgen.analysis.structure_coupling``).

What the controls should show: the DNA copy coupled to the nucleus only, the
F-actin copy to the cell body only, the blank and the random other cell's tubulin to
neither. Coupling below 1 means that swapping the channel for another cell's made
the structure less likely.

Run::

    python examples/plot_coupling_bbbc021.py --bbbc021 BBBC021/ --out example_output

About 5 minutes on a 2-core CPU with all 1996 cells (``--n-cells 300`` for a quick
look). Without ``--bbbc021`` synthetic cells stand in, so the example runs without
downloads.
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from cellgen import ConditionalStructureVAE  # noqa: E402
from cellgen.analysis import differential_coupling, structure_coupling  # noqa: E402
from cellgen.datasets import load_bbbc021, make_cells  # noqa: E402
from cellgen.plotting import plot_coupling, plot_differential_coupling  # noqa: E402
from cellgen.preprocessing import (  # noqa: E402
    CellAligner,
    IntensityNormalizer,
    PadCrop,
    VoxelResampler,
    add_control_structures,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--bbbc021", default=None, help="folder with manifest.csv and cells/")
parser.add_argument("--out", default="example_output")
parser.add_argument("--n-cells", type=int, default=None, help="real cells used (default all)")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--n-swaps", type=int, default=5)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()

# Channels in cellgen's order: cell body, DNA, structure.
if args.bbbc021:
    raw = load_bbbc021(args.bbbc021, channels=("F-actin", "DNA", "beta-tubulin")).images
    names, structure = ["F-actin", "DNA"], "beta-tubulin"
else:
    raw, _, _ = make_cells(600, shape=(64, 64), structures=["cytoplasmic_puncta"],
                           random_state=0)
    names, structure = ["membrane", "DNA"], "cytoplasmic_puncta"
    print("no --bbbc021 given: synthetic stand-in cells")
if args.n_cells:
    raw = raw[np.random.RandomState(0).choice(len(raw), args.n_cells, replace=False)]

prepare = make_pipeline(IntensityNormalizer(), CellAligner(axis_channel=0, center_channel=1),
                        VoxelResampler(1.0, 2.0), PadCrop((32, 32)))
X = prepare.fit_transform(raw)
X, y, _ = add_control_structures(X, np.full(len(X), structure, dtype=object),
                                 random_state=0)
print(f"{len(X)} cells: {len(X) // 6} real ones and five controls of each")

model = ConditionalStructureVAE(n_latent=16, widths=(16, 32, 64), beta=0.05, lr=3e-3,
                                max_epochs=args.epochs, n_elbo_samples=4, random_state=0)
model.fit(X, y)
coupling = structure_coupling(model, X, y, reference_names=names, n_swaps=args.n_swaps,
                              random_state=0)
d = differential_coupling(coupling, membrane=names[0], nucleus=names[1])
print(d.round(3).to_string(index=False))

plot_coupling(coupling, membrane=names[0], nucleus=names[1]).savefig(
    out / "coupling_bbbc021_cells.png", dpi=90)
plot_differential_coupling(d).savefig(out / "coupling_bbbc021_differential.png", dpi=90)
coupling.to_csv(out / "coupling_bbbc021.csv", index=False)
print(f"done in {time.perf_counter() - t0:.0f} s; figures and table in {out}/")
