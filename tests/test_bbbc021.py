"""Tests for cellgen.datasets.load_bbbc021, on the shared crops and on a small fake copy."""


import numpy as np
import pandas as pd
import pytest

from cellgen.datasets import load_bbbc021
from cellgen.io import read_image, write_ome_tiff

from .conftest import SHARED_DATA

SHARED = SHARED_DATA
BBBC021 = SHARED / "bbbc021"
CHANNELS = ["DNA", "F-actin", "beta-tubulin"]
COLUMNS = ["moa", "compound", "concentration", "batch", "plate", "well", "site", "replicate",
           "cell_index", "path"]
needs_data = pytest.mark.skipif(not (BBBC021 / "manifest.csv").is_file(),
                                reason="shared BBBC021 data not available")


@pytest.fixture(scope="module")
def bbbc021():
    if not (BBBC021 / "manifest.csv").is_file():
        pytest.skip("shared BBBC021 data not available")
    return load_bbbc021(BBBC021, n_jobs=2)


@needs_data
def test_shapes_and_types(bbbc021):
    assert bbbc021.images.shape == (1996, 3, 68, 68)
    assert bbbc021.images.dtype == np.float32 and bbbc021.images.flags.c_contiguous
    assert bbbc021.target.shape == (1996,) and bbbc021.target.dtype == object
    assert bbbc021.channel_names == CHANNELS
    assert bbbc021.metadata.columns.tolist() == COLUMNS
    assert bbbc021.metadata.attrs["channel_names"] == CHANNELS


@needs_data
def test_labels_match_manifest(bbbc021):
    manifest = pd.read_csv(BBBC021 / "manifest.csv")
    assert bbbc021.target.tolist() == manifest["moa"].tolist()
    assert bbbc021.metadata["path"].tolist() == manifest["path"].tolist()
    assert len(bbbc021.target_names) == 13 and "DMSO" in bbbc021.target_names
    assert bbbc021.target_names.tolist() == sorted(set(manifest["moa"]))
    assert "Microtubule stabilizers" in bbbc021.target_names


@needs_data
def test_images_are_raw_intensities(bbbc021):
    for row in (0, 1000, 1995):
        raw, _ = read_image(BBBC021 / bbbc021.metadata["path"][row])
        np.testing.assert_array_equal(bbbc021.images[row], raw.astype(np.float32))
    assert bbbc021.images.max() > 255  # uint16 counts, not normalized


@needs_data
def test_descr_explains_source_and_layout(bbbc021):
    descr = bbbc021.DESCR
    for fragment in ["BBBC021", "Caie", "Ljosa", "https://bbbc.broadinstitute.org/BBBC021",
                     "NOT part of cellgen", "manifest.csv", "cell_index"]:
        assert fragment in descr


# ------------------------------------------------------------------- a fake copy


@pytest.fixture
def fake(tmp_path):
    """A four-cell copy of the layout, written with write_ome_tiff."""
    root = tmp_path / "bbbc021"
    (root / "cells").mkdir(parents=True)
    rng = np.random.RandomState(0)
    cells = rng.randint(0, 5000, (4, 3, 12, 12)).astype(np.uint16)
    rows = []
    for i, cell in enumerate(cells):
        write_ome_tiff(root / "cells" / f"cell{i}.ome.tif", cell, channel_names=CHANNELS)
        rows.append(dict(path=f"cells/cell{i}.ome.tif", plate="Week1_22123", batch="Week1",
                         well="B0%d" % (i + 2), site=1, replicate=1,
                         compound=["DMSO", "taxol", "taxol", "AZ138"][i],
                         concentration=[0.0, 0.3, 3.0, 1.0][i],
                         moa=["DMSO", "Microtubule stabilizers", "Microtubule stabilizers",
                              "Eg5 inhibitors"][i], cell_index=i))
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return root, cells


def test_fake_copy_loads(fake):
    root, cells = fake
    data = load_bbbc021(root)
    np.testing.assert_array_equal(data.images, cells.astype(np.float32))
    assert data.target_names.tolist() == ["DMSO", "Eg5 inhibitors", "Microtubule stabilizers"]
    assert data.metadata["concentration"].tolist() == [0.0, 0.3, 3.0, 1.0]
    images, target = load_bbbc021(root / "manifest.csv", return_X_y=True)
    np.testing.assert_array_equal(images, data.images)
    assert target.tolist() == data.target.tolist()


def test_home_folder_in_the_path(fake, monkeypatch):
    root, cells = fake
    monkeypatch.setenv("HOME", str(root.parent))
    np.testing.assert_array_equal(load_bbbc021("~/bbbc021").images, cells.astype(np.float32))


def test_channel_subset_and_order(fake):
    root, cells = fake
    data = load_bbbc021(root, channels=("beta-tubulin", "DNA"))
    np.testing.assert_array_equal(data.images, cells[:, [2, 0]])
    assert data.channel_names == ["beta-tubulin", "DNA"]
    with pytest.raises(ValueError, match=r"'tubulin'.*available channels: \['DNA', 'F-actin'"):
        load_bbbc021(root, channels=["tubulin"])


def test_missing_folder_or_manifest_explains_layout(tmp_path, fake):
    with pytest.raises(FileNotFoundError, match=r"No BBBC021 folder(.|\n)*manifest\.csv"):
        load_bbbc021(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no manifest\.csv(.|\n)*Expected layout"):
        load_bbbc021(tmp_path / "empty")


def test_bad_manifest(fake):
    root, _ = fake
    table = pd.read_csv(root / "manifest.csv")
    table.drop(columns=["moa", "well"]).to_csv(root / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['moa', 'well'\]"):
        load_bbbc021(root)
    table.assign(moa=["DMSO", None, "Eg5 inhibitors", None]).to_csv(root / "manifest.csv",
                                                                    index=False)
    with pytest.raises(ValueError, match=r"2 row\(s\) .* have no moa \(rows \[1, 3\]\)"):
        load_bbbc021(root)
    table.to_csv(root / "manifest.csv", index=False)
    (root / "cells" / "cell2.ome.tif").unlink()
    with pytest.raises(FileNotFoundError, match=r"row 2: .*cell2\.ome\.tif"):
        load_bbbc021(root)
