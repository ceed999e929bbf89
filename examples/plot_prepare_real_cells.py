"""Preparing real cells: normalize, align, centre, pad, project, add controls, then fit.

The Statistical Cell's preprocessing (paper, section 6.1.2) on two kinds of data:

1. 2D crops in the BBBC021 layout (DNA, F-actin, beta-tubulin): each channel
   normalized, each cell rotated so its major axis lies along X, the nucleus
   centred and the cell flipped by skew, padded to a fixed shape; then the
   paper's five control structures are added (blank, DNA copy, cell-body copy,
   noise inside the cell, another cell's structure) and a scikit-learn Pipeline
   of the transformers followed by a StatisticalCell is fitted. A tenth of the
   cells is held out for scoring, each together with its control copies (which
   share its reference channels), so training never sees a held-out cell's
   cell body and nucleus.
2. A 3D OME-TIFF cell (an Allen Cell Collection segmentation, ZCYX): rescaled
   to cubic voxels from the file's pixel sizes, aligned, centred, padded and
   projected to 2D.

Before/after figures go to ``--out``. Give the data with ``--bbbc021 FOLDER``
(``manifest.csv`` + ``cells/``, see ``cellgen.datasets.load_bbbc021``) and
``--allen FILE.ome.tif``; without them synthetic cells stand in, so the example
runs without downloads. Run::

    python examples/plot_prepare_real_cells.py --bbbc021 BBBC021/ \
        --allen AICS-10_5_5_segmentations.ome.tif --out example_output

About 6 minutes on a 2-core CPU with the defaults (``--epochs 5`` for a quick look).
"""

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
from sklearn.model_selection import GroupShuffleSplit  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell  # noqa: E402
from cellgen.datasets import load_bbbc021, make_cells  # noqa: E402
from cellgen.io import read_image, save_cells  # noqa: E402
from cellgen.plotting import plot_image_grid  # noqa: E402
from cellgen.preprocessing import (  # noqa: E402
    CellAligner,
    IntensityNormalizer,
    MaxProjector,
    PadCrop,
    VoxelResampler,
    add_control_structures,
    alignment_parameters,
)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--bbbc021", default=None, help="folder with manifest.csv and cells/")
parser.add_argument("--allen", default=None, help="a 3D OME-TIFF cell (ZCYX: cell, nucleus, ...)")
parser.add_argument("--out", default="example_output")
parser.add_argument("--epochs", type=int, default=15)
parser.add_argument("--controls-per-kind", type=int, default=400,
                    help="cells copied into each control structure")
args = parser.parse_args()
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
rng = np.random.RandomState(0)

# ---------------------------------------------------------------- 2D: BBBC021
# Channel order for cellgen: cell body (F-actin stands in for the membrane), DNA, structure.
if args.bbbc021:
    data = load_bbbc021(args.bbbc021, channels=("F-actin", "DNA", "beta-tubulin"), n_jobs=2)
    raw, names = data.images, list(data.channel_names)
    print(f"BBBC021: {raw.shape[0]} cells {raw.shape[1:]}, {len(data.target_names)} MoA classes")
else:
    X, _, _ = make_cells(600, shape=(68, 68), structures=["cytoplasmic_puncta"], random_state=0)
    raw = (200 + 3000 * X).astype(np.uint16)  # a camera offset, as in raw microscopy
    names = ["cell body", "DNA", "structure"]
    print("no --bbbc021 given: synthetic stand-in cells", raw.shape)

prepare = make_pipeline(
    IntensityNormalizer(),  # subtract the most frequent value, zero negatives, scale to [0, 1]
    CellAligner(axis_channel=0, center_channel=1),  # major axis along X, nucleus at the centre
    VoxelResampler(voxel_size=1.0, target_voxel_size=2.0),  # half resolution: a CPU-sized model
    PadCrop((32, 32)),
)
t0 = time.perf_counter()
prepared = prepare.fit_transform(raw)
print(f"prepared {len(raw)} cells in {time.perf_counter() - t0:.2f} s -> {prepared.shape}")
angles = alignment_parameters(IntensityNormalizer().fit_transform(raw[:200]),
                              axis_channel=0, center_channel=1)
print("rotation applied to the first 200 cells (degrees), quartiles:",
      np.percentile(angles["angle"], [25, 50, 75]).round(1))

show = rng.choice(len(raw), 8, replace=False)
before = IntensityNormalizer().fit_transform(raw[show])  # raw intensities, only rescaled
after = make_pipeline(IntensityNormalizer(), CellAligner(axis_channel=0, center_channel=1)
                      ).fit_transform(raw[show])
plot_image_grid(np.stack([before, after], axis=0), spatial_ndim=2,
                row_labels=["normalized", "aligned"]).savefig(out / "bbbc021_before_after.png",
                                                              dpi=90)

# The paper's controls: turn one tagged structure into six "structures".
y = np.full(len(raw), "beta-tubulin" if args.bbbc021 else "structure", dtype=object)
X_all, y_all, source = add_control_structures(raw, y, membrane_channel=0, dna_channel=1,
                                              structure_channel=2, random_state=0)
