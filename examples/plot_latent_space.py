"""The reference latent space: ranked dimensions, latent walks, what they correlate with, and β.

Fits a ReferenceVAE on synthetic 2D cells (membrane + DNA), then, as in the
paper's sections 4.2 and 4.3:

- ranks the latent dimensions by mean absolute deviation and KL on held-out cells;
- walks the four top dimensions from -2 to +2 standard deviations in nine steps;
- correlates the top dimensions with per-cell features (cell and nucleus area,
  elongation, orientation, intensities...) by Spearman's rank correlation;
- sweeps β on the same split and plots rate against distortion (Fig. 3a).

Run: ``python examples/plot_latent_space.py --out example_output`` (about 5 minutes
on a 2-core CPU; ``--epochs 3`` for a quick look).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402

from cellgen import ReferenceVAE  # noqa: E402
from cellgen.analysis import (  # noqa: E402
    beta_sweep,
    latent_feature_correlations,
    latent_walk,
    rank_latent_dimensions,
)
from cellgen.datasets import make_cells  # noqa: E402
from cellgen.plotting import (  # noqa: E402
    plot_feature_correlations,
    plot_latent_ranking,
    plot_latent_walk,
    plot_rate_distortion,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="example_output")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--betas", default="0.005,0.02,0.05,0.2",
                    help="comma-separated β values for the sweep")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

X, y, meta = make_cells(1200, shape=(32, 32), random_state=0)
train, test = np.arange(1000), np.arange(1000, 1200)
ref = X[:, :2]  # membrane and DNA

params = dict(n_latent=32, widths=(16, 32, 64, 128), beta=0.05, lr=1e-3,
              max_epochs=args.epochs, random_state=0)
vae = ReferenceVAE(**params).fit(ref[train])
mu, logvar = vae.encode(ref[test])
ranking = rank_latent_dimensions(mu, logvar, feature_names=vae.get_feature_names_out())
print(f"{int(ranking['effective'].sum())} effective dimensions (mean KL > 0.1)")
plot_latent_ranking(ranking).savefig(out / "latent_ranking.png", dpi=90)

top = ranking["dimension"].to_numpy()[:4]
features = meta.loc[test, ["cell_area", "nucleus_area", "cell_elongation",
                           "cell_orientation", "nucleus_offset_x", "nucleus_offset_y"]]
rho = latent_feature_correlations(mu, features.reset_index(drop=True), dimensions=top)
print("Spearman correlation of the top dimensions with cell features:")
print(rho.round(2).to_string())
best = rho.abs().idxmax(axis=1)
names = [f"dim {d}: {best.iloc[i]}" for i, d in enumerate(top)]
images, steps = latent_walk(vae, top, Z=mu)
plot_latent_walk(images, steps, dimension_names=names).savefig(out / "latent_walks.png",
                                                                dpi=90)
plot_feature_correlations(rho).savefig(out / "latent_feature_correlations.png", dpi=90)

betas = [float(b) for b in args.betas.split(",")]
sweep = beta_sweep(ReferenceVAE(**params), ref[train], ref[test], betas)
print(sweep.round(3).to_string(index=False))
plot_rate_distortion(sweep).savefig(out / "rate_distortion.png", dpi=90)
print(f"figures written to {out}/")
