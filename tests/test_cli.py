import json

import numpy as np
import pytest

from cellgen.cli import main
from cellgen.datasets import make_cells
from cellgen.io import load_manifest

from .conftest import SHARED_DATA

TINY_ARGS = ["--n-cells", "60", "--shape", "16,16", "--epochs", "1", "--n-latent", "4",
             "--widths", "8,16"]


def test_run_writes_report_and_figures(tmp_path):
    out = tmp_path / "results"
    assert main(["run", "--out", str(out), *TINY_ARGS]) == 0
    for name in ("report.md", "metrics.json", "reconstructions.png", "generated.png",
                 "imputed.png", "latent_ranking.png", "history_reference.png"):
        assert (out / name).stat().st_size > 0, name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_test"] == 60
    assert set(metrics["imputation"]) == set(metrics["structures"])
    report = (out / "report.md").read_text()
    assert "Reference latent dimensions, ranked" in report
    generated, meta = load_manifest(out / "generated" / "manifest.csv")
    assert generated.shape == (16, 3, 16, 16)
    assert meta.attrs["channel_names"] == ["membrane", "DNA", "structure"]
    assert set(meta["structure"]) <= set(metrics["structures"])
    # A second run into the same folder replaces the generated cells.
    assert main(["run", "--out", str(out), *TINY_ARGS, "--random-state", "1"]) == 0
    assert len(list((out / "generated").glob("*.ome.tif"))) == 16
    assert not [p for p in out.iterdir() if p.name.startswith(".cellgen-")]


def test_run_3d(tmp_path):
    out = tmp_path / "r3"
    args = ["--n-cells", "24", "--shape", "8,16,16", "--epochs", "1", "--batch-size", "8",
            "--n-latent", "2",
            "--widths", "4,8"]
    assert main(["run", "--out", str(out), *args]) == 0
    assert json.loads((out / "metrics.json").read_text())["n_test"] >= 1


def test_run_on_npz_input(tmp_path):
    X, y, _ = make_cells(40, shape=(16, 16), structures=["nucleoli", "cell_periphery"],
                         random_state=0)
    path = tmp_path / "cells.npz"
    np.savez(path, X=X, y=y.astype(str))
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--input", str(path), "--epochs", "1",
                 "--n-latent", "2", "--widths", "8,16"]) == 0
    assert json.loads((out / "metrics.json").read_text())["structures"] == \
        ["cell_periphery", "nucleoli"]


