"""Tests for cellgen.io: OME-TIFF read/write, manifests, the memmap cache, save_cells."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import FunctionTransformer

from cellgen.io import _manifest as manifest_module
from cellgen.io import (
    cache_manifest,
    load_manifest,
    read_image,
    read_manifest,
    save_cells,
    write_ome_tiff,
)

from .conftest import SHARED_DATA

SHARED = SHARED_DATA
BBBC021 = SHARED / "bbbc021"
ALLEN = SHARED / "allen" / "AICS-10_5_5_segmentations.ome.tif"
NAMES = ["DNA", "membrane", "structure"]


def _cell(shape, dtype, seed=0):
    rng = np.random.RandomState(seed)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.randint(info.min, int(info.max) + 1, size=shape).astype(dtype)


@pytest.fixture
def collection(tmp_path):
    """Six 2-channel 8x8 uint16 cells in cells/, listed by a manifest.csv."""
    (tmp_path / "cells").mkdir()
    cells = [_cell((2, 8, 8), np.uint16, seed=i) for i in range(6)]
    for i, cell in enumerate(cells):
        write_ome_tiff(tmp_path / "cells" / f"c{i}.ome.tif", cell, channel_names=NAMES[:2],
                       pixel_size=(0.5, 0.5))
    table = pd.DataFrame({"path": [f"cells/c{i}.ome.tif" for i in range(6)],
                          "label": list("abcabc"), "dose": np.arange(6) / 2})
    table.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path, np.stack(cells), table


# --------------------------------------------------------------------- read/write


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.uint8])
@pytest.mark.parametrize("shape, pixel_size", [((3, 9, 7), (0.108, 0.2)),
                                               ((3, 4, 9, 7), (0.29, 0.108, 0.108))])
def test_write_read_round_trip_is_exact(tmp_path, dtype, shape, pixel_size):
    cell = _cell(shape, dtype)
    path = tmp_path / "cell.ome.tif"
    write_ome_tiff(path, cell, channel_names=NAMES, pixel_size=pixel_size)
    image, info = read_image(path)
    assert image.dtype == cell.dtype
    assert image.tobytes() == cell.tobytes() and image.shape == cell.shape
    assert info["channel_names"] == NAMES
    assert info["pixel_size"] == pixel_size
    assert info["axes"] == ("CZYX" if len(shape) == 4 else "CYX")
    assert info["path"] == str(path)
    assert os.listdir(tmp_path) == ["cell.ome.tif"]  # no temporary file left


@pytest.mark.parametrize("dtype, stored", [(np.int16, np.int16), (np.float64, np.float64),
                                           (bool, np.uint8), (np.float16, np.float32)])
def test_other_dtypes(tmp_path, dtype, stored):
    cell = (np.arange(2 * 5 * 5).reshape(2, 5, 5) % 2).astype(dtype)
    write_ome_tiff(tmp_path / "c.tif", cell)
    image, _ = read_image(tmp_path / "c.tif")
    assert image.dtype == stored
    np.testing.assert_array_equal(image, cell.astype(stored))


def test_defaults_without_names_or_sizes(tmp_path):
    write_ome_tiff(tmp_path / "c.ome.tif", np.zeros((1, 4, 4), np.uint8))
    image, info = read_image(tmp_path / "c.ome.tif")
    assert image.shape == (1, 4, 4)
    assert info["channel_names"] == ["ch0"]
    assert info["pixel_size"] == (None, None)


def test_pixel_size_scalar_and_partial(tmp_path):
    write_ome_tiff(tmp_path / "a.tif", np.zeros((1, 2, 4, 4), np.uint8), pixel_size=0.25)
    assert read_image(tmp_path / "a.tif")[1]["pixel_size"] == (0.25, 0.25, 0.25)
    write_ome_tiff(tmp_path / "b.tif", np.zeros((1, 2, 4, 4), np.uint8),
                   pixel_size=(None, 0.1, 0.1))
    assert read_image(tmp_path / "b.tif")[1]["pixel_size"] == (None, 0.1, 0.1)


# (axes as written, shape, transpose from written array to (C, [Z,] Y, X))
AXES = [
    ("YX", (5, 6), None),
    ("ZYX", (3, 5, 6), None),
    ("ZCYX", (3, 2, 5, 6), (1, 0, 2, 3)),
    ("CZYX", (2, 3, 5, 6), (0, 1, 2, 3)),
    ("TCZYX", (1, 2, 3, 5, 6), None),
    ("TZCYX", (1, 3, 2, 5, 6), None),
    ("CYXS", (2, 5, 6, 1), None),
]


# OME-TIFF has no samples axis of length 1, so CYXS is only written as a shaped TIFF.
CASES = [(*case, ome) for case in AXES for ome in (True, False) if not (ome and "S" in case[0])]


@pytest.mark.parametrize("axes, shape, order, ome", CASES,
                         ids=[f"{c[0]}-{'ome' if c[3] else 'shaped'}" for c in CASES])
def test_read_reorders_axes(tmp_path, axes, shape, order, ome):
    data = _cell(shape, np.uint8)
    tifffile.imwrite(tmp_path / "x.tif", data, ome=ome, photometric="minisblack",
                     metadata={"axes": axes})
    image, info = read_image(tmp_path / "x.tif")
    # Build the expected (C, [Z,] Y, X) array from the named axes.
    kept = "".join(a for a in "CZYX" if a in axes)
    expected = np.transpose(data, [axes.index(a) for a in kept] +
                            [i for i, a in enumerate(axes) if a not in kept])
    expected = expected.reshape(expected.shape[:len(kept)])
    if "C" not in axes:
        expected = expected[np.newaxis]
    np.testing.assert_array_equal(image, expected)
    assert image.ndim == (4 if "Z" in axes else 3)
    if order is not None:
        np.testing.assert_array_equal(image, np.transpose(data, order))


def test_read_imagej_labels_and_calibration(tmp_path):
    data = _cell((1, 3, 2, 5, 6), np.float32)
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(5.0, 5.0),
                     metadata={"axes": "TZCYX", "Labels": ["dna", "mem"] * 3, "spacing": 0.5,
                               "unit": "um"})
    image, info = read_image(tmp_path / "ij.tif")
    np.testing.assert_array_equal(image, data[0].transpose(1, 0, 2, 3))
    assert info["channel_names"] == ["dna", "mem"]
    assert info["pixel_size"] == (0.5, 0.2, 0.2)
    # Labels that change along Z name the slices, not the channel.
    tifffile.imwrite(tmp_path / "z.tif", data[0, :, :1], imagej=True,
                     metadata={"axes": "ZCYX", "Labels": ["z0", "z1", "z2"]})
    assert read_image(tmp_path / "z.tif")[1]["channel_names"] == ["ch0"]


def test_plain_multipage_tiff_reads_pages_as_channels(tmp_path):
    data = _cell((3, 5, 6), np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", data, photometric="minisblack")
    image, info = read_image(tmp_path / "plain.tif")
    np.testing.assert_array_equal(image, data)
    assert info["channel_names"] == ["ch0", "ch1", "ch2"]


def test_read_rejects_time_series(tmp_path):
    tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros((4, 2, 5, 5), np.uint8), ome=True,
                     photometric="minisblack", metadata={"axes": "TCYX"})
    with pytest.raises(ValueError, match=r"t\.ome\.tif.*one time point"):
        read_image(tmp_path / "t.ome.tif")
    # Without a channel axis, time points must not pass for channels either.
    for axes, shape in (("TZYX", (3, 4, 5, 6)), ("TYX", (3, 5, 6))):
        tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros(shape, np.uint16), ome=True,
                         photometric="minisblack", metadata={"axes": axes})
        with pytest.raises(ValueError, match="one time point"):
            read_image(tmp_path / "t.ome.tif")


def test_channel_selection(tmp_path):
    cell = _cell((3, 4, 4), np.uint16)
    write_ome_tiff(tmp_path / "c.tif", cell, channel_names=NAMES)
    image, info = read_image(tmp_path / "c.tif", channels="structure")
    np.testing.assert_array_equal(image, cell[[2]])
    assert info["channel_names"] == ["structure"]
    image, info = read_image(tmp_path / "c.tif", channels=["structure", "DNA"])
    np.testing.assert_array_equal(image, cell[[2, 0]])
    assert info["channel_names"] == ["structure", "DNA"]
    image, info = read_image(tmp_path / "c.tif", channels=[-1, 1])
    np.testing.assert_array_equal(image, cell[[2, 1]])
    assert read_image(tmp_path / "c.tif", channels=0)[0].shape == (1, 4, 4)
    with pytest.raises(ValueError, match=r"'tubulin'.*available channels: \['DNA', 'membrane'"):
        read_image(tmp_path / "c.tif", channels=["DNA", "tubulin"])
    with pytest.raises(ValueError, match="out of range"):
        read_image(tmp_path / "c.tif", channels=3)
    with pytest.raises(ValueError, match="empty"):
        read_image(tmp_path / "c.tif", channels=[])
    # A name two channels share is ambiguous; indices still work.
    # (cellgen's writer refuses repeated names; other software writes them.)
    tifffile.imwrite(tmp_path / "d.tif", cell[:2], ome=True, photometric="minisblack",
                     metadata={"axes": "CYX", "Channel": {"Name": ["GFP", "GFP"]}})
    with pytest.raises(ValueError, match="'GFP' names 2 channels.*by index"):
        read_image(tmp_path / "d.tif", channels="GFP")
    np.testing.assert_array_equal(read_image(tmp_path / "d.tif", channels=[1])[0], cell[[1]])


def test_read_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.ome.tif"):
        read_image(tmp_path / "nothere.ome.tif")
    bad = tmp_path / "bad.ome.tif"
    bad.write_bytes(b"this is not a TIFF file" * 10)
    with pytest.raises(ValueError, match=r"bad\.ome\.tif") as err:
        read_image(bad)
    assert err.value.__cause__ is not None


@pytest.mark.skipif(not BBBC021.is_dir(), reason="shared BBBC021 data not available")
def test_read_shared_bbbc021_cell():
    path = sorted((BBBC021 / "cells").glob("*.ome.tif"))[0]
    image, info = read_image(path)
    assert image.shape == (3, 68, 68) and image.dtype == np.uint16
    assert info["channel_names"] == ["DNA", "F-actin", "beta-tubulin"]
    assert info["axes"] == "CYX"


@pytest.mark.skipif(not ALLEN.is_file(), reason="shared Allen data not available")
def test_read_shared_allen_cell():
    image, info = read_image(ALLEN)
    assert image.shape == (3, 65, 292, 204) and image.dtype == np.uint8
    assert info["channel_names"] == ["cell_seg", "nucleus_seg", "structure_seg"]
    assert info["axes"] == "ZCYX"
    assert info["pixel_size"] == (0.29, 0.065, 0.065)
    nucleus, info = read_image(ALLEN, channels="nucleus_seg")
    np.testing.assert_array_equal(nucleus[0], image[1])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(image=np.zeros((4, 4))), ValueError, "3 axes"),
    (dict(image=np.zeros((1, 2, 3, 4, 4))), ValueError, "save_cells"),
    (dict(image=np.zeros((2, 0, 4))), ValueError, "length 0"),
    (dict(image=np.zeros((2, 4, 4), np.int64)), TypeError, "cast"),
    (dict(image=np.zeros((2, 4, 4), complex)), TypeError, "numeric"),
    (dict(channel_names=["a"]), ValueError, "1 names but the image has 2"),
    (dict(channel_names=["a", "a"]), ValueError, "unique"),
    (dict(channel_names="ab"), TypeError, "list of str"),
    (dict(pixel_size=(0.1, 0.1, 0.1)), ValueError, "one size per spatial axis"),
    (dict(pixel_size=(0.1, -1.0)), ValueError, "positive"),
])
def test_write_validates(tmp_path, kwargs, error, match):
    kwargs = {"image": np.zeros((2, 4, 4), np.uint8), **kwargs}
    with pytest.raises(error, match=match):
        write_ome_tiff(tmp_path / "c.ome.tif", **kwargs)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("names", [np.array(["DNA", "actin"]), pd.Index(["DNA", "actin"]),
                                   ("DNA", "actin"), pd.Series(["DNA", "actin"])],
                         ids=["ndarray", "Index", "tuple", "Series"])
def test_write_accepts_any_sequence_of_channel_names(tmp_path, names):
    # metadata.attrs, DataFrame columns and numpy code hand names over as arrays.
    write_ome_tiff(tmp_path / "c.ome.tif", np.zeros((2, 4, 4), np.uint8), channel_names=names)
    assert read_image(tmp_path / "c.ome.tif")[1]["channel_names"] == ["DNA", "actin"]
    manifest = save_cells(tmp_path / "cells", np.zeros((1, 2, 4, 4), np.uint8),
                          channel_names=names)
    assert manifest.attrs["channel_names"] == ["DNA", "actin"]
    assert all(type(n) is str for n in manifest.attrs["channel_names"])


@pytest.mark.parametrize("names, error, match", [
    (np.array([1, 2]), TypeError, "non-empty strings"),
    (np.array(["a", "a"]), ValueError, "unique"),
    (pd.Index(["a", "a"]), ValueError, "unique"),
    ({"a", "b"}, TypeError, "list of str"),
    (np.array([["a", "b"]]), TypeError, "list of str"),
])
def test_write_rejects_unordered_or_non_string_channel_names(tmp_path, names, error, match):
    with pytest.raises(error, match=match):
        write_ome_tiff(tmp_path / "c.ome.tif", np.zeros((2, 4, 4), np.uint8),
                       channel_names=names)


def test_write_overwrite_and_missing_folder(tmp_path):
    path = tmp_path / "c.ome.tif"
    write_ome_tiff(path, np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_ome_tiff(path, np.ones((1, 4, 4), np.uint8), overwrite=False)
    write_ome_tiff(path, np.ones((1, 4, 4), np.uint8))
    assert read_image(path)[0].max() == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_ome_tiff(tmp_path / "nope" / "c.ome.tif", np.zeros((1, 4, 4), np.uint8))


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "c.ome.tif"
    write_ome_tiff(path, np.zeros((1, 4, 4), np.uint8))
    before = path.read_bytes()

    def half_write(file, data, **kwargs):
        Path(file).write_bytes(b"II*\x00 partial")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", half_write)
    with pytest.raises(OSError, match="disk full"):
        write_ome_tiff(path, np.ones((1, 4, 4), np.uint8))
    with pytest.raises(OSError, match="disk full"):
        write_ome_tiff(tmp_path / "new.ome.tif", np.ones((1, 4, 4), np.uint8))
    assert os.listdir(tmp_path) == ["c.ome.tif"]
    assert path.read_bytes() == before


# ------------------------------------------------------------------ load_manifest


def test_load_manifest_from_csv(collection):
    root, cells, table = collection
    X, meta = load_manifest(root / "manifest.csv")
    assert X.dtype == np.float32 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, cells.astype(np.float32))
    assert meta["label"].tolist() == table["label"].tolist()
    assert meta["path"].tolist() == table["path"].tolist()
    assert meta.attrs == {"channel_names": ["DNA", "membrane"], "pixel_size": (0.5, 0.5)}


def test_load_manifest_from_dataframe(collection, monkeypatch):
    root, cells, table = collection
    table = table.set_index(pd.Index(list("uvwxyz")))
    X, meta = load_manifest(table, root=root)
    np.testing.assert_array_equal(X, cells)
    assert meta.index.tolist() == list(range(6))
    monkeypatch.chdir(root)  # relative paths of a DataFrame start at the current directory
    np.testing.assert_array_equal(load_manifest(table)[0], cells)
    absolute = table.assign(path=[str(root / p) for p in table["path"]])
    np.testing.assert_array_equal(load_manifest(absolute, root="/nowhere")[0], cells)


def test_load_manifest_parallel_equals_serial(collection):
    root, cells, _ = collection
    X1, _ = load_manifest(root / "manifest.csv", n_jobs=1)
    X2, _ = load_manifest(root / "manifest.csv", n_jobs=2)
    np.testing.assert_array_equal(X1, X2)


def test_load_manifest_dtype_channels_and_progress(collection, capsys):
    root, cells, _ = collection
    X, meta = load_manifest(root / "manifest.csv", dtype=None, channels=["membrane"],
                            verbose=True)
    assert X.dtype == np.uint16
    np.testing.assert_array_equal(X, cells[:, [1]])
    assert meta.attrs["channel_names"] == ["membrane"]
    assert "6/6" in capsys.readouterr().err


def test_load_manifest_integer_dtype_refuses_values_it_cannot_hold(tmp_path):
    # astype would wrap them around (300 -> 44 in uint8) and return wrong pixels.
    write_ome_tiff(tmp_path / "small.ome.tif", np.full((1, 4, 4), 255, np.uint16))
    write_ome_tiff(tmp_path / "big.ome.tif", np.full((1, 4, 4), 300, np.uint16))
    write_ome_tiff(tmp_path / "negative.ome.tif", np.full((1, 4, 4), -5, np.int16))
    table = pd.DataFrame({"path": ["small.ome.tif", "big.ome.tif"]})
    X, _ = load_manifest(table.iloc[:1], root=tmp_path, dtype="uint8")
    assert X.dtype == np.uint8 and (X == 255).all()  # values that fit are kept exactly
    with pytest.raises(ValueError, match=r"row 1 \('.*big.ome.tif'\) holds values from 300 to "
                                         r"300, which dtype=uint8 cannot hold \(0 to 255\)"):
        load_manifest(table, root=tmp_path, dtype="uint8")
    with pytest.raises(ValueError, match=r"from -5 to -5, which dtype=uint16 cannot hold"):
        load_manifest(pd.DataFrame({"path": ["negative.ome.tif"]}), root=tmp_path,
                      dtype=np.uint16)
    assert load_manifest(table, root=tmp_path, dtype=None)[0].max() == 300
    write_ome_tiff(tmp_path / "nan.ome.tif", np.full((1, 4, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="from nan to nan, which dtype=int16 cannot hold"):
        load_manifest(pd.DataFrame({"path": ["nan.ome.tif"]}), root=tmp_path, dtype="int16")
    # What the preprocessor returns is converted too, and checked the same way.
    times_100 = FunctionTransformer(lambda a: a.astype(np.int32) * 100)
    with pytest.raises(ValueError, match=r"preprocessor's output for manifest rows 0 holds "
                                         r"values from 25500 to 25500, which dtype=uint8"):
        load_manifest(table.iloc[:1], root=tmp_path, dtype="uint8", preprocessor=times_100)


class CenterCrop(TransformerMixin, BaseEstimator):
    """Crops every cell to ``size`` x ``size`` around its centre (stateless per cell)."""

    def __init__(self, size=6):
        self.size = size

    def fit(self, X, y=None):
        self.fitted_ = True
        return self

    def transform(self, X):
        y0, x0 = (X.shape[-2] - self.size) // 2, (X.shape[-1] - self.size) // 2
        return X[..., y0:y0 + self.size, x0:x0 + self.size]


def test_load_manifest_applies_preprocessor(collection):
    root, cells, table = collection
    big = _cell((2, 10, 10), np.uint16, seed=9)
    write_ome_tiff(root / "cells" / "c2.ome.tif", big, channel_names=NAMES[:2],
                   pixel_size=0.5)
    crop = CenterCrop(6)
    X, _ = load_manifest(root / "manifest.csv", preprocessor=crop, n_jobs=2)
    assert X.shape == (6, 2, 6, 6)
    np.testing.assert_array_equal(X[0], cells[0, :, 1:7, 1:7])
    np.testing.assert_array_equal(X[2], big[:, 2:8, 2:8])
    assert not hasattr(crop, "fitted_")  # the caller's object is cloned, never fitted
    X, _ = load_manifest(root / "manifest.csv",
                         preprocessor=FunctionTransformer(lambda a: a[..., :4, :4] * 2))
    np.testing.assert_array_equal(X[1], 2.0 * cells[1, :, :4, :4])


def test_load_manifest_missing_files_name_rows(collection):
    root, _, table = collection
    for i in (1, 4):
        (root / "cells" / f"c{i}.ome.tif").unlink()
    with pytest.raises(FileNotFoundError,
                       match=r"2 of the 6 .*row 1: .*c1\.ome\.tif.*row 4: .*c4\.ome\.tif"):
        load_manifest(root / "manifest.csv")
    many = pd.DataFrame({"path": [f"gone{i}.tif" for i in range(8)]})
    with pytest.raises(FileNotFoundError, match=r"8 of the 8.*gone4\.tif'; and 3 more"):
        load_manifest(many, root=root)


def test_load_manifest_corrupt_file_names_row(collection):
    root, _, _ = collection
    (root / "cells" / "c3.ome.tif").write_bytes(os.urandom(200))
    with pytest.raises(ValueError, match=r"row 3: .*c3\.ome\.tif") as err:
        load_manifest(root / "manifest.csv", n_jobs=2)
    assert err.value.__cause__ is not None


def test_load_manifest_inconsistent_shapes(collection):
    root, _, _ = collection
    for i in (2, 5):
        write_ome_tiff(root / "cells" / f"c{i}.ome.tif", np.zeros((2, 9, 9), np.uint16),
                       channel_names=NAMES[:2])
    with pytest.raises(ValueError, match=r"4 rows have shape \(2, 8, 8\) \(the most common\), "
                                         r"but 2 row\(s\) have shape \(2, 9, 9\) \(rows 2, 5\)"
                                         r".*PadCrop"):
        load_manifest(root / "manifest.csv")


def test_load_manifest_channel_names_must_agree(collection):
    root, _, _ = collection
    write_ome_tiff(root / "cells" / "c4.ome.tif", np.zeros((2, 8, 8), np.uint16),
                   channel_names=["DNA", "actin"], pixel_size=0.5)
    with pytest.raises(ValueError, match=r"Channel names differ.*row 4.*\['DNA', 'actin'\]"):
        load_manifest(root / "manifest.csv")
    with pytest.raises(ValueError, match=r"row 4: .*'membrane'.*available channels"):
        load_manifest(root / "manifest.csv", channels=["DNA", "membrane"])
    X, meta = load_manifest(root / "manifest.csv", channels=["DNA"])
    assert X.shape == (6, 1, 8, 8)


def test_load_manifest_warns_when_pixel_sizes_differ(collection):
    root, _, _ = collection
    write_ome_tiff(root / "cells" / "c1.ome.tif", np.zeros((2, 8, 8), np.uint16),
                   channel_names=NAMES[:2], pixel_size=0.25)
    with pytest.warns(UserWarning, match="different pixel sizes"):
        _, meta = load_manifest(root / "manifest.csv")
    assert meta.attrs["pixel_size"] is None


def test_load_manifest_table_errors(collection):
    root, _, table = collection
    with pytest.raises(ValueError, match=r"no column 'file'.*\['path', 'label', 'dose'\]"):
        load_manifest(root / "manifest.csv", path_column="file")
    with pytest.raises(ValueError, match="empty"):
        load_manifest(table.iloc[:0], root=root)
    (root / "empty.csv").write_text("path,label\n")
    with pytest.raises(ValueError, match="empty"):
        load_manifest(root / "empty.csv")
    with pytest.raises(ValueError, match=r"no image path in row\(s\) 2"):
        load_manifest(table.assign(path=table["path"].where(table.index != 2)), root=root)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_manifest(root / "nope.csv")
    with pytest.raises(TypeError, match="DataFrame"):
        load_manifest(table.to_dict())


def test_tilde_means_the_home_folder(collection, monkeypatch):
    root, cells, table = collection
    monkeypatch.setenv("HOME", str(root))  # what expanduser reads on POSIX
    X, _ = load_manifest("~/manifest.csv")
    np.testing.assert_array_equal(X, cells)
    np.testing.assert_array_equal(load_manifest(table, root="~")[0], cells)
    _, paths = read_manifest(table, root="~/")
    assert paths == [root / p for p in table["path"]]
    assert read_manifest("~/manifest.csv")[1] == paths
    # Paths in the manifest: relative ones stay relative to root, "~/..." ones are expanded.
    (root / "sub").mkdir()
    mixed = pd.DataFrame({"path": ["~/cells/c0.ome.tif", "c1.ome.tif", "~weird.tif"]})
    (root / "sub" / "c1.ome.tif").write_bytes((root / "cells" / "c1.ome.tif").read_bytes())
    (root / "sub" / "~weird.tif").write_bytes((root / "cells" / "c2.ome.tif").read_bytes())
    _, paths = read_manifest(mixed, root=root / "sub")
    assert paths == [root / "cells" / "c0.ome.tif", root / "sub" / "c1.ome.tif",
                     root / "sub" / "~weird.tif"]
    X, _ = cache_manifest("~/manifest.csv", "~/cache.npy", root="~")
    np.testing.assert_array_equal(X, cells)
    assert (root / "cache.npy").is_file()
    # And the single-file functions.
    write_ome_tiff("~/one.ome.tif", cells[0])
    np.testing.assert_array_equal(read_image("~/one.ome.tif")[0], cells[0])
    save_cells("~/saved", cells[:2])
    assert (root / "saved" / "manifest.csv").is_file()


# ----------------------------------------------------------------- cache_manifest


def test_cache_manifest_builds_then_reuses(collection, monkeypatch):
    root, cells, _ = collection
    expected, meta_expected = load_manifest(root / "manifest.csv")
    cache = root / "cells.npy"
    X, meta = cache_manifest(root / "manifest.csv", cache, chunk_size=4)
    assert isinstance(X, np.memmap) and not X.flags.writeable and X.dtype == np.float32
    np.testing.assert_array_equal(X, expected)
    pd.testing.assert_frame_equal(meta, meta_expected)
    assert meta.attrs == meta_expected.attrs
    sidecar = json.loads(Path(str(cache) + ".json").read_text())
    assert sidecar["n_rows"] == 6 and sidecar["channel_names"] == ["DNA", "membrane"]
    assert sorted(os.listdir(root)) == ["cells", "cells.npy", "cells.npy.json", "manifest.csv"]

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache was not reused")

    monkeypatch.setattr(manifest_module, "read_image", no_reading)
    X2, meta2 = cache_manifest(root / "manifest.csv", cache)
    np.testing.assert_array_equal(X2, expected)
    assert meta2.attrs == meta_expected.attrs


def test_cache_manifest_detects_stale_cache(collection):
    root, cells, table = collection
    cache = root / "cache.npy"
    cache_manifest(root / "manifest.csv", cache)
    with pytest.raises(ValueError, match=r"stale: it holds 6 cells but the manifest lists 4"
                                         r".*overwrite=True"):
        cache_manifest(table.iloc[:4], cache, root=root)
    with pytest.raises(ValueError, match="stale: the manifest's image paths differ"):
        cache_manifest(table.iloc[::-1], cache, root=root)
    # The same relative names in another folder are other images.
    other = root / "elsewhere"
    (other / "cells").mkdir(parents=True)
    for i in range(6):
        write_ome_tiff(other / "cells" / f"c{i}.ome.tif", cells[i][::-1].copy(),
                       channel_names=NAMES[:2], pixel_size=(0.5, 0.5))
    table.to_csv(other / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="stale: the manifest's image paths differ"):
        cache_manifest(other / "manifest.csv", cache)
    with pytest.raises(ValueError, match="stale: the manifest's image paths differ"):
        cache_manifest(table, cache, root=other)
    with pytest.raises(ValueError, match="stale: it was built with channels=None"):
        cache_manifest(root / "manifest.csv", cache, channels="DNA")
    with pytest.raises(ValueError, match="stale: it was built with preprocessor=None"):
        cache_manifest(root / "manifest.csv", cache, preprocessor=CenterCrop(4))
    X, _ = cache_manifest(table.iloc[::-1], cache, root=root, overwrite=True)
    np.testing.assert_array_equal(X, cells[::-1])
    Path(str(cache) + ".json").unlink()
    with pytest.raises(ValueError, match="sidecar .* is missing"):
        cache_manifest(table.iloc[::-1], cache, root=root)


def test_interrupted_rebuild_is_never_served_as_the_old_cache(collection, monkeypatch):
    root, cells, table = collection
    cache = root / "cache.npy"
    cache_manifest(table, cache, root=root)
    from cellgen.io import _cache as cache_module

    def killed(*args, **kwargs):  # dies after the new array is in place
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_module.json, "dumps", killed)
    with pytest.raises(KeyboardInterrupt):
        cache_manifest(table.iloc[::-1], cache, root=root, overwrite=True)
    monkeypatch.undo()
    # The old arguments must not get the reversed cells.
    with pytest.raises(ValueError, match="stale: its sidecar"):
        cache_manifest(table, cache, root=root)
    X, _ = cache_manifest(table, cache, root=root, overwrite=True)
    np.testing.assert_array_equal(X, cells)


def test_cache_of_a_manifest_with_a_blank_path(collection):
    root, _, table = collection
    blank = table.assign(path=table["path"].where(table.index != 1))
    with pytest.raises(ValueError, match=r"no image path in row\(s\) 1"):
        cache_manifest(blank, root / "cache.npy", root=root)


def test_failed_cache_build_leaves_nothing(collection):
    root, _, _ = collection
    before = sorted(os.listdir(root))
    (root / "cells" / "c5.ome.tif").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"row 5: .*c5\.ome\.tif"):
        cache_manifest(root / "manifest.csv", root / "cache.npy", chunk_size=2)
    assert sorted(os.listdir(root)) == before
    write_ome_tiff(root / "cells" / "c5.ome.tif", np.zeros((2, 7, 7), np.uint16),
                   channel_names=NAMES[:2])
    with pytest.raises(ValueError, match=r"shape \(2, 7, 7\) \(rows 5\)"):
        cache_manifest(root / "manifest.csv", root / "cache.npy", chunk_size=2, n_jobs=2)
    assert sorted(os.listdir(root)) == before
    with pytest.raises(ValueError, match="chunk_size"):
        cache_manifest(root / "manifest.csv", root / "cache.npy", chunk_size=0)


# ---------------------------------------------------------------------- save_cells


def test_save_cells_refuses_the_current_folder(tmp_path, monkeypatch):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "sub")
    X = _cell((2, 1, 8, 8), np.uint8)
    for target in (".", "..", str(work)):
        with pytest.raises(ValueError, match="current folder or contains it"):
            save_cells(target, X, overwrite=True)
    assert sorted(p.name for p in work.iterdir()) == ["sub"]
    save_cells("cells", X)  # relative to the current folder
    assert (work / "sub" / "cells" / "manifest.csv").is_file()


def test_save_cells_round_trip(tmp_path):
    X = _cell((5, 3, 12, 10), np.float32)
    meta = pd.DataFrame({"structure": list("abcab"), "n": np.arange(5), "w": np.linspace(0, 1, 5)},
                        index=list("pqrst"))
    manifest = save_cells(tmp_path / "out", X, channel_names=NAMES, metadata=meta,
                          pixel_size=(0.2, 0.1))
    assert manifest.columns.tolist() == ["path", "structure", "n", "w"]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        ["manifest.csv"] + [f"cell_{i:05d}.ome.tif" for i in range(5)])
    X_back, meta_back = load_manifest(tmp_path / "out" / "manifest.csv")
    assert X_back.tobytes() == X.tobytes()
    pd.testing.assert_frame_equal(meta_back.drop(columns="path"), meta.reset_index(drop=True),
                                  check_dtype=False)
    assert meta_back.attrs == {"channel_names": NAMES, "pixel_size": (0.2, 0.1)}
    assert manifest.attrs == meta_back.attrs
    assert os.listdir(tmp_path) == ["out"]


def test_save_cells_3d_integer_and_source_path(tmp_path):
    X = _cell((3, 2, 4, 6, 6), np.uint16)
    meta = pd.DataFrame({"path": ["a.tif", "b.tif", "c.tif"]})
    manifest = save_cells(tmp_path / "out", X, metadata=meta, prefix="gen")
    assert manifest.columns.tolist() == ["path", "source_path"]
    assert manifest["path"][2] == "gen_00002.ome.tif"
    X_back, meta_back = load_manifest(tmp_path / "out" / "manifest.csv", dtype=None)
    assert X_back.dtype == np.uint16 and X_back.tobytes() == X.tobytes()
    assert meta_back["source_path"].tolist() == ["a.tif", "b.tif", "c.tif"]
    assert manifest.attrs == meta_back.attrs == {"channel_names": ["ch0", "ch1"],
                                                 "pixel_size": (None, None, None)}
    # Saved again from what was loaded: the first source stays.
    again = save_cells(tmp_path / "again", X_back, metadata=meta_back)
    assert again.columns.tolist() == ["path", "source_path"]
    assert again["source_path"].tolist() == ["a.tif", "b.tif", "c.tif"]


def test_save_cells_refuses_to_overwrite(tmp_path):
    out = tmp_path / "out"
    save_cells(out, np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_cells(out, np.ones((3, 1, 4, 4), np.uint8))
    assert len(os.listdir(out)) == 3
    save_cells(out, np.ones((1, 1, 4, 4), np.uint8), overwrite=True, prefix="new")
    assert sorted(os.listdir(out)) == ["manifest.csv", "new_00000.ome.tif"]
    (tmp_path / "empty").mkdir()
    save_cells(tmp_path / "empty", np.ones((1, 1, 4, 4), np.uint8))
    assert sorted(os.listdir(tmp_path)) == ["empty", "out"]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(X=np.zeros((1, 4, 4))), ValueError, "4 axes"),
    (dict(X=np.zeros((0, 1, 4, 4))), ValueError, "non-empty"),
    (dict(metadata=pd.DataFrame({"a": [1]})), ValueError, "1 rows but X holds 2"),
    (dict(channel_names=["a", "b"]), ValueError, "2 names but the image has 1"),
    (dict(prefix="a/b"), ValueError, "prefix"),
    # One Z plane would read back as a 2D cell, so the folder would not round-trip.
    (dict(X=np.zeros((2, 1, 1, 4, 4))), ValueError, "single Z plane"),
])
def test_save_cells_validates(tmp_path, kwargs, error, match):
    kwargs = {"X": np.zeros((2, 1, 4, 4), np.uint8), **kwargs}
    with pytest.raises(error, match=match):
        save_cells(tmp_path / "out", **kwargs)
    assert os.listdir(tmp_path) == []


def test_failed_save_cells_leaves_nothing(tmp_path, monkeypatch):
    from cellgen.io import _save

    out = tmp_path / "out"
    save_cells(out, np.zeros((2, 1, 4, 4), np.uint8))
    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    real_write, calls = _save._write, []

    def failing_write(*args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        real_write(*args)

    monkeypatch.setattr(_save, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        save_cells(out, np.ones((4, 1, 4, 4), np.uint8), overwrite=True)
    assert os.listdir(tmp_path) == ["out"]
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before
    calls.clear()
    with pytest.raises(OSError, match="disk full"):
        save_cells(tmp_path / "fresh", np.ones((4, 1, 4, 4), np.uint8))
    assert os.listdir(tmp_path) == ["out"]


# ------------------------------------------------------------- property-based tests

DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32])
SHAPES = st.tuples(st.integers(1, 3), st.integers(0, 3), st.integers(1, 7), st.integers(1, 7))


def _shape(c, z, y, x):
    # z == 0 or 1 stands for a 2D cell: a single Z plane reads back as 2D by design
    return (c, y, x) if z < 2 else (c, z, y, x)


@settings(max_examples=25, deadline=None)
@given(data=st.data(), dtype=DTYPES, dims=SHAPES)
def test_property_write_read_is_exact(data, dtype, dims):
    shape = _shape(*dims)
    cell = data.draw(arrays(dtype, shape))
    sizes = data.draw(st.tuples(*[st.floats(1e-3, 10.0)] * (len(shape) - 1)))
    names = [f"channel {i}" for i in range(shape[0])]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "cell.ome.tif"
        write_ome_tiff(path, cell, channel_names=names, pixel_size=sizes)
        image, info = read_image(path)
    assert image.dtype == cell.dtype and image.shape == cell.shape
    assert image.tobytes() == cell.tobytes()  # bit-exact, NaN and -0.0 included
    assert info["channel_names"] == names and info["pixel_size"] == sizes


@settings(max_examples=10, deadline=None)
@given(data=st.data(), dtype=DTYPES, dims=SHAPES, n=st.integers(1, 4))
def test_property_save_cells_load_manifest_is_exact(data, dtype, dims, n):
    X = data.draw(arrays(dtype, (n,) + _shape(*dims)))
    with tempfile.TemporaryDirectory() as folder:
        save_cells(Path(folder) / "cells", X)
        X_back, meta = load_manifest(Path(folder) / "cells" / "manifest.csv", dtype=None)
    assert X_back.dtype == X.dtype and X_back.tobytes() == X.tobytes()
    assert len(meta) == n
