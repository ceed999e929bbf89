"""The ``cellgen`` command line.

``cellgen run --out results/`` generates synthetic cells (or reads real cells
from a manifest of OME-TIFFs, the BBBC021 folder layout, or an ``.npz`` file),
fits a :class:`~cellgen.StatisticalCell` and writes a short report with figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .io._paths import _expanduser

__all__ = ["main", "run"]


_CLI_HINTS = {
    "pass preprocessor=": "--shape Y,X (or Z,Y,X) pads or crops every cell to one shape.",
    "pass root=": "paths in a manifest are taken relative to the manifest's folder.",
    "pass batch_size=": "--batch-size sets it.",
}


def _parse_shape(text):
    try:
        shape = tuple(int(v) for v in text.lower().replace("x", ",").split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"shape must look like 32,32 or 16,32,32; got {text!r}") \
            from exc
    if len(shape) not in (2, 3) or min(shape) < 8:
        raise argparse.ArgumentTypeError(f"shape needs 2 or 3 axes of at least 8; got {text!r}")
    return shape


def _load_npz(path):
    path = _expanduser(path)
    if not path.is_file():
        raise FileNotFoundError(f"--input {path} does not exist.")
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in ("X", "y") if k not in data.files]
        if missing:
            raise ValueError(
                f"--input {path} lacks the arrays {missing}; it must hold "
                f"'X' (n_cells, n_channels, [Z,] Y, X) and 'y' (structure labels); it has "
                f"{data.files}."
            )
        try:
            y = data["y"]
        except ValueError as exc:  # object arrays need pickle, which could run code
            raise ValueError(
                f"--input {path}: 'y' was saved as an array of Python objects, which is not "
                "read (unpickling can run code); save the labels as strings: "
                "np.savez(path, X=X, y=np.asarray(y, dtype=str))."
            ) from exc
        return data["X"], y.astype(str)


def _load_real(manifest, *, channels, label_column, shape, n_jobs, verbose, voxel_size=None):
    """Read a manifest and prepare the cells as in the paper.

    Channels are ordered cell body (membrane), DNA, then structure; the first two
    drive the alignment, and the structure channel is the last.
    """
    import pandas as pd
    from sklearn.pipeline import make_pipeline

    from .io import load_manifest
    from .preprocessing import CellAligner, IntensityNormalizer, PadCrop, VoxelResampler

    manifest = _expanduser(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"--manifest {manifest} does not exist.")
    rows = pd.read_csv(manifest)
    # The channel count, like the label column, is checked before thousands of
    # images are read and aligned.
    first_pixel_size = None
    if channels is not None and voxel_size is None:
        n_channels = len(channels)
    else:
        from .io import read_image, read_manifest

        _, paths = read_manifest(rows.iloc[:1], root=manifest.parent)
        image, info = read_image(paths[0], channels=channels)
        n_channels, first_pixel_size = len(image), tuple(info["pixel_size"])
        if voxel_size is not None and any(v is None for v in first_pixel_size):
            raise ValueError(
                f"--voxel-size resamples each cell from its file's pixel size, and "
                f"'{paths[0]}' has none (pixel size {first_pixel_size}); write the pixel size "
                "into the files (cellgen.io.write_ome_tiff), or leave --voxel-size out."
            )
    if n_channels < 3:
        raise ValueError(
            f"the manifest's images have {n_channels} channel(s); cellgen needs a cell body "
            "(membrane) channel, a DNA channel and a structure channel (choose them, in that "
            "order, with --channels)."
        )
    # Check the label column before reading thousands of images.
    if label_column is not None and label_column not in rows.columns:
        raise ValueError(
            f"--label-column {label_column!r} is not a column of the manifest; its columns "
            f"are {list(rows.columns)}."
        )
    if label_column is not None and rows[label_column].isna().any():
        missing = np.flatnonzero(rows[label_column].isna().to_numpy())
        raise ValueError(
            f"--label-column {label_column!r} has no label in {len(missing)} row(s) "
            f"(rows {missing[:10].tolist()}); label them or leave them out of the manifest."
        )
    steps = [IntensityNormalizer(n_jobs=n_jobs)]
    if voxel_size is not None:
        # The paper rescales every cell to cubic voxels (0.317 um) before padding.
        steps.append(VoxelResampler(voxel_size=first_pixel_size, target_voxel_size=voxel_size,
                                    n_jobs=n_jobs))
    steps.append(CellAligner(axis_channel=0, center_channel=1, n_jobs=n_jobs))
    if shape is not None:
        steps.append(PadCrop(shape))
    X, meta = load_manifest(rows, root=manifest.parent, channels=channels,
                            preprocessor=make_pipeline(*steps), n_jobs=n_jobs, verbose=verbose)
    names = list(meta.attrs.get("channel_names") or [])
    if len(set(names)) != len(names):
        # Microscope exports often call every channel the same; the files written
        # at the end need distinct names, so say it now, not after training.
        print(f"cellgen: warning: the images' channel names repeat ({names}); the report "
              "calls them membrane, DNA and structure.", file=sys.stderr)
        names = (["membrane", "DNA"] + [f"ch{i}" for i in range(2, len(names) - 1)]
                 + ["structure"])  # the structure channel is the last
    structure_name = names[-1] if names else "structure"
    if label_column is not None:
        y = meta[label_column].astype(str).to_numpy()
    else:
        y = np.full(len(X), structure_name, dtype=object)
    # The preparation never changes the voxel grid, so the files' pixel size (None
    # where they disagree or lack it) still describes the cells written at the end.
    pixel_size = meta.attrs.get("pixel_size")
    if voxel_size is not None:
        if pixel_size is None or tuple(pixel_size) != first_pixel_size:
            raise ValueError(
                f"--voxel-size needs one pixel size for every file of the manifest; the first "
                f"has {first_pixel_size}, and the files differ. Resample them in Python "
                "(cellgen.preprocessing.VoxelResampler) per group of equal pixel size."
            )
        pixel_size = (float(voxel_size),) * (X.ndim - 2)
    if pixel_size is not None and all(v is None for v in pixel_size):
        pixel_size = None
    return X, np.asarray(y).astype(str), names or None, pixel_size


def _with_controls(X, y, random_state):
    """The cells followed by the paper's five control structures made from them."""
    from .preprocessing import add_control_structures

    X, y, _ = add_control_structures(X, y, membrane_channel=0, dna_channel=1,
                                     structure_channel=-1, random_state=random_state)
    return X, np.asarray(y).astype(str)