def test_bad_input_file_is_named(tmp_path, capsys):
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((2, 3, 16, 16)))
    assert main(["run", "--out", str(tmp_path / "r"), "--input", str(path)]) == 2
    assert "lacks the arrays ['X', 'y']" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "r"), "--input",
                 str(tmp_path / "nope.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # Labels straight from make_cells are an object array, which needs pickle to load.
    X, y, _ = make_cells(8, shape=(16, 16), random_state=0)
    np.savez(path, X=X, y=y)
    assert main(["run", "--out", str(tmp_path / "r"), "--input", str(path)]) == 2
    assert "save the labels as strings" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_options_real_data_does_not_use_are_named(tmp_path, capsys):
    X, y, _ = make_cells(40, shape=(16, 16), structures=["nucleoli", "cell_periphery"],
                         random_state=0)
    path = tmp_path / "cells.npz"
    np.savez(path, X=X, y=y.astype(str))
    assert main(["run", "--out", str(tmp_path / "r"), "--input", str(path), "--n-cells", "20",
                 "--epochs", "1", "--n-latent", "2", "--widths", "8,16"]) == 0
    assert "--n-cells is not used with --input" in capsys.readouterr().err
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["n_train"] + metrics["n_test"] == 40


def test_library_advice_is_translated_to_options(tmp_path, capsys):
    X, y, _ = make_cells(20, shape=(16, 16), random_state=0)
    path = tmp_path / "cells.npz"
    np.savez(path, X=X, y=y.astype(str))
    assert main(["run", "--out", str(tmp_path / "r"), "--input", str(path), "--epochs", "1",
                 "--batch-size", "64"]) == 2
    err = capsys.readouterr().err
    assert "pass batch_size=16 or less" in err
    assert "on the command line, --batch-size sets it" in err


def test_ndim_contradicting_shape_is_an_error(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--ndim", "3", "--shape", "32,32"])
    assert "--ndim 3 contradicts --shape 32,32" in capsys.readouterr().err


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--shape", "4,4"])
    assert "shape" in capsys.readouterr().err


def _shared_bbbc021():
    return SHARED_DATA / "bbbc021"


def test_run_on_a_manifest_of_ome_tiffs(tmp_path):
    from cellgen.io import save_cells

    X, y, meta = make_cells(40, shape=(20, 20), structures=["nucleoli", "cell_periphery"],
                            random_state=0)
    save_cells(tmp_path / "cells", (X * 1000).astype(np.uint16),
               channel_names=["membrane", "dna", "gfp"], metadata=meta[["structure"]],
               pixel_size=(0.2, 0.1))
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--manifest", str(tmp_path / "cells" / "manifest.csv"),
                 "--label-column", "structure", "--shape", "16,16", "--epochs", "1",
                 "--n-latent", "2", "--widths", "8,16"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["structures"] == ["cell_periphery", "nucleoli"]
    assert "shape (16, 16)" in metrics["source"]
    # The generated cells keep the input's channel names and pixel size for Fiji.
    _, generated = load_manifest(out / "generated" / "manifest.csv")
    assert generated.attrs["channel_names"] == ["membrane", "dna", "gfp"]
    assert generated.attrs["pixel_size"] == (0.2, 0.1)


def test_voxel_size_resamples_3d_cells_to_cubic_voxels(tmp_path, capsys):
    from cellgen.io import save_cells

    X, y, meta = make_cells(24, ndim=3, shape=(8, 24, 24), random_state=0)
    save_cells(tmp_path / "cells", (X * 1000).astype(np.uint16), metadata=meta[["structure"]],
               pixel_size=(0.3, 0.1, 0.1))
    manifest = str(tmp_path / "cells" / "manifest.csv")
    args = ["--manifest", manifest, "--label-column", "structure", "--epochs", "1",
            "--n-latent", "2", "--widths", "4,8", "--batch-size", "8"]
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--voxel-size", "0.2", *args]) == 0
    # 8 x 0.3 um = 2.4 um = 12 voxels of 0.2 um; 24 x 0.1 um = 12 voxels.
    assert "shape (12, 12, 12)" in json.loads((out / "metrics.json").read_text())["source"]
    _, generated = load_manifest(out / "generated" / "manifest.csv")
    assert generated.attrs["pixel_size"] == (0.2, 0.2, 0.2)
    # Files without a pixel size cannot be resampled: said before training.
    save_cells(tmp_path / "bare", (X * 1000).astype(np.uint16), metadata=meta[["structure"]])
    assert main(["run", "--out", str(tmp_path / "r2"), "--voxel-size", "0.2",
                 *args[:1], str(tmp_path / "bare" / "manifest.csv"), *args[2:]]) == 2
    assert "has none (pixel size (None, None, None))" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "report.md").exists()
    assert main(["run", "--out", str(tmp_path / "r3"), "--voxel-size", "-1", *args]) == 2
    assert "--voxel-size) must be a positive number" in capsys.readouterr().err


def test_manifest_errors_are_reported(tmp_path, capsys):
    from cellgen.io import save_cells

    X, y, meta = make_cells(6, shape=(16, 16), random_state=0)
    save_cells(tmp_path / "cells", X, channel_names=["membrane", "dna", "gfp"])
    manifest = str(tmp_path / "cells" / "manifest.csv")
    assert main(["run", "--out", str(tmp_path / "r"), "--manifest", manifest,
                 "--label-column", "phase"]) == 2
    assert "'phase' is not a column" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "r"), "--manifest", manifest,
                 "--channels", "membrane,nucleus,gfp"]) == 2
    assert "nucleus" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_manifest_problems_found_before_training(tmp_path, capsys):
    import pandas as pd

    from cellgen.io import save_cells

    X, y, meta = make_cells(12, shape=(16, 16), structures=["nucleoli", "cell_periphery"],
                            random_state=0)
    # Missing labels: an error naming the rows, not a structure called "nan".
    labels = meta[["structure"]].astype(object)
    labels.iloc[[3, 7], 0] = None
    save_cells(tmp_path / "unlabelled", X, channel_names=["membrane", "dna", "gfp"],
               metadata=labels)
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--manifest",
                 str(tmp_path / "unlabelled" / "manifest.csv"), "--label-column",
                 "structure"]) == 2
    assert "no label in 2 row(s) (rows [3, 7])" in capsys.readouterr().err
    # Too few channels: said at once, in the command's words.
    save_cells(tmp_path / "two", X[:, :2], channel_names=["membrane", "dna"])
    assert main(["run", "--out", str(out), "--manifest",
                 str(tmp_path / "two" / "manifest.csv")]) == 2
    assert "have 2 channel(s); cellgen needs" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
    # The same name on every channel (as microscope exports do): a warning, and a report.
    import tifffile

    folder = tmp_path / "same"
    folder.mkdir()
    for i, cell in enumerate(X):
        tifffile.imwrite(folder / f"c{i}.ome.tif", cell, ome=True,
                         metadata={"axes": "CYX", "Channel": {"Name": ["Confocal"] * 3}})
    pd.DataFrame({"path": [f"c{i}.ome.tif" for i in range(len(X))],
                  "structure": meta["structure"]}).to_csv(folder / "manifest.csv", index=False)
    assert main(["run", "--out", str(out), "--manifest", str(folder / "manifest.csv"),
                 "--label-column", "structure", "--epochs", "1", "--n-latent", "2",
                 "--widths", "8,16", "--batch-size", "4"]) == 0
    assert "channel names repeat" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_options_synthetic_cells_do_not_use_are_named(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "r"), *TINY_ARGS, "--label-column", "phase",
                 "--channels", "a,b,c", "--controls"]) == 0
    err = capsys.readouterr().err
    for option in ("--label-column", "--channels", "--controls"):
        assert f"{option} is not used with synthetic cells" in err


