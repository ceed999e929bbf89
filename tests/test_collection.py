"""map_manifest: a model applied to a manifest chunk by chunk, in order, in memory or on disk."""

import shutil
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import make_pipeline

from cellgen import ReferenceVAE
from cellgen.analysis import map_manifest
from cellgen.io import load_manifest, save_cells
from cellgen.preprocessing import IntensityNormalizer

from .conftest import TINY

N = 30
CHUNK = 7  # 30 rows: four chunks of 7 and one of 2


@pytest.fixture(scope="module")
def collection(tmp_path_factory, cells2d):
    """N three-channel cells saved as OME-TIFFs with their structure labels."""
    X, y, _ = cells2d
    folder = tmp_path_factory.mktemp("collection") / "cells"
    save_cells(folder, X[:N], channel_names=["membrane", "DNA", "structure"],
               metadata=pd.DataFrame({"structure": y[:N]}))
    X_read, table = load_manifest(folder / "manifest.csv")
    return folder / "manifest.csv", X_read, table


def _by_chunk(fn, X, *columns, size=CHUNK):
    """``fn`` applied to each chunk of rows in turn, what map_manifest must reproduce."""
    return np.concatenate([fn(X[i:i + size], *(c[i:i + size] for c in columns))
                           for i in range(0, len(X), size)])


def test_transform_keeps_row_order_over_uneven_chunks(reference2d, collection):
    csv, X, _ = collection
    Z = map_manifest(reference2d, csv, channels=[0, 1], chunk_size=CHUNK)
    assert isinstance(Z, np.ndarray) and Z.shape == (N, reference2d.n_latent)
    np.testing.assert_array_equal(Z, _by_chunk(reference2d.transform, X[:, :2]))
    # One call on all cells batches them differently: equal up to float rounding.
    np.testing.assert_allclose(Z, reference2d.transform(X[:, :2]), rtol=1e-5, atol=1e-6)


def test_score_samples_equals_the_method_on_each_chunk(reference2d, collection):
    csv, X, table = collection
    # A DataFrame manifest with root= resolves the same relative paths.
    elbo = map_manifest(reference2d, table, root=csv.parent, channels=["membrane", "DNA"],
                        method="score_samples", chunk_size=CHUNK)
    assert elbo.shape == (N,)
    np.testing.assert_array_equal(elbo, _by_chunk(reference2d.score_samples, X[:, :2]))


def test_tuple_results_come_back_as_a_tuple(reference2d, collection):
    csv, X, _ = collection
    mu, logvar = map_manifest(reference2d, csv, channels=[0, 1], method="encode",
                              chunk_size=CHUNK)
    np.testing.assert_array_equal(mu, _by_chunk(lambda x: reference2d.encode(x)[0], X[:, :2]))
    assert logvar.shape == mu.shape


def test_per_row_keywords_from_a_column(conditional2d, collection):
    csv, X, table = collection
    labels = table["structure"].to_numpy()
    Z = map_manifest(conditional2d, csv, chunk_size=CHUNK, structures="structure")
    np.testing.assert_array_equal(
        Z, _by_chunk(lambda x, s: conditional2d.transform(x, structures=s), X, labels))
    # A string that names no column is one label for every cell.
    one = labels[0]
    Z_one = map_manifest(conditional2d, csv, chunk_size=CHUNK, structures=one)
    np.testing.assert_array_equal(
        Z_one, _by_chunk(lambda x: conditional2d.transform(x, structures=one), X))