# Keep every real cell but only some copies of each control, so that training fits a CPU.
keep = np.concatenate([np.flatnonzero(y_all == label) if label == y[0] else
                       rng.choice(np.flatnonzero(y_all == label),
                                  min(args.controls_per_kind, int((y_all == label).sum())),
                                  replace=False)
                       for label in np.unique(y_all)])
X_all, y_all, source = X_all[keep], y_all[keep], source[keep]
# One cell with its real structure and the five controls (composites: cell body,
# DNA, structure).
X_show, y_show, src_show = add_control_structures(raw[show], y[show], structure_channel=2,
                                                  random_state=0)
plot_image_grid(prepare.transform(X_show[src_show == 0]),
                titles=list(y_show[src_show == 0])).savefig(out / "bbbc021_controls.png", dpi=90)
print("structures:", {str(label): int(count)
                      for label, count in zip(*np.unique(y_all, return_counts=True))})

# A Pipeline of the preprocessing transformers followed by a StatisticalCell.
# Hold out whole cells: a cell's control copies share its reference channels, so
# a split over rows would train on the cell body and DNA of held-out cells.
split = GroupShuffleSplit(n_splits=1, test_size=0.1, random_state=0)
_, test_rows = next(split.split(X_all, y_all, groups=source))
test = np.zeros(len(X_all), dtype=bool)
test[test_rows] = True
params = dict(n_latent=32, widths=(16, 32, 64, 128), beta=0.05, lr=1e-3,
              max_epochs=args.epochs, random_state=0)
model = make_pipeline(*[step for _, step in prepare.steps],
                      StatisticalCell(ReferenceVAE(**params), ConditionalStructureVAE(**params)))
t0 = time.perf_counter()
model.fit(X_all[~test], y_all[~test])
print(f"fitted the Pipeline on {int((~test).sum())} cells in {time.perf_counter() - t0:.0f} s; "
      f"held out {len(np.unique(source[test]))} cells ({int(test.sum())} with their controls)")
cell = model[-1]
X_test = model[:-1].transform(X_all[test])
elbo = cell.score_samples(X_test, structures=y_all[test])
for label in np.unique(y_all):
    held = y_all[test] == label
    # Few copies per control can leave a structure without a held-out cell.
    print(f"  held-out ELBO per cell, {label:>16}: " +
          (f"{elbo[held].mean():9.1f} (n = {int(held.sum())})" if held.any() else
           "no held-out cells"))
# Every structure imputed into six held-out cells, written as OME-TIFFs for Fiji or napari.
integrated = cell.impute(X_test[:6])
labels = list(map(str, cell.classes_))
save_cells(out / "bbbc021_integrated", integrated,
           channel_names=[names[0], names[1], *labels], overwrite=True)
grid = np.stack([np.concatenate([0.4 * integrated[:, :2], integrated[:, 2 + j:3 + j]], axis=1)
                 for j in range(len(labels))], axis=1)
plot_image_grid(grid, spatial_ndim=2, titles=[labels] + [[""] * len(labels)] * 5).savefig(
    out / "bbbc021_imputed.png", dpi=90)

# -------------------------------------------------------------- 3D: the Allen cell
if args.allen:
    image, info = read_image(args.allen)
    voxel = tuple(v if v else 1.0 for v in info["pixel_size"])
    print(f"Allen cell: {image.shape}, channels {info['channel_names']}, voxel {voxel} um")
    cells3d = image[None]
else:
    X3, _, _ = make_cells(1, ndim=3, shape=(24, 64, 64), random_state=0)
    cells3d, voxel = X3, (0.29, 0.108, 0.108)
    print("no --allen given: a synthetic 3D stand-in cell", cells3d.shape)

# Pad to a square Y-X canvas first: a cell that fills its crop along Y would be
# cut off once its major axis is turned onto X.
side = int(np.ceil(np.hypot(*cells3d.shape[-2:])))
canvas = PadCrop((cells3d.shape[2], side, side)).fit_transform(cells3d)
t0 = time.perf_counter()
aligned3d = CellAligner(axis_channel=0, center_channel=1, order=0).fit_transform(canvas)
print(f"3D alignment of a {canvas.shape[1:]} cell: {time.perf_counter() - t0:.2f} s")
# The paper: "linearly rescaled to cubic voxels of 0.317 um/px, and padded to
# 128 x 96 x 64" (X x Y x Z, i.e. arrays of shape (64, 96, 128) here).
cubic = VoxelResampler(voxel_size=voxel, target_voxel_size=0.317, order=0).fit_transform(
    aligned3d)
target = (64, 96, 128)
padded = PadCrop(target).fit_transform(cubic)
projected = MaxProjector().fit_transform(padded)
print(f"cubic voxels {cubic.shape[2:]}, padded to {target}, projected to {projected.shape[2:]}")
three = [0, 1]  # cell and nucleus; the composite of all three is hard to read
plot_image_grid(np.concatenate([canvas[:, three], aligned3d[:, three]]).astype(np.float32),
                titles=["original", "aligned and centred"], side_view=True,
                normalize=True).savefig(out / "allen_3d_before_after.png", dpi=90)
plot_image_grid(projected[:, three].astype(np.float32), titles=["max projection"],
                normalize=True).savefig(out / "allen_3d_projection.png", dpi=90)
print(f"figures written to {out}/")