def _fraction_in_mask(images, masks):
    images = np.clip(images, 0, None)
    axes = tuple(range(1, images.ndim))
    return (images * masks).sum(axes) / np.maximum(images.sum(axes), 1e-8)


def run(out, *, n_cells=1200, ndim=2, shape=None, max_epochs=30, batch_size=32, n_latent=32,
        widths=(16, 32, 64, 128), beta=0.05, input_path=None, manifest=None, bbbc021=None,
        channels=None, label_column=None, controls=None, voxel_size=None, n_jobs=None,
        test_fraction=0.1, random_state=0, device="auto", verbose=0):
    """Fit a StatisticalCell and write a report with figures into ``out``.

    Parameters
    ----------
    out : str or path
        Output folder (created; files are written atomically at the end).
    n_cells : int, default=1200
        Number of synthetic cells (ignored with real data).
    ndim : {2, 3}, default=2
        Dimensionality of the synthetic cells.
    shape : tuple of int or None, default=None
        Spatial shape of the synthetic cells (32×32 in 2D, 16×32×32 in 3D by
        default); with a manifest, the shape every cell is padded or cropped to
        (default: the images' own shape, which must then be the same for all).
    max_epochs : int, default=30
        Training epochs of each model.
    batch_size : int, default=32
        Cells per training batch; at most the number of training cells.
    n_latent : int, default=32
        Latent dimension of each model.
    widths : tuple of int, default=(16, 32, 64, 128)
        Channels of the residual blocks.
    beta : float, default=0.05
        KL weight of Eq. 3; small images need a small value (the
        reconstruction term grows with the number of pixels).
    input_path : str or None, default=None
        An ``.npz`` file with arrays ``X`` (cells, channels last-but-spatial,
        structure channel last) and ``y`` (structure labels) instead of
        synthetic cells.
    manifest : str or None, default=None
        A CSV manifest of OME-TIFF cells (one row per cell, a ``path`` column;
        see :func:`cellgen.io.load_manifest`). Cells are normalized, aligned
        and padded as in the paper (:mod:`cellgen.preprocessing`).
    bbbc021 : str or None, default=None
        A folder in the BBBC021 layout (:func:`cellgen.datasets.load_bbbc021`):
        F-actin and DNA as reference, beta-tubulin as structure, with the
        paper's five control structures added unless ``controls`` is False.
    channels : list of str or None, default=None
        With ``manifest``: channel names (or indices) in the order cell body
        (membrane), DNA, structure; default all channels in file order.
    label_column : str or None, default=None
        With ``manifest``: the column holding each cell's structure label;
        default: every cell is labelled with the structure channel's name.
    controls : bool or None, default=None
        Add the paper's control structures (blank, DNA copy, membrane copy,
        noise, random other cell) to the real cells. ``None`` means True for
        ``bbbc021`` and False otherwise.
    voxel_size : float or None, default=None
        With ``manifest``: resample every cell to cubic voxels of this size (in
        the files' unit, micrometres for OME-TIFF; the paper uses 0.317) from
        the pixel size written in its file, before alignment and padding. The
        files must carry one pixel size; ``None`` keeps their grid.
    n_jobs : int or None, default=None
        Parallel jobs for reading and preprocessing.
    test_fraction : float, default=0.1
        Fraction of cells held out for the report; with control structures,
        the cells are split first and each side's controls are made from its
        own cells, so no held-out cell (or its structure) is seen in training.
    random_state : int, default=0
        Seed of data generation, split and training.
    device : str, default="auto"
        Torch device.
    verbose : int, default=0
        Training verbosity.

    Returns
    -------
    metrics : dict
        The numbers written to ``metrics.json``.

    Examples
    --------
    >>> from cellgen.cli import run
    >>> metrics = run("results", n_cells=64, shape=(16, 16), max_epochs=1,
    ...               widths=(8, 16), n_latent=4)  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    from . import ConditionalStructureVAE, ReferenceVAE, StatisticalCell, __version__
    from .analysis import rank_latent_dimensions
    from .datasets import make_cells

    if voxel_size is not None and not (np.isfinite(voxel_size) and voxel_size > 0):
        raise ValueError(f"voxel_size (--voxel-size) must be a positive number; got {voxel_size}.")
    t0 = time.perf_counter()
    rng = np.random.RandomState(random_state)
    meta = None
    if sum(v is not None for v in (input_path, manifest, bbbc021)) > 1:
        raise ValueError("give at most one of input_path (--input), manifest (--manifest) "
                         "and bbbc021 (--bbbc021).")
    if bbbc021 is not None:
        folder = _expanduser(bbbc021)
        if not (folder / "manifest.csv").is_file():
            raise FileNotFoundError(
                f"--bbbc021 {folder} has no manifest.csv; see cellgen.datasets.load_bbbc021 "
                "for the expected layout."
            )
        manifest = folder / "manifest.csv"
        channels = channels or ["F-actin", "DNA", "beta-tubulin"]
        controls = True if controls is None else controls
    if manifest is not None:
        X, y, channel_names, pixel_size = _load_real(
            manifest, channels=channels, label_column=label_column, shape=shape,
            n_jobs=n_jobs, verbose=verbose, voxel_size=voxel_size)
        source = (f"{len(X)} cells from {Path(manifest).name}"
                  + (" with the paper's control structures" if controls else "")
                  + f", shape {tuple(X.shape[2:])}")
    elif input_path is not None:
        X, y = _load_npz(input_path)
        source = f"file {Path(input_path).name}"
        channel_names, pixel_size = None, None
    else:
        shape = shape or ((32, 32) if ndim == 2 else (16, 32, 32))
        X, y, meta = make_cells(n_cells, ndim=len(shape), shape=shape, random_state=rng)
        source = f"{n_cells} synthetic cells (cellgen.datasets.make_cells), shape {shape}"
        channel_names, pixel_size = ["membrane", "DNA", "structure"], None
    controls = bool(controls) and manifest is not None
    n = len(X)
    perm = rng.permutation(n)
    # The random-cell control needs two cells on each side.
    n_test = max(2 if controls else 1, int(round(test_fraction * n)))
    test, train = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    if controls:
        # Split the cells first, then make each side's controls from its own cells: a
        # control shares its cell's reference channels (and the random one another
        # cell's structure), so controls made before the split would leak held-out
        # cells into training.
        X_train, y_train = _with_controls(X[train], y[train], random_state)
        X_test, y_test = _with_controls(X[test], y[test], random_state + 1)
        X, y = np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])
        train, test = np.arange(len(X_train)), np.arange(len(X_train), len(X))

    params = dict(n_latent=n_latent, widths=tuple(widths), max_epochs=max_epochs,
                  batch_size=batch_size, lr=1e-3, beta=beta, device=device, verbose=verbose)
    model = StatisticalCell(ReferenceVAE(random_state=random_state, **params),
                            ConditionalStructureVAE(random_state=random_state + 1, **params))
    t_fit = time.perf_counter()
    model.fit(X[train], y[train])
    fit_seconds = time.perf_counter() - t_fit

    Xt, yt = X[test], y[test]
    ref_idx, s_idx = model.reference_channels_, model.structure_channel_
    ref_t = Xt[:, ref_idx]
    mu, logvar = model.reference_model_.encode(ref_t)
    rec_ref = model.reference_model_.inverse_transform(mu)
    mean_image = X[train][:, ref_idx].mean(0, keepdims=True)
    mse_model = float(((rec_ref - ref_t) ** 2).mean())
    mse_mean = float(((mean_image - ref_t) ** 2).mean())
    ranking = rank_latent_dimensions(mu, logvar,
                                     feature_names=model.reference_model_.get_feature_names_out())
    elbo_ref = model.reference_model_.score_samples(ref_t)
    elbo_cell = model.score_samples(Xt, structures=yt)

    metrics = {
        "cellgen_version": __version__,
        "source": source,
        "n_train": int(len(train)),
        "n_test": int(len(test)),
        "structures": sorted(map(str, model.classes_)),
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
        "device": model.reference_model_.device_,
        "fit_seconds": round(fit_seconds, 1),
        "heldout_reference_mse": mse_model,
        "heldout_mean_image_mse": mse_mean,
        "heldout_reference_elbo": float(elbo_ref.mean()),
        "heldout_cell_elbo": float(elbo_cell.mean()),
        "effective_reference_dimensions": int(ranking["effective"].sum()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
    }

    # Where imputed structures put their intensity, against the real channel.
    if meta is not None:
        nucleus = (ref_t[:, 1] > 0.3).astype(np.float32)
        rows = {}
        for label in model.classes_:
            imputed = model.structure_model_.impute(ref_t, label)[:, 0]
            sel = yt == label
            rows[str(label)] = {
                "imputed_fraction_in_nucleus": float(_fraction_in_mask(imputed, nucleus).mean()),
                "real_fraction_in_nucleus": float(
                    _fraction_in_mask(Xt[sel, s_idx], nucleus[sel]).mean()) if sel.any()
                else None,
            }
        metrics["imputation"] = rows

    out = _expanduser(out)
    out.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder first so an interrupted run leaves no half report.
    tmp = Path(tempfile.mkdtemp(prefix=".cellgen-", dir=out))
    try:
        _write_report(out, tmp, model, metrics, ranking, test, ref_t, rec_ref, ref_idx,
                      channel_names, pixel_size, random_state, t0)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return metrics


def _write_report(out, tmp, model, metrics, ranking, test, ref_t, rec_ref, ref_idx,
                  channel_names, pixel_size, random_state, t0):
    """Write the figures, the generated cells and the report into ``tmp``, then move them."""
    import pandas as pd

    from .io import save_cells
    from .plotting import plot_history, plot_image_grid, plot_latent_ranking, plot_reconstructions

    k = min(8, len(test))
    generated, generated_labels = model.sample(16, random_state=random_state)
    # The generated cells as OME-TIFFs with a manifest, for Fiji or napari.
    save_cells(tmp / "generated", generated, channel_names=channel_names, pixel_size=pixel_size,
               metadata=pd.DataFrame({"structure": generated_labels}))
    figs = {
        "reconstructions.png": plot_reconstructions(ref_t[:k], rec_ref[:k]),
        "generated.png": plot_image_grid(generated, ncols=8),
        "latent_ranking.png": plot_latent_ranking(ranking),
        "history_reference.png": plot_history(model.reference_model_.history_),
        "history_structure.png": plot_history(model.structure_model_.history_),
    }
    integrated = model.impute(ref_t[:min(4, len(test))])
    n_ref = len(ref_idx)
    labels = list(map(str, model.classes_))
    # Rows: held-out cells. Column 0: the reference alone; then each imputed
    # structure (yellow) over a dimmed reference.
    ref_part = integrated[:, :n_ref]
    columns = [np.concatenate([ref_part, np.zeros_like(ref_part[:, :1])], axis=1)]
    for j in range(len(labels)):
        columns.append(np.concatenate([0.35 * ref_part, integrated[:, n_ref + j:n_ref + j + 1]],
                                      axis=1))
    figs["imputed.png"] = plot_image_grid(np.stack(columns, axis=1),
                                          titles=[["reference"] + labels]
                                          + [[""] * (len(labels) + 1)] * (len(integrated) - 1),
                                          spatial_ndim=len(model.spatial_shape_))
    for name, fig in figs.items():
        fig.savefig(tmp / name, dpi=80, bbox_inches="tight")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (tmp / "report.md").write_text(_report(metrics, ranking, time.perf_counter() - t0))
    for f in tmp.iterdir():
        if f.is_dir() and (out / f.name).is_dir():
            shutil.rmtree(out / f.name)  # a previous run's folder: replaced, like its files
        os.replace(f, out / f.name)
    tmp.rmdir()


def _report(metrics, ranking, seconds):
    lines = [
        "# cellgen report",
        "",
        f"Data: {metrics['source']}; {metrics['n_train']} cells for training, "
        f"{metrics['n_test']} held out. Structures: {', '.join(metrics['structures'])}.",
        f"Model: StatisticalCell, settings {metrics['settings']}, device "
        f"{metrics['device']}, cellgen {metrics['cellgen_version']}, {metrics['machine']}.",
        f"Training took {metrics['fit_seconds']} s; the whole run {seconds:.1f} s.",
        "",
        "## Held-out cells",
        "",
        f"- Reference reconstruction error (MSE per pixel): "
        f"{metrics['heldout_reference_mse']:.5f}, against {metrics['heldout_mean_image_mse']:.5f}"
        " for the mean training image.",
        f"- Mean ELBO of the reference: {metrics['heldout_reference_elbo']:.1f}; of the whole "
        f"cell: {metrics['heldout_cell_elbo']:.1f}.",
        f"- Effective reference dimensions (mean KL > 0.1): "
        f"{metrics['effective_reference_dimensions']}.",
        "",
        "![reconstructions](reconstructions.png)",
        "",
        "## Generated cells",
        "",
        "![generated](generated.png)",
        "",
        "The same cells are saved as OME-TIFFs with their structure labels in `generated/`"
        " (`generated/manifest.csv`), for Fiji or napari.",
        "",
        "## Structures imputed into held-out cells",
        "",
        "Each row is a held-out cell; each column one structure imputed at the prior mean.",
        "",
        "![imputed](imputed.png)",
        "",
    ]
    if "imputation" in metrics:
        lines += ["| structure | imputed intensity in nucleus | real intensity in nucleus |",
                  "|---|---|---|"]
        for label, row in metrics["imputation"].items():
            real = row["real_fraction_in_nucleus"]
            lines.append(f"| {label} | {row['imputed_fraction_in_nucleus']:.2f} | "
                         f"{'n/a' if real is None else f'{real:.2f}'} |")
        lines.append("")
    lines += ["## Reference latent dimensions, ranked", "",
              "| rank | dimension | mean abs. deviation | mean KL |", "|---|---|---|---|"]
    for _, row in ranking.head(10).iterrows():
        lines.append(f"| {row['rank']} | {row['name']} | {row['mad']:.3f} | {row['kl']:.3f} |")
    lines += ["", "![latent ranking](latent_ranking.png)", "",
              "## Training", "", "![reference history](history_reference.png)",
              "![structure history](history_structure.png)", ""]
    return "\n".join(lines)


def main(argv=None):
    """Entry point of the ``cellgen`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        Arguments; ``None`` reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success.

    Examples
    --------
    >>> from cellgen.cli import main
    >>> main(["run", "--out", "results"])  # doctest: +SKIP
    0
    """
    parser = argparse.ArgumentParser(prog="cellgen", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="fit a StatisticalCell and write a report")
    p.add_argument("--out", default="results", help="output folder (default: results)")
    p.add_argument("--input", dest="input_path", default=None,
                   help="an .npz with arrays X and y (labels saved as strings) instead of "
                        "synthetic cells")
    p.add_argument("--manifest", default=None,
                   help="a CSV manifest of OME-TIFF cells (column 'path', one row per cell)")
    p.add_argument("--bbbc021", default=None,
                   help="a BBBC021 folder (manifest.csv + cells/); adds the control structures")
    p.add_argument("--channels", type=lambda s: s.split(","), default=None,
                   help="with --manifest: channel names, cell body,DNA,structure")
    p.add_argument("--label-column", default=None,
                   help="with --manifest: the column holding each cell's structure label")
    p.add_argument("--controls", action=argparse.BooleanOptionalAction, default=None,
                   help="add the paper's five control structures to real cells")
    p.add_argument("--voxel-size", type=float, default=None,
                   help="with --manifest: resample cells to cubic voxels of this size (um; "
                        "the paper: 0.317) from the files' pixel size")
    p.add_argument("--n-jobs", type=int, default=None, help="parallel reading/preprocessing")
    p.add_argument("--n-cells", type=int, default=None,
                   help="number of synthetic cells (default: 1200; not used with real data)")
    p.add_argument("--ndim", type=int, choices=(2, 3), default=None,
                   help="2D or 3D synthetic cells (default: 2, or the length of --shape)")
    p.add_argument("--shape", type=_parse_shape, default=None,
                   help="Y,X or Z,Y,X: the synthetic cells' shape (default 32,32 or 16,32,32), "
                        "or the shape real cells are padded or cropped to, their long axis "
                        "along X (e.g. 96,128)")
    p.add_argument("--epochs", dest="max_epochs", type=int, default=30,
                   help="training epochs of each model (default: 30)")
    p.add_argument("--batch-size", type=int, default=32,
                   help="cells per training batch, at most the training cells (default: 32)")
    p.add_argument("--n-latent", type=int, default=32,
                   help="latent dimensions of each model (default: 32)")
    p.add_argument("--widths", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=(16, 32, 64, 128),
                   help="channels of the residual blocks (default: 16,32,64,128)")
    p.add_argument("--beta", type=float, default=0.05,
                   help="KL weight of Eq. 3, in [0, 1] (default: 0.05)")
    p.add_argument("--random-state", type=int, default=0,
                   help="seed of the synthetic cells, the split and training (default: 0)")
    p.add_argument("--device", default="auto",
                   help="torch device: auto (a GPU when present), cpu, cuda, cuda:1, mps")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="print training progress")
    args = vars(parser.parse_args(argv))
    args.pop("command")
    out = args.pop("out")
    shape, ndim = args["shape"], args["ndim"]
    if shape is not None and ndim is not None and len(shape) != ndim:
        parser.error(f"--ndim {ndim} contradicts --shape {','.join(map(str, shape))} "
                     f"({len(shape)} axes); give one of them.")
    real = [k for k in ("input_path", "manifest", "bbbc021") if args[k] is not None]
    manifest = args["manifest"] is not None or args["bbbc021"] is not None
    source = (f"--{real[0].replace('_path', '').replace('_', '-')}" if real
              else "synthetic cells")
    unused = {"--n-cells": args["n_cells"] is not None and real,
              "--ndim": ndim is not None and real,
              "--shape": shape is not None and args["input_path"] is not None,
              "--controls": args["controls"] is not None and not manifest,
              "--label-column": args["label_column"] is not None and not manifest,
              "--channels": args["channels"] is not None and not manifest,
              "--voxel-size": args["voxel_size"] is not None and not manifest}
    for option, ignored in unused.items():
        if ignored:
            print(f"cellgen: warning: {option} is not used with {source}.", file=sys.stderr)
    args["n_cells"] = 1200 if args["n_cells"] is None else args["n_cells"]
    args["ndim"] = len(shape) if shape is not None else (ndim or 2)
    try:
        metrics = run(out, **args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"cellgen: error: {exc}", file=sys.stderr)
        # The library's messages name Python arguments; say what the command calls them.
        hints = [hint for key, hint in _CLI_HINTS.items() if key in str(exc)]
        for hint in hints:
            print(f"cellgen: on the command line, {hint}", file=sys.stderr)
        return 2
    print(f"Report written to {Path(out) / 'report.md'} "
          f"(training {metrics['fit_seconds']} s on {metrics['device']}).")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