def test_frozen_models_home_folder_and_folder_as_out(conditional2d, collection, tmp_path,
                                                    monkeypatch):
    from sklearn.frozen import FrozenEstimator
    from sklearn.pipeline import make_pipeline

    from cellgen.preprocessing import IntensityNormalizer

    csv, X, table = collection
    labels = table["structure"].to_numpy()
    expected = _by_chunk(lambda x, s: conditional2d.transform(x, structures=s), X, labels)
    frozen = FrozenEstimator(conditional2d)
    np.testing.assert_allclose(
        map_manifest(frozen, csv, chunk_size=CHUNK, structures="structure"), expected,
        atol=1e-6)
    pipe = make_pipeline(IntensityNormalizer(), frozen).fit(X, labels)
    assert map_manifest(pipe, csv, structures="structure").shape == expected.shape
    monkeypatch.setenv("HOME", str(tmp_path))
    map_manifest(conditional2d, csv, structures="structure", out="~/codes.npy")
    np.testing.assert_allclose(np.load(tmp_path / "codes.npy"), expected, atol=1e-6)
    # A folder where the file should go: said before any chunk is computed.
    (tmp_path / "taken.npy").mkdir()
    def no_work(self, X, structures=None):
        pytest.fail("a chunk was computed")

    monkeypatch.setattr(type(conditional2d), "transform", no_work)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        map_manifest(conditional2d, csv, structures="structure", out=tmp_path / "taken.npy")


def test_a_missing_required_argument_is_named(conditional2d, collection, tmp_path):
    csv, _, _ = collection
    with pytest.raises(TypeError, match=r"impute needs the argument\(s\) \['structures'\]"):
        map_manifest(conditional2d, csv, method="impute", out=tmp_path / "x.npy")
    assert list(tmp_path.iterdir()) == []


def test_random_state_gives_each_chunk_its_own_seed(conditional2d, collection):
    csv, _, _ = collection
    kwargs = dict(method="impute", chunk_size=CHUNK, structures="structure", n_samples=1,
                  random_state=0)
    first = map_manifest(conditional2d, csv, **kwargs)
    assert first.shape == (N, 1, 1, 16, 16)
    np.testing.assert_array_equal(first, map_manifest(conditional2d, csv, **kwargs))


def test_two_worker_processes(statcell2d, collection):
    csv, X, table = collection
    labels = table["structure"].to_numpy()
    Z = map_manifest(statcell2d, csv, chunk_size=CHUNK, n_jobs=2, structures="structure")
    expected = _by_chunk(lambda x, s: statcell2d.transform(x, structures=s), X, labels)
    np.testing.assert_allclose(Z, expected, rtol=1e-5, atol=1e-6)


def test_pipeline_and_preprocessor(cells2d, collection):
    csv, X, _ = collection
    train = cells2d[0][:, :2]
    pipe = make_pipeline(IntensityNormalizer(), ReferenceVAE(random_state=0, **TINY)).fit(train)
    Z = map_manifest(pipe, csv, channels=[0, 1], chunk_size=CHUNK)
    np.testing.assert_array_equal(Z, _by_chunk(pipe.transform, X[:, :2]))
    elbo = map_manifest(pipe, csv, channels=[0, 1], method="score_samples", chunk_size=CHUNK)
    np.testing.assert_array_equal(elbo, _by_chunk(pipe.score_samples, X[:, :2]))
    # The same normalization as a preprocessor applied while each chunk is read.
    model = pipe[-1]
    Z_pre = map_manifest(model, csv, channels=[0, 1], preprocessor=IntensityNormalizer(),
                         chunk_size=CHUNK)
    np.testing.assert_array_equal(Z_pre, Z)


