"""Drug effects in the Statistical Cell's latent spaces (paper section 4.5, Fig. 6).

Embed treated and untreated cells with a fitted StatisticalCell, then ask two
questions of each latent space: did the drug move the cells (an energy-distance
permutation test that exchanges whole wells, so that well-to-well differences are
not taken for effects, and the shift of the population centroid, treated - control),
and what does the move look like (cells sampled at fixed steps along the
direction of effect, and structures generated along it in one typical control
cell). The paper's expectation: the reference space (cell body and nucleus)
barely moves, the structure space moves.

With ``--bbbc021 FOLDER`` (``manifest.csv`` + ``cells/``, see
``cellgen.datasets.load_bbbc021``) the cells are BBBC021 MCF-7 cells: F-actin
stands in for the cell body, DNA is the nucleus and beta-tubulin (microtubules)
is the structure; every cell carries the same structure label. The default
compound is taxol (paclitaxel, a microtubule stabilizer, as in the paper's
Fig. 6), compared with the DMSO vehicle, all concentrations pooled, and a
dose-response along the direction across its concentrations, among the treated
cells only. ``--compound``
picks another treatment by its name in the manifest (case-sensitive); a name
the data does not hold is refused before training, with the list of names.

Without ``--bbbc021`` a SYNTHETIC STAND-IN runs instead: cells drawn by
``make_cells`` with the "nucleoli" structure are labelled control (DMSO) and
cells with "cytoplasmic_puncta" are labelled treated (the "drug" moves the
structure from the nucleus into the cytoplasm and leaves cell and nucleus
alone). It only shows the mechanics; its numbers say nothing about drugs.

Run::

    python examples/plot_drug_effect_bbbc021.py --bbbc021 ../shared/data/bbbc021 --out out

About 4 minutes on a 2-core CPU with the defaults (``--epochs 4`` for a quick look).
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell  # noqa: E402
from cellgen.analysis import (  # noqa: E402
    cells_along,
    dose_response,
    drug_effects,
    effect_direction,
    rank_latent_dimensions,
)
from cellgen.datasets import load_bbbc021, make_cells  # noqa: E402
from cellgen.plotting import (  # noqa: E402
    plot_dose_response,
    plot_drug_direction,
    plot_effect_scatter,
)
from cellgen.preprocessing import (  # noqa: E402
    CellAligner,
    IntensityNormalizer,
    PadCrop,
    VoxelResampler,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--bbbc021", default=None, help="folder with manifest.csv and cells/")
parser.add_argument("--out", default="example_output")
parser.add_argument("--epochs", type=int, default=20)
parser.add_argument("--compound", default="taxol", help="treatment compared with DMSO")
parser.add_argument("--n-latent", type=int, default=16,
                    help="latent dimensions of each model, at least 2 (the scatter plots two)")
parser.add_argument("--n-permutations", type=int, default=999)
args = parser.parse_args()
if args.n_latent < 2:
    parser.error(f"--n-latent must be at least 2, got {args.n_latent}: the effect scatter "
                 f"plots two latent dimensions of each space")
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
t_start = time.perf_counter()

# ------------------------------------------------------------------ the cells
if args.bbbc021:
    data = load_bbbc021(args.bbbc021, channels=("F-actin", "DNA", "beta-tubulin"), n_jobs=2)
    raw, meta = data.images, data.metadata.reset_index(drop=True)
    structure, compound = "beta-tubulin", args.compound
    # A name the data does not hold would only fail after training: check it now.
    available = sorted(set(meta.compound) - {"DMSO"})
    if compound not in available:
        close = [c for c in available if c.lower() == compound.lower()]
        hint = f" Did you mean {close[0]!r}?" if close else ""
        parser.error(f"--compound {compound!r} is not a treatment in {args.bbbc021} (names are "
                     f"case-sensitive; DMSO is the control).{hint} Available: "
                     f"{', '.join(available)}")
else:
    X, y, _ = make_cells(800, shape=(68, 68), structures=["nucleoli", "cytoplasmic_puncta"],
                         random_state=0)
    raw = (200 + 3000 * X).astype(np.float32)  # a camera offset, as in raw microscopy
    treated = y == "cytoplasmic_puncta"
    compound = "drug"
    # Three doses at random: the stand-in's effect does not grow with the dose.
    dose_of = np.random.RandomState(0).choice([0.3, 1.0, 3.0], len(y))
    meta = pd.DataFrame({"compound": np.where(treated, compound, "DMSO"),
                         "concentration": np.where(treated, dose_of, 0.0)})
    structure = "structure"
    print("no --bbbc021 given: SYNTHETIC stand-in (control = nucleoli, 'drug' = "
          "cytoplasmic puncta)")
print(f"{len(raw)} cells; {compound}: {(meta.compound == compound).sum()}, "
      f"DMSO: {(meta.compound == 'DMSO').sum()}")

prepare = make_pipeline(
    IntensityNormalizer(),
    CellAligner(axis_channel=0, center_channel=1),  # F-actin's major axis along X, DNA centred
    VoxelResampler(voxel_size=1.0, target_voxel_size=2.0),  # half resolution: a CPU-sized model
    PadCrop((32, 32)),
)
X = prepare.fit_transform(raw)

# ------------------------------------------------------------------ the model
# Every cell, treated or not, trains the model: it has to represent the drug's
# phenotypes for their embeddings to mean anything.
params = dict(n_latent=args.n_latent, widths=(16, 32, 64, 128), beta=0.05, lr=1e-3,
              max_epochs=args.epochs, random_state=0)
t0 = time.perf_counter()
cell = StatisticalCell(ReferenceVAE(**params), ConditionalStructureVAE(**params))
cell.fit(X, structures=np.full(len(X), structure, dtype=object))
print(f"fitted on {len(X)} cells ({args.epochs} epochs) in {time.perf_counter() - t0:.0f} s")
z_ref = cell.reference_model_.transform(X[:, :2])
z_struct = cell.structure_model_.transform(X, structures=structure)

# ------------------------------------------------------------------ the effects
pick = np.flatnonzero(meta.compound.isin([compound, "DMSO"]).to_numpy())
sub = meta.iloc[pick].reset_index(drop=True)
is_control = (sub.compound == "DMSO").to_numpy()
tables = []
# Cells of one well are not independent draws: the tests permute whole wells where the
# data names them (the synthetic stand-in has none, so its cells are the units).
wells = ["plate", "well"] if {"plate", "well"} <= set(sub.columns) else None
for name, Z in (("reference", z_ref[pick]), ("structure", z_struct[pick])):
    table = drug_effects(Z, sub, replicate=wells, n_permutations=args.n_permutations,
                         random_state=0)
    auc = drug_effects(Z, sub, replicate=wells, test="auc", n_permutations=99,
                       random_state=0)
    tables.append(table.assign(auc=auc["auc"], auc_p=auc["p_value"]).assign(embedding=name))
effects = pd.concat(tables, ignore_index=True).set_index(["embedding", "compound"])
print(effects.round(4).to_string())

effect = effect_direction(z_struct[pick][~is_control], z_struct[pick][is_control])
doses = sub.concentration.to_numpy(dtype=float)
# Among the treated cells only: with the controls at dose 0 the correlation would mostly
# restate the treated-versus-DMSO difference the direction was fitted on. Its p-value
# still treats cells as independent, and BBBC021 holds most taxol cells at one dose.
dose = dose_response(z_struct[pick][~is_control], doses[~is_control], effect.direction,
                     effect.origin)
print(dose.round(3).to_string())
print(f"dose-response among treated cells along the structure direction: Spearman rho = "
      f"{dose.attrs['spearman_rho']:.3f} (p = {dose.attrs['spearman_p']:.2g}; cells as "
      "independent)")
plot_dose_response(dose).savefig(out / "drug_dose_response.png", dpi=90)

# ------------------------------------------------------------------ figures
# Fig. 6b: the two top-ranked dimensions of each space, with the arrow of effect.
fig = Figure(figsize=(8.5, 3.8), layout="constrained")
for ax, (name, Z) in zip(fig.subplots(1, 2), (("reference", z_ref), ("structure", z_struct))):
    Zs = Z[pick]
    dims = tuple(rank_latent_dimensions(Zs)["dimension"].iloc[:2].astype(int))
    e = effect_direction(Zs[~is_control], Zs[is_control])
    plot_effect_scatter(Zs, sub.compound, dims=dims, direction=e.length * e.direction,
                        origin=e.origin, colors={"DMSO": "black", compound: "deeppink"}, ax=ax)
    ax.set_title(f"{name} latent space", fontsize=9)
fig.savefig(out / "drug_effect_scatter.png", dpi=90)

# Fig. 6c: real cells at fixed steps from the control end to the treated end.
along = cells_along(z_struct[pick], effect.direction, effect.origin, n=8)
t_along = (z_struct[pick][along] - effect.origin) @ effect.direction
plot_drug_direction(X[pick][along], positions=t_along,
                    titles=[f"{c}\nt={t:.2g}" for c, t in zip(sub.compound[along], t_along)]
                    ).savefig(out / "drug_cells_along.png", dpi=90)

# Structures generated along the direction in one typical control cell: the one
# whose reference embedding is nearest the control centroid.
controls = pick[is_control]
typical = controls[np.argmin(np.linalg.norm(z_ref[controls] - z_ref[controls].mean(0), axis=1))]
steps = np.linspace(0.0, 1.5, 7)
Z_walk = effect.origin + np.outer(steps * effect.length, effect.direction)
reference = np.repeat(X[typical:typical + 1, :2], len(steps), axis=0)
generated = cell.structure_model_.inverse_transform(Z_walk, reference=reference,
                                                    structures=structure)
# One scale for the whole walk, so a structure that brightens along it shows.
generated = generated / max(float(generated.max()), 1e-6)
plot_drug_direction(np.concatenate([0.3 * reference, generated], axis=1),
                    positions=steps * effect.length).savefig(out / "drug_generated_along.png",
                                                              dpi=90)
print(f"figures written to {out}/ in {time.perf_counter() - t_start:.0f} s")
