"""save/load: safetensors and JSON only, exact round trips, clear errors, nothing half-written."""

import json
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from cellgen import ConditionalStructureVAE, ReferenceVAE, StatisticalCell

from .conftest import TINY


def _no_pickles(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("loading must not unpickle")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)


def test_reference_round_trip(reference2d, cells2d, tmp_path, monkeypatch):
    X = cells2d[0][:, :2]
    folder = reference2d.save(tmp_path / "ref")
    _no_pickles(monkeypatch)
    loaded = ReferenceVAE.load(folder)
    assert loaded.get_params() == reference2d.get_params()
    np.testing.assert_array_equal(loaded.transform(X), reference2d.transform(X))
    np.testing.assert_array_equal(loaded.score_samples(X), reference2d.score_samples(X))
    np.testing.assert_array_equal(loaded.sample(3, random_state=0),
                                  reference2d.sample(3, random_state=0))
    assert loaded.spatial_shape_ == reference2d.spatial_shape_
    assert loaded.history_.equals(reference2d.history_)
    meta = json.loads((folder / "cellgen.json").read_text())
    assert meta["torch_version"] == torch.__version__ and meta["class"] == "ReferenceVAE"


def test_conditional_round_trip_keeps_labels(conditional2d, cells2d, tmp_path, monkeypatch):
    X, y, _ = cells2d
    folder = conditional2d.save(tmp_path / "cond")
    _no_pickles(monkeypatch)
    loaded = ConditionalStructureVAE.load(folder)
    assert list(loaded.classes_) == list(conditional2d.classes_)
    np.testing.assert_array_equal(loaded.transform(X, structures=y),
                                  conditional2d.transform(X, structures=y))
    np.testing.assert_array_equal(loaded.impute(X[:2], "nucleoli"),
                                  conditional2d.impute(X[:2], "nucleoli"))
    with pytest.raises(ValueError, match="not seen during fit"):
        loaded.transform(X[:1], structures="golgi")


@pytest.mark.parametrize("cells", ["cells2d", "cells3d"])
def test_convolutional_conditioning_round_trip(cells, request, tmp_path, monkeypatch):
    X, y, _ = request.getfixturevalue(cells)
    model = ConditionalStructureVAE(conditioning="convolutional", random_state=0, **TINY).fit(X, y)
    assert model.net_.module_.pyramid is not None
    folder = model.save(tmp_path / "cond")
    _no_pickles(monkeypatch)
    loaded = ConditionalStructureVAE.load(folder)
    assert loaded.get_params()["conditioning"] == "convolutional"
    np.testing.assert_array_equal(loaded.transform(X, structures=y),
                                  model.transform(X, structures=y))
    np.testing.assert_array_equal(loaded.impute(X[:2], "nucleoli"), model.impute(X[:2], "nucleoli"))
    assert loaded.impute(X[:2], "nucleoli").shape == (2, 1, *X.shape[2:])


@pytest.mark.parametrize("which", ["statcell2d", "statcell3d"])
def test_statistical_cell_round_trip(which, request, tmp_path, monkeypatch):
    cell = request.getfixturevalue(which)
    X, y, _ = request.getfixturevalue("cells2d" if which.endswith("2d") else "cells3d")
    folder = cell.save(tmp_path / "cell")
    _no_pickles(monkeypatch)
    loaded = StatisticalCell.load(folder)
    np.testing.assert_array_equal(loaded.transform(X, structures=y),
                                  cell.transform(X, structures=y))
    np.testing.assert_array_equal(loaded.score_samples(X, structures=y),
                                  cell.score_samples(X, structures=y))
    assert loaded.reference_channels_ == cell.reference_channels_
    assert loaded.spatial_shape_ == cell.spatial_shape_
    assert list(loaded.classes_) == list(cell.classes_)