def test_a_failed_report_leaves_no_staging_folder(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    calls = []

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        main(["run", "--out", str(out), *TINY_ARGS])
    assert list(out.iterdir()) == []


def test_home_folder_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    X, y, _ = make_cells(40, shape=(16, 16), structures=["nucleoli", "cell_periphery"],
                         random_state=0)
    np.savez(tmp_path / "cells.npz", X=X, y=y.astype(str))
    assert main(["run", "--out", "~/results", "--input", "~/cells.npz", "--epochs", "1",
                 "--n-latent", "2", "--widths", "8,16"]) == 0
    assert (tmp_path / "results" / "report.md").is_file()


@pytest.mark.skipif(not (_shared_bbbc021() / "manifest.csv").is_file(),
                    reason="shared BBBC021 cells not available")
def test_run_on_bbbc021_layout(tmp_path):
    import pandas as pd

    src = _shared_bbbc021()
    rows = pd.read_csv(src / "manifest.csv").head(24)
    rows["path"] = [str(src / p) for p in rows["path"]]  # absolute paths work too
    folder = tmp_path / "bbbc"
    folder.mkdir()
    rows.to_csv(folder / "manifest.csv", index=False)
    out = tmp_path / "r"
    assert main(["run", "--out", str(out), "--bbbc021", str(folder), "--shape", "64,64",
                 "--epochs", "1", "--n-latent", "2", "--widths", "4,8"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["structures"] == sorted(["beta-tubulin", "control_blank", "control_dna",
                                            "control_membrane", "control_noise",
                                            "control_random"])
    assert metrics["n_train"] + metrics["n_test"] == 24 * 6
    # Whole cells are held out, with their five control copies: 2 of the 24 cells.
    assert metrics["n_test"] == 2 * 6