def test_out_writes_a_npy_file(reference2d, collection, tmp_path):
    csv, X, _ = collection
    target = tmp_path / "embedding.npy"
    Z = map_manifest(reference2d, csv, channels=[0, 1], chunk_size=CHUNK, out=target)
    assert isinstance(Z, np.memmap)
    np.testing.assert_array_equal(np.load(target, mmap_mode="r"), Z)
    np.testing.assert_array_equal(Z, _by_chunk(reference2d.transform, X[:, :2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["embedding.npy"]


def test_a_failure_midway_leaves_nothing_behind(reference2d, collection, tmp_path):
    csv, _, _ = collection
    folder = tmp_path / "cells"
    shutil.copytree(csv.parent, folder)
    table = pd.read_csv(folder / "manifest.csv")
    (folder / table["path"][20]).write_bytes(b"not a TIFF file")  # in the third chunk
    target = tmp_path / "embedding.npy"
    with pytest.raises(Exception) as info:
        map_manifest(reference2d, folder / "manifest.csv", channels=[0, 1], chunk_size=CHUNK,
                     out=target)
    assert "manifest rows 14-20" in " ".join(getattr(info.value, "__notes__", [])) \
        or sys.version_info < (3, 11)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]


def test_a_missing_file_is_found_before_any_work(reference2d, collection, tmp_path):
    csv, _, table = collection
    broken = pd.concat([table, pd.DataFrame({"path": ["gone.ome.tif"]})],
                       ignore_index=True)
    target = tmp_path / "embedding.npy"
    with pytest.raises(FileNotFoundError, match=r"1 of the 31 .*row 30: .*gone\.ome\.tif"):
        map_manifest(reference2d, broken, root=csv.parent, out=target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(method="embed"), ValueError, r"method='embed'.*\['encode', 'encoder_features', "
                                       r"'score_samples', 'transform'\]"),
    (dict(method="fit"), ValueError, r"method='fit'.*choose one of"),
    (dict(method=len), TypeError, r"method must be the name of a method"),
    (dict(chunk_size=0), ValueError, r"chunk_size must be at least 1, got 0"),
    (dict(chunk_size=2.5), TypeError, r"chunk_size must be an int"),
    (dict(backend="spark"), ValueError, r"backend must be one of \['joblib', 'dask'\]"),
    (dict(path_column="file"), ValueError, r"no column 'file' of image paths.*"
                                           r"\['path', 'structure'\]"),
    (dict(structures="structure"), TypeError, r"ReferenceVAE.transform does not take .*"
                                              r"'structures'"),
    (dict(out="embedding.csv"), ValueError, r"out must be the path of a \.npy file"),
    (dict(method="encode", out="OUT"), ValueError, r"returns a tuple of 2 arrays but out="),
])
def test_bad_arguments(reference2d, collection, tmp_path, kwargs, error, match):
    csv, _, _ = collection
    if kwargs.get("out") == "OUT":
        kwargs["out"] = tmp_path / "codes.npy"
    with pytest.raises(error, match=match):
        map_manifest(reference2d, csv, channels=[0, 1], **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_bad_manifests(reference2d, collection):
    csv, _, table = collection
    with pytest.raises(ValueError, match="manifest.*empty"):
        map_manifest(reference2d, table.iloc[:0])
    with pytest.raises(TypeError, match="manifest must be the path of a CSV file"):
        map_manifest(reference2d, table.to_numpy())
    with pytest.raises(FileNotFoundError, match="does not exist"):
        map_manifest(reference2d, csv.parent / "absent.csv")


def test_a_label_that_is_no_column_is_explained(conditional2d, collection):
    csv, _, _ = collection
    with pytest.raises(ValueError) as info:
        map_manifest(conditional2d, csv, structures="structur")
    if sys.version_info >= (3, 11):
        assert "structures='structur' named no column" in " ".join(info.value.__notes__)


def test_unfitted_model_is_refused(collection):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        map_manifest(ReferenceVAE(), collection[0])


def test_dask_backend(reference2d, collection, monkeypatch):
    csv, X, _ = collection
    try:
        import dask  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r'pip install "cellgen\[dask\]"'):
            map_manifest(reference2d, csv, channels=[0, 1], backend="dask")
        return
    Z = map_manifest(reference2d, csv, channels=[0, 1], chunk_size=CHUNK, backend="dask",
                     n_jobs=2)
    np.testing.assert_array_equal(Z, _by_chunk(reference2d.transform, X[:, :2]))
    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(ImportError, match=r'pip install "cellgen\[dask\]"'):
        map_manifest(reference2d, csv, channels=[0, 1], backend="dask")