def test_refuses_to_overwrite_and_replaces_only_when_asked(reference2d, tmp_path):
    folder = reference2d.save(tmp_path / "m")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        reference2d.save(folder)
    reference2d.save(folder, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temporary left over


def test_failed_save_leaves_nothing(reference2d, tmp_path, monkeypatch):
    from cellgen.estimators import _persist

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_persist, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        reference2d.save(tmp_path / "m")
    assert list(tmp_path.iterdir()) == []


def test_unfitted_and_wrong_class_and_missing_files(reference2d, tmp_path):
    with pytest.raises(NotFittedError):
        ReferenceVAE().save(tmp_path / "x")
    with pytest.raises(NotFittedError):
        StatisticalCell().save(tmp_path / "y")
    folder = reference2d.save(tmp_path / "ref")
    with pytest.raises(ValueError, match="holds a ReferenceVAE, not a ConditionalStructureVAE"):
        ConditionalStructureVAE.load(folder)
    with pytest.raises(FileNotFoundError, match="not a model saved by cellgen"):
        ReferenceVAE.load(tmp_path / "nothing")
    (folder / "weights.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="could not be read as safetensors"):
        ReferenceVAE.load(folder)
    (folder / "weights.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="incomplete"):
        ReferenceVAE.load(folder)


def test_loading_skips_the_exact_norms_that_the_weights_overwrite(statcell2d, cells2d,
                                                                   tmp_path, monkeypatch):
    # An SVD per layer initializes each spectral-norm gain of a new model; a
    # loaded or unpickled model overwrites the gains at once, so it skips them.
    X, y, _ = cells2d
    statcell2d.save(tmp_path / "m")
    blob = pickle.dumps(statcell2d)
    expected = statcell2d.transform(X, structures=y)

    def no_svd(*args, **kwargs):
        raise AssertionError("an exact matrix norm was computed while loading")

    monkeypatch.setattr(torch.linalg, "matrix_norm", no_svd)
    for model in (StatisticalCell.load(tmp_path / "m"), pickle.loads(blob)):
        np.testing.assert_array_equal(model.transform(X, structures=y), expected)
    # A new model still starts its gains at the exact spectral norms.
    with pytest.raises(AssertionError, match="exact matrix norm"):
        ReferenceVAE(**TINY).fit(X[:, :2])


def test_other_version_warns_and_gpu_model_loads_on_cpu(reference2d, cells2d, tmp_path):
    folder = reference2d.save(tmp_path / "ref")
    meta = json.loads((folder / "cellgen.json").read_text())
    meta["cellgen_version"] = "0.0.1"
    meta["fitted"]["device_"] = "cuda:0"
    (folder / "cellgen.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="saved with cellgen 0.0.1"):
        loaded = ReferenceVAE.load(folder)
    if not torch.cuda.is_available():
        assert loaded.device_ == "cpu"
    X = cells2d[0][:, :2]
    np.testing.assert_array_equal(loaded.transform(X), reference2d.transform(X))


def test_a_model_saved_on_an_apple_gpu_loads_here(reference2d, cells2d, tmp_path, monkeypatch):
    folder = reference2d.save(tmp_path / "ref")
    meta = json.loads((folder / "cellgen.json").read_text())
    meta["fitted"]["device_"] = "mps"
    (folder / "cellgen.json").write_text(json.dumps(meta))
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    loaded = ReferenceVAE.load(folder)
    assert loaded.device_ == "cpu"
    X = cells2d[0][:, :2]
    np.testing.assert_array_equal(loaded.transform(X), reference2d.transform(X))
    state = reference2d.__getstate__()
    state["device_"] = "mps"
    again = ReferenceVAE.__new__(ReferenceVAE)
    again.__setstate__(state)
    assert again.device_ == "cpu"


def test_save_refuses_the_working_folder_and_expands_home(reference2d, tmp_path, monkeypatch):
    work = tmp_path / "project"
    (work / "data").mkdir(parents=True)
    (work / "data" / "raw.csv").write_text("precious")
    monkeypatch.chdir(work)
    for target in (".", str(work), ".."):
        with pytest.raises(ValueError, match="current folder or contains it"):
            reference2d.save(target, overwrite=True)
    assert (work / "data" / "raw.csv").read_text() == "precious"
    monkeypatch.setenv("HOME", str(tmp_path))
    reference2d.save("~/models/ref")
    assert (tmp_path / "models" / "ref" / "cellgen.json").is_file()
    assert ReferenceVAE.load("~/models/ref").n_latent == reference2d.n_latent


@pytest.mark.parametrize("edit, match", [
    (lambda m: [m], "malformed: it holds a list"),
    (lambda m: {k: v for k, v in m.items() if k != "params"}, r"\['params'\] missing"),
    (lambda m: {k: v for k, v in m.items() if k != "module"}, r"\['module'\] missing"),
    (lambda m: dict(m, fitted={k: v for k, v in m["fitted"].items() if k != "widths_"}),
     r"fitted attributes \['widths_'\] missing"),
    (lambda m: dict(m, params=dict(m["params"], new_param=1)),
     r"parameters \['new_param'\] that this cellgen does not have"),
    (lambda m: dict(m, fitted=dict(m["fitted"], __class__=1)),
     r"fitted attributes \['__class__'\]"),
])
def test_edited_model_files_are_named(reference2d, tmp_path, edit, match):
    folder = reference2d.save(tmp_path / "ref")
    meta = json.loads((folder / "cellgen.json").read_text())
    (folder / "cellgen.json").write_text(json.dumps(edit(meta)))
    with pytest.raises(ValueError, match=match):
        ReferenceVAE.load(folder)


def test_version_warning_points_at_the_callers_line(statcell2d, tmp_path):
    folder = statcell2d.save(tmp_path / "cell")
    for meta_file in folder.rglob("cellgen.json"):
        meta = json.loads(meta_file.read_text())
        meta["cellgen_version"] = "0.0.1"
        meta_file.write_text(json.dumps(meta))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        StatisticalCell.load(folder)
    assert [w.filename for w in caught] == [__file__]  # once, and here


def test_callbacks_are_not_saved(cells2d, tmp_path):
    from skorch.callbacks import Callback

    X = cells2d[0][:32, :2]
    vae = ReferenceVAE(callbacks=[Callback()], **dict(TINY, max_epochs=1)).fit(X)
    with pytest.warns(UserWarning, match="callbacks are code and are not saved"):
        folder = vae.save(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ReferenceVAE.load(folder).callbacks is None


def test_random_state_objects_are_not_saved(cells2d, tmp_path):
    X = cells2d[0][:32, :2]
    vae = ReferenceVAE(**dict(TINY, max_epochs=1, random_state=np.random.RandomState(0))).fit(X)
    with pytest.warns(UserWarning, match="random_state is a .*not saved"):
        folder = vae.save(tmp_path / "m")
    loaded = ReferenceVAE.load(folder)
    assert loaded.random_state is None
    np.testing.assert_array_equal(loaded.transform(X), vae.transform(X))


def test_torch_load_is_only_called_with_weights_only():
    # torch.load without weights_only=True unpickles arbitrary code.
    import ast
    from pathlib import Path

    import cellgen

    calls = []
    for path in Path(cellgen.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load" and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("torch", "pickle", "joblib")):
                safe = any(k.arg == "weights_only" and isinstance(k.value, ast.Constant)
                           and k.value.value is True for k in node.keywords)
                calls.append((f"{path.name}:{node.lineno}", node.func.value.id, safe))
    assert calls, "expected the checkpoint reader's torch.load calls"
    unsafe = [c for c in calls if not (c[1] == "torch" and c[2])]
    assert not unsafe, f"unsafe loads: {unsafe}"
