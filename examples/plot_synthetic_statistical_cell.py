"""The Statistical Cell on synthetic cells: fit, embed, generate, impute, score.

Fits a StatisticalCell on synthetic 2D cells whose structures have known placements,
then saves figures of reconstructions, generated cells and structures imputed into
held-out cells, and prints how typical the most and least typical cells are.

Run: ``python examples/plot_synthetic_statistical_cell.py --out example_output``
(about 3 minutes on a 2-core CPU; pass ``--epochs 5`` for a quick look).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell  # noqa: E402
from cellgen.analysis import rank_latent_dimensions  # noqa: E402
from cellgen.datasets import make_cells  # noqa: E402
from cellgen.plotting import plot_channels, plot_image_grid, plot_reconstructions  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="example_output")
parser.add_argument("--epochs", type=int, default=30)
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

X, y, meta = make_cells(1200, shape=(32, 32), random_state=0)
train, test = np.arange(1080), np.arange(1080, 1200)

small = dict(n_latent=32, widths=(16, 32, 64, 128), beta=0.05, lr=1e-3,
             max_epochs=args.epochs, random_state=0)
cell = StatisticalCell(ReferenceVAE(**small), ConditionalStructureVAE(**small))
cell.fit(X[train], y[train])

# Embedding: the reference latent space, ranked as in the paper.
mu, logvar = cell.reference_model_.encode(X[test, :2])
ranking = rank_latent_dimensions(mu, logvar)
print(ranking.head(5).to_string(index=False))

# Reconstructions of held-out cells.
recon = cell.reference_model_.inverse_transform(mu)
plot_reconstructions(X[test, :2], recon).savefig(out / "reconstructions.png", dpi=80)

# New cells from the prior, each with a structure drawn at random.
generated, labels = cell.sample(16, random_state=0)
plot_image_grid(generated, titles=list(labels)).savefig(out / "generated.png", dpi=80)

# The integrated cell: every structure imputed into three held-out cells.
integrated = cell.impute(X[test[:3], :2])
names = ["membrane", "DNA", *map(str, cell.classes_)]
for i in range(3):
    plot_channels(integrated[i:i + 1], channel_names=names).savefig(
        out / f"integrated_cell_{i}.png", dpi=80)

# How typical is each held-out cell?
elbo = cell.score_samples(X[test], structures=y[test])
order = np.argsort(elbo)
print(f"least typical held-out cell: ELBO {elbo[order[0]]:.1f} ({y[test][order[0]]}); "
      f"most typical: {elbo[order[-1]]:.1f} ({y[test][order[-1]]})")
print(f"figures written to {out}/")
